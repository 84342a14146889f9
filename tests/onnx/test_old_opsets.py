"""Older ONNX files: opsets 7-10 are converted to opset 11 on import (onnx.version_converter), and
the ops those model-zoo graphs use that later exporters do not write (Sum, LRN) are imported.

The nine "light" model-zoo graphs shipped in the onnx wheel (opset 9; weights are ConstantOfShape
nodes, so the files are small) each import and compute what ONNX Runtime computes on the
original, unconverted file.
"""
from __future__ import annotations

import glob
import os
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import eightbit as eb
from eightbit.onnx import OnnxImportError, graph_to_onnx

ort = pytest.importorskip("onnxruntime")

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
LIGHT = sorted(os.path.basename(p)[len("light_"):-len(".onnx")]
               for p in glob.glob(os.path.join(LIGHT_DIR, "light_*.onnx")))
EXPECTED = {"bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
            "vgg19", "zfnet512"}
# vgg19's and zfnet512's fully connected weights are ConstantOfShape outputs of 392 / 288 MiB
# (25088 x 4096, 18432 x 4096 float32), more than the default 256 MiB one folded constant may
# have: imported knowingly with larger limits
NEEDS_BIG_FOLDS = ("vgg19", "zfnet512")
BIG_FOLDS = {"max_folded_bytes": 1 << 30, "max_total_folded_bytes": 2 << 30}


def _ort(model, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model, so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _input_shape(model):
    inits = {t.name for t in model.graph.initializer}
    (vi,) = [i for i in model.graph.input if i.name not in inits]
    return vi.name, [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
                     for d in vi.type.tensor_type.shape.dim]


def test_the_nine_light_models_are_there():
    assert set(LIGHT) >= EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_light_model_matches_onnxruntime(name):
    path = os.path.join(LIGHT_DIR, f"light_{name}.onnx")
    original = onnx.load(path)
    assert original.opset_import[0].version < 11               # converted on import, not refused
    t0 = time.perf_counter()
    g = eb.from_onnx(path, **(BIG_FOLDS if name in NEEDS_BIG_FOLDS else {}))
    t_import = time.perf_counter() - t0
    in_name, shape = _input_shape(original)
    shape[0] = 1
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    # The weights are constants (every ConstantOfShape fills 0.02), so every class gets the same
    # logit and the softmax output is uniform: the logits (the Softmax's input) are compared too.
    # (densenet121 has no Softmax: its last tensor is compared twice)
    softmax_in = [n.input[0] for n in original.graph.node if n.op_type == "Softmax"]
    logits = softmax_in[-1] if softmax_in else original.graph.output[0].name
    probe = onnx.ModelProto()
    probe.CopyFrom(original)
    if softmax_in:
        probe.graph.output.append(helper.make_tensor_value_info(logits, TensorProto.FLOAT, None))
    t0 = time.perf_counter()
    every = g.run(x, return_all=True)
    t_run = time.perf_counter() - t0
    outs = _ort(probe, {in_name: x})
    want_y, want_logits = outs[0], outs[-1]
    report = []
    for got, want in ((every[g.outputs[0]], want_y), (every[logits], want_logits)):
        assert got.shape == want.shape
        err = float(np.max(np.abs(got.astype(np.float64) - want)))
        scale = float(np.max(np.abs(want)))
        report.append(f"max |err| {err:.3g} (max |y| {scale:.3g})")
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(scale, 1.0))
    print(f"{name}: import {t_import:.2f} s, run {t_run:.2f} s, output {report[0]}, logits {report[1]}")


def test_zfnet512_needs_the_larger_folding_limit():
    with pytest.raises(OnnxImportError, match="288.0 MiB.*max_folded_bytes"):
        eb.from_onnx(os.path.join(LIGHT_DIR, "light_zfnet512.onnx"))


# ---- conversion of small opset 7-10 models ---------------------------------------------------------

def _model(nodes, inputs, outputs, opset, inits=()):
    """outputs: [(name, shape)]"""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                              initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


@pytest.mark.parametrize("opset", [7, 8, 9, 10])
def test_old_opsets_are_converted(opset, rng):
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="r"),
             helper.make_node("Softmax", ["r"], ["y"], name="s", axis=1)]
    model = _model(nodes, [("x", [2, 5])], [("y", [2, 5])], opset)
    x = rng.standard_normal((2, 5)).astype(np.float32)
    g = eb.from_onnx(model)
    np.testing.assert_allclose(g.run(x), _ort(model, {"x": x})[0], rtol=1e-5, atol=1e-6)
    assert model.opset_import[0].version == opset                 # the caller's model is not modified


def test_opsets_below_7_are_refused():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [("x", [2, 5])], [("y", [2, 5])], 11)
    model.opset_import[0].version = 6
    with pytest.raises(OnnxImportError, match="opset 6 is not supported"):
        eb.from_onnx(model)


def test_a_failed_conversion_is_an_import_error(monkeypatch):
    from onnx import version_converter

    def fail(model, target):
        raise RuntimeError("No Adapter From Version $9 for Foo\nmore lines")

    monkeypatch.setattr(version_converter, "convert_version", fail)
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [("x", [2, 5])], [("y", [2, 5])], 9)
    with pytest.raises(OnnxImportError, match=r"opset 9 is converted to opset 11 on import, but "
                                              r"onnx.version_converter failed: No Adapter From Version \$9 for Foo$"):
        eb.from_onnx(model)


# ---- Sum and LRN ------------------------------------------------------------------------------------

def test_sum_three_inputs_with_broadcasting(rng):
    nodes = [helper.make_node("Relu", ["b"], ["rb"], name="rb"),
             helper.make_node("Sum", ["a", "rb", "c", "k"], ["y"], name="sum")]
    k = helper.make_tensor("k", TensorProto.FLOAT, [4], rng.standard_normal(4).astype(np.float32).tolist())
    model = _model(nodes, [("a", [2, 3, 4]), ("b", [2, 1, 4]), ("c", [2, 3, 1])], [("y", [2, 3, 4])], 13, [k])
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in (("a", (2, 3, 4)), ("b", (2, 1, 4)),
                                                                      ("c", (2, 3, 1)))}
    g = eb.from_onnx(model)
    assert [n.op for n in g.nodes if n.op == "add"] == ["add"] * 3
    assert g.nodes[-1].name == "sum"
    np.testing.assert_allclose(g.run(feeds), _ort(model, feeds)[0], rtol=1e-6, atol=1e-6)


def test_sum_of_one_input_and_leading_constants(rng):
    k = helper.make_tensor("k", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    one = _model([helper.make_node("Sum", ["x"], ["y"], name="s")], [("x", [2, 3])], [("y", [2, 3])], 13)
    two = _model([helper.make_node("Sum", ["k", "k", "x"], ["y"], name="s")], [("x", [2, 3])], [("y", [2, 3])], 13, [k])
    x = rng.standard_normal((2, 3)).astype(np.float32)
    for model in (one, two):
        np.testing.assert_allclose(eb.from_onnx(model).run(x), _ort(model, {"x": x})[0], rtol=1e-6, atol=1e-6)


def _lrn_spec(x, size, alpha, beta, bias):
    """The ONNX LRN definition, channel by channel in float64."""
    x64, c_n = x.astype(np.float64), x.shape[1]
    sq = np.zeros_like(x64)
    for c in range(c_n):
        lo, hi = max(0, c - (size - 1) // 2), min(c_n - 1, c + int(np.ceil((size - 1) / 2)))
        sq[:, c] = np.sum(x64[:, lo:hi + 1] ** 2, axis=1)
    return (x64 / (bias + alpha / size * sq) ** beta).astype(np.float32)


@pytest.mark.parametrize("size,shape", [(5, (2, 7, 4, 3)), (4, (1, 6, 3, 3)), (1, (2, 3, 5)), (9, (1, 4, 2, 2))])
def test_lrn_matches_onnxruntime(rng, size, shape):
    node = helper.make_node("LRN", ["x"], ["y"], name="lrn", size=size, alpha=0.3, beta=0.6, bias=1.5)
    model = _model([node], [("x", list(shape))], [("y", list(shape))], 13)
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    g = eb.from_onnx(model)
    assert [n.op for n in g.nodes] == ["lrn"]
    if size % 2 and len(shape) == 4:
        want = _ort(model, {"x": x})[0]
    else:          # ONNX Runtime's LRN takes odd sizes and 4-D inputs only (and onnx.reference's
        want = _lrn_spec(x, size, 0.3, 0.6, 1.5)   # loops over the batch): the spec's formula
    np.testing.assert_allclose(g.run(x), want, rtol=1e-5, atol=1e-6)


def test_lrn_builder_checks_and_export(rng):
    g = eb.Graph("g")
    x = g.input("x", (None, 4, 3, 3))
    with pytest.raises(ValueError, match="size"):
        g.lrn(x, 0)
    g.output(g.lrn(x, 3, alpha=1e-3, beta=0.75, bias=2.0))
    model = graph_to_onnx(g)
    xv = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(g.run(xv), _ort(model, {"x": xv})[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="rank >= 3"):
        g2 = eb.Graph("g2")
        g2.lrn(g2.input("x", (None, 4)), 3)


def test_quantized_model_keeps_lrn_float(rng):
    g = eb.Graph("g")
    x = g.input("x", (None, 3, 8, 8))
    w = (rng.standard_normal((6, 3, 3, 3)) * 0.3).astype(np.float32)
    h = g.relu(g.conv2d(x, w, rng.standard_normal(6).astype(np.float32) * 0.1, padding=1))
    h = g.lrn(h, 5, alpha=1e-2, beta=0.75, bias=1.0, name="lrn")
    w2 = (rng.standard_normal((4, 6, 3, 3)) * 0.3).astype(np.float32)
    g.output(g.conv2d(h, w2, padding=1))
    calib = [rng.standard_normal((4, 3, 8, 8)).astype(np.float32) for _ in range(4)]
    qm = eb.quantize(g, calib)
    lrn_steps = [s for s in qm.plan.steps if s.op == "float" and s.attrs.get("op") == "lrn"]
    assert len(lrn_steps) == 1 and "lrn" not in qm.float_nodes       # no int8 form: float32, not listed
    xv = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    want, got = g.run(xv), qm(xv)
    sqnr = 10 * np.log10(np.sum(want.astype(np.float64) ** 2) / np.sum((got - want).astype(np.float64) ** 2))
    assert sqnr > 25, sqnr
