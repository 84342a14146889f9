"""Entropy and percentile ranges against ONNX Runtime's HistogramCollector (the parity oracle).

- entropy, same histogram: ORT's counts fed to our search pick the same (start, end) bins;
- entropy, end to end on one batch (ORT's histogram and ours then have the same bins, up to our
  1 + 2**-20 range margin): the same threshold within 1% of a bin (the margin shifts edges by
  |x| * 2**-20, well under a bin; a different bin would be off by a whole width);
- percentile: our p cuts 100 - p per side, ORT's cuts (100 - p) / 2, so ours at p is compared with
  ORT's at 2p - 100; within one bin width on data dense at the quantiles (ORT returns the lower
  edge of the bin of order statistic ceil(fN), we interpolate at the nearest order statistic).
When the range grows during streaming, ORT appends bins while we coarsen by 2**m (bounded
memory), so the histograms, and hence entropy thresholds, differ; that case is not compared.
"""
import contextlib
import io

import numpy as np
import pytest

from eightbit.calibrate import HistogramObserver
from eightbit.calibrate.entropy import entropy_threshold_bins

calibrate = pytest.importorskip("onnxruntime.quantization.calibrate")


def _ort(method, batches, *, bins=2048, percentile=99.99, symmetric=False, nq=128):
    hc = calibrate.HistogramCollector(method=method, symmetric=symmetric, num_bins=bins,
                                      num_quantized_bins=nq, percentile=percentile, scenario="same")
    with contextlib.redirect_stdout(io.StringIO()):          # ORT prints progress
        for b in batches:
            hc.collect({"t": b})
        res = hc.compute_collection_result()["t"]
    return float(res[0]), float(res[1]), hc.histogram_dict["t"]


def _data():
    rng = np.random.default_rng(1)
    return {
        "normal": rng.standard_normal(100_000),
        "relu": np.maximum(rng.standard_normal(100_000), 0),
        "laplace": rng.laplace(0.3, 1, 100_000),
        "student_t3": rng.standard_t(3, 100_000),
        "shifted_gamma": rng.gamma(2, 1, 100_000) - 1,
    }


DATA = {k: v.astype(np.float32) for k, v in _data().items()}


@pytest.mark.parametrize("name", DATA)
@pytest.mark.parametrize("nq", [128, 255])
def test_entropy_search_on_ort_histogram_picks_the_same_bins(name, nq):
    _, _, (hist, edges, vmin, vmax, _) = _ort("entropy", [DATA[name]], nq=nq)
    start, end = entropy_threshold_bins(hist, nq)
    # ORT's threshold is (edges[start], edges[end]) clamped to [min, max]
    lo_o, hi_o, _ = _ort("entropy", [DATA[name]], nq=nq)
    assert (max(float(edges[start]), float(vmin)), min(float(edges[end]), float(vmax))) == \
        pytest.approx((lo_o, hi_o), abs=0, rel=0)


@pytest.mark.parametrize("name", DATA)
def test_entropy_end_to_end_matches_ort_on_one_batch(name):
    x = DATA[name]
    lo_o, hi_o, _ = _ort("entropy", [x])
    obs = HistogramObserver(method="entropy")
    obs.update(x)
    lo, hi = obs.compute_range()
    w = obs.histogram().width
    assert abs(lo - min(lo_o, 0)) <= 0.01 * w and abs(hi - max(hi_o, 0)) <= 0.01 * w, (lo, lo_o, hi, hi_o, w)


@pytest.mark.parametrize("name", DATA)
def test_entropy_streamed_without_growth_matches_ort(name):
    """Batches after the first stay inside its range: both histograms keep their bins."""
    x = DATA[name]
    k = int(np.argmax(np.abs(x)))
    first = np.concatenate([x[k:k + 1], x[:1000]])
    rest = np.array_split(np.delete(x, k)[1000:], 5)
    lo_o, hi_o, _ = _ort("entropy", [first, *rest])
    obs = HistogramObserver(method="entropy")
    for b in [first, *rest]:
        obs.update(b)
    lo, hi = obs.compute_range()
    w = obs.histogram().width
    assert abs(lo - min(lo_o, 0)) <= 0.01 * w and abs(hi - max(hi_o, 0)) <= 0.01 * w, (lo, lo_o, hi, hi_o, w)


@pytest.mark.parametrize("name", ["normal", "relu", "shifted_gamma"])
@pytest.mark.parametrize("p", [99.9, 99.0])
def test_percentile_within_one_bin_of_ort(name, p):
    x = DATA[name]
    lo_o, hi_o, _ = _ort("percentile", [x], percentile=2 * p - 100)
    obs = HistogramObserver(method="percentile", percentile=p)
    for b in np.array_split(x, 4):
        obs.update(b)
    lo, hi = obs.compute_range()
    w = obs.histogram().width
    assert abs(lo - min(lo_o, 0)) <= w and abs(hi - max(hi_o, 0)) <= w, (lo, lo_o, hi, hi_o, w)


@pytest.mark.parametrize("name", ["normal", "laplace", "shifted_gamma"])
def test_symmetric_percentile_within_one_bin_of_ort(name):
    x = DATA[name]
    _, hi_o, _ = _ort("percentile", [x], percentile=99.9, symmetric=True)
    obs = HistogramObserver(method="percentile", percentile=99.9, symmetric=True)
    obs.update(x)
    lo, hi = obs.compute_range()
    # the tails are sparse here (about one sample per bin), so the two rank conventions may
    # land in neighbouring bins of ORT's twice-finer |x| histogram: allow two of ours
    assert abs(hi - hi_o) <= 2 * obs.histogram().width, (hi, hi_o, obs.histogram().width)
