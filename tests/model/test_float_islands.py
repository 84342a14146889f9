"""Float islands in C++: transpose, pad, layer_norm, hardsigmoid, erf, softmax, an add with a
fused activation, bmm (the product of two tensors) and div (by a tensor), left float32 by eb.quantize, run as C++ float32 steps of the plan executor (no
call back into Python, neither when the executor is built nor when it runs), within float32
rounding of the float graph's NumPy semantics (graph/float_exec.py) on every ISA and batch size."""
import numpy as np
import pytest

import eightbit as eb
from eightbit.graph import Graph
from eightbit.model import quantized_model

from _records import Records


def _raise(*args, **kwargs):
    raise AssertionError("Python ran a float step")


def _quantize(monkeypatch, g, exclude=(), calib_shape=None):
    """eb.quantize of g, failing if any float step would call back into Python."""
    rng = np.random.default_rng(7)
    shape = calib_shape or (4,) + tuple(g.tensors[g.inputs[0]].shape[1:])
    calib = [rng.uniform(-2, 2, shape).astype(np.float32) for _ in range(2)]
    with monkeypatch.context() as m:
        m.setattr(quantized_model, "_host_function", _raise)
        return eb.quantize(g, calib, exclude=list(exclude), per_token=False)   # int8 linears around the islands


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


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("sa, sb", [
    ((5, 4), (4, 6)),                          # [N, T, d] @ [N, d, T']
    ((3, 17, 20), (3, 20, 33)),                # rows past the 4-row tiles, columns past a 16-wide panel
    ((1, 5, 4), (3, 4, 7)),                    # a broadcast over the heads
    ((3, 5, 4), (1, 4, 7)),                    # b broadcast over the heads
    ((2, 1, 3, 4), (1, 2, 4, 1)),              # rank 5, both broadcast, one column
])
def test_bmm(rng, isa, monkeypatch, batch, sa, sb):
    g = eb.Graph()
    a, b = g.input("a", (None,) + sa), g.input("b", (None,) + sb)
    g.output(g.bmm(a, b, name="mm"))
    calib = [{"a": rng.standard_normal((2,) + sa).astype(np.float32),
              "b": rng.standard_normal((2,) + sb).astype(np.float32)}]
    with monkeypatch.context() as m:
        m.setattr(quantized_model, "_host_function", _raise)
        qm = eb.quantize(g, calib)
    assert _float_ops(qm) == ["bmm"]  # no int8 form: a float32 step
    feeds = {"a": rng.standard_normal((batch,) + sa).astype(np.float32),
             "b": rng.standard_normal((batch,) + sb).astype(np.float32)}
    want = qm.reference_run(feeds)["mm"]
    with monkeypatch.context() as m:
        m.setattr(Graph, "run", _raise)
        y = qm.run(feeds)["mm"]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, np.matmul(feeds["a"].astype(np.float64), feeds["b"]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("sb", [(3, 4, 5), (3, 1, 5), (1, 4, 1)])
def test_div(rng, isa, monkeypatch, batch, sb):
    """x / z of two tensors: one float32 division, exact; x / 0 is IEEE's."""
    g = eb.Graph()
    x, z = g.input("x", (None, 3, 4, 5)), g.input("z", (None,) + sb)
    g.output(g.div(x, z, name="d"))
    calib = [{"x": rng.standard_normal((2, 3, 4, 5)).astype(np.float32),
              "z": rng.uniform(0.5, 2, (2,) + sb).astype(np.float32)}]
    with monkeypatch.context() as m:
        m.setattr(quantized_model, "_host_function", _raise)
        qm = eb.quantize(g, calib)
    assert _float_ops(qm) == ["div"]
    zs = rng.uniform(-2, 2, (batch,) + sb).astype(np.float32)
    zs.reshape(-1)[::7] = 0.0
    feeds = {"x": rng.standard_normal((batch, 3, 4, 5)).astype(np.float32), "z": zs}
    want = qm.reference_run(feeds)["d"]
    with monkeypatch.context() as m:
        m.setattr(Graph, "run", _raise)
        y = qm.run(feeds)["d"]
    np.testing.assert_array_equal(y, want)
    assert np.isinf(y).any()


def test_attention_core_after_int8_steps(rng, isa, monkeypatch):
    """int8 q / k / v projections, then transpose, bmm, scale, softmax, bmm, transpose and an
    int8 output projection: every float step in C++."""
    t, d, h = 6, 8, 2
    g = eb.Graph()
    x = g.input("x", (None, t, d))

    def heads(name, perm):
        p = g.linear(x, rng.normal(0, d ** -0.5, (d, d)).astype(np.float32), name=name)
        return g.transpose(g.reshape(p, (t, h, d // h)), perm)
    q, kt, v = heads("q", (0, 2, 1, 3)), heads("k", (0, 2, 3, 1)), heads("v", (0, 2, 1, 3))
    s = g.softmax(g.mul(g.bmm(q, kt, name="scores"), 1 / np.sqrt(d // h)), axis=3)
    a = g.reshape(g.transpose(g.bmm(s, v, name="mix"), (0, 2, 1, 3)), (t, d))
    g.output(g.linear(a, rng.normal(0, d ** -0.5, (d, d)).astype(np.float32), name="out"))
    qm = _quantize(monkeypatch, g)
    assert [s.op for s in qm.plan.steps].count("linear") == 4
    assert _float_ops(qm).count("bmm") == 2
    xs = rng.standard_normal((3, t, d)).astype(np.float32)
    # the float results are requantized: a float32 rounding difference may move one code at a tie
    want = qm.reference_run({"x": xs})[g.outputs[0]]
    with monkeypatch.context() as m:
        m.setattr(Graph, "run", _raise)
        y = qm(xs)
    step = qm.plan.tensors[[s for s in qm.plan.steps if s.op == "linear"][-1].output].scale
    assert np.abs(y - want).max() <= 2 * step + 1e-6
    assert np.mean(y == want) > 0.95


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
    ex = Records()
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
    (lambda ex, x, y: ex.add_float_binary([x], y, "a", "add", np.ones(4, np.float32), 1.0, 0.0), "clamp"),
    (lambda ex, x, y: ex.add_float_unary(x, y, "u", "erfc", 0.0, 0.0), "unknown"),
    (lambda ex, x, y: ex.add_float_binary([x, x], y, "d", "pow", None), "unknown float binary op"),
])
def test_bad_float_steps_raise(add, match):
    ex, x, y = _executor((3, 4), (3, 4))
    with pytest.raises(ValueError, match=match):
        add(ex, x, y)


@pytest.mark.parametrize("a, b, y, match", [
    ((4,), (4,), (4,), "same rank >= 3"),                 # rank 2: dimension 0 would be a row
    ((2, 3, 4), (4, 5), (2, 3, 5), "same rank >= 3"),
    ((2, 3, 4), (2, 5, 6), (2, 3, 6), "columns"),
    ((2, 3, 4), (3, 4, 5), (2, 3, 5), "do not broadcast"),
    ((2, 3, 4), (2, 4, 5), (2, 3, 6), "has shape"),
    ((1, 3, 4), (2, 4, 5), (1, 3, 5), "has shape"),       # the broadcast output is [2, 3, 5]
])
def test_bad_bmm_steps_raise(a, b, y, match):
    ex = Records()
    ia, ib = ex.add_tensor("a", "float32", [-1, *a]), ex.add_tensor("b", "float32", [-1, *b])
    iy = ex.add_tensor("y", "float32", [-1, *y])
    with pytest.raises(ValueError, match=match):
        ex.add_float_bmm(ia, ib, iy, "mm")


def test_bmm_step_on_quantized_tensors_raises():
    ex = Records()
    ia = ex.add_tensor("a", "uint8", [-1, 2, 3, 4], 0.1, 0)
    ib, iy = ex.add_tensor("b", "float32", [-1, 2, 4, 5]), ex.add_tensor("y", "float32", [-1, 2, 3, 5])
    with pytest.raises(ValueError, match="float32"):
        ex.add_float_bmm(ia, ib, iy, "mm")
    with pytest.raises(ValueError, match="expected 2 input"):
        ex.add_float_binary([ib], iy, "d", "div", None)


def test_bmm_step_runs_any_batch():
    ex = Records()
    ia, ib = ex.add_tensor("a", "float32", [-1, 3, 5, 4]), ex.add_tensor("b", "float32", [-1, 1, 4, 2])
    iy = ex.add_tensor("y", "float32", [-1, 3, 5, 2])
    ex.add_float_bmm(ia, ib, iy, "mm")
    ex.finalize([ia, ib], [iy])
    rng = np.random.default_rng(5)
    for n in (0, 1, 4):
        a, b = rng.standard_normal((n, 3, 5, 4)).astype(np.float32), rng.standard_normal((n, 1, 4, 2)).astype(np.float32)
        np.testing.assert_allclose(ex.run([a, b])[0], np.matmul(a, b), rtol=1e-5, atol=1e-6)


def test_bad_pad_on_an_empty_axis_raises():
    ex, x, y = _executor((0, 4), (2, 4))
    with pytest.raises(ValueError, match="too short"):
        ex.add_float_pad(x, y, "p", [0, 1, 0, 0, 1, 0], "replicate", 0.0)
    ex.add_float_pad(x, y, "p", [0, 1, 0, 0, 1, 0], "constant", 2.0)  # a constant fills an empty axis
    ex.finalize([x], [y])
    np.testing.assert_array_equal(ex.run([np.zeros((2, 0, 4), np.float32)])[0], np.full((2, 2, 4), 2.0, np.float32))
