"""QLinearSigmoid (com.microsoft, opset 1), as ONNX Runtime 1.32 computes it on x86 with FMA3.

ORT builds a 256-entry table (see lookup_table.py) with fn = MlasComputeLogistic, which on any
x86-64 CPU with AVX2/FMA3 is MlasLogisticKernelFma3: Eigen's rational approximation in float32,

    v  = min(18, max(-18, d));  v2 = float32(v * v)
    p  = fma(v2, fma(v2, fma(v2, fma(v2, a9, a7), a5), a3), a1);  p = float32(v * p)
    q  = fma(v2, fma(v2, fma(v2, fma(v2, fma(v2, b10, b8), b6), b4), b2), b0)
    s  = max(0, float32(float32(p / q) + 0.5))

with each fma rounded once and the float32 constants below. ORT's SSE2 fallback (CPUs without
FMA3) and its ARM kernels round p and q differently (and clamp s to 1), so their tables can differ
from this one in rare entries next to a rounding tie; eightbit follows the FMA3 kernel everywhere.
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import quant_array
from ._float32 import fma32
from .lookup_table import lookup_table, make_lookup_table

_F = np.float32
_ALPHA = [_F(4.37031012579801e-11), _F(1.15627324459942e-07), _F(6.08574864600143e-05),
          _F(8.51377133304701e-03), _F(2.48287947061529e-01)]                     # a9 a7 a5 a3 a1
_BETA = [_F(6.10247389755681e-13), _F(5.76102136993427e-09), _F(6.29106785017040e-06),
         _F(1.70198817374094e-03), _F(1.16817656904453e-01), _F(9.93151921023180e-01)]  # b10 .. b0


def mlas_logistic(x) -> np.ndarray:
    """MLAS's FMA3 logistic kernel on a float32 array, bit for bit."""
    v = np.asarray(x, np.float32)
    v = np.maximum(_F(-18.0), v)
    v = np.minimum(_F(18.0), v)
    v2 = (v * v).astype(np.float32)
    p = fma32(v2, _ALPHA[0], _ALPHA[1])
    for c in _ALPHA[2:]:
        p = fma32(v2, p, c)
    p = (v * p).astype(np.float32)
    q = fma32(v2, _BETA[0], _BETA[1])
    for c in _BETA[2:]:
        q = fma32(v2, q, c)
    s = ((p / q).astype(np.float32) + _F(0.5)).astype(np.float32)
    return np.maximum(_F(0.0), s)


def qlinear_sigmoid(x, x_scale, x_zero_point, y_scale, y_zero_point) -> np.ndarray:
    x = quant_array(x, "x")
    table = make_lookup_table(mlas_logistic, x_scale, x_zero_point, y_scale, y_zero_point, x.dtype, x.dtype)
    return lookup_table(x, table)
