"""quantized_linear (dynamic per-row linear layer) against a scalar oracle built from the formula."""
import numpy as np
import pytest

from eightbit.numerics import quantize_weight_symmetric
from eightbit.reference import dynamic_quantize_rows, quantized_linear

F = np.float32


def oracle(x2, w_q, w_s, bias, relu):
    q, s_a, z_a = dynamic_quantize_rows(x2)       # tested on its own in test_ref_quantize_dequantize
    m, n = x2.shape[0], w_q.shape[0]
    y = np.empty((m, n), F)
    for i in range(m):
        for j in range(n):
            acc = sum((int(q[i, k]) - int(z_a[i])) * int(w_q[j, k]) for k in range(w_q.shape[1]))
            v = F(F(acc) * F(s_a[i] * w_s[j]))
            if bias is not None:
                v = F(v + bias[j])
            y[i, j] = v if (not relu or v > 0) else F(0.0)
    return y


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 17), (2, 4, 7, 16)])
def test_quantized_linear_matches_oracle(shape, with_bias, relu):
    rng = np.random.default_rng(sum(shape) * 13 + with_bias + 2 * relu)
    *lead, n, k = shape
    x = rng.normal(0, 1.5, tuple(lead) + (k,)).astype(F)
    w = rng.normal(0, 0.2, (n, k)).astype(F)
    w_q, w_s = quantize_weight_symmetric(w)
    bias = rng.normal(0, 0.5, n).astype(F) if with_bias else None
    y = quantized_linear(x, w_q, w_s, bias, "relu" if relu else None)
    assert y.dtype == np.float32 and y.shape == tuple(lead) + (n,)
    want = oracle(x.reshape(-1, k), w_q, w_s, bias, relu).reshape(y.shape)
    np.testing.assert_array_equal(y, want)
    if relu:
        assert not np.any(np.signbit(y))         # relu returns +0.0, never -0.0
    # and it approximates the float layer
    ref = x @ w.T + (bias if bias is not None else 0)
    if relu:
        ref = np.maximum(ref, 0)
    assert np.max(np.abs(y - ref)) < 0.05 * max(1.0, float(np.abs(ref).max()))


def test_scalar_weight_scale_and_empty_batch():
    rng = np.random.default_rng(11)
    w = rng.normal(0, 1, (4, 6)).astype(F)
    w_q, w_s = quantize_weight_symmetric(w, per_channel=False)
    x = rng.normal(0, 1, (3, 6)).astype(F)
    y = quantized_linear(x, w_q, w_s)
    np.testing.assert_array_equal(y, oracle(x, w_q, np.repeat(w_s, 4), None, False))
    assert quantized_linear(np.zeros((0, 6), F), w_q, w_s).shape == (0, 4)


def test_per_tensor_granularity_is_one_dynamic_quantize_linear_over_all_rows():
    """granularity="tensor" (ORT's quantize_dynamic models): DynamicQuantizeLinear of the whole x,
    then the same formula with that one scale / zero point for every row."""
    from eightbit.reference import dynamic_quantize_linear, matmul_integer

    rng = np.random.default_rng(5)
    x = (rng.normal(0, 1, (2, 3, 9)) * rng.uniform(0.1, 5, (2, 3, 1))).astype(F)   # rows of unlike ranges
    w_q, w_s = quantize_weight_symmetric(rng.normal(0, 0.3, (4, 9)).astype(F))
    bias = rng.normal(0, 0.5, 4).astype(F)
    q, s, z = dynamic_quantize_linear(x.reshape(6, 9))
    acc = matmul_integer(q, w_q.T, z, None)
    want = ((acc.astype(F) * (s * w_s).astype(F)).astype(F) + bias).astype(F).reshape(2, 3, 4)
    y = quantized_linear(x, w_q, w_s, bias, granularity="tensor")
    np.testing.assert_array_equal(y, want)
    assert not np.array_equal(y, quantized_linear(x, w_q, w_s, bias))       # per row differs here
    with pytest.raises(ValueError, match="granularity"):
        quantized_linear(x, w_q, w_s, bias, granularity="channel")
