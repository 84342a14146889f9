"""Entropy (KL-divergence) range from a streamed Histogram (layer 3).

The TensorRT calibration algorithm (Migacz, "8-bit inference with TensorRT", GTC 2017) as ONNX
Runtime implements it (onnxruntime/quantization/calibrate.py,
``HistogramCollector.get_entropy_threshold``), re-written here and checked against it: on the same
histogram it picks the same threshold (tests/calibrate/test_against_ort.py).

On a histogram of B bins centred on 0 (zero bin z = B/2), for each i in [nq/2, z]
(nq = num_quantized_bins, default 128):

    slice   = counts[z - i : min(z + i + 1, B)]             candidate range [edge(z-i), edge(z+i+1)]
    p       = slice, with everything left of it added to p[0], right of it to p[-1]  (clipped mass)
    q       = slice merged into nq groups of m = len // nq bins (the leftover tail joins the last
              group), each group's sum spread evenly over the group's bins where p != 0
    KL(p||q) after both are smoothed (zeros -> 1e-4, taken from the non-zeros), float32

and the range is the candidate with the smallest KL (first on ties), clamped to [min, max],
then widened to contain 0.

ONNX Runtime's particulars, kept so the results agree (they differ from MXNet's original):
- q holds integers: each group's sum / (non-zero bins in the group) is truncated toward zero;
- q is set on every bin of a group, zero bins of p included (MXNet zeroes q where p == 0);
- the leftover tail bins (len - nq*m of them) keep q = 0; their counts go to the last group;
- smoothing and KL are float32, as ORT's smooth_distribution and entropy.
Defaults differ from ONNX Runtime's EntropyCalibrater (num_bins=128, which with 128 quantized
bins leaves one candidate, the full range): here bins=2048 and nq=128, TensorRT's numbers.

Cost: one pass of O(B) NumPy work per candidate, ~B/2 candidates (about 0.1 s per tensor at
B = 2048), against ONNX Runtime's Python loops over bins.
"""
from __future__ import annotations

import numpy as np

from .base import include_zero

__all__ = ["entropy_range", "entropy_threshold_bins"]

_EPS = np.float32(1e-4)


def _smooth(p: np.ndarray):
    """ORT's smooth_distribution in float32: zeros -> eps, non-zeros lose eps * zeros/nonzeros."""
    is_zero = p == 0
    n_zero = int(np.count_nonzero(is_zero))
    n_nonzero = p.size - n_zero
    if n_nonzero == 0:
        return None
    eps1 = np.float32(1e-4 * float(n_zero) / float(n_nonzero))
    zf = is_zero.astype(np.float32)
    out = p.astype(np.float32)
    out += _EPS * zf + (-eps1) * (np.float32(1.0) - zf)
    return out


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """float32 KL(p || q) of two positive (smoothed) vectors, each normalized to sum 1."""
    p = p / np.sum(p)
    q = q / np.sum(q)
    return float(np.sum(p * np.log(p / q)))


def entropy_threshold_bins(counts: np.ndarray, num_quantized_bins: int = 128) -> tuple[int, int]:
    """(start, end) bin indices of the KL-optimal range [edge(start), edge(end)]."""
    counts = np.asarray(counts, dtype=np.int64)
    num_bins = counts.size
    zero = num_bins // 2
    nq = int(num_quantized_bins)
    first = nq // 2
    if first > zero:
        raise ValueError(f"num_quantized_bins={nq} needs at least {nq} histogram bins, got {num_bins}")
    cum = np.concatenate(([0], np.cumsum(counts)))        # cum[k] = sum(counts[:k])
    total = int(cum[-1])
    best_kl, best = np.inf, None
    for i in range(first, zero + 1):
        start = zero - i
        end = min(zero + i + 1, num_bins)
        sliced = counts[start:end]
        length = sliced.size
        p = sliced.copy()
        p[0] += cum[start]
        p[-1] += total - cum[end]
        nonzero = p != 0
        m = length // nq
        body = nq * m
        group_sum = sliced[:body].reshape(nq, m).sum(axis=1)
        group_sum[-1] += sliced[body:].sum()
        group_nonzero = nonzero[:body].reshape(nq, m).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            level = np.where(group_nonzero != 0, group_sum / np.maximum(group_nonzero, 1), 0.0)
        q = np.zeros(length, dtype=np.int64)
        q[:body] = np.repeat(level.astype(np.int64), m)     # truncation toward zero, as ORT
        ps, qs = _smooth(p), _smooth(q)
        kl = np.inf if ps is None or qs is None else _kl(ps, qs)
        if kl < best_kl or best is None:
            best_kl, best = kl, (start, end)
    return best


def entropy_range(hist, num_quantized_bins: int = 128) -> tuple[float, float]:
    """(lo, hi) with lo <= 0 <= hi; see the module docstring."""
    if hist.min == hist.max or hist.width == 0.0:
        return include_zero(hist.min, hist.max)
    start, end = entropy_threshold_bins(hist.counts, num_quantized_bins)
    lo, hi = hist.edge(start), hist.edge(end)
    lo = max(lo, hist.min)
    hi = min(hi, hist.max)
    return include_zero(lo, hi)
