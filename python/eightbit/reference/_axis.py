"""Per-tensor / per-axis parameter shapes for QuantizeLinear and DequantizeLinear (ONNX rules)."""
from __future__ import annotations

import numpy as np


def per_axis_params(x: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis, scale_name: str,
                    zp_name: str, block_size=0) -> tuple[np.ndarray, np.ndarray]:
    """Return (scale, zp) reshaped to broadcast against x.

    A scalar or one-element scale is per-tensor (as ONNX Runtime treats a 1-element vector);
    a 1-D scale of length x.shape[axis] is per-axis. The zero point must have the scale's shape.
    ``block_size`` B > 0 (opset 21 blocked quantization): the scale has x's rank and shape except
    along ``axis``, where it has ceil(x.shape[axis] / B) entries, each for B consecutive elements.
    """
    if zp.shape != scale.shape:
        raise ValueError(f"{zp_name} must have the shape of {scale_name} {scale.shape}, got {zp.shape}")
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 0:
        raise ValueError(f"block_size must be an int >= 0, got {block_size!r}")
    if block_size:
        return _blocked(x, scale, zp, axis, int(block_size), scale_name)
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


def _blocked(x, scale, zp, axis, block, scale_name):
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis must be an integer in [{-x.ndim}, {x.ndim}), got {axis!r}")
    axis = int(axis) % x.ndim
    want = tuple(-(-d // block) if i == axis else d for i, d in enumerate(x.shape))
    if scale.shape != want:
        raise ValueError(f"{scale_name} must have shape {want} for block_size {block} along axis {axis} "
                         f"(input {x.shape}), got {scale.shape}")
    take = np.arange(x.shape[axis]) // block
    return np.take(scale, take, axis=axis), np.take(zp, take, axis=axis)
