"""Hostile geometry and values at the graph, plan and op layers: a clear ValueError, never a
signed overflow, a huge allocation or two executors that disagree.

* softmax over the batch axis (axis 0, or a negative axis wrapping onto it): refused by the graph
  and by Plan.validate;
* convolution pads / strides / dilations near 2^62: refused by the graph's shape rule, by
  eb.ops.conv_integer / qlinear_conv and by the C++ binding itself (ConvGeometry::check), with no
  int64 wrap-around and no MemoryError;
* an average pool window wholly in padding that does not count the padding (0 / 0), and clip
  bounds that are NaN: refused by the graph and the plan; what may run (windows partly in padding,
  ceil_mode, clip with one bound) gives the same bits in QuantizedModel.run as in reference_run, on
  every ISA, quantized or left float.
"""
from __future__ import annotations

import numpy as np
import pytest

import eightbit as eb
from eightbit import _core, ops, reference
from eightbit.model import Plan, QuantizedModel, Step, TensorSpec

U8, F32 = np.dtype(np.uint8), np.dtype(np.float32)
BIG = 2 ** 62


def _graph(shape=(None, 3, 6, 6)):
    g = eb.Graph()
    return g, g.input("x", shape)


# ---- softmax over the batch ---------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, -3, -4])
def test_graph_softmax_over_the_batch_axis_is_refused(axis):
    g, x = _graph((None, 4, 5))
    with pytest.raises(ValueError, match="batch" if axis != -4 else "axis must be >= -3"):
        g.softmax(x, axis)
    with pytest.raises(ValueError, match="batch"):
        g.add_node("softmax", [x], {"axis": 0})
    assert g.softmax(x, -1).shape == (None, 4, 5) and g.softmax(x, -2).shape == (None, 4, 5)


def _softmax_plan(axis):
    tensors = {"x": TensorSpec("x", F32, (None, 4, 10)), "y": TensorSpec("y", F32, (None, 4, 10))}
    return Plan(tensors, [Step("softmax", ("x",), "y", {"axis": axis})], ["x"], ["y"])


@pytest.mark.parametrize("axis", [0, -3, 3, "1", None])
def test_plan_softmax_step_over_the_batch_axis_is_refused(axis):
    with pytest.raises(ValueError, match="batch"):
        _softmax_plan(axis).validate()


@pytest.mark.parametrize("axis", [1, 2, -1, -2])
def test_plan_softmax_step_on_other_axes_runs_as_the_reference(axis, isa):
    qm = QuantizedModel(_softmax_plan(axis).validate())
    x = np.random.default_rng(0).standard_normal((3, 4, 10)).astype(np.float32)
    np.testing.assert_allclose(qm.run({"x": x})["y"], qm.reference_run({"x": x})["y"], rtol=1e-6, atol=1e-7)


# ---- convolution geometry near 2^62 -------------------------------------------------------------

X4 = np.zeros((1, 1, 4, 4), np.uint8)
W3 = np.ones((1, 1, 3, 3), np.int8)


@pytest.mark.parametrize("attrs", [
    dict(pads=[BIG] * 4),                      # in + pads wraps past 2^63
    dict(pads=[BIG - 1, 0, BIG, 0]),
    dict(pads=[2 ** 40, 0, 2 ** 40, 0]),       # used to try a 16 TiB output
    dict(pads=[2 ** 30] * 4),                  # fits int64, but 2^62 output values
    dict(strides=[BIG, 1]),
    dict(dilations=[BIG, BIG]),                # dilation * (k - 1) wraps
])
def test_conv_ops_refuse_huge_geometry_with_a_value_error(attrs):
    with pytest.raises(ValueError, match="pads|strides|dilations|kernel|output"):
        ops.conv_integer(X4, W3, **attrs)
    with pytest.raises(ValueError, match="pads|strides|dilations|kernel|output"):
        ops.qlinear_conv(X4, np.float32(0.1), np.uint8(0), W3, np.float32(0.1), np.int8(0), np.float32(0.2),
                         np.uint8(0), **attrs)


@pytest.mark.parametrize("pads", [(BIG, BIG, BIG, BIG), (BIG, 0, BIG, 0), (2 ** 31 - 1,) * 4, (-1, 0, 0, 0)])
def test_conv_binding_checks_geometry_without_overflow(pads):
    packed = ops.pack_conv(W3)
    with pytest.raises(ValueError, match="pads|output"):
        _core.conv_integer_nhwc(np.zeros((1, 4, 4, 1), np.uint8), None, packed, (1, 1), (1, 1), pads)


def test_conv_ops_still_take_ordinary_geometry():
    y = ops.conv_integer(np.ones((1, 1, 4, 4), np.uint8), W3, pads=[1, 1, 1, 1], strides=[2, 2])
    np.testing.assert_array_equal(y, reference.conv_integer(np.ones((1, 1, 4, 4), np.uint8), W3, pads=[1, 1, 1, 1],
                                                            strides=[2, 2]))


@pytest.mark.parametrize("kw, match", [(dict(padding=BIG), "pads"), (dict(padding=2 ** 20), "values per sample"),
                                       (dict(stride=BIG), "stride"), (dict(dilation=BIG), "dilation")])
def test_graph_conv_refuses_huge_geometry(kw, match):
    g, x = _graph()
    with pytest.raises(ValueError, match=match):
        g.conv2d(x, np.ones((3, 3, 3, 3), np.float32), **kw)


@pytest.mark.parametrize("attrs, match", [
    ({"pads": (BIG,) * 4}, "pads"), ({"groups": 0}, "groups"), ({"stride": (0, 1)}, "stride"),
    ({"dilation": (1, 2 ** 21)}, "dilation")])
def test_graph_add_node_conv_refuses_hostile_attrs(attrs, match):
    g, x = _graph()
    base = {"stride": (1, 1), "pads": (0, 0, 0, 0), "dilation": (1, 1), "groups": 1}
    with pytest.raises(ValueError, match=match):
        g.add_node("conv2d", [x], {**base, **attrs}, {"weight": np.ones((3, 3, 1, 1), np.float32)})


def test_plan_conv_with_huge_pads_is_refused():
    rng = np.random.default_rng(0)
    tensors = {"x": TensorSpec("x", F32, (None, 2, 4, 4)), "q": TensorSpec("q", U8, (None, 4, 4, 2), 0.1, 128),
               "h": TensorSpec("h", U8, (None, 4, 4, 2), 0.1, 128), "y": TensorSpec("y", F32, (None, 2, 4, 4))}
    consts = dict(w=rng.integers(-5, 5, (2, 2, 1, 1)).astype(np.int8), w_scale=np.full(2, 0.01, np.float32),
                  bias=np.zeros(2, np.int32))
    conv = Step("conv", ("q",), "h", dict(strides=(1, 1), pads=(BIG, 0, BIG, 0), dilations=(1, 1), group=1), consts)
    plan = Plan(tensors, [Step("quantize", ("x",), "q"), conv, Step("dequantize", ("h",), "y")], ["x"], ["y"])
    with pytest.raises(ValueError, match="pads"):
        plan.validate()


# ---- average pool windows wholly in padding, NaN clip bounds --------------------------------------

POOL = {"kernel_size": (2, 2), "stride": (1, 1), "ceil_mode": False, "count_include_pad": False}


@pytest.mark.parametrize("pads, stride", [((2, 0, 0, 0), 1), ((0, 0, 0, 2), 1), ((0, 0, 2, 0), 2), ((3, 3, 0, 0), 2)])
def test_graph_refuses_an_average_window_wholly_in_padding(pads, stride):
    g, x = _graph((None, 2, 4, 4))
    with pytest.raises(ValueError, match="wholly in the padding"):
        g.add_node("avg_pool2d", [x], {**POOL, "pads": pads, "stride": (stride, stride)})
    # counting the padding, the window has a mean (0), and max pooling has no divisor
    g.add_node("avg_pool2d", [x], {**POOL, "pads": pads, "stride": (stride, stride), "count_include_pad": True})


def _pool_plan(pads, count_include_pad):
    tensors = {"x": TensorSpec("x", F32, (None, 2, 4, 4)), "q": TensorSpec("q", U8, (None, 4, 4, 2), 0.1, 128),
               "p": TensorSpec("p", U8, (None, 5, 3, 2), 0.1, 128), "y": TensorSpec("y", F32, (None, 2, 5, 3))}
    pool = Step("avg_pool", ("q",), "p", dict(kernel=(2, 2), strides=(1, 1), pads=pads, ceil_mode=0,
                                              count_include_pad=count_include_pad))
    return Plan(tensors, [Step("quantize", ("x",), "q"), pool, Step("dequantize", ("p",), "y")], ["x"], ["y"])


def test_plan_refuses_an_average_window_wholly_in_padding():
    with pytest.raises(ValueError, match="wholly in the padding"):
        _pool_plan((2, 0, 0, 0), 0).validate()
    _pool_plan((2, 0, 0, 0), 1).validate()
    _pool_plan((1, 0, 1, 0), 0).validate()


def test_clip_with_nan_bounds_is_refused_by_graph_and_plan():
    g, x = _graph()
    for attrs in ({"min": float("nan"), "max": None}, {"min": None, "max": float("nan")}, {"min": 2.0, "max": 1.0}):
        with pytest.raises(ValueError, match="NaN|min must be <= max"):
            g.add_node("clip", [x], attrs)
    with pytest.raises(ValueError, match="finite"):
        g.clip(x, min=float("nan"))
    # a float step carrying a NaN clip, and a conv step with a NaN fused clip
    tensors = {"x": TensorSpec("x", F32, (None, 3)), "y": TensorSpec("y", F32, (None, 3))}
    step = Step("float", ("x",), "y", {"op": "clip", "attrs": {"min": float("nan"), "max": 1.0}})
    with pytest.raises(ValueError, match="NaN"):
        Plan(tensors, [step], ["x"], ["y"]).validate()


@pytest.mark.parametrize("activation", [("clip", float("nan"), 1.0), ("clip", -1.0, float("nan")),
                                        ("clip", -float("inf"), 1.0)])
def test_conv_with_a_nan_clip_activation_is_refused_by_ops_reference_and_plan(activation):
    args = (np.ones((1, 1, 4, 4), np.uint8), np.float32(0.1), np.uint8(3), W3, np.float32(0.1), np.int8(0),
            np.float32(0.2), np.uint8(7))
    with pytest.raises(ValueError):
        reference.qlinear_conv(*args, activation=activation)
    with pytest.raises(ValueError, match="clip bounds"):
        ops.qlinear_conv(*args, activation=activation)
    tensors = {"x": TensorSpec("x", F32, (None, 1, 4, 4)), "q": TensorSpec("q", U8, (None, 4, 4, 1), 0.1, 3),
               "h": TensorSpec("h", U8, (None, 2, 2, 1), 0.2, 7), "y": TensorSpec("y", F32, (None, 1, 2, 2))}
    consts = dict(w=W3, w_scale=np.full(1, 0.1, np.float32), bias=np.zeros(1, np.int32))
    conv = Step("conv", ("q",), "h", dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1,
                                          activation=activation), consts)
    plan = Plan(tensors, [Step("quantize", ("x",), "q"), conv, Step("dequantize", ("h",), "y")], ["x"], ["y"])
    with pytest.raises(ValueError, match="activation"):
        plan.validate()


def _pool_clip_graph(rng):
    """Average pools whose windows reach into the padding (partly), ceil_mode, and clips with one
    or two bounds: what may run must give the same bits in C++ and in the reference."""
    g, x = _graph((None, 3, 7, 7))
    h = g.conv2d(x, rng.standard_normal((4, 3, 3, 3)).astype(np.float32), padding=1, name="conv")
    h = g.add_node("avg_pool2d", [h], {"kernel_size": (3, 3), "stride": (2, 2), "pads": (2, 1, 2, 2),
                                       "ceil_mode": True, "count_include_pad": False}, name="pool_nopad")
    h = g.clip(h, min=-0.5, name="clip_lo")
    h = g.add_node("avg_pool2d", [h], {"kernel_size": (2, 2), "stride": (1, 1), "pads": (1, 1, 1, 1),
                                       "ceil_mode": False, "count_include_pad": True}, name="pool_pad")
    h = g.clip(h, min=-0.25, max=0.75, name="clip_both")
    g.output(g.conv2d(h, rng.standard_normal((2, 4, 1, 1)).astype(np.float32), name="head"))
    return g


@pytest.mark.parametrize("exclude", [(), ("pool_nopad", "clip_lo", "pool_pad", "clip_both")],
                         ids=["quantized", "float_islands"])
def test_pools_and_clips_agree_between_run_and_reference_run(isa, exclude):
    rng = np.random.default_rng(5)
    g = _pool_clip_graph(rng)
    calib = [rng.standard_normal((8, 3, 7, 7)).astype(np.float32)]
    qm = eb.quantize(g, calib, exclude=exclude)
    feeds = {"x": rng.standard_normal((4, 3, 7, 7)).astype(np.float32)}
    got, want = qm.run(feeds), qm.reference_run(feeds)
    for k in want:
        if exclude:        # float islands: C++ float32 against NumPy float32, a few ulp apart at most
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(got[k], want[k])


def test_a_float_pool_with_an_empty_window_is_refused_by_the_executor_too(isa, monkeypatch):
    """Defense in depth: were such a window to reach the C++ float pool (graph and plan refuse it),
    the executor refuses it as well, rather than averaging nothing."""
    from eightbit.graph import shapes

    def lenient(node, s):            # the rule without its empty-window check
        (x,) = s
        return (x[0], x[1]) + tuple(shapes._windows(node, x, node.attrs["kernel_size"], node.attrs["ceil_mode"]))
    monkeypatch.setitem(shapes._RULES, "avg_pool2d", lenient)
    rng = np.random.default_rng(9)
    g, x = _graph((None, 2, 4, 4))
    h = g.conv2d(x, rng.standard_normal((2, 2, 1, 1)).astype(np.float32), name="conv")
    h = g.add_node("avg_pool2d", [h], {**POOL, "pads": (2, 2, 0, 0)}, name="pool")   # first row/column: empty
    g.output(g.conv2d(h, rng.standard_normal((2, 2, 1, 1)).astype(np.float32), name="head"))
    with pytest.raises(ValueError, match="pooling window out of range"):
        eb.quantize(g, [rng.standard_normal((8, 2, 4, 4)).astype(np.float32)], exclude=("pool",))
