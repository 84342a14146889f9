"""Binary (1-bit) layers: weights and activations reduced to +-1, multiplications replaced by
XOR and popcount (XNOR-Net), run by the C++ kernels (AVX-512 VPOPCNTQ, AVX2 nibble tables,
scalar), bit-identical to ``eightbit.reference.binary``.

    wb = eb.binary.pack_binary_weights(w)              # w float [N, K]: signs + scale mean|w| per row
    y = eb.binary.binary_linear(x, wb, threshold=0.0, bias=b)   # float32 [..., N]
    d = eb.binary.binary_matmul(eb.binary.pack_signs(x2d), wb)  # int32 +-1 dot products
    wc = eb.binary.pack_binary_conv_weights(w4)        # w4 float [O, C, kh, kw]
    y = eb.binary.binary_conv2d(x, wc, pads=(1, 1, 1, 1))      # float32 NCHW (or layout="NHWC")

Signs: v < 0 is -1, anything else +1; packed 64 to a uint64 word along K, least significant bit
first, bits past K zero (docs/binary.md).
"""
from __future__ import annotations

import numpy as np

from . import conv as _conv
from .numerics.checks import float_array, positive_scale, scalar_or_vector
from .numerics.qparams import binary_weight_scale
from .reference import binary as _ref
from .runtime import core as _core

__all__ = ["BinaryWeights", "BinaryConvWeights", "pack_signs", "pack_binary_weights", "pack_binary_conv_weights",
           "binary_matmul", "binary_linear", "binary_conv2d", "binary_qlinear", "binary_qlinear_conv",
           "code_thresholds"]

pack_signs = _ref.pack_signs


class BinaryWeights:
    """The signs of binary weights [N, K], packed once for the kernels, with one float32 scale per
    output row (XNOR-Net's alpha). ``bits`` are the packed signs (uint64 [N, ceil(K / 64)])."""

    def __init__(self, bits: np.ndarray, k: int, scale: np.ndarray):
        self.bits = bits
        self.scale = scale
        self._packed = _core.binary_pack_weights(bits, k)

    @property
    def k(self) -> int:
        return int(self._packed.k)

    @property
    def n(self) -> int:
        return int(self._packed.n)

    @property
    def nbytes(self) -> int:
        """Bytes of the packed signs and the scales."""
        return int(self._packed.nbytes) + self.scale.nbytes

    def __repr__(self) -> str:
        return f"BinaryWeights(n={self.n}, k={self.k})"


def _scale_of(w: np.ndarray, scale, n: int) -> np.ndarray:
    if scale is None:
        try:
            return binary_weight_scale(w)
        except ValueError as e:
            raise ValueError(f"w: {e}; pass scale=") from None
    scale = positive_scale(scale, "scale")
    if scale.shape != (n,):
        raise ValueError(f"scale must have shape ({n},) (one per output channel), got {scale.shape}")
    return scale


def pack_binary_weights(w, scale=None) -> BinaryWeights:
    """w real [N, K] -> BinaryWeights: the signs of w (NaN refused) and ``scale`` float32 [N]
    (default: mean |w| per row, in float32)."""
    w = float_array(w, "w")
    if w.ndim != 2 or w.shape[1] < 1:
        raise ValueError(f"w must be 2-D [N, K] with K >= 1, got shape {w.shape}")
    return BinaryWeights(pack_signs(w), w.shape[1], _scale_of(w, scale, w.shape[0]))


def binary_matmul(a_bits, b, k=None) -> np.ndarray:
    """int32 [M, N] dot products of +-1 rows: a_bits uint64 [M, ceil(k / 64)] packed signs; b a
    BinaryWeights (k is its own) or packed signs uint64 [N, ceil(k / 64)] (k required)."""
    if isinstance(b, BinaryWeights):
        if k is not None and int(k) != b.k:
            raise ValueError(f"k = {k} does not match the weights' k = {b.k}")
        packed = b._packed
    else:
        if k is None:
            raise ValueError("k: required when b is an array of packed signs")
        packed = _core.binary_pack_weights(_ref.check_bits(b, "b", _ref._check_k(k)), int(k))
    return _core.binary_matmul(a_bits, packed)


def binary_linear(x, w: BinaryWeights, threshold=0.0, bias=None) -> np.ndarray:
    """y = float32(dot(sign(x < threshold), sign(w))) * w.scale (+ bias): x float [..., K], the
    activations binarised against ``threshold`` (a scalar or one per input feature K); bias
    float32 [N] or None. Returns float32 [..., N]."""
    if not isinstance(w, BinaryWeights):
        raise TypeError(f"w: expected BinaryWeights (pack_binary_weights), got {type(w).__name__}")
    x = float_array(x, "x")
    if x.ndim < 1 or x.shape[-1] != w.k:
        raise ValueError(f"x must have shape [..., {w.k}] (the weights' K), got {x.shape}")
    thr = scalar_or_vector(float_array(threshold, "threshold"), "threshold", w.k, "input feature (K)")
    b = None if bias is None else float_array(bias, "bias")
    y = _core.binary_linear(np.ascontiguousarray(x.reshape(-1, w.k)), thr.reshape(-1), w._packed, w.scale, b)
    return y.reshape(x.shape[:-1] + (w.n,))


class BinaryConvWeights:
    """The signs of binary convolution weights [O, C, kh, kw] (no groups), packed once for the
    kernels, with one float32 scale per output channel."""

    def __init__(self, w_shape: tuple, bits: np.ndarray, scale: np.ndarray):
        self.out_channels, self.in_channels, kh, kw = w_shape
        self.kernel_shape = (kh, kw)
        self.scale = scale
        self._packed = _core.binary_pack_conv_weights(bits, self.in_channels, kh, kw)

    @property
    def nbytes(self) -> int:
        """Bytes of the packed signs and the scales."""
        return int(self._packed.nbytes) + self.scale.nbytes

    def __repr__(self) -> str:
        return f"BinaryConvWeights(out={self.out_channels}, in={self.in_channels}, kernel={self.kernel_shape})"


def pack_binary_conv_weights(w, scale=None) -> BinaryConvWeights:
    """w real [O, C, kh, kw] -> BinaryConvWeights: the signs of w and ``scale`` float32 [O]
    (default: mean |w| per output channel, in float32)."""
    w = float_array(w, "w")
    if w.ndim != 4 or min(w.shape[1:]) < 1:
        raise ValueError(f"w must be 4-D [O, C, kh, kw] with C, kh, kw >= 1, got shape {w.shape}")
    o, c, kh, kw = w.shape
    bits = pack_signs(w.transpose(0, 2, 3, 1)).reshape(o, kh * kw, -1)  # [O, taps, ceil(C / 64)]
    return BinaryConvWeights(w.shape, bits, _scale_of(w, scale, o))


def binary_conv2d(x, w: BinaryConvWeights, threshold=0.0, bias=None, *, strides=None, pads=None, dilations=None,
                  pad_value=0.0, layout="NCHW") -> np.ndarray:
    """The binary convolution of x (float [N, C, H, W], or [N, H, W, C] with layout="NHWC")
    binarised as x < threshold (a scalar or one per channel C) with the signs of w:
    y = float32(dot) * w.scale (+ bias), float32 in x's layout. Padded positions count 0
    (pad_value=0.0, zero padding) or +1 (pad_value=1.0, larq's one padding). strides and
    dilations (h, w), pads (top, left, bottom, right) as ONNX gives them."""
    if not isinstance(w, BinaryConvWeights):
        raise TypeError(f"w: expected BinaryConvWeights (pack_binary_conv_weights), got {type(w).__name__}")
    layout = _conv.check_layout(layout)
    if pad_value not in (0.0, 1.0):
        raise ValueError(f"pad_value: expected 0.0 (zero padding) or 1.0 (one padding), got {pad_value!r}")
    x = float_array(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D ({layout}), got shape {x.shape}")
    x_nhwc = _conv.to_nhwc(x, layout)
    geo = _conv.resolve(x_nhwc.shape[1:3], w.kernel_shape, auto_pad="NOTSET", dilations=dilations,
                        kernel_shape=None, pads=pads, strides=strides)
    thr = scalar_or_vector(float_array(threshold, "threshold"), "threshold", w.in_channels, "input channel (C)")
    b = None if bias is None else float_array(bias, "bias")
    y = _core.binary_conv2d(x_nhwc, thr.reshape(-1), w._packed, w.scale, b, geo.strides, geo.dilations, geo.pads,
                            pad_value == 0.0)
    return _conv.from_nhwc(y, layout, 2)


# ---- quantized in, quantized out (the plan's binary_conv / binary_linear steps) ------------------

def code_thresholds(x_scale, x_zero_point, threshold, channels: int) -> np.ndarray:
    """Per channel, how many codes of x's dtype (from the lowest up) binarise to -1: the codes q with
    DequantizeLinear(q) < threshold form a prefix, since the scale is positive. int32 [channels]."""
    from .reference.dequantize_linear import dequantize_linear
    zp = np.asarray(x_zero_point)
    info = np.iinfo(zp.dtype)
    codes = np.arange(info.min, info.max + 1).astype(zp.dtype)
    values = dequantize_linear(codes, x_scale, zp)                                  # increasing
    thr = np.broadcast_to(scalar_or_vector(float_array(threshold, "threshold"), "threshold", channels,
                                           "input channel"), (channels,))
    return np.searchsorted(values, thr, side="left").astype(np.int32)             # codes with values < t


def _code_input(x, x_scale, x_zero_point, threshold, channels):
    """x's codes as float32 and thresholds that split them exactly as the dequantized compare does:
    code - lowest < count  <=>  code < lowest + count - 0.5 (integers and halves: exact)."""
    from .numerics.checks import quant_array
    x = quant_array(x, "x")
    lowest = np.iinfo(x.dtype).min
    counts = code_thresholds(x_scale, x_zero_point, threshold, channels)
    return x.astype(np.float32), (lowest + counts - 0.5).astype(np.float32)


def _requantize(y, y_scale, y_zero_point, activation):
    """QuantizeLinear per tensor on the kernels, then the activation's clamp in codes."""
    from .numerics.clamp import activation_range
    zp = np.asarray(y_zero_point)
    if zp.dtype not in (np.uint8, np.int8) or zp.size != 1:
        raise TypeError(f"y_zero_point: expected one uint8 or int8 value (the output's dtype), got {zp.dtype} {zp.shape}")
    scale = np.asarray(y_scale, np.float32).reshape(1)
    q = _core.quantize_linear(np.ascontiguousarray(y, np.float32), scale, zp.astype(np.int32).reshape(1), 1, False,
                              zp.dtype == np.int8)
    lo, hi = activation_range(activation, y_scale, y_zero_point, q.dtype)
    return np.clip(q, lo, hi).astype(q.dtype)


def _packed_scale(w, w_scale, kind, pack):
    """The packed weights and their scales: packed ones must carry w_scale; an array is packed here."""
    if isinstance(w, kind):
        if not np.array_equal(np.asarray(w_scale, np.float32).reshape(-1), w.scale):
            raise ValueError("w_scale: differs from the scale the weights were packed with")
        return w
    return pack(w, scale=w_scale)


def binary_qlinear_conv(x, x_scale, x_zero_point, w, w_scale, threshold, bias, y_scale, y_zero_point, *,
                        strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), pad_value=0.0, activation=None):
    """eightbit.reference.binary.binary_qlinear_conv on the C++ kernels (the same bits): quantized
    NHWC x, w a BinaryConvWeights packed with scale w_scale (or real [O, C, kh, kw])."""
    w = _packed_scale(w, w_scale, BinaryConvWeights, pack_binary_conv_weights)
    xf, thr = _code_input(x, x_scale, x_zero_point, threshold, w.in_channels)
    y = binary_conv2d(xf, w, thr, bias, strides=strides, pads=pads, dilations=dilations, pad_value=pad_value,
                      layout="NHWC")
    return _requantize(y, y_scale, y_zero_point, activation)


def binary_qlinear(x, x_scale, x_zero_point, w, w_scale, threshold, bias, y_scale, y_zero_point, *,
                   activation=None):
    """eightbit.reference.binary.binary_qlinear on the C++ kernels: quantized rows x [N, ..., K], w a
    BinaryWeights packed with scale w_scale (or real [O, K])."""
    w = _packed_scale(w, w_scale, BinaryWeights, pack_binary_weights)
    xf, thr = _code_input(x, x_scale, x_zero_point, threshold, w.k)
    return _requantize(binary_linear(xf, w, thr, bias), y_scale, y_zero_point, activation)
