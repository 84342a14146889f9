"""Block-quantized low-bit weights ("int4 linear"): symmetric codes with one float32 scale per block
of B consecutive input channels, packed two 4-bit codes to a byte, and the linear layer over them
with its input rows quantized to int8 at run time.

Weights, ``quantize_blockwise(w, B, bits)``: w [N, K] as float32, finite; B a power of two in
[16, 256] that divides K; bits in [2, 8]; qmax = 2^(bits-1) - 1 (7 for int4). For each row n and
block b (columns b*B .. b*B + B - 1):

    amax        = max |w[n, bB : bB + B]|                        # float32, exact
    s           = amax / float32(qmax)                           # float32 division, round to nearest even
    scale[n, b] = s if s != 0 else 1.0                           # s == 0: an all-zero block, or amax a
                                                                 # subnormal so small that s underflows
    code[n, k]  = clip(rint(w[n, k] / scale[n, k // B]), -qmax, qmax)   # float32 division; rint: half
                                                                        # to even; int8

So |code| <= qmax: int4 codes lie in [-7, 7] (-8 is never produced, but a packed weight may hold it).

Packing, ``pack_nibbles(codes)`` (ONNX's int4 layout: the first element in the low nibble, two's
complement): codes int8 [N, K] in [-8, 7], K even ->

    byte[n, j] = (code[n, 2j] & 0xF) | ((code[n, 2j + 1] & 0xF) << 4)     # uint8 [N, K / 2]

and ``unpack_nibbles(packed, K)`` the inverse, each nibble v sign-extended: (v ^ 8) - 8.

Activations, ``quantize_rows_symmetric(x)``: x float32 [M, K], finite. For each row m:

    amax      = max_k |x[m, k]|
    s         = amax / 127.0f                                    # float32 division
    x_scale[m] = s if s != 0 else 1.0                            # s == 0 as above
    xq[m, k]  = clip(rint(x[m, k] / x_scale[m]), -127, 127)      # float32 division; half to even; int8

The layer, ``blockwise_linear(x, codes, scales, B, bias, activation)``: x [..., K] (rows quantized as
above), codes int8 [N, K] (any int8 value), scales float32 [N, K / B] (finite, any sign: ONNX Runtime's
symmetric int4 quantizer writes negative ones), bias float32
[N] or None, activation None or "relu". For every row m and output n:

    dot[b]  = sum_{k in block b} int32(xq[m, k]) * int32(code[n, k])   # exact; |dot| < 2^22, so
                                                                       # float32(dot) is exact too
    acc     = 0.0f
    for b = 0, 1, ..., K/B - 1 in this order:
        acc = acc + float32(dot[b]) * scales[n, b]      # float32: round the product, then round the
                                                        # sum (two roundings, no FMA)
    y       = acc * x_scale[m]                          # float32, rounded
    y       = y + bias[n]                               # float32, rounded (when bias is given)
    y       = y if y > 0 else +0.0                      # activation="relu" (NaN -> 0, -0 -> +0)

returns float32 [..., N]. All float32 arithmetic is IEEE round-to-nearest-even with subnormals
(no flush to zero); infinities from overflow propagate as IEEE arithmetic says.
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import as_array, float_array, quant_array

BLOCK_SIZES = (16, 32, 64, 128, 256)
BITS_RANGE = (2, 8)
ACTIVATIONS = (None, "relu")
X_QMAX = 127



def finite_scales(scales) -> np.ndarray:
    """Block scales as float32: finite, any sign (zero too)."""
    s = float_array(scales, "scales")
    if not np.all(np.isfinite(s)):
        raise ValueError("scales must be finite")
    return s

def _int_scalar(value, name: str) -> int:
    arr = as_array(value, name)
    if arr.ndim != 0 or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(arr)


def check_block_size(block_size, k: int) -> int:
    """block_size: a power of two in [16, 256] dividing k (> 0). Returns it as an int."""
    b = _int_scalar(block_size, "block_size")
    if b not in BLOCK_SIZES:
        raise ValueError(f"block_size must be a power of two in [16, 256], got {b}")
    if k < 1 or k % b:
        raise ValueError(f"block_size {b} must divide K = {k} (K a positive multiple of block_size)")
    return b


def check_bits(bits) -> int:
    v = _int_scalar(bits, "bits")
    if not BITS_RANGE[0] <= v <= BITS_RANGE[1]:
        raise ValueError(f"bits must be in [{BITS_RANGE[0]}, {BITS_RANGE[1]}], got {v}")
    return v


def _finite(x, name: str) -> np.ndarray:
    x = float_array(x, name)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite, found NaN or infinity")
    return x


def _symmetric(x: np.ndarray, amax: np.ndarray, qmax: int) -> tuple[np.ndarray, np.ndarray]:
    """scale = amax / qmax (1.0 where that is 0) and the codes, both over the last axis of x."""
    s = (amax / np.float32(qmax)).astype(np.float32)
    scale = np.where(s != 0, s, np.float32(1.0)).astype(np.float32)
    v = (x / scale[..., None]).astype(np.float32)
    codes = np.clip(np.rint(v), -qmax, qmax).astype(np.int8)
    return codes, scale


def quantize_blockwise(w, block_size, bits=4) -> tuple[np.ndarray, np.ndarray]:
    """w real [N, K] -> (codes int8 [N, K], scales float32 [N, K // block_size]) (module docstring)."""
    w = _finite(w, "w")
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D [N, K], got shape {w.shape}")
    n, k = w.shape
    b = check_block_size(block_size, k)
    qmax = 2 ** (check_bits(bits) - 1) - 1
    blocks = w.reshape(n, k // b, b)
    amax = np.max(np.abs(blocks), axis=-1, initial=np.float32(0.0)).astype(np.float32)
    codes, scales = _symmetric(blocks, amax, qmax)
    return codes.reshape(n, k), scales


def pack_nibbles(codes) -> np.ndarray:
    """int8 codes [N, K] in [-8, 7], K even -> uint8 [N, K // 2], low nibble first (ONNX int4)."""
    c = quant_array(codes, "codes", allowed=(np.dtype(np.int8),))
    if c.ndim != 2:
        raise ValueError(f"codes must be 2-D [N, K], got shape {c.shape}")
    if c.shape[1] % 2:
        raise ValueError(f"codes must have an even K (two codes to a byte), got K = {c.shape[1]}")
    if c.size and (c.min() < -8 or c.max() > 7):
        raise ValueError(f"codes must be in [-8, 7] (4 bits), found [{c.min()}, {c.max()}]")
    nib = (c.astype(np.int16) & 0xF).astype(np.uint8)
    return (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)


def unpack_nibbles(packed, k) -> np.ndarray:
    """uint8 [N, k // 2] -> int8 codes [N, k]; k even and 2 * packed.shape[1]."""
    p = quant_array(packed, "packed", allowed=(np.dtype(np.uint8),))
    if p.ndim != 2:
        raise ValueError(f"packed must be 2-D [N, K // 2], got shape {p.shape}")
    k = _int_scalar(k, "k")
    if k % 2 or k != 2 * p.shape[1]:
        raise ValueError(f"k must be even and equal 2 * packed.shape[1] = {2 * p.shape[1]}, got k = {k}")
    out = np.empty((p.shape[0], k), np.int8)
    lo = (p & 0xF).astype(np.int8)
    hi = (p >> 4).astype(np.int8)
    out[:, 0::2] = (lo ^ 8) - 8
    out[:, 1::2] = (hi ^ 8) - 8
    return out


def quantize_rows_symmetric(x) -> tuple[np.ndarray, np.ndarray]:
    """x float32 [M, K], finite -> (codes int8 [M, K] in [-127, 127], scales float32 [M])."""
    x = _finite(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D [M, K], got shape {x.shape}")
    amax = np.max(np.abs(x), axis=1, initial=np.float32(0.0)).astype(np.float32)
    return _symmetric(x, amax, X_QMAX)


def blockwise_linear(x, codes, scales, block_size, bias=None, activation=None) -> np.ndarray:
    """y = x @ dequant(codes, scales).T (+ bias) (relu) with x's rows quantized to int8 at run time
    (module docstring). x [..., K]; codes int8 [N, K]; scales float32 [N, K // block_size].
    Returns float32 [..., N]."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    c = quant_array(codes, "codes", allowed=(np.dtype(np.int8),))
    if c.ndim != 2:
        raise ValueError(f"codes must be 2-D [N, K], got shape {c.shape}")
    n, k = c.shape
    b = check_block_size(block_size, k)
    nb = k // b
    s = finite_scales(scales)
    if s.shape != (n, nb):
        raise ValueError(f"scales must have shape ({n}, {nb}) (one per row and block of {b}), got {s.shape}")
    x = _finite(x, "x")
    if x.ndim < 1 or x.shape[-1] != k:
        raise ValueError(f"x must have shape [..., {k}] (K of codes), got {x.shape}")
    if bias is not None:
        bias = float_array(bias, "bias")
        if bias.shape != (n,):
            raise ValueError(f"bias must have shape ({n},), got {bias.shape}")

    rows = x.reshape(-1, k)                                            # k >= 16: fine when empty
    xq, x_scale = quantize_rows_symmetric(rows)
    acc = np.zeros((rows.shape[0], n), np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(nb):
            sl = slice(j * b, (j + 1) * b)
            # Every partial sum is an integer below 2^22 in magnitude, so this float64 product (BLAS,
            # any summation order) is the exact integer dot, and float32 of it is exact too.
            dot = xq[:, sl].astype(np.float64) @ c[:, sl].astype(np.float64).T          # [M, N]
            term = (dot.astype(np.float32) * s[:, j]).astype(np.float32)                # rounding 1
            acc = (acc + term).astype(np.float32)                                       # rounding 2
        y = (acc * x_scale[:, None]).astype(np.float32)
        if bias is not None:
            y = (y + bias).astype(np.float32)
    if activation == "relu":
        y = np.where(y > 0, y, np.float32(0.0)).astype(np.float32)
    return y.reshape(x.shape[:-1] + (n,))
