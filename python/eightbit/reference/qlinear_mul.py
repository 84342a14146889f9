"""QLinearMul (com.microsoft, opset 1): c = quantize(dequantize(a) * dequantize(b)), exactly as
ONNX Runtime 1.32's x86 (SSE2) MLAS kernel computes it:

    ratio = float32(float32(a_scale * b_scale) / c_scale)
    p     = (int32(a) - a_zp) * (int32(b) - b_zp)          # exact integer product, |p| <= 65025
    v     = float32(float32(float32(p) * ratio) + float32(c_zp))   # two roundings, no FMA
    c     = sat(rne(v))

Note that the zero point is added before rounding (rne(v + zp), not rne(v) + zp): with an odd
c_zp a product landing exactly on .5 rounds the other way than in QuantizeLinear. eightbit
saturates where ORT's cvtps2dq overflows (|v| >= 2^31): there ORT returns qmin.

a, b: uint8 or int8 (same dtype), numpy broadcasting; scales and zero points per-tensor.
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import check_binary
from ..numerics.rounding import clamp_then_round


def qlinear_mul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point) -> np.ndarray:
    """Quantized elementwise a * b; returns c_zero_point's dtype (= a's dtype)."""
    a, b, (a_s, a_zp, b_s, b_zp, c_s, c_zp) = check_binary(
        a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point)
    ratio = ((a_s * b_s).astype(np.float32) / c_s).astype(np.float32)
    p = (a.astype(np.int32) - np.int32(int(a_zp))) * (b.astype(np.int32) - np.int32(int(b_zp)))
    v = (p.astype(np.float32) * ratio).astype(np.float32)
    v = (v + np.float32(int(c_zp))).astype(np.float32)
    return clamp_then_round(v, np.int32(0), a.dtype)
