"""IR ops added for the ONNX importer (transpose, pad, hardsigmoid, layer_norm): builders, shape
errors, float execution against ONNX Runtime, and quantization (they run as float steps)."""
import numpy as np
import pytest
from _graph_oracle import assert_close, onnx_node

import eightbit as eb


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def one_op(x, build):
    g = eb.Graph()
    t = g.input("x", (None,) + x.shape[1:])
    g.output(build(g, t))
    return g, g.run(x)


@pytest.mark.parametrize("perm", [(0, 2, 3, 1), (0, 3, 1, 2), (0, 1, 3, 2), (0, -1, 1, 2)])
def test_transpose_matches_onnx(rng, perm):
    x = randn(rng, 2, 3, 4, 5)
    g, y = one_op(x, lambda g, t: g.transpose(t, perm))
    onnx_perm = [p % 4 for p in perm]
    assert_close(y, onnx_node("Transpose", {"x": x}, perm=onnx_perm))
    assert g.tensors[g.outputs[0]].shape == (None,) + tuple(x.shape[p] for p in onnx_perm[1:])
    assert y.flags.c_contiguous


@pytest.mark.parametrize("pad, mode, value", [
    ((1, 2), "constant", 0.0), ((1, 2, 3, 0), "constant", -1.5), ((2, 1, 1, 2), "reflect", 0.0),
    ((2, 3, 1, 0), "replicate", 0.0), ((1, 0, 0, 2, 1, 0), "constant", 2.0)])
def test_pad_matches_onnx(rng, pad, mode, value):
    x = randn(rng, 2, 3, 4, 5)
    g, y = one_op(x, lambda g, t: g.pad(t, pad, mode=mode, value=value))
    onnx_pads = [0] * 8
    for k in range(len(pad) // 2):                  # torch order: last axis first
        onnx_pads[3 - k], onnx_pads[7 - k] = pad[2 * k], pad[2 * k + 1]
    onnx_mode = {"replicate": "edge"}.get(mode, mode)
    ref = onnx_node("Pad", {"x": x}, {"pads": np.array(onnx_pads, np.int64), "v": np.array(value, np.float32)},
                    inputs=["x", "pads", "v"], mode=onnx_mode)
    assert_close(y, ref)


def test_pad_circular(rng):
    x = randn(rng, 1, 2, 3)
    _, y = one_op(x, lambda g, t: g.pad(t, (1, 2), mode="circular"))
    np.testing.assert_array_equal(y, np.pad(x, [(0, 0), (0, 0), (1, 2)], mode="wrap"))


@pytest.mark.parametrize("call, word", [
    (lambda g, t: g.pad(t, (1,)), "even number"),
    (lambda g, t: g.pad(t, (1, 1, 1, 1, 1, 1, 1, 1)), "only 3 besides the batch"),
    (lambda g, t: g.pad(t, (-1, 0)), ">= 0"),
    (lambda g, t: g.pad(t, (5, 0), mode="reflect"), "longer than the padding"),
    (lambda g, t: g.pad(t, (1, 1), mode="wrap"), "mode must be one of"),
    (lambda g, t: g.transpose(t, (1, 0, 2, 3)), "batch"),
    (lambda g, t: g.transpose(t, (0, 1, 1, 2)), "not a permutation"),
    (lambda g, t: g.transpose(t, (0, 1)), "not a permutation"),
    (lambda g, t: g.hardsigmoid(t, alpha=float("nan")), "finite"),
    (lambda g, t: g.layer_norm(t, (4,)), "normalized_shape"),
])
def test_new_ops_errors(call, word):
    g = eb.Graph()
    t = g.input("x", (None, 2, 3, 5))
    with pytest.raises((ValueError, TypeError), match=word):
        call(g, t)


@pytest.mark.parametrize("alpha, beta", [(0.2, 0.5), (1 / 6, 0.5), (0.5, -0.25)])
def test_hardsigmoid_matches_onnx(rng, alpha, beta):
    x = randn(rng, 3, 17, scale=5)
    _, y = one_op(x, lambda g, t: g.hardsigmoid(t, alpha, beta))
    assert_close(y, onnx_node("HardSigmoid", {"x": x}, alpha=alpha, beta=beta))


def test_hardsigmoid_default_is_torch(rng):
    x = randn(rng, 2, 50, scale=5)
    _, y = one_op(x, lambda g, t: g.hardsigmoid(t))
    np.testing.assert_allclose(y, np.clip(x + 3, 0, 6) / 6, atol=1e-6)


@pytest.mark.parametrize("shape, normalized", [((2, 5, 8), (8,)), ((2, 3, 4, 5), (4, 5)), ((3, 6), (6,))])
def test_layer_norm_matches_onnx(rng, shape, normalized):
    x = randn(rng, *shape, scale=3) + 2
    w, b = randn(rng, *normalized), randn(rng, *normalized)
    _, y = one_op(x, lambda g, t: g.layer_norm(t, normalized, w, b, eps=1e-5))
    ref = onnx_node("LayerNormalization", {"x": x}, {"w": w, "b": b}, axis=len(shape) - len(normalized),
                    epsilon=1e-5)
    assert_close(y, ref)
    _, y0 = one_op(x, lambda g, t: g.layer_norm(t, normalized))
    ref0 = onnx_node("LayerNormalization", {"x": x}, {"w": np.ones(normalized, np.float32)},
                     axis=len(shape) - len(normalized))
    assert_close(y0, ref0)


def test_quantize_graph_with_new_ops_runs_them_as_float_steps(rng, tmp_path):
    w = randn(rng, 8, 3, 3, 3, scale=0.3)
    g = eb.Graph()
    x = g.input("x", (None, 3, 8, 8))
    h = g.conv2d(g.pad(x, (1, 1, 1, 1), mode="reflect"), w)
    h = g.mul(h, g.hardsigmoid(h))
    h = g.transpose(h, (0, 2, 3, 1))                      # NHWC: [N, 8, 8, 8]
    h = g.layer_norm(h, (8,), randn(rng, 8) + 1, randn(rng, 8))
    g.output(g.linear(h, randn(rng, 4, 8)))
    calib = [randn(rng, 4, 3, 8, 8) for _ in range(4)]
    qm = eb.quantize(g, calib)
    steps = {s.attrs["op"] for s in qm.plan.steps if s.op == "float"}
    assert {"pad", "transpose", "layer_norm"} <= steps
    assert [s.attrs["function"] for s in qm.plan.steps if s.op == "lut"] == ["hardsigmoid"]
    x = randn(rng, 2, 3, 8, 8)
    ref = g.run(x)
    y = qm(x)
    sqnr = 10 * np.log10((ref ** 2).sum() / ((y - ref) ** 2).sum())
    assert sqnr > 25, sqnr
    qm.save(tmp_path / "m.eb")
    np.testing.assert_array_equal(eb.load(tmp_path / "m.eb")(x), y)
