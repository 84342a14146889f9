"""Scale and zero point: the affine map real = scale * (q - zero_point), real 0 exactly representable.

All arithmetic is float32 unless written otherwise, so the C++ side can reproduce it bit for bit.
"""
from __future__ import annotations

import numpy as np

from .checks import finite_float_array, quant_dtype
from .requant import float_multiplier  # re-exported: it lived here first

__all__ = ["quantize_weight_symmetric", "choose_qparams", "float_multiplier"]

_F32_TINY = np.finfo(np.float32).tiny        # smallest normal float32


def _rne_clamp(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.rint(np.clip(v, np.float32(lo), np.float32(hi)))


def quantize_weight_symmetric(w, per_channel: bool = True, bits: int = 8, levels: int | None = None
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 weights in [-127, 127] (or on a ``bits``-bit grid, qmax = 2^(bits-1) - 1, or
    on ``levels`` values, an odd count from 3 to 255: qmax = (levels - 1) / 2); rows (axis 0) are
    output channels.

        scale[n] = float32(max|w[n, ...]|) / float32(qmax)      (1.0 when the row is all zero)
        w_q      = int8(clamp(rne(w / scale[n]), -qmax, qmax))   # float32 division

    per_channel=False uses one scale over the whole tensor (0-d result).
    Raises ValueError on non-finite weights, and when a non-zero row's scale would be
    subnormal or zero (the row cannot be represented; say so instead of producing garbage).
    Returns (w_q int8 of w's shape, scale float32 of shape [N] or ()).
    """
    w32 = finite_float_array(w, "w")
    if w32.ndim < 1:
        raise ValueError(f"w must have at least 1 dimension (rows = output channels), got shape {w32.shape}")
    if per_channel:
        flat = w32.reshape(w32.shape[0], -1)
        amax = np.abs(flat).max(axis=1, initial=np.float32(0.0))          # float32 [N]
    else:
        amax = np.abs(w32).max(initial=np.float32(0.0)).reshape(())      # float32 ()
    if isinstance(bits, bool) or bits not in range(2, 9):
        raise ValueError(f"bits: expected 2 to 8, got {bits!r}")
    if levels is not None and (isinstance(levels, bool) or not isinstance(levels, (int, np.integer))
                               or not 3 <= levels <= 255 or levels % 2 == 0):
        raise ValueError(f"levels: expected an odd int from 3 to 255, got {levels!r}")
    qmax = np.float32(2 ** (bits - 1) - 1 if levels is None else (levels - 1) // 2)
    amax = amax.astype(np.float32)
    scale = (amax / qmax).astype(np.float32)
    bad = (amax > 0) & (scale < _F32_TINY)
    if np.any(bad):
        where = f"row {int(np.flatnonzero(bad)[0])}" if per_channel else "the tensor"
        raise ValueError(f"w: max |w| of {where} is too small to quantize "
                         f"(scale max|w|/{int(qmax)} would be below {_F32_TINY:g})")
    scale = np.where(amax > 0, scale, np.float32(1.0)).astype(np.float32)
    s = scale.reshape(scale.shape + (1,) * (w32.ndim - 1)) if per_channel else scale
    q = _rne_clamp((w32 / s).astype(np.float32), -float(qmax), float(qmax))
    return q.astype(np.int8), scale


def binary_weight_scale(w) -> np.ndarray:
    """XNOR-Net's scale of binary weights: mean |w| over each output channel (axis 0), float32 [O],
    the alpha that minimises ||w - alpha sign(w)||. ValueError for a row with no positive finite
    mean (all zeros, or infinite)."""
    w = np.asarray(w, np.float32)
    scale = np.mean(np.abs(w), axis=tuple(range(1, w.ndim)), dtype=np.float32)
    if not np.all((scale > 0) & np.isfinite(scale)):
        raise ValueError("an output channel of zero (or infinite) weights has no binary scale (mean |w|)")
    return scale.astype(np.float32)


def choose_qparams(min_val, max_val, dtype=np.uint8, symmetric: bool = False):
    """(scale float32, zero_point of `dtype`) for an observed range [min_val, max_val].

    The range is first widened to include 0 (float32): mn = min(min_val, 0), mx = max(max_val, 0).

    Asymmetric (ONNX Runtime's formula, also DynamicQuantizeLinear's for uint8):
        scale = (mx - mn) / float32(qmax - qmin)
        zp    = rne(clamp(qmin - mn / scale, qmin, qmax))
    Symmetric (zero point fixed, +-max|range| maps to +-127 steps, nothing clipped):
        int8:  zp = 0,   scale = max(mx, -mn) / 127      (codes used: [-127, 127])
        uint8: zp = 128, scale = max(mx, -mn) / 127      (codes used: [1, 255])

    Degenerate cases:
        mn == mx == 0 (empty or all-zero data)  -> scale = 1.0; zp = qmin (asymmetric) or the
                                                   symmetric zero point. Real 0 stays exact.
        non-finite min_val/max_val, or min_val > max_val  -> ValueError.
        scale overflows to inf (range wider than float32)  -> ValueError.
        range > 0 but scale subnormal (< 1.18e-38)          -> ValueError (too small to quantize).
    """
    dt = quant_dtype(dtype)
    lo_in = finite_float_array(min_val, "min_val")
    hi_in = finite_float_array(max_val, "max_val")
    if lo_in.ndim != 0 or hi_in.ndim != 0:
        raise ValueError(f"min_val and max_val must be scalars, got shapes {lo_in.shape} and {hi_in.shape}")
    if lo_in > hi_in:
        raise ValueError(f"min_val must be <= max_val, got {float(lo_in)} > {float(hi_in)}")
    info = np.iinfo(dt)
    qmin, qmax = np.float32(info.min), np.float32(info.max)
    mn = np.minimum(lo_in, np.float32(0.0))
    mx = np.maximum(hi_in, np.float32(0.0))
    with np.errstate(over="ignore"):                     # overflow is reported just below
        if symmetric:
            zp = 0 if dt == np.int8 else 128
            amax = np.maximum(mx, -mn)
            scale = np.float32(amax / np.float32(127.0))
        else:
            scale = np.float32((mx - mn) / np.float32(qmax - qmin))
    if mx == mn:
        scale = np.float32(1.0)
    if not np.isfinite(scale):
        raise ValueError(f"range [{float(mn)}, {float(mx)}] is too wide: its scale overflows float32")
    if scale < _F32_TINY:
        raise ValueError(f"range [{float(mn)}, {float(mx)}] is too small to quantize: "
                         f"scale {float(scale):g} would be subnormal")
    if not symmetric:
        initial = np.float32(qmin - np.float32(mn / scale))
        zp = int(np.rint(np.clip(initial, qmin, qmax)))
    return np.float32(scale), dt.type(zp)
