"""The C++ float_reduce step (csrc/runtime/steps/float_reduce.cpp) from raw records: the same bits
as the graph's float executor (float64 accumulation in order, one rounding), and its create-time
checks of the record against the tensors."""
import numpy as np
import pytest

from eightbit import _core
from eightbit.graph import Graph
from _records import Records

SHAPE = (3, 5, 4, 6)                # [N, ...] with N = 3 at run time


def _reduce(mode, axes, keepdims, out_shape):
    r = Records()
    r.add_tensor("x", "float32", (-1,) + SHAPE[1:])
    r.add_tensor("y", "float32", out_shape)
    r.step("float_reduce", ["x"], "y", mode=mode, axes=list(axes), keepdims=keepdims)
    return r


@pytest.mark.parametrize("mode", ["sum", "mean", "l2", "max"])
@pytest.mark.parametrize("axes, keepdims", [((1,), False), ((2, 3), True), ((1, 2, 3), False), ((3,), True)])
def test_float_reduce_matches_the_float_executor_bit_for_bit(mode, axes, keepdims):
    x = (np.random.default_rng(0).standard_normal(SHAPE) * 100).astype(np.float32)
    g = Graph("r")
    t = g.input("x", (None,) + SHAPE[1:])
    g.output(g.reduce(t, mode, axes, keepdims))
    want = g.run(x)
    r = _reduce(mode, axes, keepdims, (-1,) + want.shape[1:])
    np.testing.assert_array_equal(r.run([x])[0], want)


@pytest.mark.parametrize("kw, out_shape, message", [
    (dict(mode="median", axes=[1], keepdims=False), (-1, 4, 6), "unknown reduce mode 'median'"),
    (dict(mode="sum", axes=[0], keepdims=False), (-1, 4, 6), "other than the batch"),
    (dict(mode="sum", axes=[4], keepdims=False), (-1, 4, 6), "other than the batch"),
    (dict(mode="sum", axes=[], keepdims=False), (-1, 4, 6), "at least one axis"),
    (dict(mode="sum", axes=[1, 3], keepdims=False), (-1, 4), "contiguous"),
    (dict(mode="sum", axes=[2, 1], keepdims=False), (-1, 6), "contiguous"),
    (dict(mode="sum", axes=[1], keepdims=False), (-1, 5, 4, 6), "expected \\(N, 4, 6\\)"),
    (dict(mode="sum", axes=[1], keepdims=True), (-1, 4, 6), "expected \\(N, 1, 4, 6\\)"),
])
def test_float_reduce_records_are_checked(kw, out_shape, message):
    with pytest.raises(_core.ModelFileError, match=message):
        _reduce(kw["mode"], kw["axes"], kw["keepdims"], out_shape)


def test_float_reduce_max_propagates_nan():
    x = np.zeros((2,) + SHAPE[1:], np.float32)
    x[0, 3, 1, 2] = np.nan
    y = _reduce("max", (1,), False, (-1, 4, 6)).run([x])[0]
    assert np.isnan(y[0, 1, 2]) and np.isnan(y).sum() == 1
