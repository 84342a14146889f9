"""Per-tensor / per-axis parameter shapes for QuantizeLinear and DequantizeLinear (ONNX rules)."""
from __future__ import annotations

import numpy as np


def per_axis_params(x: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis, scale_name: str,
                    zp_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (scale, zp) reshaped to broadcast against x.

    A scalar or one-element scale is per-tensor (as ONNX Runtime treats a 1-element vector);
    a 1-D scale of length x.shape[axis] is per-axis. The zero point must have the scale's shape.
    """
    if zp.shape != scale.shape:
        raise ValueError(f"{zp_name} must have the shape of {scale_name} {scale.shape}, got {zp.shape}")
    if scale.size == 1 and scale.ndim <= 1:
        return scale.reshape(()), zp.reshape(())
    if scale.ndim != 1:
        raise ValueError(f"{scale_name} must be a scalar or 1-D (per-axis), got shape {scale.shape}")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {type(axis).__name__}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis must be in [{-x.ndim}, {x.ndim}) for input of rank {x.ndim}, got {axis}")
    axis = int(axis) % x.ndim
    if scale.shape[0] != x.shape[axis]:
        raise ValueError(f"{scale_name} has {scale.shape[0]} elements but input dimension {axis} "
                         f"(axis) has {x.shape[axis]}")
    shape = [1] * x.ndim
    shape[axis] = scale.shape[0]
    return scale.reshape(shape), zp.reshape(shape)
