"""HistogramObserver: one streamed histogram in fixed memory, and range methods on top (layer 3).

The histogram
-------------
``bins`` (even) equal bins over [-T, T], centred on 0: bin k covers

    [(k - bins/2) * w, (k - bins/2 + 1) * w),   w = T / (bins/2)

so 0 is always an edge (the zero bin is k = bins/2) and |x| folds exactly onto the positive
half. Centring on 0 is what ONNX Runtime's (TensorRT's) entropy search expects, and the final
range must contain 0 anyway; the cost is that a one-signed tensor (post-ReLU) uses half the bins
(1024 of the default 2048, as in ONNX Runtime).

Growing the range: exact re-binning
-----------------------------------
The first non-zero batch sets T = max|x| * (1 + 2**-20): the margin keeps every value strictly
inside, so x / w < bins/2 even after rounding and no value ever needs clamping into the last bin.
When a later batch has max|x| * (1 + 2**-20) > T, T is multiplied by 2**m, the smallest power of
two that covers it, and the old counts merge: old bin offset o (= k - bins/2) goes to
floor(o / 2**m). This is *exact*, not an approximation: a value x was counted in
o = floor(fl(x / w)); in the new grid fl(x / (2**m w)) = fl(x / w) / 2**m (scaling by a power of
two is exact in binary floating point), and floor(floor(a) / n) = floor(a / n) for integer n.
So the streamed counts equal, bin for bin, the counts of all the data binned once with the final
width (the tests check it). Memory stays ``bins`` int64 counters whatever the number of batches;
the price is resolution: after growth the data spans between a half and all of [-T, T].

Merging (eightbit.distributed): two histograms whose grids are T0 * 2**m for the same T0 merge
exactly (``merge``: the finer one re-binned onto the coarser, counts added), and the result is
the histogram one stream over both runs of batches would have built. A run of batches that does
not begin with the first batch of all starts on that batch's T0 (``start_grid``); see
docs/distributed.md.

Other schemes, and why not: ONNX Runtime appends bins when the range grows (exact, but memory
grows with the data's spread and the bin count becomes data-dependent); PyTorch's
HistogramObserver re-bins onto a new [min, max] by spreading each old bin's count uniformly
(bounded, but approximate at every merge).

Bin indices are computed as floor(x / w) in float64; for the rare value within one ulp of an
edge this can differ from np.histogram's edge comparison by one bin (np.histogram's own first
guess has the same property and then corrects it against float edges).

Also kept, O(1): exact min and max (ranges are clamped to them, as in ONNX Runtime), the count of
exact zeros (``mse`` treats them as error-free: 0 is on every grid), and the number of values.

Range methods (``method``): ``percentile`` (percentile.py), ``entropy`` (entropy.py), ``mse``
(mse.py); each is also a function of a ``Histogram`` snapshot, so one collected histogram can
answer all three (``obs.histogram()``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .base import Observer
from .entropy import entropy_range
from .mse import mse_range
from .percentile import percentile_range

__all__ = ["Histogram", "HistogramObserver", "HISTOGRAM_METHODS"]

HISTOGRAM_METHODS = ("percentile", "entropy", "mse")
_MARGIN = 1.0 + 2.0 ** -20          # T = max|x| * _MARGIN keeps every value strictly inside
_CHUNK = 1 << 18                    # values binned per step: bounds the float64/int temporaries
_MAX_BINS = 1 << 24


@dataclass(frozen=True)
class Histogram:
    """A snapshot of a HistogramObserver: what the range methods read.

    ``counts[k]`` (int64) counts values in [(k - bins/2) * width, (k - bins/2 + 1) * width);
    ``width`` is 0.0 while every value seen was 0 (then everything sits in the zero bin).
    ``zeros`` counts values exactly 0 (they are included in counts[bins/2]).
    """
    counts: np.ndarray
    width: float
    min: float
    max: float
    zeros: int

    @property
    def bins(self) -> int:
        return int(self.counts.size)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def edges(self) -> np.ndarray:
        """float64 [bins + 1], edges[bins/2] == 0."""
        half = self.bins // 2
        return (np.arange(self.bins + 1, dtype=np.float64) - half) * self.width

    def edge(self, k: int) -> float:
        return (k - self.bins // 2) * self.width


def _check_bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)):
        raise TypeError(f"bins must be an even integer, got {type(bins).__name__}")
    if bins < 2 or bins % 2 or bins > _MAX_BINS:
        raise ValueError(f"bins must be an even integer in [2, {_MAX_BINS}] (the histogram is centred on 0), "
                         f"got {bins}")
    return int(bins)


def _check_percentile(percentile) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.floating, np.integer)):
        raise TypeError(f"percentile must be a number in (50, 100], got {type(percentile).__name__}")
    if not 50.0 < float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in (50, 100] (99.99 keeps [q(0.01%), q(99.99%)]), got {percentile}")
    return float(percentile)


def _check_quantized_bins(num_quantized_bins, bins: int) -> int:
    if isinstance(num_quantized_bins, bool) or not isinstance(num_quantized_bins, (int, np.integer)):
        raise TypeError(f"num_quantized_bins must be an integer, got {type(num_quantized_bins).__name__}")
    if not 2 <= num_quantized_bins <= bins:
        raise ValueError(f"num_quantized_bins must be in [2, bins={bins}], got {num_quantized_bins}")
    return int(num_quantized_bins)


def _rebinned(counts: np.ndarray, m: int) -> np.ndarray:
    """Counts on a grid 2**m times wider: old bin offset o (= k - bins/2) goes to floor(o / 2**m)."""
    half = counts.size // 2
    offsets = np.arange(counts.size, dtype=np.int64) - half
    # floor(o / 2**m) as an arithmetic shift; |o| <= half < 2**24, so shifts past 62 change nothing
    new_index = (offsets >> min(m, 62)) + half
    merged = np.zeros(counts.size, dtype=np.int64)
    np.add.at(merged, new_index, counts)
    return merged


class HistogramObserver(Observer):
    """Streamed histogram (see the module docstring) + one range method.

    ``method``: "percentile" (options ``percentile``, ``symmetric``), "entropy"
    (``num_quantized_bins``) or "mse". Options of the other methods are validated and kept, so
    ``percentile_range()`` / ``entropy_range()`` / ``mse_range()`` can all be asked of one
    histogram. State: ``bins`` int64 counters and five scalars.
    """

    def __init__(self, bins: int = 2048, method: str = "percentile", *, percentile: float = 99.99,
                 symmetric: bool = False, num_quantized_bins: int = 128, name: str = "tensor"):
        self.bins = _check_bins(bins)
        if method not in HISTOGRAM_METHODS:
            raise ValueError(f"method: unknown histogram range method {method!r}; valid: "
                             f"{', '.join(HISTOGRAM_METHODS)}")
        self.method = method
        self.percentile = _check_percentile(percentile)
        if not isinstance(symmetric, (bool, np.bool_)):
            raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
        self.symmetric = bool(symmetric)
        # checked against bins only where it is used (entropy), so bins=64 works for the others
        self.num_quantized_bins = _check_quantized_bins(
            num_quantized_bins, self.bins if method == "entropy" else max(self.bins, num_quantized_bins))
        super().__init__(name=name)

    def _reset(self) -> None:
        self._counts = np.zeros(self.bins, dtype=np.int64)
        self._half_range = 0.0          # T; 0.0 until a non-zero value is seen
        self._zeros = 0
        self.min_val = math.inf
        self.max_val = -math.inf

    def _update(self, arr: np.ndarray, lo: float, hi: float) -> None:
        self.min_val = min(self.min_val, lo)
        self.max_val = max(self.max_val, hi)
        flat = arr.reshape(-1)
        half = self.bins // 2
        self._zeros += int(np.count_nonzero(flat == 0))
        amax = max(-lo, hi)
        if amax == 0.0:                              # all zeros: the zero bin, whatever the width
            self._counts[half] += flat.size
            return
        need = amax * _MARGIN
        if self._half_range == 0.0:
            self._half_range = need
        elif need > self._half_range:
            self._widen(need)
        width = self._half_range / half
        for start in range(0, flat.size, _CHUNK):
            v = flat[start:start + _CHUNK].astype(np.float64)      # a copy: the input may be read-only
            np.divide(v, width, out=v)
            np.floor(v, out=v)
            idx = v.astype(np.intp)
            idx += half
            self._counts += np.bincount(idx, minlength=self.bins)

    def _widen(self, need: float) -> None:
        """T *= 2**m (smallest m covering `need`); old bins merge exactly (module docstring)."""
        m = max(1, math.ceil(math.log2(need / self._half_range)))
        while math.ldexp(self._half_range, m) < need:
            m += 1
        self._counts = _rebinned(self._counts, m)
        self._half_range = math.ldexp(self._half_range, m)

    @property
    def half_range(self) -> float:
        """T: the histogram covers [-T, T]; 0.0 while every value seen was 0."""
        return self._half_range

    def start_grid(self, half_range: float) -> None:
        """Start from T = ``half_range`` (before any non-zero value), as if the first non-zero batch
        had set it: later growth then stays on the grid T * 2**m, so this histogram merges exactly
        with one whose first non-zero batch set that T (eightbit.distributed: each partition starts
        on the grid of the first batch of all)."""
        half_range = float(half_range)
        if not 0.0 < half_range < math.inf:
            raise ValueError(f"tensor {self.name!r}: half_range must be positive and finite, got {half_range}")
        if self._half_range != 0.0:
            raise ValueError(f"tensor {self.name!r}: start_grid after non-zero values were observed")
        self._half_range = half_range

    def _check_merge(self, other: "HistogramObserver") -> None:
        if other.bins != self.bins:
            raise ValueError(f"tensor {self.name!r}: cannot merge histograms of {self.bins} and {other.bins} bins")

    def _merge(self, other: "HistogramObserver") -> None:
        """Exact when both grids are T0 * 2**m for one T0 (module docstring): the finer histogram
        is re-binned onto the coarser, as a growing stream would have done, and the counts add."""
        counts = other._counts
        if other._half_range != 0.0:
            if self._half_range == 0.0:                # every value so far was 0: all in the zero bin
                self._half_range = other._half_range
            elif other._half_range != self._half_range:
                small, large = sorted((self._half_range, other._half_range))
                m = round(math.log2(large / small))
                if math.ldexp(small, m) != large:
                    raise ValueError(f"tensor {self.name!r}: histograms on different grids (half ranges {small!r} "
                                     f"and {large!r} are not a power of two apart); start the later one with "
                                     f"start_grid(the earlier one's first half range)")
                if other._half_range > self._half_range:
                    self._widen(other._half_range)
                else:
                    counts = _rebinned(counts, m)
        self._counts = self._counts + counts
        self._zeros += other._zeros
        self.min_val = min(self.min_val, other.min_val)
        self.max_val = max(self.max_val, other.max_val)

    def histogram(self) -> Histogram:
        """A snapshot (copies the counts)."""
        if self.num_values == 0:
            raise ValueError(f"tensor {self.name!r}: no values observed; the histogram is empty")
        return Histogram(self._counts.copy(), self._half_range / (self.bins // 2),
                         self.min_val, self.max_val, self._zeros)

    def percentile_range(self, percentile: float | None = None, symmetric: bool | None = None):
        p = self.percentile if percentile is None else _check_percentile(percentile)
        sym = self.symmetric if symmetric is None else bool(symmetric)
        return percentile_range(self.histogram(), p, symmetric=sym)

    def entropy_range(self, num_quantized_bins: int | None = None):
        nq = self.num_quantized_bins if num_quantized_bins is None else \
            _check_quantized_bins(num_quantized_bins, self.bins)
        return entropy_range(self.histogram(), nq)

    def mse_range(self):
        return mse_range(self.histogram())

    def _range(self) -> tuple[float, float]:
        if self.method == "percentile":
            return self.percentile_range()
        if self.method == "entropy":
            return self.entropy_range()
        return self.mse_range()

    def __repr__(self) -> str:
        return (f"HistogramObserver(bins={self.bins}, method={self.method!r}, name={self.name!r}, "
                f"num_values={self.num_values})")
