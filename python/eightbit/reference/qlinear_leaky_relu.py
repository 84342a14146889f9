"""QLinearLeakyRelu (com.microsoft, opset 1), as ONNX Runtime computes it: a lookup table.

    d = float32(x_scale * float32(int32(q) - x_zp))
    f = d if d >= 0 else float32(alpha * d)        # float32(alpha) * d, one rounding
    y = QuantizeLinear(f, y_scale, y_zp)           # table built over all 256 bytes, then y = table[x]

Output dtype: x's (ORT requires y_zp of x's dtype).
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import finite_float_array, quant_array
from .lookup_table import lookup_table, make_lookup_table


def qlinear_leaky_relu(x, x_scale, x_zero_point, y_scale, y_zero_point, *, alpha=0.01) -> np.ndarray:
    x = quant_array(x, "x")
    a = finite_float_array(alpha, "alpha")
    if a.ndim != 0:
        raise ValueError(f"alpha must be a scalar, got shape {a.shape}")

    def leaky(d):
        return np.where(d >= 0, d, (a * d).astype(np.float32)).astype(np.float32)

    table = make_lookup_table(leaky, x_scale, x_zero_point, y_scale, y_zero_point, x.dtype, x.dtype)
    return lookup_table(x, table)
