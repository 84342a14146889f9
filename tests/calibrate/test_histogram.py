"""The streamed histogram (exact re-binning, bounded state) and the percentile / mse ranges on it."""
import sys

import numpy as np
import pytest

from eightbit.calibrate import HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver, range_to_qparams


def _growing_batches(rng):
    """Batches whose range grows by small, large and huge factors, with zeros and negatives."""
    return [rng.standard_normal(3000).astype(np.float32) * s for s in (0.01, 0.011, 1.0, 0.5, 37.0, 1e5, 2e5)]


def _binned_once(allx, width, bins):
    """All the data binned in one go with the final width: floor(x / w), offset by bins/2."""
    idx = np.floor(allx.astype(np.float64) / width).astype(np.int64) + bins // 2
    return np.bincount(idx, minlength=bins)


@pytest.mark.parametrize("bins", [2048, 64, 10])
def test_streamed_counts_equal_one_histogram_of_all_data(bins):
    rng = np.random.default_rng(11)
    batches = [np.zeros(50, np.float32)] + _growing_batches(rng)     # all-zero first batch too
    obs = HistogramObserver(bins=bins)
    for b in batches:
        obs.update(b)
    h = obs.histogram()
    allx = np.concatenate(batches)
    np.testing.assert_array_equal(h.counts, _binned_once(allx, h.width, bins))
    assert h.total == allx.size and h.zeros == int(np.count_nonzero(allx == 0))
    assert (h.min, h.max) == (float(allx.min()), float(allx.max()))
    # and np.histogram on the same edges (edge comparisons) agrees on this data
    np.testing.assert_array_equal(h.counts, np.histogram(allx.astype(np.float64), bins=h.edges)[0])


def test_growth_keeps_every_value_inside_and_width_power_of_two_multiple():
    rng = np.random.default_rng(2)
    obs = HistogramObserver(bins=256)
    obs.update(np.array([1.0, -0.5], np.float32))
    w0 = obs.histogram().width
    obs.update(rng.uniform(-900, 900, 100).astype(np.float32))
    w1 = obs.histogram().width
    ratio = w1 / w0
    assert ratio == 2.0 ** round(np.log2(ratio)) and ratio >= 900          # exact power of two
    assert obs.histogram().edges[-1] > 900 and obs.histogram().edges[0] < -900


def _deep_size(obj, seen=None) -> int:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set)):
        size += sum(_deep_size(v, seen) for v in obj)
    elif hasattr(obj, "__dict__"):
        size += _deep_size(vars(obj), seen)
    return size


@pytest.mark.parametrize("make", [MinMaxObserver, MovingAverageMinMaxObserver, HistogramObserver],
                         ids=["minmax", "moving_average", "histogram"])
def test_state_size_does_not_grow_with_batches(make):
    rng = np.random.default_rng(5)
    obs = make()
    obs.update(rng.standard_normal(100).astype(np.float32))
    one = _deep_size(obs)
    for i in range(1000):
        obs.update(rng.standard_normal(100).astype(np.float32) * (1 + i % 7))
    # Python ints of the counters may take a few more bytes; nothing proportional to 1000 batches
    assert _deep_size(obs) <= one + 64
    if make is HistogramObserver:
        assert obs.histogram().counts.size == 2048 and obs.num_values == 100_100


def test_percentile_within_one_bin_of_numpy_on_full_data():
    rng = np.random.default_rng(8)
    batches = [(rng.standard_normal(40_000) * s + 0.7).astype(np.float32) for s in (1.0, 1.3, 0.9, 2.0, 1.1)]
    allx = np.concatenate(batches)
    for p in (99.99, 99.9, 99.0, 90.0):
        obs = HistogramObserver(method="percentile", percentile=p)
        for b in batches:
            obs.update(b)
        w = obs.histogram().width
        lo, hi = obs.compute_range()
        ref_lo, ref_hi = np.percentile(allx, [100 - p, p])
        assert abs(lo - ref_lo) <= w and abs(hi - ref_hi) <= w, (p, lo, ref_lo, hi, ref_hi, w)


def test_percentile_symmetric_uses_abs_values_and_stays_within_data():
    rng = np.random.default_rng(9)
    x = np.concatenate([rng.standard_normal(100_000), rng.uniform(0, 6, 100)]).astype(np.float32)
    obs = HistogramObserver(method="percentile", percentile=99.9, symmetric=True)
    obs.update(x)
    a = np.percentile(np.abs(x), 99.9)
    lo, hi = obs.compute_range()
    assert lo == -hi and abs(hi - a) <= obs.histogram().width
    relu = HistogramObserver(method="percentile", percentile=99.9, symmetric=True)
    relu.update(np.maximum(x, 0))
    assert relu.compute_range()[0] == 0.0                  # a one-signed tensor keeps a one-signed range


def test_percentile_100_is_minmax_and_options_are_checked():
    x = np.array([-3.0, 0.5, 8.0], np.float32)
    obs = HistogramObserver(method="percentile", percentile=100)
    obs.update(x)
    assert obs.compute_range() == (-3.0, 8.0)
    for bad in (50, 100.5, -1):
        with pytest.raises(ValueError, match="percentile"):
            HistogramObserver(percentile=bad)
    for bad in (7, 0, 2049):
        with pytest.raises(ValueError, match="bins"):
            HistogramObserver(bins=bad)
    with pytest.raises(TypeError, match="bins"):
        HistogramObserver(bins=2048.0)
    with pytest.raises(ValueError, match="num_quantized_bins"):
        HistogramObserver(bins=64, method="entropy", num_quantized_bins=128)
    with pytest.raises(ValueError, match="method: unknown histogram range method 'kl'"):
        HistogramObserver(method="kl")


def _quant_mse(x, lo, hi):
    scale, zp = range_to_qparams(lo, hi, np.uint8)
    q = np.clip(np.rint(x / scale) + int(zp), 0, 255)
    return float(np.mean((x - (q - int(zp)) * scale) ** 2))


@pytest.mark.parametrize("dist, max_ratio", [("student_t4", 0.8), ("laplace", 0.85), ("laplace_outliers", 0.8),
                                              ("relu_lognormal", 0.95)])
def test_mse_beats_minmax_on_heavy_tails(dist, max_ratio):
    rng = np.random.default_rng(12)
    x = {"student_t4": lambda: rng.standard_t(4, 200_000),
         "laplace": lambda: rng.laplace(0.2, 1, 200_000),
         "laplace_outliers": lambda: np.concatenate([rng.laplace(0, 1, 200_000), [60.0, -45.0]]),
         "relu_lognormal": lambda: np.maximum(rng.lognormal(0, 1.2, 200_000) - 1.5, 0)}[dist]().astype(np.float32)
    obs = HistogramObserver(method="mse")
    for b in np.array_split(x, 7):
        obs.update(b)
    lo, hi = obs.compute_range()
    e_mse, e_minmax = _quant_mse(x, lo, hi), _quant_mse(x, min(x.min(), 0), x.max())
    assert e_mse < max_ratio * e_minmax, (lo, hi, e_mse, e_minmax)
    # and it is (near) the best clipping on a grid of ranges: within 5% of the grid's best error
    grid = [(lo * f, hi * g) for f in np.linspace(0.3, 1.6, 14) for g in np.linspace(0.3, 1.6, 14)]
    best = min(_quant_mse(x, max(a, x.min()), min(b, x.max())) for a, b in grid)
    assert e_mse <= 1.05 * best


@pytest.mark.parametrize("lo_hi", [(-1.0, 3.0), (0.0, 2.0)])
def test_mse_on_uniform_data_is_the_minmax_range(lo_hi):
    rng = np.random.default_rng(13)
    x = rng.uniform(*lo_hi, 300_000).astype(np.float32)
    obs = HistogramObserver(method="mse")
    obs.update(x)
    lo, hi = obs.compute_range()
    span = float(x.max() - min(x.min(), 0))
    # the optimum clips a sliver (about half a step per side); a step is span/255
    assert abs(lo - min(x.min(), 0)) <= span / 255 and abs(hi - x.max()) <= span / 255, (lo, hi)


def test_mse_treats_exact_zeros_as_free():
    """Half the values exactly 0 (post-ReLU): they are on every grid and must not pull the range in."""
    rng = np.random.default_rng(14)
    x = np.concatenate([np.zeros(200_000), rng.uniform(0, 1, 200_000)]).astype(np.float32)
    obs = HistogramObserver(method="mse")
    obs.update(x)
    lo, hi = obs.compute_range()
    assert lo == 0.0 and hi > 1 - 1 / 255
