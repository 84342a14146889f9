"""A transformer encoder layer with hand-written multi-head attention (MatMul of two computed
tensors, Div by sqrt(d), Softmax, Transpose / Reshape with the batch), as torch exports it: the
onnx.helper model of models.py and the PyTorch export of tests/data/onnx. Imported and compared
with ONNX Runtime fp32, quantized (>= 30 dB SQNR), run by the C++ executor without a call back
into Python, and exported back to ONNX for ONNX Runtime."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import eightbit as eb  # noqa: E402
from eightbit.graph import Graph  # noqa: E402
from eightbit.model import quantized_model  # noqa: E402
from models import EXPORTED_INPUTS, MODELS  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "onnx"


def _session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _sqnr_db(want, got):
    want = want.astype(np.float64)
    noise = float(np.sum((want - got) ** 2))
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(want ** 2) / noise))


def _raise(*args, **kwargs):
    raise AssertionError("Python ran a float step")


@pytest.fixture(scope="module", params=["built", "torch"])
def layer(request):
    """(ONNX model, inputs(rng, batch), imported graph, quantized model built without host steps)."""
    if request.param == "built":
        model, inputs = MODELS["attention_block"]()
    else:
        model, inputs = onnx.load(DATA / "attention_block.onnx"), EXPORTED_INPUTS["attention_block"]
    graph = eb.from_onnx(model)
    rng = np.random.default_rng(12)
    calibration = [inputs(rng, 32) for _ in range(8)]
    mp = pytest.MonkeyPatch()
    mp.setattr(quantized_model, "_host_function", _raise)
    try:
        qm = eb.quantize(graph, calibration, per_token=False)   # the int8 linears around float attention
        float_qm = eb.quantize(graph, calibration, exclude=[n.name for n in graph.nodes])
    finally:
        mp.undo()
    return model, inputs, graph, qm, float_qm


def test_imports_as_attention(layer):
    model, inputs, graph, _, _ = layer
    ops = [n.op for n in graph.nodes]
    assert ops.count("bmm") == 2 and ops.count("transpose") == 4 and ops.count("softmax") == 1
    assert ops.count("linear") == 6 and ops.count("layer_norm") == 2 and "gelu" in ops
    feeds = inputs(np.random.default_rng(11), 8)
    want = _session(model).run(None, feeds)[0]
    got = graph.run(feeds)
    assert np.max(np.abs(got.astype(np.float64) - want)) <= 1e-4 * np.max(np.abs(want))


def test_quantized_within_30_db_of_ort(layer):
    model, inputs, graph, qm, _ = layer
    floats = sorted({s.attrs["op"] for s in qm.plan.steps if s.op == "float"})
    assert floats == ["bmm", "layer_norm", "mul", "transpose"]   # attention and the norms stay float32
    assert [s.op for s in qm.plan.steps].count("linear") == 6
    feeds = inputs(np.random.default_rng(13), 64)
    want = _session(model).run(None, feeds)[0]
    assert _sqnr_db(want, qm.run(feeds)["y"]) >= 30.0


def test_all_float_plan_runs_in_cpp_as_the_reference(layer):
    """Every node excluded: linear, bmm, softmax, transpose, reshape, layer norm, gelu as C++
    float32 steps, within float rounding of the NumPy reference and of ONNX Runtime."""
    model, inputs, graph, _, float_qm = layer
    assert {s.op for s in float_qm.plan.steps} <= {"float", "softmax"}
    feeds = inputs(np.random.default_rng(14), 5)
    want = float_qm.reference_run(feeds)["y"]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(Graph, "run", _raise)
        got = float_qm.run(feeds)["y"]
    scale = np.max(np.abs(want))
    assert np.max(np.abs(got - want)) <= 1e-5 * scale
    assert np.max(np.abs(got - _session(model).run(None, feeds)[0])) <= 1e-4 * scale


def test_quantized_executor_matches_the_reference(layer):
    """Integer steps are bit-exact; a float32 rounding difference in a float island may move the
    next quantization by one code at a tie, so nearly every output is equal."""
    _, inputs, _, qm, _ = layer
    feeds = inputs(np.random.default_rng(15), 4)
    want = qm.reference_run(feeds)["y"]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(Graph, "run", _raise)
        got = qm.run(feeds)["y"]
    assert np.mean(got == want) >= 0.99
    assert _sqnr_db(want, got) >= 50.0


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_exported_quantized_model_runs_in_ort(layer, fmt):
    _, inputs, _, qm, _ = layer
    exported = eb.to_onnx(qm, format=fmt)
    assert sum(n.op_type == "MatMul" for n in exported.graph.node) >= 2
    feeds = inputs(np.random.default_rng(16), 16)
    got = _session(exported).run(None, feeds)[0]
    want = qm.run(feeds)["y"]
    assert got.shape == want.shape
    assert _sqnr_db(want, got) >= 40.0
