"""The fused epilogues (float and fixed requantization, dynamic dequantization)
are bit-exact with eightbit.reference on every kernel path."""

import numpy as np
import pytest

import eightbit as eb
from eightbit import reference as ref


def random_scales(rng, n):
    # Scales spread over several octaves so multipliers hit many rounding cases.
    return (2.0 ** rng.uniform(-12, -4, n)).astype(np.float32)


@pytest.mark.parametrize("requant", ["float", "fixed"])
@pytest.mark.parametrize("a_dtype,b_dtype,y_dtype", [(np.uint8, np.int8, np.uint8), (np.int8, np.int8, np.int8),
                                                     (np.uint8, np.uint8, np.uint8), (np.int8, np.uint8, np.int8)])
@pytest.mark.parametrize("m,n,k", [(1, 17, 64), (33, 48, 100), (70, 33, 255)])
def test_qlinear_matmul(isa, rng, requant, a_dtype, b_dtype, y_dtype, m, n, k):
    ai, bi, yi = np.iinfo(a_dtype), np.iinfo(b_dtype), np.iinfo(y_dtype)
    a = rng.integers(ai.min, ai.max + 1, (m, k), dtype=a_dtype)
    b = rng.integers(bi.min, bi.max + 1, (k, n), dtype=b_dtype)
    args = dict(
        a_scale=np.float32(rng.uniform(0.005, 0.05)),
        a_zero_point=a_dtype(rng.integers(ai.min, ai.max + 1)),
        b_scale=random_scales(rng, n),
        b_zero_point=rng.integers(bi.min, bi.max + 1, n, dtype=b_dtype),
        y_scale=np.float32(rng.uniform(0.05, 2.0)),
        y_zero_point=y_dtype(rng.integers(yi.min, yi.max + 1)),
    )
    expected = ref.qlinear_matmul(a=a, b=b, requant=requant, **args)
    np.testing.assert_array_equal(eb.ops.qlinear_matmul(a=a, b=b, requant=requant, **args), expected)
    packed = eb.pack_weights(b, args["b_zero_point"])
    np.testing.assert_array_equal(eb.ops.qlinear_matmul(a=a, b=packed, requant=requant, **args), expected)
    # The output spans the range, so saturation at both ends is exercised somewhere.
    assert expected.dtype == np.dtype(y_dtype)


@pytest.mark.parametrize("a_dtype,y_dtype", [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)])
@pytest.mark.parametrize("a_zp", ["zero", "random"])
@pytest.mark.parametrize("m,n,k", [(1, 64, 64), (5, 96, 100), (12, 32, 4), (16, 100, 64), (37, 64, 36)])
def test_requantization_in_the_tile(isa, rng, a_dtype, y_dtype, a_zp, m, n, k):
    """Weights without zero point: the AVX-512 VNNI tiles requantize in registers (whole 16-column
    panels) and store bytes once. Rows of a near its zero point keep the sums small, and even
    columns get the multiplier 1/2, so many values land on exact .5 ties (half to even); the first
    row is dense and saturates; a zero a_zero_point leaves no column term."""
    ai, yi = np.iinfo(a_dtype), np.iinfo(y_dtype)
    za = 0 if a_zp == "zero" else int(rng.integers(ai.min + 3, ai.max - 2))
    delta = rng.integers(1, 4, (m, k)) * rng.choice([-1, 0, 1], (m, k), p=[0.25, 0.5, 0.25])
    a = np.clip(za + delta, ai.min, ai.max).astype(a_dtype)
    a[0] = rng.integers(ai.min, ai.max + 1, k)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    args = dict(
        a_scale=np.float32(1.0),
        a_zero_point=a_dtype(za),
        b_scale=np.where(np.arange(n) % 2 == 0, 1.0, rng.uniform(0.5, 4.0, n)).astype(np.float32),
        b_zero_point=np.zeros(n, np.int8),
        y_scale=np.float32(2.0),
        y_zero_point=y_dtype(rng.integers(yi.min // 4, yi.max // 4 + 1)),
    )
    expected = ref.qlinear_matmul(a=a, b=b, requant="float", **args)
    packed = eb.pack_weights(b, args["b_zero_point"])
    np.testing.assert_array_equal(eb.ops.qlinear_matmul(a=a, b=packed, requant="float", **args), expected)
    if m > 1:
        acc = (a.astype(np.int64) - za) @ b.astype(np.int64)
        assert (acc[1:, ::2] % 2 == 1).any()  # ties: odd sums times 1/2
        assert (expected == yi.min).any() and (expected == yi.max).any()


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("batch,in_f,out_f", [(1, 64, 48), (32, 100, 33), (5, 768, 17), (40, 3, 70)])
def test_quantized_linear(isa, rng, activation, per_channel, batch, in_f, out_f):
    w = rng.standard_normal((out_f, in_f)).astype(np.float32)
    bias = rng.standard_normal(out_f).astype(np.float32)
    x = (rng.standard_normal((batch, in_f)) * rng.uniform(0.1, 10, (batch, 1))).astype(np.float32)
    layer = eb.QuantizedLinear(w, bias, per_channel=per_channel, activation=activation)
    expected = ref.quantized_linear(x, layer.weight_int8, layer.weight_scale, bias, activation)
    got = layer(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))  # bits, incl. -0.0
    # And it is a faithful linear layer: close to the float result.
    y_float = x @ w.T + bias
    if activation == "relu":
        y_float = np.maximum(y_float, 0)
    scale = np.abs(y_float).max() + 1e-6
    assert np.max(np.abs(got - y_float)) / scale < 0.05


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("batch,in_f,out_f", [(1, 64, 48), (32, 100, 33), (40, 3, 70)])
def test_quantized_linear_per_tensor(isa, rng, activation, batch, in_f, out_f):
    """granularity="tensor": one DynamicQuantizeLinear over the whole input (ORT's quantize_dynamic)."""
    w = rng.standard_normal((out_f, in_f)).astype(np.float32)
    bias = rng.standard_normal(out_f).astype(np.float32)
    x = (rng.standard_normal((batch, in_f)) * rng.uniform(0.1, 10, (batch, 1))).astype(np.float32)
    layer = eb.QuantizedLinear(w, bias)
    expected = ref.quantized_linear(x, layer.weight_int8, layer.weight_scale, bias, activation, "tensor")
    got = eb.ops.quantized_linear(x, layer.weight_int8, layer.weight_scale, bias, activation, "tensor")
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_quantized_linear_without_bias_and_batch_dims(isa, rng):
    w = rng.standard_normal((20, 30)).astype(np.float32)
    x = rng.standard_normal((2, 3, 30)).astype(np.float32)
    layer = eb.QuantizedLinear(w)
    expected = ref.quantized_linear(x.reshape(6, 30), layer.weight_int8, layer.weight_scale, None)
    np.testing.assert_array_equal(layer(x), expected.reshape(2, 3, 20))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_quantize_dequantize_ops(isa, rng, axis):
    x = (rng.standard_normal((4, 5, 6)) * 3).astype(np.float32)
    c = x.shape[axis]
    scale = rng.uniform(0.01, 0.1, c).astype(np.float32)
    zp = rng.integers(-128, 128, c, dtype=np.int8)
    q = eb.ops.quantize_linear(x, scale, zp, axis=axis)
    np.testing.assert_array_equal(q, ref.quantize_linear(x, scale, zp, axis=axis))
    np.testing.assert_array_equal(eb.ops.dequantize_linear(q, scale, zp, axis=axis),
                                  ref.dequantize_linear(q, scale, zp, axis=axis))
    y, s, z = eb.ops.dynamic_quantize_linear(x)
    ry, rs, rz = ref.dynamic_quantize_linear(x)
    np.testing.assert_array_equal(y, ry)
    assert s == rs and z == rz and s.dtype == np.float32 and z.dtype == np.uint8
