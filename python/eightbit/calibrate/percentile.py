"""Percentile range from a streamed Histogram (layer 3).

Asymmetric (default), for percentile p (e.g. 99.99):

    lo = q(1 - p/100),  hi = q(p/100)          -> [q(0.01 %), q(99.99 %)]

i.e. 100 - p percent is cut from *each* tail (NNCF's quantile estimator, and what "99.99th
percentile" says). ONNX Runtime's PercentileCalibrater instead cuts (100 - p) / 2 per side:
our p corresponds to its 2p - 100 (our 99.99 = its 99.98). A deliberate difference; the tests
compare through that mapping.

Symmetric (``symmetric=True``): a = q_|x|(p/100), the percentile of |x| (the centred histogram
folds exactly onto |x|: bin k and its mirror bins-1-k cover the same magnitudes), and the range
is [-a, a] (then clamped to the data: [max(-a, min), min(a, max)] before including 0, so a
one-signed tensor still gets a one-signed range). This is the TensorRT / pytorch-quantization
convention.

q(f) reads the histogram's cumulative counts: with N values, np.percentile's ("linear") position
is the 1-based rank r = 1 + f (N - 1); q(f) is taken in the bin holding the order statistic
nearest r, k = round(r), interpolating as if that bin's values were spread evenly over the bin
intersected with [min, max] (the k-th value sits at (k - before - 1/2) / count of the way). So
q(f) is within one bin width of that order statistic, hence of np.percentile wherever the data is
dense enough that neighbouring order statistics are closer than a bin (in a sparse tail,
np.percentile interpolates across the gap between two order statistics, which no histogram
resolves). ONNX Runtime returns the lower edge of the bin holding order statistic ceil(f N).
p = 100 gives exactly [min, max].
"""
from __future__ import annotations

import numpy as np

from .base import include_zero

__all__ = ["percentile_range", "histogram_quantile"]


def histogram_quantile(counts: np.ndarray, first_edge: float, width: float, fraction: float,
                       vmin: float, vmax: float) -> float:
    """The `fraction` quantile (0..1) of values counted in uniform bins starting at first_edge."""
    cum = np.cumsum(counts)
    n = int(cum[-1])
    k = min(max(int(np.floor(1.0 + fraction * (n - 1) + 0.5)), 1), n)      # nearest order statistic
    j = int(np.searchsorted(cum, k, side="left"))                          # first bin with cum >= k
    before = int(cum[j - 1]) if j > 0 else 0
    a = max(first_edge + j * width, vmin)
    b = min(first_edge + (j + 1) * width, vmax)
    if b <= a:
        return a
    return a + (k - before - 0.5) / int(counts[j]) * (b - a)

def percentile_range(hist, percentile: float = 99.99, *, symmetric: bool = False) -> tuple[float, float]:
    """(lo, hi) with lo <= 0 <= hi; see the module docstring."""
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")
    vmin, vmax = hist.min, hist.max
    if percentile == 100.0 or vmin == vmax or hist.width == 0.0:
        if symmetric:
            a = max(-vmin, vmax)
            return include_zero(max(-a, vmin), min(a, vmax))
        return include_zero(vmin, vmax)
    f = percentile / 100.0
    counts, w = hist.counts, hist.width
    half = counts.size // 2
    if symmetric:
        magnitudes = counts[half:] + counts[:half][::-1]          # bin j: |x| in [j w, (j+1) w)
        amax = max(-vmin, vmax)
        a = histogram_quantile(magnitudes, 0.0, w, f, 0.0, amax)
        return include_zero(max(-a, vmin), min(a, vmax))
    first = -half * w
    lo = histogram_quantile(counts, first, w, 1.0 - f, vmin, vmax)
    hi = histogram_quantile(counts, first, w, f, vmin, vmax)
    return include_zero(lo, hi)
