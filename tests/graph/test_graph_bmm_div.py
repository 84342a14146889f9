"""bmm (torch.matmul of two tensors) and div (a / b of two tensors): results against NumPy, shape
inference with a free batch and broadcasting, export to ONNX, and the errors of bad arguments."""
import numpy as np
import pytest

import eightbit as eb


def _run2(shape_a, shape_b, build, a, b):
    g = eb.Graph()
    ta, tb = g.input("a", shape_a), g.input("b", shape_b)
    y = build(g, ta, tb)
    g.output(y)
    return y, g, g.run({"a": a, "b": b})


@pytest.mark.parametrize("sa, sb", [
    ((3, 5, 4), (3, 4, 6)),                    # single-head attention: [N, T, d] @ [N, d, T]
    ((2, 3, 5, 4), (2, 3, 4, 7)),              # multi-head: [N, H, T, d] @ [N, H, d, T]
    ((2, 1, 5, 4), (2, 3, 4, 7)),              # a broadcast over the heads
    ((2, 3, 5, 4), (2, 1, 4, 7)),              # b broadcast over the heads
    ((2, 3, 1, 5, 4), (2, 1, 2, 4, 1)),        # rank 5, both broadcast, P = 1
    ((1, 1, 4), (1, 4, 1)),                    # 1 x 1 results
])
def test_bmm_matches_numpy(rng, sa, sb):
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    y, g, out = _run2((None,) + sa[1:], (None,) + sb[1:], lambda g, x, z: g.bmm(x, z, name="mm"), a, b)
    want = np.matmul(a.astype(np.float64), b)
    assert y.shape == (None,) + want.shape[1:]
    assert out.dtype == np.float32 and out.shape == want.shape
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    assert [n.op for n in g.nodes] == ["bmm"] and g.nodes[0].consts == {}


def test_bmm_takes_tensor_names_and_keeps_matmul_for_constants(rng):
    g = eb.Graph()
    x = g.input("x", (None, 2, 3, 4))
    kt = g.transpose(x, (0, 1, 3, 2))
    s = g.bmm("x", kt)                         # a name works as a Tensor does
    assert s.shape == (None, 2, 3, 3) and g.nodes[-1].name == "bmm_0"
    m = g.matmul(x, np.ones((4, 5)))           # a constant right operand stays matmul
    assert g.nodes[-1].op == "matmul" and m.shape == (None, 2, 3, 5)


@pytest.mark.parametrize("sa, sb", [
    ((4, 5), (4, 5)),
    ((3, 4, 5), (3, 1, 5)),
    ((3, 4, 5), (3, 4, 1)),
    ((3, 1, 5), (3, 4, 1)),                    # both broadcast
])
def test_div_matches_numpy(rng, sa, sb):
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.uniform(0.5, 2.0, sb).astype(np.float32) * rng.choice([-1, 1], sb).astype(np.float32)
    y, g, out = _run2((None,) + sa[1:], (None,) + sb[1:], lambda g, x, z: g.div(x, z, name="d"), a, b)
    np.testing.assert_array_equal(out, a / b)  # one float32 division: exact
    assert y.shape == (None,) + np.broadcast_shapes(sa, sb)[1:]


def test_div_by_zero_is_ieee(recwarn):
    a = np.array([[1.0, -1.0, 0.0, 2.0]], np.float32)
    b = np.array([[0.0, 0.0, 0.0, 4.0]], np.float32)
    _, _, out = _run2((None, 4), (None, 4), lambda g, x, z: g.div(x, z), a, b)
    np.testing.assert_array_equal(out[0, :2], [np.inf, -np.inf])
    assert np.isnan(out[0, 2]) and out[0, 3] == 0.5
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("sa, sb, match", [
    ((None, 3, 4), (None, 5, 6), r"mm \(bmm\): a \[\?, 3, 4\] has K=4 columns, but b \[\?, 5, 6\] has 5 rows"),
    ((None, 4), (None, 4), r"mm \(bmm\): a and b must have the same rank >= 3"),
    ((None, 2, 3, 4), (None, 4, 5), r"mm \(bmm\): a and b must have the same rank >= 3"),
    ((None, 2, 3, 4), (None, 3, 4, 5), r"mm \(bmm\): .*leading dimensions.*do not broadcast"),
])
def test_bmm_shape_errors(sa, sb, match):
    g = eb.Graph()
    a, b = g.input("a", sa), g.input("b", sb)
    with pytest.raises(ValueError, match=match):
        g.bmm(a, b, name="mm")


def test_bmm_and_div_argument_errors():
    g = eb.Graph()
    x = g.input("x", (None, 3, 4))
    with pytest.raises(TypeError, match=r"bmm_0 \(bmm\): b must be a Tensor .*g.matmul"):
        g.bmm(x, np.ones((4, 4)))
    with pytest.raises(TypeError, match=r"matmul_0 \(matmul\): b must be a constant \[K, N\] array; .*g.bmm"):
        g.matmul(x, x)
    with pytest.raises(TypeError, match=r"div_0 \(div\): b must be a Tensor .*g.mul\(a, 1 / c\)"):
        g.div(x, 2.0)
    with pytest.raises(ValueError, match=r"div_0 \(div\): a and b must have the same rank"):
        g.div(x, g.input("z", (None, 4)))
    with pytest.raises(ValueError, match=r"div_0 \(div\): shapes .* do not broadcast"):
        g.div(x, g.input("w", (None, 3, 5)))
    with pytest.raises(ValueError, match=r"expected 2 input tensor\(s\), got 1"):
        g.add_node("bmm", [x], {})
    with pytest.raises(ValueError, match=r"unexpected constant 'b'"):
        g.add_node("div", [x, x], {}, {"b": np.ones(4, np.float32)})


def test_export_to_onnx_runs_in_ort(rng):
    ort = pytest.importorskip("onnxruntime")
    g = eb.Graph()
    q, k = g.input("q", (None, 2, 5, 4)), g.input("k", (None, 2, 5, 4))
    s = g.bmm(q, g.transpose(k, (0, 1, 3, 2)))
    g.output(g.div(s, g.add(g.relu(s), 1.0)))
    model = eb.to_onnx(g)
    assert [n.op_type for n in model.graph.node].count("MatMul") == 1
    assert "Div" in [n.op_type for n in model.graph.node]
    feeds = {"q": rng.standard_normal((3, 2, 5, 4)).astype(np.float32),
             "k": rng.standard_normal((3, 2, 5, 4)).astype(np.float32)}
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(got, g.run(feeds), rtol=1e-5, atol=1e-6)
