"""The vectorised QuantizeLinear and DynamicQuantizeLinear kernels (kernels/elementwise.h, one copy
per ISA unit) against eightbit.reference on every path this CPU runs: ties, saturation, NaN,
infinities, signed zeros and lengths that leave every kind of vector tail."""
import numpy as np
import pytest

import eightbit as eb
from eightbit import reference


def _awkward(rng, n, scale, zp):
    """Values on and next to rounding ties and the clamp bounds, plus special values."""
    k = rng.integers(-300, 300, n).astype(np.float32)
    x = (k + rng.choice(np.float32([0.0, 0.5, -0.5, 0.25]), n)) * np.float32(scale)
    near = rng.random(n) < 0.2
    x[near] = np.nextafter(x[near], np.float32(np.inf))            # one ulp past a tie
    specials = np.float32([np.nan, np.inf, -np.inf, -0.0, 0.0, 3e38, -3e38, 1e-45])
    pick = rng.random(n) < 0.1
    x[pick] = rng.choice(specials, int(pick.sum()))
    return x.astype(np.float32)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantize_linear_matches_the_reference(isa, dtype):
    rng = np.random.default_rng(11)
    for n in list(range(0, 70)) + [257, 1000]:
        lo, hi = (0, 256) if dtype == np.uint8 else (-128, 128)
        scale, zp = np.float32(rng.uniform(0.01, 2.0)), dtype(rng.integers(lo, hi))
        x = _awkward(rng, n, scale, zp)
        want = reference.quantize_linear(x, scale, zp)
        np.testing.assert_array_equal(eb.ops.quantize_linear(x, scale, zp), want, err_msg=f"n={n}")


def test_dynamic_quantize_linear_matches_the_reference(isa):
    rng = np.random.default_rng(12)
    for n in list(range(1, 70)) + [513]:
        x = (rng.standard_normal(n) * rng.choice([1e-3, 1.0, 1e3])).astype(np.float32)
        if n > 3:
            x[rng.integers(n)] = -0.0
        got, want = eb.ops.dynamic_quantize_linear(x), reference.dynamic_quantize_linear(x)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w, err_msg=f"n={n}")
    for bad in (np.nan, np.inf, -np.inf):
        for where in (0, 16, 33):        # in a full 16-lane block and in the tail
            x = np.ones(35, np.float32)
            x[where] = bad
            with pytest.raises(ValueError):
                eb.ops.dynamic_quantize_linear(x)


def test_per_row_dynamic_linear_rows_match_the_reference(isa):
    """Rows quantized one by one inside the dynamic linear layer (the per-row range kernel)."""
    rng = np.random.default_rng(13)
    for k in (1, 15, 16, 17, 48, 130):
        x = (rng.standard_normal((5, k)) * rng.uniform(0.1, 100, (5, 1))).astype(np.float32)
        x[0] = 0.0                                     # an all-zero row: scale 1
        w = rng.integers(-127, 128, (7, k)).astype(np.int8)
        s = rng.uniform(0.01, 0.1, 7).astype(np.float32)
        np.testing.assert_array_equal(eb.ops.quantized_linear(x, w, s), reference.quantized_linear(x, w, s))
