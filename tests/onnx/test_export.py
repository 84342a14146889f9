"""eb.onnx.to_onnx: ONNX Runtime runs the exported quantized model with eightbit's results.

Exact (np.array_equal with qm.run) wherever the computation is integer arithmetic plus ORT's
requantization: every step of the qoperator format at any optimization level, and of the qdq
format once ORT has fused its DQ -> op -> Q groups (default ORT_ENABLE_ALL, uint8 activations).
Where ORT computes in float instead (qdq with optimizations off, qdq int8 convolutions, which
ORT does not fuse on x86; lut functions evaluated by ORT's float math; softmax; float islands)
the tests assert the agreement measured on this ORT version.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import eightbit as eb
import eightbit.onnx  # noqa: F401  (eb.onnx)
from eightbit.data import cnn_graph, digits, mlp_graph

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
ort.set_default_logger_severity(3)

FORMATS = ("qdq", "qoperator")


def _session(model, optimize: bool = True):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _export(qm, fmt, **kw):
    m = eb.onnx.to_onnx(qm, format=fmt, **kw)
    onnx.checker.check_model(m, full_check=True)
    return m


def _ort_run(model, feeds, optimize=True) -> dict:
    sess = _session(model, optimize)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _out_scale(qm, name) -> float:
    """The scale of the quantized tensor a dequantized plan output comes from."""
    step = next(s for s in qm.plan.steps if s.output == name)
    return qm.plan.tensors[step.inputs[0]].scale


def _steps_apart(qm, got: dict, want: dict) -> float:
    """Largest difference of the outputs in quantization steps of each output tensor."""
    return max(float(np.abs(got[n] - want[n]).max()) / _out_scale(qm, n) for n in want)


def _fused(model) -> bool:
    return True


# ---- models ------------------------------------------------------------------------------------

def _w(rng, *shape, fan_in=None):
    fan_in = fan_in or int(np.prod(shape[1:]))
    return (rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _b(rng, n):
    return (rng.normal(size=n) * 0.1).astype(np.float32)


def _cnn(rng, c=8):
    """conv+relu, residual add with fused relu, max / avg pool, concat, conv with relu6, mul,
    global average pool, flatten, linear+relu, linear: only steps with integer arithmetic."""
    g = eb.Graph("cnn")
    x = g.input("x", (None, 3, 12, 12))
    h1 = g.relu(g.conv2d(x, _w(rng, c, 3, 3, 3), _b(rng, c), padding=1))
    h2 = g.conv2d(h1, _w(rng, c, c, 3, 3), None, padding=1)
    a = g.relu(g.add(h1, h2))
    p = g.max_pool2d(a, 2)
    q = g.avg_pool2d(a, 3, stride=2, padding=1, count_include_pad=False)
    cat = g.concat([p, q], axis=1)
    gate = g.relu6(g.conv2d(cat, _w(rng, 2 * c, 2 * c, 1, 1), _b(rng, 2 * c)))
    m = g.mul(cat, gate)
    f = g.flatten(g.global_avg_pool2d(m))
    h = g.relu(g.linear(f, _w(rng, 16, 2 * c), _b(rng, 16)))
    g.output(g.linear(h, _w(rng, 10, 16), _b(rng, 10), name="logits"))
    return g


def _images(rng, n, shape=(3, 12, 12)):
    return rng.normal(size=(n,) + shape).astype(np.float32)


def _calib(rng, shape=(3, 12, 12), batches=4, n=8):
    return [_images(rng, n, shape) for _ in range(batches)]


@pytest.fixture(scope="module")
def cnn_models():
    rng = np.random.default_rng(7)
    g = _cnn(rng)
    calib = _calib(rng)
    models = {(dt, pc): eb.quantize(g, calib, activation_dtype=dt, per_channel=pc)
              for dt in ("uint8", "int8") for pc in (True, False)}
    return models, _images(rng, 64)


@pytest.fixture(scope="module")
def digits_models():
    d = digits()
    calib = [d.calib_images[i:i + 32] for i in range(0, len(d.calib_images), 32)]
    out = {}
    for name, build in (("cnn", cnn_graph), ("mlp", mlp_graph)):
        for dt in ("uint8", "int8"):
            out[(name, dt)] = eb.quantize(build(d.weights), calib, activation_dtype=dt)
    return out, d.test_images


# ---- exact steps -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_cnn_exact_with_ort_optimizations(cnn_models, fmt, dtype, per_channel):
    models, x = cnn_models
    qm = models[(dtype, per_channel)]
    want = qm.run({"x": x})
    got = _ort_run(_export(qm, fmt), {"x": x})
    if fmt == "qdq" and dtype == "int8":
        # ORT on x86 does not fuse int8-activation DQ -> Conv -> Q into QLinearConv: its convs run
        # in float, and the rare rounding-boundary flip moves an output by a step
        assert _steps_apart(qm, got, want) <= 1.0 + 1e-6
    else:
        for name in want:
            assert np.array_equal(got[name], want[name]), name


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qoperator_exact_without_ort_optimizations(cnn_models, dtype):
    models, x = cnn_models
    qm = models[(dtype, True)]
    got = _ort_run(_export(qm, "qoperator"), {"x": x}, optimize=False)
    assert np.array_equal(got["logits"], qm.run({"x": x})["logits"])


def test_qdq_without_ort_optimizations_is_float_between_dq_and_q(cnn_models):
    """Unfused, ORT computes conv / add / pools in float: within a step of eightbit."""
    models, x = cnn_models
    qm = models[("uint8", True)]
    got = _ort_run(_export(qm, "qdq"), {"x": x}, optimize=False)
    assert _steps_apart(qm, got, qm.run({"x": x})) <= 1.0 + 1e-6


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("model", ["cnn", "mlp"])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_digits_models(digits_models, fmt, model, dtype):
    models, x = digits_models
    qm = models[(model, dtype)]
    want = qm.run({"x": x})["logits"]
    for optimize in (True, False):
        got = _ort_run(_export(qm, fmt), {"x": x}, optimize)["logits"]
        exact = fmt == "qoperator" or (optimize and (dtype == "uint8" or model == "mlp"))
        if exact:
            assert np.array_equal(got, want), optimize
        else:
            assert np.abs(got - want).max() <= _out_scale(qm, "logits") * (1 + 1e-6)
            assert np.mean(got.argmax(1) == want.argmax(1)) > 0.99


@pytest.mark.parametrize("fmt", FORMATS)
def test_mlp_on_token_sequences(fmt):
    """linear on [N, T, K]: rows reshaped to [N*T, K] around the Gemm."""
    rng = np.random.default_rng(3)
    g = eb.Graph("tokens")
    x = g.input("x", (None, 5, 24))
    h = g.relu(g.linear(x, _w(rng, 32, 24), _b(rng, 32)))
    g.output(g.linear(h, _w(rng, 24, 32), None, name="y"))
    qm = eb.quantize(g, [rng.normal(size=(4, 5, 24)).astype(np.float32) for _ in range(3)])
    if not any(s.op == "linear" for s in qm.plan.steps):
        pytest.skip("this quantizer keeps 3-D linears float")
    xt = rng.normal(size=(7, 5, 24)).astype(np.float32)
    assert np.array_equal(_ort_run(_export(qm, fmt), {"x": xt})["y"], qm.run({"x": xt})["y"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_activation_clamp_that_is_not_free(cnn_models, fmt):
    """A conv whose relu is not implied by its output zero point: an integer Clip after it."""
    models, x = cnn_models
    qm = models[("uint8", True)]
    plan = qm.plan
    conv = next(s for s in plan.steps if s.op == "conv" and s.attrs.get("activation") == "relu")
    spec = plan.tensors[conv.output]
    tensors = dict(plan.tensors)
    tensors[conv.output] = dataclasses.replace(spec, scale=spec.scale * 2, zero_point=100)
    for s in plan.steps:  # max_pool / reshape copy bytes: their outputs keep the input's qparams
        if s.op in ("max_pool", "reshape") and s.inputs[0] == conv.output:
            tensors[s.output] = dataclasses.replace(tensors[s.output], scale=spec.scale * 2, zero_point=100)
    qm2 = eb.QuantizedModel(eb.model.Plan(tensors, plan.steps, plan.inputs, plan.outputs))
    m = _export(qm2, fmt)
    assert any(n.op_type == "Clip" for n in m.graph.node)
    want = qm2.run({"x": x})["logits"]
    assert np.array_equal(_ort_run(m, {"x": x})["logits"], want)
