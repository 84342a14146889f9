"""DynamicQuantizeLinear (ONNX opset 11, uint8), exactly as ONNX Runtime computes it.

    mn = min(min(x), 0);  mx = max(max(x), 0)                 # float32
    scale = 1.0 if mx == mn else (mx - mn) / 255.0f            # float32 division
    zp = uint8(rne(clamp(0 - mn / scale, 0, 255)))
    y = QuantizeLinear(x, scale, zp)

dynamic_quantize_rows applies the same formula to each row of a matrix independently
(per-token activations of the dynamic linear layer).
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import float_array
from ..numerics.rounding import clamp_then_round

_QMAX = np.float32(255.0)


def _finite_float32(x, name: str) -> np.ndarray:
    x32 = float_array(x, name)
    if not np.all(np.isfinite(x32)):
        raise ValueError(f"{name} must be finite: dynamic quantization of NaN or infinity is undefined")
    return x32


def _qparams(mn: np.ndarray, mx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised over rows: mn, mx float32 (already including 0) -> (scale f32, zp uint8)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        spread = (mx - mn).astype(np.float32)                       # may overflow to inf, as in ORT
        scale = np.where(mx == mn, np.float32(1.0), spread / _QMAX).astype(np.float32)
        initial = (np.float32(0.0) - (mn / scale).astype(np.float32)).astype(np.float32)
    # std::max(0.f, std::min(255.f, initial)): NaN -> 255, as the C++ comparison order gives.
    clamped = np.where(initial < _QMAX, initial, _QMAX)
    clamped = np.where(np.float32(0.0) < clamped, clamped, np.float32(0.0))
    return scale, np.rint(clamped).astype(np.uint8)


def _quantize(x32: np.ndarray, scale: np.ndarray, zp: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        v = (x32 / scale).astype(np.float32)
    return clamp_then_round(v, zp, np.dtype(np.uint8))


def dynamic_quantize_linear(x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y uint8 of x's shape, scale float32 0-d, zero_point uint8 0-d); empty x gives scale 1, zp 0."""
    x32 = _finite_float32(x, "x")
    mn = np.minimum(x32.min(initial=np.float32(0.0)), np.float32(0.0)).astype(np.float32)
    mx = np.maximum(x32.max(initial=np.float32(0.0)), np.float32(0.0)).astype(np.float32)
    scale, zp = _qparams(mn, mx)
    return _quantize(x32, scale, zp), np.asarray(scale, np.float32), np.asarray(zp, np.uint8)


def dynamic_quantize_rows(x2d) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise DynamicQuantizeLinear of a [M, K] matrix -> (q uint8 [M, K], scale f32 [M], zp uint8 [M])."""
    x32 = _finite_float32(x2d, "x2d")
    if x32.ndim != 2:
        raise ValueError(f"x2d must be 2-D [M, K], got shape {x32.shape}")
    mn = np.minimum(x32.min(axis=1, initial=np.float32(0.0)), np.float32(0.0)).astype(np.float32)
    mx = np.maximum(x32.max(axis=1, initial=np.float32(0.0)), np.float32(0.0)).astype(np.float32)
    scale, zp = _qparams(mn, mx)
    q = _quantize(x32, scale[:, None], zp[:, None])
    return q, scale, zp
