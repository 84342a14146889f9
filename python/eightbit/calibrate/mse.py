"""MSE-optimal clipping range from a streamed Histogram (layer 3).

Chooses [lo, hi] minimizing the expected squared error of quantizing the observed distribution
onto 256 levels (uint8 or int8: both have 255 steps, s = (hi - lo) / 255), clipping included:

    E(lo, hi) = sum over values inside [lo, hi]  of  s**2 / 12          (rounding noise)
              + sum over values above hi          of  (x - hi)**2        (clipping)
              + sum over values below lo          of  (lo - x)**2

Model, in bin units (w = 1):
- values are spread uniformly inside their bin; a bin [o, o+1) entirely above hi = k costs, per
  value, E[(x - k)**2] = d**2 + d + 1/3 with d = o - k (mirror image below lo);
- rounding error inside the range is the uniform-noise s**2/12 per value, except for values
  exactly 0 (counted separately): 0 is on every grid, they cost nothing. The s**2/12 model is
  accurate when the bins are finer than the step (2048 bins vs 255 steps: ~8 bins per step at
  full range) and the density is smooth across a step; it ignores the zero point's rounding.

Search: every pair of bin edges hi = k_hi * w (k_hi = 1 .. top edge of the data) and
lo = -k_lo * w (k_lo = 1 .. bottom edge), all pairs at once: tail errors and inside counts come
from cumulative sums, so each pair costs O(1) and the search is exhaustive over the grid, not a
descent that can stop in a local minimum (up to 1024 x 1024 pairs, in row blocks). A one-signed
tensor has lo = 0 (or hi = 0) fixed. The chosen edges are clamped to [min, max], so "no clipping"
returns exactly the min-max range. On uniform data the optimum clips a sliver (about s/2 per
side: the rounding noise saved outweighs the clipping error, which grows with the cube of the cut).
"""
from __future__ import annotations

import numpy as np

from .base import include_zero

__all__ = ["mse_range"]

_STEPS = 255.0                       # 256 levels
_ROW_BLOCK = 256


def _tail(counts_by_magnitude: np.ndarray):
    """For one side of 0: bins j = 0..n-1 cover magnitudes [j, j+1). Returns, for every candidate
    edge k = 1..top (top = upper edge of the last non-empty bin): k, the clipping error of the
    values beyond k, and the count of values inside [0, k). With no data on this side: k = [0]."""
    c = counts_by_magnitude.astype(np.float64)
    nonzero = np.flatnonzero(c)
    if nonzero.size == 0:
        return np.zeros(1), np.zeros(1), np.zeros(1)
    top = int(nonzero[-1]) + 1
    c = c[:top]
    j = np.arange(top, dtype=np.float64)
    # suffix sums S0(k) = sum_{j>=k} c_j, S1 = sum c_j j, S2 = sum c_j j**2, for k = 0..top
    def suffix(v):
        return np.concatenate((np.cumsum(v[::-1])[::-1], [0.0]))
    s0, s1, s2 = suffix(c), suffix(c * j), suffix(c * j * j)
    k = np.arange(1, top + 1, dtype=np.float64)
    s0, s1, s2 = s0[1:], s1[1:], s2[1:]
    # sum_{j>=k} c_j ((j-k)**2 + (j-k) + 1/3)
    clip = (s2 + s1 + s0 / 3.0) - k * (2.0 * s1 + s0) + k * k * s0
    inside = c.sum() - s0
    return k, np.maximum(clip, 0.0), inside


def mse_range(hist) -> tuple[float, float]:
    """(lo, hi) with lo <= 0 <= hi; see the module docstring."""
    if hist.min == hist.max or hist.width == 0.0:
        return include_zero(hist.min, hist.max)
    counts = hist.counts.astype(np.int64).copy()
    half = counts.size // 2
    counts[half] -= hist.zeros                     # exact zeros: error-free, never clipped
    k_hi, clip_hi, in_hi = _tail(counts[half:])
    k_lo, clip_lo, in_lo = _tail(counts[:half][::-1])
    best = (np.inf, 0, 0)
    for r0 in range(0, k_hi.size, _ROW_BLOCK):
        kh = k_hi[r0:r0 + _ROW_BLOCK, None]
        step = (kh + k_lo[None, :]) / _STEPS
        err = (clip_hi[r0:r0 + _ROW_BLOCK, None] + clip_lo[None, :]
               + step * step / 12.0 * (in_hi[r0:r0 + _ROW_BLOCK, None] + in_lo[None, :]))
        flat = int(np.argmin(err))
        a, b = divmod(flat, k_lo.size)
        if err[a, b] < best[0]:
            best = (float(err[a, b]), r0 + a, b)
    _, a, b = best
    w = hist.width
    hi = min(float(k_hi[a]) * w, hist.max)
    lo = max(-float(k_lo[b]) * w, hist.min)
    return include_zero(lo, hi)
