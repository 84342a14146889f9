"""QLinearConv (ONNX opset 10): ConvInteger, int32 bias, requantization, optional fused clamp.

    acc[n, m, o] = wrap_int32( ConvInteger(x, w, x_zp, w_zp[m])[n, m, o] + B[m] )   # exact, int32
    requant="float" (ONNX Runtime):
        multiplier[m] = float32(float32(x_scale * w_scale[m]) / y_scale)
        y = clamp-then-round(float32(acc) * multiplier[m], y_zero_point)
    requant="fixed" (TFLite):
        real[m] = float64(x_scale) * float64(w_scale[m]) / float64(y_scale)
        y = sat(multiply_by_quantized_multiplier(acc, quantize_multiplier(real[m])) + y_zero_point)
    activation (a clamp of the requantized integers, i.e. a narrower [qmin, qmax]):
        None:             [qmin, qmax]
        "relu":           [max(qmin, y_zp), qmax]                 # y_zp is the quantized real 0
        "relu6":          [max(qmin, y_zp), Q(6.0)]
        ("clip", lo, hi): [Q(lo), Q(hi)]                          # lo <= hi, finite
    where Q(v) = QuantizeLinear(float32(v), y_scale, y_zero_point) (fp32 division, round half to
    even, saturating). Because the requantized value is rne(v) + y_zp saturated, clamping it to
    [Q(lo), Q(hi)] equals quantizing min(max(real, lo), hi) whenever lo and hi are representable.
The multipliers and the clamp bounds are eightbit.numerics.requant and eightbit.numerics.clamp
(the ops and the lowering use the same functions).

x_scale, x_zero_point, y_scale, y_zero_point are scalars; w_scale and w_zero_point scalars or one
per output channel. B is int32 [M] (scale x_scale * w_scale[m], zero point 0). The output has
y_zero_point's dtype and x's layout.
"""
from __future__ import annotations

import numpy as np

from ..numerics import window
from ..numerics.checks import as_array, per_tensor, positive_scale, quant_array, scalar_or_vector
from ..numerics.clamp import activation_range
from ..numerics.requant import REQUANT_MODES, requant_multipliers
from .conv_integer import check_conv_operands, conv_accumulate, input_zero_point, weight_zero_point
from .matmul_integer import wrap_int32
from .requantize import requantize_fixed, requantize_float


def bias_vector(B, m: int) -> np.ndarray:
    if B is None:
        return np.zeros(m, np.int64)
    b = as_array(B, "B")
    if b.dtype != np.int32:
        raise TypeError(f"B must have dtype int32 (scale x_scale * w_scale, zero point 0), got {b.dtype}")
    if b.shape != (m,):
        raise ValueError(f"B must have shape ({m},) (one per output channel), got {b.shape}")
    return b.astype(np.int64)


def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None, *,
                 auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None,
                 activation=None, layout="NCHW", requant="float") -> np.ndarray:
    """Quantized convolution; returns an array of y_zero_point's dtype (uint8 or int8)."""
    if requant not in REQUANT_MODES:
        raise ValueError(f"requant must be one of {REQUANT_MODES}, got {requant!r}")
    x, w, group = check_conv_operands(x, w, group, kernel_shape, layout)
    m = w.shape[0]
    x_s = per_tensor(positive_scale(x_scale, "x_scale"), "x_scale")
    y_s = per_tensor(positive_scale(y_scale, "y_scale"), "y_scale")
    w_s = scalar_or_vector(positive_scale(w_scale, "w_scale"), "w_scale", m, "output channel of w (M)")
    x_zp = input_zero_point(x_zero_point, x)
    w_zp = weight_zero_point(w_zero_point, w)
    y_zp = per_tensor(quant_array(y_zero_point, "y_zero_point"), "y_zero_point")
    bias = bias_vector(B, m)
    lo, hi = activation_range(activation, y_s, y_zp, y_zp.dtype)
    acc = conv_accumulate(x, w, x_zp, w_zp, group, auto_pad=auto_pad, dilations=dilations,
                          pads=pads, strides=strides)
    acc = np.moveaxis(wrap_int32(wrap_int32(acc).astype(np.int64) + bias.reshape((-1,) + (1,) * (acc.ndim - 2))), 1, -1)
    if requant == "float":
        y = requantize_float(acc, requant_multipliers(x_s, w_s, y_s, "float"), y_zp, y_zp.dtype)
    else:
        m0, shift = requant_multipliers(x_s, w_s, y_s, "fixed")
        y = requantize_fixed(acc, m0, shift, y_zp, y_zp.dtype)
    y = np.clip(y, lo, hi).astype(y_zp.dtype)
    y = np.moveaxis(y, -1, 1)                                          # [N, M, *out]
    return window.from_channels_first(y, layout)
