"""Observer.merge / Calibrator.merge (eightbit.distributed's exact merge): one observer per run of
batches, merged in order, equals one observer that streamed every batch."""
import numpy as np
import pytest

from eightbit.calibrate import Calibrator, HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver


def _batches(rng):
    """Ranges that grow by small, large and huge factors; zeros; a negative-only batch."""
    scales = (0.01, 0.011, 1.0, 0.5, 37.0, 1e5, 0.2, 2e5)
    out = [rng.standard_normal(2000).astype(np.float32) * s for s in scales]
    out[3][:100] = 0.0
    out.insert(2, -np.abs(rng.standard_normal(500)).astype(np.float32))
    return out


def _streamed(make, batches):
    obs = make()
    for b in batches:
        obs.update(b)
    return obs


def _merged(make, batches, cuts):
    """Observers over batches[a:b] for consecutive cuts, each after the first started on the first
    batch's grid (as the workers do), merged in order."""
    pieces = np.split(np.arange(len(batches)), cuts)
    first = _streamed(make, batches[:1])
    grid = first.half_range if isinstance(first, HistogramObserver) else None
    out = make()
    for piece in pieces:
        obs = make()
        if grid is not None and piece[0] != 0:
            obs.start_grid(grid)
        for i in piece:
            obs.update(batches[i])
        out.merge(obs)
    return out


@pytest.mark.parametrize("cuts", [[1], [4], [2, 5, 8], [8]])
@pytest.mark.parametrize("bins", [2048, 10])
def test_histogram_merge_equals_streaming(rng, cuts, bins):
    batches = _batches(rng)
    make = lambda: HistogramObserver(bins=bins, method="entropy", num_quantized_bins=min(128, bins))
    seq, par = _streamed(make, batches), _merged(make, batches, cuts)
    hs, hp = seq.histogram(), par.histogram()
    np.testing.assert_array_equal(hp.counts, hs.counts)
    assert (hp.width, hp.min, hp.max, hp.zeros, par.num_values) == (hs.width, hs.min, hs.max, hs.zeros, seq.num_values)
    assert par.percentile_range(99.9) == seq.percentile_range(99.9)
    assert par.entropy_range() == seq.entropy_range()
    assert par.mse_range() == seq.mse_range()
    # and the counts are those of all the data binned once with the final width (independent check)
    allx = np.concatenate(batches).astype(np.float64)
    idx = np.floor(allx / hp.width).astype(np.int64) + bins // 2
    np.testing.assert_array_equal(hp.counts, np.bincount(idx, minlength=bins))


def test_histogram_merge_with_all_zero_sides(rng):
    x = rng.standard_normal(100).astype(np.float32)
    zeros = np.zeros(30, np.float32)
    for order in ([zeros, x], [x, zeros]):
        a, b = HistogramObserver(bins=64), HistogramObserver(bins=64)
        a.update(order[0])
        b.update(order[1])
        a.merge(b)
        s = _streamed(lambda: HistogramObserver(bins=64), order)
        np.testing.assert_array_equal(a.histogram().counts, s.histogram().counts)
        assert a.half_range == s.half_range and a.histogram().zeros == 30


def test_histogram_merge_refuses_other_grids_and_bins():
    a, b = HistogramObserver(bins=64), HistogramObserver(bins=64)
    a.update(np.array([1.0, -0.5], np.float32))
    b.update(np.array([3.0], np.float32))                    # T ratio 3: not a power of two
    with pytest.raises(ValueError, match="not a power of two apart"):
        a.merge(b)
    with pytest.raises(ValueError, match="64 and 32 bins"):
        a.merge(HistogramObserver(bins=32))
    with pytest.raises(TypeError, match="cannot merge a MinMaxObserver"):
        a.merge(MinMaxObserver())
    with pytest.raises(ValueError, match="after non-zero values"):
        a.start_grid(4.0)
    with pytest.raises(ValueError, match="positive and finite"):
        HistogramObserver().start_grid(0.0)


def test_minmax_merge(rng):
    batches = _batches(rng)
    seq, par = _streamed(MinMaxObserver, batches), _merged(MinMaxObserver, batches, [3, 6])
    assert par.compute_range() == seq.compute_range() and par.num_values == seq.num_values


def test_moving_average_replays_batch_ranges_and_refuses_merge(rng):
    batches = _batches(rng)
    seq = _streamed(lambda: MovingAverageMinMaxObserver(0.1), batches)
    replay = MovingAverageMinMaxObserver(0.1)
    for b in batches:
        replay.update_range(float(b.min()), float(b.max()), b.size)
    assert replay.compute_range() == seq.compute_range() and replay.num_values == seq.num_values
    other = _streamed(lambda: MovingAverageMinMaxObserver(0.1), batches[:2])
    with pytest.raises(TypeError, match="depends on the order"):
        replay.merge(other)
    with pytest.raises(ValueError, match="averaging constants differ"):
        replay.merge(MovingAverageMinMaxObserver(0.2))
    with pytest.raises(ValueError, match="lo <= hi"):
        replay.update_range(1.0, 0.0, 3)
    empty = MovingAverageMinMaxObserver(0.1)
    empty.merge(other)                                       # into an empty one: a copy, exact
    assert empty.compute_range() == other.compute_range()


def test_calibrator_merge_keeps_first_observed_order(rng):
    a, seq = Calibrator("percentile"), Calibrator("percentile")
    x, y = rng.standard_normal(50), rng.standard_normal(50) * 2
    for name, v in (("p", x), ("q", x)):
        a.observe(name, v)
    for name, v in (("p", x), ("q", x), ("r", y), ("p", y)):
        seq.observe(name, v)
    b2 = Calibrator("percentile")                           # the later batches; "p" on a's grid
    b2.observe("r", y)
    b2.observer("p").start_grid(a.observers["p"].half_range)
    b2.observe("p", y)
    a.merge(b2)
    assert list(a.ranges()) == ["p", "q", "r"]
    assert a.ranges() == seq.ranges()
    with pytest.raises(ValueError, match="cannot merge a Calibrator"):
        a.merge(Calibrator("minmax"))
