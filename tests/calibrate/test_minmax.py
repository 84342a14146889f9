"""MinMaxObserver and MovingAverageMinMaxObserver against direct NumPy computations, plus the rules
every observer shares (empty batches, NaN/inf, dtypes, no data, 0 in the range)."""
import numpy as np
import pytest

from eightbit.calibrate import METHODS, MinMaxObserver, MovingAverageMinMaxObserver, make_observer


@pytest.fixture
def batches():
    rng = np.random.default_rng(7)
    return [(rng.standard_normal((8, 5)) * s + o).astype(np.float32)
            for s, o in [(1, 0), (3, 1), (0.5, -2), (2, 4), (1, 0)]]


def test_minmax_is_min_and_max_of_everything(batches):
    obs = MinMaxObserver()
    for b in batches:
        obs.update(b)
    allx = np.concatenate([b.ravel() for b in batches])
    assert obs.compute_range() == (min(float(allx.min()), 0.0), max(float(allx.max()), 0.0))
    assert obs.num_values == allx.size


def test_moving_average_follows_pytorch_recurrence(batches):
    c = 0.2
    obs = MovingAverageMinMaxObserver(averaging_constant=c)
    for b in batches:
        obs.update(b)
    lo, hi = float(batches[0].min()), float(batches[0].max())
    for b in batches[1:]:
        lo = lo + c * (float(b.min()) - lo)
        hi = hi + c * (float(b.max()) - hi)
    assert obs.min_val == pytest.approx(lo, rel=1e-12) and obs.max_val == pytest.approx(hi, rel=1e-12)
    assert obs.compute_range() == pytest.approx((min(lo, 0), max(hi, 0)), rel=1e-12)


def test_moving_average_first_batch_sets_range_and_empty_batches_are_skipped():
    obs = MovingAverageMinMaxObserver()
    obs.update(np.zeros((0, 4), np.float32))
    obs.update(np.array([-1.0, 2.0], np.float32))
    assert obs.compute_range() == (-1.0, 2.0)           # not averaged with an initial 0
    obs.update(np.array([], np.float32))
    assert obs.compute_range() == (-1.0, 2.0)
    obs.update(np.array([-3.0, 4.0], np.float32))
    assert obs.compute_range() == pytest.approx((-1.02, 2.02))


def test_reset_forgets_data():
    obs = MinMaxObserver(name="h")
    obs.update(np.array([5.0]))
    obs.reset()
    obs.update(np.array([1.0, 2.0]))
    assert obs.compute_range() == (0.0, 2.0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("data, expected", [
    (np.full((4, 4), 3.0), (0.0, 3.0)),                  # constant positive: [0, c]
    (np.full(7, -2.5), (-2.5, 0.0)),                     # constant negative: [c, 0]
    (np.zeros(10), (0.0, 0.0)),                          # all zeros: choose_qparams gives scale 1
])
def test_degenerate_constant_tensors(method, data, expected):
    obs = make_observer(method, name="const")
    obs.update(data.astype(np.float32))
    obs.update(data.astype(np.float32))
    lo, hi = obs.compute_range()
    assert (lo, hi) == expected
    assert not (lo == 0 and np.signbit(lo))              # never -0.0


@pytest.mark.parametrize("method", METHODS)
def test_range_always_contains_zero(method):
    rng = np.random.default_rng(3)
    for data in (rng.uniform(2, 5, 1000), rng.uniform(-5, -2, 1000), rng.standard_normal(1000)):
        obs = make_observer(method)
        obs.update(data.astype(np.float32))
        lo, hi = obs.compute_range()
        assert lo <= 0.0 <= hi and lo < hi
        assert data.min() - 1e-6 <= lo or lo == 0.0       # never wider than the data
        assert hi <= data.max() + 1e-6 or hi == 0.0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_batch_names_the_tensor(method, bad):
    obs = make_observer(method, name="conv1.out")
    x = np.ones(10, np.float32)
    x[3] = bad
    with pytest.raises(ValueError, match=r"'conv1\.out'.*1 non-finite"):
        obs.update(x)


@pytest.mark.parametrize("method", METHODS)
def test_no_data_is_an_error_naming_the_tensor(method):
    obs = make_observer(method, name="fc2")
    obs.update(np.zeros((3, 0), np.float32))
    with pytest.raises(ValueError, match="'fc2': no values observed"):
        obs.compute_range()


@pytest.mark.parametrize("bad", [np.array([True, False]), np.array([1 + 2j]), np.array(["a"]),
                                 np.array([object()])])
def test_non_numeric_batches_are_type_errors(bad):
    with pytest.raises(TypeError, match="'x'.*real numeric"):
        make_observer("minmax", name="x").update(bad)


def test_integer_and_float64_batches_are_accepted():
    obs = MinMaxObserver()
    obs.update(np.array([-3, 7], np.int32))
    obs.update(np.array([0.5], np.float64))
    assert obs.compute_range() == (-3.0, 7.0)


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5])
def test_averaging_constant_out_of_range(value):
    with pytest.raises(ValueError, match="averaging_constant"):
        MovingAverageMinMaxObserver(value)


def test_observer_name_must_be_str():
    with pytest.raises(TypeError, match="name"):
        MinMaxObserver(name=3)
