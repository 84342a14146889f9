"""Binary (1-bit, +-1) layers: signs packed 64 to a word, dot products by XOR and popcount.

    sign(v)      = -1 if v < 0 else +1       # -0.0 and +0.0 are +1; NaN has no sign: ValueError
    bits[..., w] = sum_j [x[..., 64 w + j] < 0] << j     # uint64 words, LSB first, W = ceil(K / 64);
                                                          # the bits at and past K are 0
    dot[m, n]    = K - 2 * popcount(a[m] XOR b[n])        # = sum_k sign_a[m, k] * sign_b[n, k], int32
    y[..., n]    = float32(dot) * scale[n]                # float32, then + bias[n] in float32:
                                                          # two roundings, no FMA

Zero padding is what makes the XOR formula exact: past K both operands hold 0, which agree and
count nothing. So every bits array is checked for it, as the kernels assume it.

Inputs are converted to float32 first, as everywhere in eightbit (so a float64 -1e-300, which
becomes -0.0, is +1). binary_linear binarises its activations against a threshold instead of 0:
the bit is x < threshold (a scalar or one per input channel K), compared in float32; x == threshold
gives +1. Infinities have signs and are accepted.

binary_conv2d is the same product over convolution windows (NCHW, no groups), stated on the signs
themselves rather than on any bit layout: the activation signs are padded with 0 (padded taps add
nothing, as zero padding does in Keras / larq) or with +1 (larq's pad_values=1.0), and
dot[n, o, oh, ow] = sum_{c, i, j} s_w[o, c, i, j] * s_x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw].
"""
from __future__ import annotations

import numpy as np

from ..numerics import window
from ..numerics.checks import as_array, float_array, int_in_range, positive_scale, scalar_or_vector


def words(k: int) -> int:
    """uint64 words that hold k signs: ceil(k / 64)."""
    return -(-k // 64)


def _check_k(k) -> int:
    k = int_in_range(k, "k", np.int32)
    if k < 1:
        raise ValueError(f"k (the number of signs per row) must be >= 1, got {k}")
    return k


def _pack(negative: np.ndarray) -> np.ndarray:
    """bool [..., K] (True = -1) -> uint64 [..., W], zero-padded to 64 W bits."""
    k = negative.shape[-1]
    padded = np.zeros(negative.shape[:-1] + (64 * words(k),), np.bool_)
    padded[..., :k] = negative
    packed = np.packbits(padded, axis=-1, bitorder="little")       # uint8 [..., 8 W], bit j of byte i = 8 i + j
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64)  # bytes little-endian: bit 64 w + j


def check_bits(bits, name: str, k: int) -> np.ndarray:
    """A uint64 [rows, ceil(k / 64)] array of packed signs whose padding bits (at and past k) are 0."""
    arr = as_array(bits, name)
    if arr.dtype != np.uint64:
        raise TypeError(f"{name} must have dtype uint64 (packed signs), got {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, words], got shape {arr.shape}")
    if arr.shape[1] != words(k):
        raise ValueError(f"{name} must have ceil(k / 64) = {words(k)} words per row for k = {k}, "
                         f"got shape {arr.shape}")
    if k % 64 and arr.shape[0] and np.any(arr[:, -1] >> np.uint64(k % 64)):
        raise ValueError(f"{name} has nonzero padding bits past k = {k} (they must be 0)")
    return arr


def pack_signs(x) -> np.ndarray:
    """Signs of a real array x [..., K] (K >= 1, converted to float32) packed into uint64 [..., ceil(K / 64)]:
    bit j of word w is 1 iff x[..., 64 w + j] < 0; padding bits are 0. NaN raises ValueError."""
    x = float_array(x, "x")
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"x must have shape [..., K] with K >= 1, got {x.shape}")
    if np.isnan(x).any():
        raise ValueError("x holds NaN, which has no sign")
    return _pack(x < 0)


def binary_matmul(a_bits, b_bits, k) -> np.ndarray:
    """int32 [M, N] dot products of +-1 vectors from packed signs a_bits uint64 [M, W] and
    b_bits uint64 [N, W], W = ceil(k / 64): out[m, n] = k - 2 * popcount(a_bits[m] ^ b_bits[n])."""
    k = _check_k(k)
    a = check_bits(a_bits, "a_bits", k)
    b = check_bits(b_bits, "b_bits", k)
    differ = np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=-1, dtype=np.int64)  # [M, N]
    return (k - 2 * differ).astype(np.int32)


def binary_linear(x, w_bits, k, scale, threshold=0.0, bias=None) -> np.ndarray:
    """y = float32(dot(sign(x - threshold), sign(w))) * scale (+ bias): x float32 [..., K] binarised
    as x < threshold (a scalar or [K]); w_bits uint64 [N, W]; scale float32 [N] (finite, > 0);
    bias float32 [N] or None. Returns float32 [..., N]."""
    k = _check_k(k)
    w = check_bits(w_bits, "w_bits", k)
    n = w.shape[0]
    x = float_array(x, "x")
    if x.ndim < 1 or x.shape[-1] != k:
        raise ValueError(f"x must have shape [..., {k}] (k of w_bits), got {x.shape}")
    if np.isnan(x).any():
        raise ValueError("x holds NaN, which has no sign")
    thr = scalar_or_vector(float_array(threshold, "threshold"), "threshold", k, "input channel (K)")
    if np.isnan(thr).any():
        raise ValueError("threshold holds NaN")
    scale = positive_scale(scale, "scale")
    if scale.shape != (n,):
        raise ValueError(f"scale must have shape ({n},) (one per output channel N), got {scale.shape}")
    if bias is not None:
        bias = float_array(bias, "bias")
        if bias.shape != (n,):
            raise ValueError(f"bias must have shape ({n},), got {bias.shape}")
    a = _pack(x < thr).reshape(-1, words(k))                         # uint64 [rows, W]
    dot = binary_matmul(a, w, k)                                      # int32 [rows, N]
    y = (dot.astype(np.float32) * scale).astype(np.float32)          # one rounding
    if bias is not None:
        y = (y + bias).astype(np.float32)                             # a second rounding
    return y.reshape(x.shape[:-1] + (n,))


PAD_VALUES = (0.0, 1.0)


def _signs(negative: np.ndarray) -> np.ndarray:
    """bool (True = -1) -> int8 +-1."""
    return np.where(negative, np.int8(-1), np.int8(1))


def binary_conv2d(x, w, scale, threshold=0.0, bias=None, *, strides=(1, 1), pads=(0, 0, 0, 0),
                  dilations=(1, 1), pad_value=0.0) -> np.ndarray:
    """Binary (+-1) 2-D convolution, NCHW, no groups:

        s_x = -1 where x < threshold else +1      # float32 compare; threshold a scalar or [C]
        s_w = -1 where w < 0 else +1
        s_x_pad = s_x padded with pad_value       # 0.0 (padded taps count 0) or 1.0 (count +1)
        dot[n, o, oh, ow] = sum_{c, i, j} s_w[o, c, i, j] * s_x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]
        y = float32(dot) * scale[o]               # float32, then + bias[o] in float32 (two roundings)

    x float32 [N, C, H, W]; w real [O, C, kh, kw] (only its signs matter); scale float32 [O]
    (finite, > 0); bias float32 [O] or None. pads = (top, left, bottom, right), ONNX's order
    [x1_begin, x2_begin, x1_end, x2_end]; OH = (H + top + bottom - ((kh - 1) * dh + 1)) // sh + 1
    and likewise OW. Returns float32 [N, O, OH, OW]. NaN in x, w or threshold raises ValueError.
    """
    x = float_array(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D [N, C, H, W], got shape {x.shape}")
    w = float_array(w, "w")
    if w.ndim != 4:
        raise ValueError(f"w must be 4-D [O, C, kh, kw], got shape {w.shape}")
    n, c, h, wd = x.shape
    o, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    if w.shape[1] != c:
        raise ValueError(f"w has {w.shape[1]} input channels but x has {c} (x is NCHW, w is [O, C, kh, kw])")
    if np.isnan(x).any():
        raise ValueError("x holds NaN, which has no sign")
    if np.isnan(w).any():
        raise ValueError("w holds NaN, which has no sign")
    thr = scalar_or_vector(float_array(threshold, "threshold"), "threshold", c, "input channel (C)")
    if np.isnan(thr).any():
        raise ValueError("threshold holds NaN")
    scale = positive_scale(scale, "scale")
    if scale.shape != (o,):
        raise ValueError(f"scale must have shape ({o},) (one per output channel O), got {scale.shape}")
    if bias is not None:
        bias = float_array(bias, "bias")
        if bias.shape != (o,):
            raise ValueError(f"bias must have shape ({o},), got {bias.shape}")
    pv = as_array(pad_value, "pad_value")
    if pv.ndim != 0 or pv.dtype.kind not in "fiu" or pv.dtype == np.bool_:
        raise TypeError(f"pad_value must be a real scalar (0.0 or 1.0), got {pad_value!r}")
    if float(pv) not in PAD_VALUES:
        raise ValueError(f"pad_value must be 0.0 (zero padding) or 1.0 (padded taps count +1), got {pad_value!r}")
    (top, left), (bottom, right), (oh, ow), (sh, sw), (dh, dw) = window.resolve(
        (h, wd), (kh, kw), strides=strides, pads=pads, dilations=dilations)

    s_x = _signs(x < (thr.reshape(-1, 1, 1) if thr.ndim else thr))        # int8 [N, C, H, W]
    s_x = np.pad(s_x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=int(pv))
    s_w = _signs(w < 0).astype(np.int64)                                    # [O, C, kh, kw]
    dot = np.zeros((n, oh, ow, o), np.int64)
    for i in range(kh):                                                     # one kernel tap at a time
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            tap = s_x[:, :, r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + (ow - 1) * sw + 1:sw]  # [N, C, OH, OW]
            dot += np.moveaxis(tap, 1, -1).astype(np.int64) @ s_w[:, :, i, j].T        # [N, OH, OW, O]
    dot = np.moveaxis(dot, -1, 1).astype(np.int32)                           # [N, O, OH, OW]
    y = (dot.astype(np.float32) * scale.reshape(-1, 1, 1)).astype(np.float32)   # one rounding
    if bias is not None:
        y = (y + bias.reshape(-1, 1, 1)).astype(np.float32)                  # a second rounding
    return np.ascontiguousarray(y)


# ---- quantized in, quantized out: the plan's binary_conv / binary_linear steps ------------------
#
#   x_real = DequantizeLinear(x, x_scale, x_zp)            # float32(x - zp) * scale
#   y      = binary_conv2d / binary_linear of x_real        # signs: x_real < threshold
#   out    = clamp(QuantizeLinear(y, y_scale, y_zp), activation_range(activation))

def _requantize_output(y, y_scale, y_zero_point, activation):
    from ..numerics.clamp import activation_range
    from .quantize_linear import quantize_linear
    q = quantize_linear(y, y_scale, y_zero_point)
    lo, hi = activation_range(activation, y_scale, y_zero_point, q.dtype)
    return np.clip(q, lo, hi).astype(q.dtype)


def binary_qlinear_conv(x, x_scale, x_zero_point, w, w_scale, threshold, bias, y_scale, y_zero_point, *,
                        strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), pad_value=0.0, activation=None):
    """The binary convolution of a quantized NHWC x [N, H, W, C] with the signs of w [O, C, kh, kw]
    (see the block above): quantized NHWC [N, OH, OW, O] of y_zero_point's dtype."""
    from .dequantize_linear import dequantize_linear
    x = as_array(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D NHWC, got shape {x.shape}")
    xf = dequantize_linear(x, x_scale, x_zero_point).transpose(0, 3, 1, 2)
    y = binary_conv2d(xf, w, w_scale, threshold, bias, strides=strides, pads=pads, dilations=dilations,
                      pad_value=pad_value)
    return _requantize_output(np.ascontiguousarray(y.transpose(0, 2, 3, 1)), y_scale, y_zero_point, activation)


def binary_qlinear(x, x_scale, x_zero_point, w, w_scale, threshold, bias, y_scale, y_zero_point, *,
                   activation=None):
    """A binary linear layer on quantized rows x [N, ..., K] with the signs of w [O, K]: quantized
    [N, ..., O] of y_zero_point's dtype (see the block above)."""
    from .dequantize_linear import dequantize_linear
    w = float_array(w, "w")
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D [O, K], got shape {w.shape}")
    xf = dequantize_linear(as_array(x, "x"), x_scale, x_zero_point)
    y = binary_linear(xf, pack_signs(w), w.shape[1], w_scale, threshold, bias)
    return _requantize_output(y, y_scale, y_zero_point, activation)
