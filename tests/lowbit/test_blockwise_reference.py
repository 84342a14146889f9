"""eightbit.reference.blockwise against independent oracles: plain Python loops for the nibble packing
and the quantizers (float64 division rounded once to float32, Python's round() for half to even),
and for the layer a float64 loop over the blocks that rounds to float32 after every operation."""
import itertools

import numpy as np
import pytest

from eightbit import reference as R

F = np.float32
TINY = float(np.finfo(np.float32).smallest_subnormal)          # 2^-149
BIG = float(np.finfo(np.float32).max)


# --- oracles ------------------------------------------------------------------------------------------

def f32(v):
    """Round a Python float (a float64) to the nearest float32 (as a Python float)."""
    with np.errstate(over="ignore"):
        return float(np.float32(v))


def div32(a, b):
    """Correctly rounded float32 division: float64 quotient of two float32 values, rounded once
    (53 >= 2 * 24 + 2, so no double rounding)."""
    return f32(float(a) / float(b))


def loop_symmetric(values, qmax):
    """One block (or row) of float32 values -> (list of int codes, float scale)."""
    amax = max((abs(float(v)) for v in values), default=0.0)
    scale = div32(amax, qmax)
    if scale == 0.0:
        scale = 1.0
    codes = [min(max(round(div32(v, scale)), -qmax), qmax) for v in values]   # round: half to even
    return codes, scale


def loop_quantize_blockwise(w, block, bits):
    qmax = 2 ** (bits - 1) - 1
    n, k = w.shape
    codes = np.zeros((n, k), np.int64)
    scales = np.zeros((n, k // block), np.float64)
    for i in range(n):
        for b in range(k // block):
            c, s = loop_symmetric(w[i, b * block:(b + 1) * block].tolist(), qmax)
            codes[i, b * block:(b + 1) * block] = c
            scales[i, b] = s
    return codes, scales


def loop_quantize_rows(x):
    codes, scales = [], []
    for row in x:
        c, s = loop_symmetric(row.tolist(), 127)
        codes.append(c)
        scales.append(s)
    return np.array(codes, np.int64).reshape(x.shape), np.array(scales, np.float64)


def oracle_linear(x, codes, scales, block, bias=None, activation=None):
    """float64 arithmetic rounded to float32 after every operation, blocks in order; int64 dots."""
    k = x.shape[-1]
    n = codes.shape[0]
    rows = x.reshape(-1, k).astype(np.float32)
    xq, xs = loop_quantize_rows(rows)
    c = codes.astype(np.int64)
    s = scales.astype(np.float64)
    acc = np.zeros((rows.shape[0], n), np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        for b in range(k // block):
            sl = slice(b * block, (b + 1) * block)
            dot = xq[:, sl] @ c[:, sl].T                                      # exact int64
            term = (dot.astype(np.float64) * s[:, b]).astype(np.float32).astype(np.float64)
            acc = (acc + term).astype(np.float32).astype(np.float64)
        y = (acc * xs[:, None]).astype(np.float32)
        if bias is not None:
            y = (y.astype(np.float64) + bias.astype(np.float64)).astype(np.float32)
    if activation == "relu":
        y = np.where(y > 0, y, F(0.0)).astype(np.float32)
    return y.reshape(x.shape[:-1] + (n,))


def assert_same_bits(got, expected):
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def random_weights(rng, n, k, block):
    """Normal weights, each block scaled by its own power of ten, with an all-zero block, exact
    zeros and subnormal values mixed in."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    w *= (10.0 ** rng.integers(-3, 4, (n, k // block))).repeat(block, axis=1).astype(np.float32)
    w[rng.random((n, k)) < 0.05] = 0.0
    if n and k // block > 1:
        w[0, :block] = 0.0
    return w


# --- pack_nibbles / unpack_nibbles ------------------------------------------------------------------------

def test_pack_every_pair_of_nibbles():
    pairs = list(itertools.product(range(-8, 8), repeat=2))             # 256 (first, second) pairs
    codes = np.array([v for p in pairs for v in p], np.int8)[None, :]    # [1, 512]
    got = R.pack_nibbles(codes)
    assert got.dtype == np.uint8 and got.shape == (1, 256)
    expected = [(a & 0xF) | ((b & 0xF) << 4) for a, b in pairs]
    assert got[0].tolist() == expected
    assert sorted(expected) == list(range(256))                          # every byte exactly once
    np.testing.assert_array_equal(R.unpack_nibbles(got, 512), codes)


def test_unpack_every_byte():
    packed = np.arange(256, dtype=np.uint8)[None, :]
    got = R.unpack_nibbles(packed, 512)
    assert got.dtype == np.int8 and got.shape == (1, 512)
    for byte in range(256):
        lo, hi = byte & 0xF, byte >> 4
        assert got[0, 2 * byte] == (lo - 16 if lo >= 8 else lo)
        assert got[0, 2 * byte + 1] == (hi - 16 if hi >= 8 else hi)
    np.testing.assert_array_equal(R.pack_nibbles(got), packed)


def test_pack_hand_cases():
    assert R.pack_nibbles(np.array([[1, -1]], np.int8)).tolist() == [[0xF1]]
    assert R.pack_nibbles(np.array([[-8, 7]], np.int8)).tolist() == [[0x78]]
    assert R.pack_nibbles(np.array([[0, 0, 7, -8], [-1, -1, 3, 2]], np.int8)).tolist() == [[0x00, 0x87],
                                                                                           [0xFF, 0x23]]


@pytest.mark.parametrize("n,k", [(1, 2), (3, 16), (17, 96), (64, 4096), (0, 32)])
def test_pack_unpack_round_trip_random(n, k):
    rng = np.random.default_rng(n * 7919 + k)
    codes = rng.integers(-8, 8, (n, k)).astype(np.int8)
    packed = R.pack_nibbles(codes)
    assert packed.dtype == np.uint8 and packed.shape == (n, k // 2)
    for i in range(min(n, 3)):
        for j in range(k // 2):
            assert packed[i, j] == (int(codes[i, 2 * j]) & 0xF) | ((int(codes[i, 2 * j + 1]) & 0xF) << 4)
    np.testing.assert_array_equal(R.unpack_nibbles(packed, k), codes)


def test_pack_accepts_non_contiguous_codes():
    rng = np.random.default_rng(5)
    codes = rng.integers(-8, 8, (40, 64)).astype(np.int8)
    view = codes.T[:, ::2]                                                  # [64, 20], strided
    np.testing.assert_array_equal(R.pack_nibbles(view), R.pack_nibbles(np.ascontiguousarray(view)))


# --- quantize_blockwise -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("n,k,block", [(1, 16, 16), (3, 64, 16), (5, 96, 32), (2, 256, 256), (4, 128, 64)])
def test_quantize_blockwise_matches_loop(n, k, block, bits):
    rng = np.random.default_rng(n * 1009 + k * 31 + block + bits)
    w = random_weights(rng, n, k, block)
    codes, scales = R.quantize_blockwise(w, block, bits)
    assert codes.dtype == np.int8 and codes.shape == (n, k)
    assert scales.dtype == np.float32 and scales.shape == (n, k // block)
    loop_codes, loop_scales = loop_quantize_blockwise(w, block, bits)
    np.testing.assert_array_equal(codes, loop_codes)
    np.testing.assert_array_equal(scales.astype(np.float64), loop_scales)
    qmax = 2 ** (bits - 1) - 1
    assert np.abs(codes).max() <= qmax
    nonzero = np.abs(w).reshape(n, k // block, block).max(axis=-1) > 0
    # every block whose max is a normal number reaches +-qmax at its max
    assert np.all(np.abs(codes).reshape(n, k // block, block).max(axis=-1)[nonzero] == qmax)
    # and dequantizes to within half a step
    err = np.abs(codes.astype(np.float64) * scales.repeat(block, axis=1) - w)
    assert np.all(err <= 0.5 * scales.repeat(block, axis=1) * (1 + 1e-6))


def test_quantize_blockwise_ties_round_half_to_even():
    """amax 7 gives scale exactly 1.0 (4 bits) and 0.5 / 7 ... : w on half steps rounds to even."""
    row = np.array([7.0, 0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 6.5, -6.5, 4.5, 5.5, 0.0, -0.0, 1.0, -7.0], F)
    codes, scales = R.quantize_blockwise(row[None, :], 16, 4)
    assert scales.tolist() == [[1.0]]
    assert codes[0].tolist() == [7, 0, 2, 2, 4, 0, -2, -2, 6, -6, 4, 6, 0, 0, 1, -7]
    # scale 2^-3 (amax 7/8): the same ties a power of two lower
    codes, scales = R.quantize_blockwise(row[None, :] / F(8.0), 16, 4)
    assert scales.tolist() == [[0.125]]
    assert codes[0].tolist() == [7, 0, 2, 2, 4, 0, -2, -2, 6, -6, 4, 6, 0, 0, 1, -7]
    # bits 2: qmax 1, scale = amax; +-amax/2 is a tie and rounds to 0
    codes, scales = R.quantize_blockwise(np.array([[2.0, 1.0, -1.0, 1.5, -1.5, 0.5] + [0.0] * 10], F), 16, 2)
    assert scales.tolist() == [[2.0]]
    assert codes[0, :6].tolist() == [1, 0, 0, 1, -1, 0]


def test_quantize_blockwise_zero_and_underflowing_blocks_get_scale_one():
    w = np.zeros((2, 64), F)
    w[0, 16:32] = 3 * TINY                          # amax / 7 = 3/7 * 2^-149: underflows to 0 -> 1.0
    w[0, 32:48] = 4 * TINY                          # 4/7 * 2^-149 rounds up to 2^-149: kept
    w[0, 48] = -1.0
    w[1, 5] = -0.0                                  # -0.0 is a zero block
    codes, scales = R.quantize_blockwise(w, 16, 4)
    assert scales.tolist() == [[1.0, 1.0, TINY, div32(1.0, 7)], [1.0, 1.0, 1.0, 1.0]]
    assert np.all(codes[0, :32] == 0) and np.all(codes[1] == 0)
    assert np.all(codes[0, 32:48] == 4)             # 4 * 2^-149 / 2^-149, a subnormal scale
    assert codes[0, 48] == -7 and np.all(codes[0, 49:] == 0)
    np.testing.assert_array_equal(codes, loop_quantize_blockwise(w, 16, 4)[0])


def test_quantize_blockwise_extreme_values():
    w = np.zeros((3, 32), F)
    w[0, :16] = BIG
    w[0, 1] = -BIG
    w[0, 2] = BIG / 3
    w[1, :] = np.linspace(-BIG, BIG, 32, dtype=np.float64).astype(F)
    w[2, :] = TINY * np.arange(32, dtype=F)
    codes, scales = R.quantize_blockwise(w, 16)
    loop_codes, loop_scales = loop_quantize_blockwise(w, 16, 4)
    np.testing.assert_array_equal(codes, loop_codes)
    np.testing.assert_array_equal(scales.astype(np.float64), loop_scales)
    assert np.all(np.isfinite(scales)) and np.all(scales > 0)
    assert codes[0, :3].tolist() == [7, -7, 2]


def test_quantize_blockwise_converts_to_float32_first():
    w64 = np.random.default_rng(2).standard_normal((4, 32))
    a = R.quantize_blockwise(w64, 16)
    b = R.quantize_blockwise(w64.astype(np.float32), 16)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    ints = R.quantize_blockwise(np.arange(-16, 16).reshape(1, 32), 32, 8)
    assert ints[1].tolist() == [[div32(16.0, 127)]]


# --- quantize_rows_symmetric ---------------------------------------------------------------------------------

def test_quantize_rows_matches_loop():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((9, 100)).astype(np.float32) * F(3.0)
    x[1] = 0.0
    x[2] = x[2] * F(1e-42)                                  # subnormals
    x[3, 7] = BIG
    x[4] = x[4] * F(1e30)
    x[5] = 30 * TINY * np.sign(x[5])                       # amax / 127 underflows: scale 1.0, codes 0
    x[6] = 64 * TINY * np.sign(x[6])                       # 64/127 * 2^-149 rounds up: scale 2^-149
    codes, scales = R.quantize_rows_symmetric(x)
    assert codes.dtype == np.int8 and scales.dtype == np.float32 and scales.shape == (9,)
    loop_codes, loop_scales = loop_quantize_rows(x)
    np.testing.assert_array_equal(codes, loop_codes)
    np.testing.assert_array_equal(scales.astype(np.float64), loop_scales)
    assert scales[1] == 1.0 and scales[5] == 1.0 and scales[6] == TINY
    assert np.all(codes[1] == 0) and np.all(codes[5] == 0) and np.abs(codes[6]).max() == 64


def test_quantize_rows_ties():
    x = np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -2.5, 126.5, -126.5]], F)      # scale exactly 1.0
    codes, scales = R.quantize_rows_symmetric(x)
    assert scales.tolist() == [1.0]
    assert codes[0].tolist() == [127, 0, 2, 2, 0, -2, 126, -126]


# --- blockwise_linear -------------------------------------------------------------------------------------

def random_layer(rng, n, k, block, bits=4):
    w = random_weights(rng, n, k, block)
    codes, scales = R.quantize_blockwise(w, block, bits)
    return w, codes, scales


def random_x(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < 0.05] = 0.0
    return x


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("m,n,k,block", [(1, 1, 16, 16), (3, 5, 32, 16), (7, 17, 96, 32), (5, 33, 128, 128),
                                         (2, 9, 256, 256), (4, 6, 4096, 16), (6, 3, 512, 64)])
def test_blockwise_linear_matches_float64_loop(m, n, k, block, activation, with_bias):
    rng = np.random.default_rng(m * 100003 + n * 1009 + k + block)
    _, codes, scales = random_layer(rng, n, k, block)
    x = random_x(rng, (m, k))
    x[0] *= F(1e3)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    got = R.blockwise_linear(x, codes, scales, block, bias, activation)
    assert_same_bits(got, oracle_linear(x, codes, scales, block, bias, activation))
    if activation == "relu":
        assert np.all(got >= 0) and not np.any(np.signbit(got))


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_blockwise_linear_other_widths_and_any_int8_code(bits):
    rng = np.random.default_rng(bits)
    _, codes, scales = random_layer(rng, 12, 128, 32, bits)
    x = random_x(rng, (5, 128))
    assert_same_bits(R.blockwise_linear(x, codes, scales, 32), oracle_linear(x, codes, scales, 32))
    codes = rng.integers(-128, 128, (12, 128)).astype(np.int8)                # the whole int8 range
    codes[0] = -128
    x[0] = -1.0                                                                # dot = 127 * 128 * B
    assert_same_bits(R.blockwise_linear(x, codes, scales, 32), oracle_linear(x, codes, scales, 32))


def test_blockwise_linear_is_close_to_the_float_product():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((64, 512)).astype(np.float32)
    codes, scales = R.quantize_blockwise(w, 32)
    x = rng.standard_normal((16, 512)).astype(np.float32)
    got = R.blockwise_linear(x, codes, scales, 32)
    dequant = codes.astype(np.float64) * scales.repeat(32, axis=1)
    xq, xs = R.quantize_rows_symmetric(x)
    np.testing.assert_allclose(got, (xq * xs[:, None].astype(np.float64)) @ dequant.T, rtol=1e-5, atol=1e-4)
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    assert np.abs(got - exact).max() < 0.15 * np.abs(exact).max()               # int4 error, not garbage


def test_blockwise_linear_rounds_twice_not_fused():
    """acc + float32(dot * scale): the product is rounded before the add, as two float32 steps."""
    x = np.ones((1, 32), F)                                      # x_scale = 1/127, xq = 127
    codes = np.zeros((1, 32), np.int8)
    codes[0, 0], codes[0, 16] = -1, 1                            # dot = [-127, 127]
    scales = np.array([[1.0, 1.0 + 2.0**-23]], F)
    got = R.blockwise_linear(x, codes, scales, 16)
    acc = np.float32(-127.0) + np.float32(np.float32(127.0) * scales[0, 1])      # = 2^-16
    assert acc == F(2.0**-16)
    x_scale = F(1.0) / F(127.0)
    assert got[0, 0] == np.float32(acc * x_scale)
    fused = np.float32((-127.0 + 127.0 * float(scales[0, 1])) * float(x_scale))    # one rounding
    assert got[0, 0] != fused


def test_blockwise_linear_block_order_matters():
    """The float32 sum runs over blocks 0, 1, 2 in order: (big + tiny) - big != big - big + tiny."""
    x = np.ones((1, 48), F)
    codes = np.zeros((1, 48), np.int8)
    codes[0, [0, 16, 32]] = [1, 1, -1]
    scales = np.array([[2.0**20, 2.0**-10, 2.0**20]], F)
    got = R.blockwise_linear(x, codes, scales, 16)
    assert got[0, 0] == 0.0                                       # 127 * 2^-10 lost against 127 * 2^20
    assert_same_bits(got, oracle_linear(x, codes, scales, 16))


def test_blockwise_linear_bias_is_a_second_rounding():
    x = np.ones((1, 16), F)
    codes = np.zeros((1, 16), np.int8)
    codes[0, 0] = 1
    scales = np.array([[1.0]], F)
    bias = np.array([-1.0], F)
    got = R.blockwise_linear(x, codes, scales, 16, bias)
    y = np.float32(np.float32(127.0) * (F(1.0) / F(127.0)))         # 127 * fl(1/127) rounded
    assert got[0, 0] == np.float32(y + bias[0])


def test_blockwise_linear_leading_dims_and_1d():
    rng = np.random.default_rng(21)
    _, codes, scales = random_layer(rng, 7, 64, 16)
    bias = rng.standard_normal(7).astype(np.float32)
    x = random_x(rng, (2, 3, 4, 64))
    got = R.blockwise_linear(x, codes, scales, 16, bias, "relu")
    assert got.shape == (2, 3, 4, 7)
    assert_same_bits(got, oracle_linear(x, codes, scales, 16, bias, "relu"))
    assert_same_bits(R.blockwise_linear(x[1, 2, 3], codes, scales, 16, bias, "relu"), got[1, 2, 3])
    assert_same_bits(got.reshape(24, 7), R.blockwise_linear(x.reshape(24, 64), codes, scales, 16, bias, "relu"))


def test_blockwise_linear_rows_are_independent_and_zero_rows():
    rng = np.random.default_rng(4)
    _, codes, scales = random_layer(rng, 10, 64, 32)
    bias = rng.standard_normal(10).astype(np.float32)
    x = random_x(rng, (4, 64))
    x[2] = 0.0
    got = R.blockwise_linear(x, codes, scales, 32, bias)
    assert_same_bits(got[2], bias)                                 # 0 * 1.0 + bias
    for i in range(4):
        assert_same_bits(R.blockwise_linear(x[i:i + 1], codes, scales, 32, bias), got[i:i + 1])
    assert_same_bits(R.blockwise_linear(np.zeros((3, 64), F), codes, scales, 32), np.zeros((3, 10), F))


def test_blockwise_linear_extreme_values():
    """Rows at float32's max overflow to +-inf, subnormal rows underflow (signed zeros kept without
    relu); nothing is flushed."""
    rng = np.random.default_rng(13)
    _, codes, scales = random_layer(rng, 9, 64, 16)
    x = random_x(rng, (6, 64))
    x[0, 5] = BIG
    x[1] = np.where(x[1] < 0, -BIG, BIG)
    x[2] = x[2] * F(1e-40)
    x[3] = 70 * TINY * np.sign(x[3])
    x[4, :] = 0.0
    x[4, 63] = -TINY * 64
    got = R.blockwise_linear(x, codes, scales, 16)
    assert_same_bits(got, oracle_linear(x, codes, scales, 16))
    assert np.isinf(got[1]).any()
    assert_same_bits(R.blockwise_linear(x, codes, scales, 16, activation="relu"),
                     oracle_linear(x, codes, scales, 16, activation="relu"))


def test_blockwise_linear_overflowing_acc_and_nan_under_relu():
    """Huge weight scales overflow acc itself: inf - inf gives NaN, which relu turns into +0."""
    codes = np.zeros((2, 32), np.int8)
    codes[0, 0], codes[0, 16] = 7, -7
    codes[1, 0] = 7
    scales = np.full((2, 2), BIG / 7, F)
    x = np.ones((1, 32), F)
    y = R.blockwise_linear(x, codes, scales, 16)
    assert np.isnan(y[0, 0]) and y[0, 1] == np.inf
    relu = R.blockwise_linear(x, codes, scales, 16, activation="relu")
    assert relu[0, 0] == 0.0 and not np.signbit(relu[0, 0]) and relu[0, 1] == np.inf


def test_blockwise_linear_empty_rows():
    _, codes, scales = random_layer(np.random.default_rng(1), 5, 32, 16)
    y = R.blockwise_linear(np.zeros((0, 3, 32), F), codes, scales, 16)
    assert y.shape == (0, 3, 5) and y.dtype == np.float32


def test_blockwise_linear_large_call_is_fast():
    import time
    rng = np.random.default_rng(0)
    codes = rng.integers(-7, 8, (4096, 4096)).astype(np.int8)
    scales = rng.random((4096, 128)).astype(np.float32) + F(0.01)
    x = rng.standard_normal((32, 4096)).astype(np.float32)
    start = time.perf_counter()
    y = R.blockwise_linear(x, codes, scales, 32)
    assert time.perf_counter() - start < 10.0
    assert y.shape == (32, 4096)
    assert_same_bits(y[:2, :50], oracle_linear(x[:2], codes[:50], scales[:50], 32))


# --- bad input ---------------------------------------------------------------------------------------------

C32 = np.zeros((3, 32), np.int8)
S32 = np.ones((3, 2), F)
X32 = np.ones((2, 32), F)


def with_value(shape, where, value):
    a = np.ones(shape, F)
    a[where] = value
    return a


CASES = [
    # quantize_blockwise
    (lambda: R.quantize_blockwise(np.ones((2, 48), F), 32), ValueError, "block_size"),
    (lambda: R.quantize_blockwise(np.ones((2, 96), F), 48), ValueError, "block_size"),
    (lambda: R.quantize_blockwise(np.ones((2, 64), F), 24), ValueError, "block_size"),
    (lambda: R.quantize_blockwise(np.ones((2, 64), F), 8), ValueError, "block_size"),
    (lambda: R.quantize_blockwise(np.ones((2, 1024), F), 512), ValueError, "block_size"),
    (lambda: R.quantize_blockwise(np.ones((2, 64), F), 0), ValueError, "block_size"),
    (lambda: R.quantize_blockwise(np.ones((2, 64), F), -16), ValueError, "block_size"),
    (lambda: R.quantize_blockwise(np.ones((2, 64), F), 16.0), TypeError, "block_size"),
    (lambda: R.quantize_blockwise(np.ones((2, 0), F), 16), ValueError, "block_size"),
    (lambda: R.quantize_blockwise(np.ones((2, 64), F), 16, 1), ValueError, "bits"),
    (lambda: R.quantize_blockwise(np.ones((2, 64), F), 16, 9), ValueError, "bits"),
    (lambda: R.quantize_blockwise(np.ones((2, 64), F), 16, 0), ValueError, "bits"),
    (lambda: R.quantize_blockwise(np.ones((2, 64), F), 16, 4.0), TypeError, "bits"),
    (lambda: R.quantize_blockwise(with_value((2, 64), (1, 3), np.nan), 16), ValueError, "finite"),
    (lambda: R.quantize_blockwise(with_value((2, 64), (0, 0), np.inf), 16), ValueError, "finite"),
    (lambda: R.quantize_blockwise(with_value((2, 64), (0, 0), -np.inf), 16), ValueError, "finite"),
    (lambda: R.quantize_blockwise(np.ones(64, F), 16), ValueError, "2-D"),
    (lambda: R.quantize_blockwise(np.ones((2, 2, 64), F), 16), ValueError, "2-D"),
    (lambda: R.quantize_blockwise(np.ones((2, 64), np.bool_), 16), TypeError, "w"),
    # pack_nibbles / unpack_nibbles
    (lambda: R.pack_nibbles(np.full((2, 4), 8, np.int8)), ValueError, "[-8, 7]"),
    (lambda: R.pack_nibbles(np.full((2, 4), -9, np.int8)), ValueError, "[-8, 7]"),
    (lambda: R.pack_nibbles(np.zeros((2, 5), np.int8)), ValueError, "even"),
    (lambda: R.pack_nibbles(np.zeros((2, 4), np.int32)), TypeError, "int8"),
    (lambda: R.pack_nibbles(np.zeros((2, 4), np.uint8)), TypeError, "int8"),
    (lambda: R.pack_nibbles(np.zeros(4, np.int8)), ValueError, "2-D"),
    (lambda: R.unpack_nibbles(np.zeros((2, 4), np.uint8), 7), ValueError, "k"),
    (lambda: R.unpack_nibbles(np.zeros((2, 4), np.uint8), 10), ValueError, "k"),
    (lambda: R.unpack_nibbles(np.zeros((2, 4), np.int8), 8), TypeError, "uint8"),
    # quantize_rows_symmetric
    (lambda: R.quantize_rows_symmetric(with_value((2, 8), (1, 1), np.nan)), ValueError, "finite"),
    (lambda: R.quantize_rows_symmetric(with_value((2, 8), (1, 1), np.inf)), ValueError, "finite"),
    (lambda: R.quantize_rows_symmetric(np.ones(8, F)), ValueError, "2-D"),
    # blockwise_linear
    (lambda: R.blockwise_linear(X32, C32, S32, 24), ValueError, "block_size"),
    (lambda: R.blockwise_linear(X32, C32, S32, 64), ValueError, "block_size"),
    (lambda: R.blockwise_linear(X32, C32, S32, 8), ValueError, "block_size"),
    (lambda: R.blockwise_linear(X32, C32, np.ones((3, 1), F), 16), ValueError, "scales"),
    (lambda: R.blockwise_linear(X32, C32, np.ones((2, 2), F), 16), ValueError, "scales"),
    (lambda: R.blockwise_linear(X32, C32, np.ones(6, F), 16), ValueError, "scales"),
    (lambda: R.blockwise_linear(X32, C32, np.ones((3, 2), F), 32), ValueError, "scales"),
    (lambda: R.blockwise_linear(X32, C32, with_value((3, 2), (0, 1), np.nan), 16), ValueError, "scales"),
    (lambda: R.blockwise_linear(X32, C32, with_value((3, 2), (0, 1), np.inf), 16), ValueError, "scales"),
    (lambda: R.blockwise_linear(X32, C32.astype(np.int16), S32, 16), TypeError, "codes"),
    (lambda: R.blockwise_linear(X32, C32.astype(np.uint8), S32, 16), TypeError, "codes"),
    (lambda: R.blockwise_linear(X32, C32[0], S32, 16), ValueError, "codes"),
    (lambda: R.blockwise_linear(np.ones((2, 31), F), C32, S32, 16), ValueError, "x"),
    (lambda: R.blockwise_linear(np.ones((2, 33), F), C32, S32, 16), ValueError, "x"),
    (lambda: R.blockwise_linear(np.float32(1.0), C32, S32, 16), ValueError, "x"),
    (lambda: R.blockwise_linear(with_value((2, 32), (1, 3), np.nan), C32, S32, 16), ValueError, "finite"),
    (lambda: R.blockwise_linear(with_value((2, 32), (0, 3), -np.inf), C32, S32, 16), ValueError, "finite"),
    (lambda: R.blockwise_linear(X32, C32, S32, 16, np.ones(2, F)), ValueError, "bias"),
    (lambda: R.blockwise_linear(X32, C32, S32, 16, np.ones(4, F)), ValueError, "bias"),
    (lambda: R.blockwise_linear(X32, C32, S32, 16, np.ones((3, 1), F)), ValueError, "bias"),
    (lambda: R.blockwise_linear(X32, C32, S32, 16, None, "gelu"), ValueError, "activation"),
    (lambda: R.blockwise_linear(X32, C32, S32, 16, None, "relu6"), ValueError, "activation"),
]


@pytest.mark.parametrize("call,exc,word", CASES)
def test_bad_input_raises_named_error(call, exc, word):
    with pytest.raises(exc) as info:
        call()
    assert word in str(info.value)
