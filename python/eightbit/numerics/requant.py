"""Requantization multipliers: how an int32 accumulator of scale x_scale * w_scale[c] is brought to
the output scale y_scale. One rule per mode, used by eightbit.reference, eightbit.ops, the
lowering (model/lowering.py, stored in the .eb file) and the ONNX exporter alike.

    float (ONNX Runtime):  multiplier[c] = float32(float32(x_scale * w_scale[c]) / y_scale)
    fixed (TFLite):        real[c] = float64(x_scale) * float64(w_scale[c]) / float64(y_scale)
                           (m0[c], shift[c]) = quantize_multiplier(real[c])
"""
from __future__ import annotations

import numpy as np

from .checks import all_positive_finite, positive_scale
from .fixed_point import quantize_multiplier

__all__ = ["REQUANT_MODES", "float_multiplier", "requant_multipliers"]

REQUANT_MODES = ("float", "fixed")


def float_multiplier(a_scale, b_scale, y_scale) -> np.ndarray:
    """The float requantization multiplier, in ONNX Runtime's float32 order:

        multiplier = float32(float32(a_scale * b_scale) / y_scale)

    a_scale, y_scale scalars; b_scale scalar or per-column [N]. Scales must be finite and > 0.
    Returns a float32 array of b_scale's shape.
    """
    a = positive_scale(a_scale, "a_scale")
    b = positive_scale(b_scale, "b_scale")
    y = positive_scale(y_scale, "y_scale")
    if a.size != 1 or y.size != 1:
        raise ValueError(f"a_scale and y_scale must be scalars, got shapes {a.shape} and {y.shape}")
    return float_multiplier_unchecked(a.reshape(()), b, y.reshape(()))


def float_multiplier_unchecked(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``float_multiplier`` for float32 scales already validated (a, y 0-d; b 0-d or 1-d)."""
    return np.divide(np.multiply(a, b, dtype=np.float32), y, dtype=np.float32)


def requant_multipliers(x_scale, w_scale, y_scale, mode: str = "float"):
    """The requantization of a layer with input scale ``x_scale`` (one value), weight scales
    ``w_scale`` (one, or one per output channel) and output scale ``y_scale`` (one value), as the
    module docstring states it:

        mode="float": the float32 multipliers, of w_scale's shape
        mode="fixed": (m0 int32, shift int32), each of w_scale's shape

    Scales are converted to float32 first and must be finite and > 0 (ValueError)."""
    if mode not in REQUANT_MODES:
        raise ValueError(f"requant must be 'float' or 'fixed', got {mode!r}")
    x = np.asarray(x_scale, np.float32)
    w = np.asarray(w_scale, np.float32)
    y = np.asarray(y_scale, np.float32)
    if x.size != 1 or y.size != 1:
        raise ValueError(f"x_scale and y_scale must be scalars, got shapes {x.shape} and {y.shape}")
    for v, name in ((x, "x_scale"), (w, "w_scale"), (y, "y_scale")):
        if not all_positive_finite(v):
            raise ValueError(f"{name} must be finite and > 0, got {v.ravel()[:8].tolist()}")
    x, y = x.reshape(()), y.reshape(())
    if mode == "float":
        return float_multiplier_unchecked(x, w, y)
    return quantize_multiplier((x.astype(np.float64) * w.astype(np.float64)) / y.astype(np.float64))
