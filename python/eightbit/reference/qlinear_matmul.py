"""QLinearMatMul (ONNX opset 10/21): MatMulInteger followed by requantization.

    acc = MatMulInteger(a, b, a_zero_point, b_zero_point)          # exact, int32
    requant="float" (ONNX Runtime):
        multiplier[n] = float32(float32(a_scale * b_scale[n]) / y_scale)
        y = clamp-then-round(float32(acc) * multiplier[n], y_zero_point)
    requant="fixed" (TFLite):
        real[n] = float64(a_scale) * float64(b_scale[n]) / float64(y_scale)
        (m0, shift) = quantize_multiplier(real)
        y = sat(multiply_by_quantized_multiplier(acc, m0[n], shift[n]) + y_zero_point)

a_scale, a_zero_point, y_scale, y_zero_point are scalars; b_scale and b_zero_point scalars or
one per column of b. The output has y_zero_point's dtype. The multipliers are
eightbit.numerics.requant's.
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import as_array, per_tensor, positive_scale, quant_array, scalar_or_vector
from ..numerics.requant import REQUANT_MODES, requant_multipliers
from .matmul_integer import check_operands, matmul_integer
from .requantize import requantize_fixed, requantize_float


def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point, *,
                   requant: str = "float") -> np.ndarray:
    """Quantized matmul; returns an array of y_zero_point's dtype (uint8 or int8)."""
    if requant not in REQUANT_MODES:
        raise ValueError(f"requant must be one of {REQUANT_MODES}, got {requant!r}")
    a, b, _, n = check_operands(a, b)
    a_s = per_tensor(positive_scale(a_scale, "a_scale"), "a_scale")
    y_s = per_tensor(positive_scale(y_scale, "y_scale"), "y_scale")
    b_s = scalar_or_vector(positive_scale(b_scale, "b_scale"), "b_scale", n, "column of b (N)")
    a_zp = per_tensor(quant_array(a_zero_point, "a_zero_point", allowed=(a.dtype,)), "a_zero_point")
    y_zp = per_tensor(quant_array(y_zero_point, "y_zero_point"), "y_zero_point")
    b_zp = scalar_or_vector(quant_array(b_zero_point, "b_zero_point", allowed=(b.dtype,)),
                            "b_zero_point", n, "column of b (N)")
    acc = matmul_integer(a, b, a_zp, b_zp)
    if b.ndim == 1:                       # N dropped from the output: a per-column value is the only one
        b_s = b_s.reshape(())
    out_dtype = y_zp.dtype
    if requant == "float":
        return requantize_float(acc, requant_multipliers(a_s, b_s, y_s, "float"), y_zp, out_dtype)
    m0, shift = requant_multipliers(a_s, b_s, y_s, "fixed")
    return requantize_fixed(acc, m0, shift, y_zp, out_dtype)
