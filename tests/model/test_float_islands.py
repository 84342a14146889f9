"""Float islands in C++: transpose, pad, layer_norm, hardsigmoid, erf, softmax and an add with a
fused activation, left float32 by eb.quantize, run as C++ float32 steps of the plan executor (no
call back into Python, neither when the executor is built nor when it runs), within float32
rounding of the float graph's NumPy semantics (graph/float_exec.py) on every ISA and batch size."""
import numpy as np
import pytest

import eightbit as eb
from eightbit import _core
from eightbit.graph import Graph
from eightbit.model import native


def _raise(*args, **kwargs):
    raise AssertionError("Python ran a float step")


def _quantize(monkeypatch, g, exclude=(), calib_shape=None):
    """eb.quantize of g, failing if any float step would call back into Python."""
    rng = np.random.default_rng(7)
    shape = calib_shape or (4,) + tuple(g.tensors[g.inputs[0]].shape[1:])
    calib = [rng.uniform(-2, 2, shape).astype(np.float32) for _ in range(2)]
    with monkeypatch.context() as m:
        m.setattr(native, "_host_fn", _raise)
        return eb.quantize(g, calib, exclude=list(exclude))


def _check(monkeypatch, qm, g, x, rtol=1e-5, atol=1e-5):
    want = qm.reference_run({g.inputs[0]: x})[g.outputs[0]]
    with monkeypatch.context() as m:
        m.setattr(Graph, "run", _raise)
        y = qm(x)
    assert y.shape == want.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=rtol, atol=atol)
    return y


def _float_ops(qm) -> list:
    return [s.attrs["op"] for s in qm.plan.steps if s.op == "float"]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("shape, perm", [
    ((4, 5), (0, 2, 1)),
    ((2, 3, 4), (0, 2, 3, 1)),
    ((2, 3, 4), (0, 3, 1, 2)),
    ((2, 3, 4), (0, 3, 2, 1)),
    ((2, 3, 4), (0, 1, 3, 2)),
    ((2, 3, 4), (0, 1, 2, 3)),
])
def test_transpose(rng, isa, monkeypatch, batch, shape, perm):
    g = eb.Graph()
    x = g.input("x", (None,) + shape)
    g.output(g.transpose(x, perm, name="t"))
    qm = _quantize(monkeypatch, g)
    assert _float_ops(qm) == ["transpose"]
    xs = rng.standard_normal((batch,) + shape).astype(np.float32)
    y = _check(monkeypatch, qm, g, xs, rtol=0, atol=0)  # a copy: exact
    np.testing.assert_array_equal(y, np.transpose(xs, perm))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("shape, pad", [
    ((9,), (3, 1)),
    ((3, 7), (4, 0, 2, 1)),
    ((3, 5, 6), (1, 2, 0, 3, 2, 1)),
    ((3, 5, 6), (0, 5, 4, 0)),
])
def test_pad(rng, isa, monkeypatch, batch, mode, shape, pad):
    g = eb.Graph()
    x = g.input("x", (None,) + shape)
    g.output(g.pad(x, pad, mode=mode, value=0.75, name="p"))
    qm = _quantize(monkeypatch, g)
    assert _float_ops(qm) == ["pad"]
    xs = rng.standard_normal((batch,) + shape).astype(np.float32)
    _check(monkeypatch, qm, g, xs, rtol=0, atol=0)  # copies and the fill: exact


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("affine", ["none", "weight", "both"])
@pytest.mark.parametrize("shape, normalized", [((8,), (8,)), ((4, 6, 5), (5,)), ((4, 6, 5), (6, 5)),
                                               ((7, 16), (16,))])
def test_layer_norm(rng, isa, monkeypatch, batch, affine, shape, normalized):
    g = eb.Graph()
    x = g.input("x", (None,) + shape)
    weight = (rng.standard_normal(normalized) + 1).astype(np.float32) if affine != "none" else None
    bias = rng.standard_normal(normalized).astype(np.float32) if affine == "both" else None
    g.output(g.layer_norm(x, normalized, weight, bias, eps=1e-3, name="ln"))
    qm = _quantize(monkeypatch, g)
    assert _float_ops(qm) == ["layer_norm"]
    # an offset and a spread that float32 sums would lose accuracy on
    xs = (rng.standard_normal((batch,) + shape) * 3 + 50).astype(np.float32)
    y = _check(monkeypatch, qm, g, xs)
    np.testing.assert_allclose(y, g.run(xs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_layer_norm_after_int8_steps(rng, isa, monkeypatch, batch):
    """conv (int8) -> transpose -> pad -> layer norm: the float steps read a dequantized tensor."""
    g = eb.Graph()
    x = g.input("x", (None, 3, 6, 6))
    h = g.conv2d(x, rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32), padding=1, name="conv")
    h = g.pad(g.transpose(h, (0, 2, 3, 1), name="t"), (0, 0, 1, 2), mode="replicate", name="p")
    g.output(g.layer_norm(h, (8,), rng.standard_normal(8).astype(np.float32), name="ln"))
    qm = _quantize(monkeypatch, g)
    assert "conv" in [s.op for s in qm.plan.steps]
    assert _float_ops(qm) == ["transpose", "pad", "layer_norm"]
    _check(monkeypatch, qm, g, rng.uniform(-2, 2, (batch, 3, 6, 6)).astype(np.float32))


@pytest.mark.parametrize("batch", [1, 3])
def test_excluded_hardsigmoid_erf_softmax(rng, isa, monkeypatch, batch):
    g = eb.Graph()
    x = g.input("x", (None, 3, 4, 5))
    outs = [g.hardsigmoid(x, name="hs0"), g.hardsigmoid(x, 0.2, 0.5, name="hs1"), g.erf(x, name="erf"),
            g.softmax(x, axis=1, name="sm1"), g.softmax(x, axis=3, name="sm3")]
    g.output(g.concat(outs, axis=1, name="cat"))
    names = ["hs0", "hs1", "erf", "sm1", "sm3"]
    qm = _quantize(monkeypatch, g, exclude=names + ["cat"])
    assert sorted(_float_ops(qm)) == sorted(["hardsigmoid"] * 2 + ["erf", "softmax", "softmax", "concat"])
    xs = rng.uniform(-5, 5, (batch, 3, 4, 5)).astype(np.float32)  # past hardsigmoid's corners, erf near +-1
    y = _check(monkeypatch, qm, g, xs)
    np.testing.assert_allclose(y, g.run(xs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("activation", ["relu", "relu6", "clip"])
@pytest.mark.parametrize("form", ["constant", "constant_row", "tensor", "tensor_first"])
def test_add_with_fused_activation(rng, isa, monkeypatch, batch, activation, form):
    """add + relu / clip, fused into the add, that stays float32: a constant operand (no int8 step
    takes it) or an excluded two-tensor add, broadcasting either way."""
    g = eb.Graph()
    x = g.input("x", (None, 3, 5, 6))
    if form == "constant":
        s = g.add(x, rng.standard_normal((3, 1, 1)).astype(np.float32), name="add")
    elif form == "constant_row":
        s = g.add(x, rng.standard_normal((6,)).astype(np.float32), name="add")
    else:
        p = g.global_avg_pool2d(x, name="gap")  # [N, 3, 1, 1], int8, dequantized for the add
        s = g.add(x, p, name="add") if form == "tensor" else g.add(p, x, name="add")
    act = {"relu": g.relu, "relu6": g.relu6, "clip": lambda t, name: g.clip(t, -0.3, 0.4, name=name)}[activation]
    g.output(act(s, name="act"))
    qm = _quantize(monkeypatch, g, exclude=["add"])
    steps = [s for s in qm.plan.steps if s.op == "float"]
    assert [s.attrs["op"] for s in steps] == ["add"]
    assert steps[0].attrs["attrs"]["activation"] is not None  # the activation was fused into the add
    xs = rng.uniform(-1, 1, (batch, 3, 5, 6)).astype(np.float32)
    _check(monkeypatch, qm, g, xs, rtol=0, atol=0)  # one float32 add and a clamp: exact


def test_add_relu_keeps_infinity_and_nan(monkeypatch):
    """The fused ReLU is NumPy's maximum(y, 0): +inf stays +inf and NaN stays NaN."""
    g = eb.Graph()
    x = g.input("x", (None, 4))
    g.output(g.relu(g.add(x, np.ones(4, np.float32), name="add"), name="r"))
    qm = _quantize(monkeypatch, g, exclude=["add"])
    xs = np.array([[np.inf, -np.inf, np.nan, -3.0]], np.float32)
    with monkeypatch.context() as m:
        m.setattr(Graph, "run", _raise)
        y = qm(xs)
    np.testing.assert_array_equal(y, qm.reference_run({"x": xs})[g.outputs[0]])


# ------------------------------------------------------------------ bad steps raise, never crash

def _executor(in_shape, out_shape):
    ex = _core.PlanExecutor()
    return ex, ex.add_tensor("x", "float32", [-1] + list(in_shape)), ex.add_tensor("y", "float32", [-1] + list(out_shape))


@pytest.mark.parametrize("add, match", [
    (lambda ex, x, y: ex.add_float_transpose(x, y, "t", [1, 0, 2]), "perm"),
    (lambda ex, x, y: ex.add_float_transpose(x, y, "t", [0, 1, 1]), "permutation"),
    (lambda ex, x, y: ex.add_float_transpose(x, y, "t", [0, 1]), "perm"),
    (lambda ex, x, y: ex.add_float_transpose(x, y, "t", [0, 2, 5]), "permutation"),
    (lambda ex, x, y: ex.add_float_transpose(x, y, "t", [0, 2, 1]), "has shape"),
    (lambda ex, x, y: ex.add_float_pad(x, y, "p", [0, 0, 0, 0, 1], "constant", 0.0), "pads"),
    (lambda ex, x, y: ex.add_float_pad(x, y, "p", [0, 0, 0, 0, 0, 0], "edge", 0.0), "mode"),
    (lambda ex, x, y: ex.add_float_pad(x, y, "p", [1, 0, 0, 0, 0, 0], "constant", 0.0), "batch"),
    (lambda ex, x, y: ex.add_float_pad(x, y, "p", [0, 0, -1, 0, 0, 1], "constant", 0.0), "pads must be"),
    (lambda ex, x, y: ex.add_float_pad(x, y, "p", [0, 3, 0, 0, 0, 0], "reflect", 0.0), "too short"),
    (lambda ex, x, y: ex.add_float_pad(x, y, "p", [0, 0, 0, 0, 4, 0], "circular", 0.0), "too short"),
    (lambda ex, x, y: ex.add_float_pad(x, y, "p", [0, 1, 0, 0, 0, 0], "constant", 0.0), "has shape"),
    (lambda ex, x, y: ex.add_float_layer_norm(x, y, "ln", 3, 1e-5, None, None), "trailing"),
    (lambda ex, x, y: ex.add_float_layer_norm(x, y, "ln", 0, 1e-5, None, None), "trailing"),
    (lambda ex, x, y: ex.add_float_layer_norm(x, y, "ln", 1, 1e-5, np.ones(3, np.float32), None), "weight"),
    (lambda ex, x, y: ex.add_float_layer_norm(x, y, "ln", 2, 1e-5, None, np.ones(5, np.float32)), "bias"),
    (lambda ex, x, y: ex.add_float_layer_norm(x, y, "ln", 1, 0.0, None, None), "eps"),
    (lambda ex, x, y: ex.add_float_binary([x], y, "a", False, np.ones(4, np.float32), 1.0, 0.0), "clamp"),
    (lambda ex, x, y: ex.add_float_unary(x, y, "u", "erfc", 0.0, 0.0), "unknown"),
])
def test_bad_float_steps_raise(add, match):
    ex, x, y = _executor((3, 4), (3, 4))
    with pytest.raises(ValueError, match=match):
        add(ex, x, y)


def test_bad_pad_on_an_empty_axis_raises():
    ex, x, y = _executor((0, 4), (2, 4))
    with pytest.raises(ValueError, match="too short"):
        ex.add_float_pad(x, y, "p", [0, 1, 0, 0, 1, 0], "replicate", 0.0)
    ex.add_float_pad(x, y, "p", [0, 1, 0, 0, 1, 0], "constant", 2.0)  # a constant fills an empty axis
    ex.finalize([x], [y])
    np.testing.assert_array_equal(ex.run([np.zeros((2, 0, 4), np.float32)])[0], np.full((2, 2, 4), 2.0, np.float32))
