"""Models quantized by onnxruntime.quantization (QDQ and QOperator formats, per-tensor and
per-channel weights, uint8 and int8 activations) import with eb.from_onnx_quantized and run with ONNX
Runtime's numerics: outputs equal ONNX Runtime's (one thread) bit for bit, except where ONNX Runtime
runs an op in float between DequantizeLinear and QuantizeLinear (measured and bounded below)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")

import eightbit as eb  # noqa: E402
from eightbit.onnx.import_quantized import import_quantized, is_quantized  # noqa: E402
from eightbit.onnx.qoperator_to_qdq import qoperator_to_qdq  # noqa: E402
from eightbit.onnx.strip_qdq import strip_qdq  # noqa: E402

import models  # noqa: E402  (tests/onnx/models.py: float models as torch.onnx.export writes them)

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

FORMATS = {"qdq": quantization.QuantFormat.QDQ, "qop": quantization.QuantFormat.QOperator}
ACTIVATIONS = {"u8": quantization.QuantType.QUInt8, "s8": quantization.QuantType.QInt8}
VARIANTS = [(f, a, pc) for f in FORMATS for a in ACTIVATIONS for pc in (False, True)]
VARIANT_IDS = [f"{f}-{a}-{'per_channel' if pc else 'per_tensor'}" for f, a, pc in VARIANTS]


class _Reader(quantization.CalibrationDataReader):
    def __init__(self, batches):
        self._it = iter(batches)

    def get_next(self):
        return next(self._it, None)


def quantize_with_ort(model, make_inputs, tmp_path, fmt: str, act: str, per_channel: bool, seed: int = 7):
    """quant_pre_process + quantize_static (int8 weights), calibrated on 8 batches of realistic data."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    rng = np.random.default_rng(seed)
    src, pre, out = tmp_path / "float.onnx", tmp_path / "pre.onnx", tmp_path / "quant.onnx"
    onnx.save(model, src)
    quant_pre_process(str(src), str(pre))
    quantization.quantize_static(str(pre), str(out), _Reader([make_inputs(rng, 8) for _ in range(8)]),
                                 quant_format=FORMATS[fmt], activation_type=ACTIVATIONS[act],
                                 weight_type=quantization.QuantType.QInt8, per_channel=per_channel)
    return onnx.load(out)


def ort_run(model, feeds, int8_allowed: bool = False):
    """ONNX Runtime, one thread, all graph optimizations (its QDQ fusions). ``int8_allowed``: keep
    int8 QDQ groups int8 (x86 converts them to uint8 by default, which fuses fewer of them)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.qdqisint8allowed", "1" if int8_allowed else "0")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def output_step(model) -> float:
    """Scale of the model's output DequantizeLinear: one quantization step of the output."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = model.graph.output[0].name
    dq = next(n for n in model.graph.node if n.output[0] == out and n.op_type == "DequantizeLinear")
    return float(inits[dq.input[1]])


def steps_off(model, qm, feeds, int8_allowed=False) -> float:
    want = ort_run(model, feeds, int8_allowed)[0]
    got = qm.run(feeds)[model.graph.output[0].name]
    assert got.shape == want.shape and got.dtype == want.dtype
    return float(np.abs(got.astype(np.float64) - want).max()) / output_step(model)


# ---- one import function per kind of model --------------------------------------------------------

def test_each_import_function_returns_one_kind_of_object(tmp_path):
    """eb.from_onnx always returns a Graph and eb.from_onnx_quantized a QuantizedModel; each refuses
    the other kind of model, naming the function to use; eb.onnx.is_quantized says which is which."""
    model, make_inputs = models.MODELS["mlp"]()
    qmodel = quantize_with_ort(model, make_inputs, tmp_path, "qdq", "u8", True)
    onnx.save(qmodel, tmp_path / "q.onnx")
    assert not eb.onnx.is_quantized(model)
    assert eb.onnx.is_quantized(qmodel) and eb.onnx.is_quantized(str(tmp_path / "q.onnx"))
    assert eb.onnx.is_quantized(qmodel.SerializeToString())
    assert isinstance(eb.from_onnx(model), eb.Graph)
    assert isinstance(eb.from_onnx_quantized(tmp_path / "q.onnx"), eb.QuantizedModel)
    with pytest.raises(eb.onnx.OnnxImportError, match="already quantized.*eb.from_onnx_quantized"):
        eb.from_onnx(qmodel)
    with pytest.raises(eb.onnx.OnnxImportError, match="no quantization operators.*eb.from_onnx"):
        eb.from_onnx_quantized(model)
    with pytest.raises(TypeError, match="from_onnx_quantized: model must be"):
        eb.from_onnx_quantized(3)


# ---- bit-exact: conv / gemm / add / pool / concat models ----------------------------------------

EXACT_MODELS = ["resnet_block", "resnet_block_folded", "mlp"]


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("name", EXACT_MODELS)
def test_bit_exact_against_onnxruntime(name, variant, tmp_path):
    fmt, act, per_channel = variant
    model, make_inputs = models.MODELS[name]()
    qmodel = quantize_with_ort(model, make_inputs, tmp_path, fmt, act, per_channel)
    qm = eb.from_onnx_quantized(qmodel)
    assert isinstance(qm, eb.QuantizedModel)
    feeds = make_inputs(np.random.default_rng(11), 16)
    out = qmodel.graph.output[0].name
    got = qm.run(feeds)[out]
    int8_qdq = fmt == "qdq" and act == "s8"
    want = ort_run(qmodel, feeds, int8_allowed=int8_qdq)[0]
    assert np.array_equal(got, want), f"max diff {np.abs(got - want).max()} (step {output_step(qmodel)})"
    if int8_qdq:
        # By default ONNX Runtime on x86 rewrites int8 Q/DQ pairs to uint8 (QDQS8ToU8), which leaves
        # groups mixing uint8 and int8 that it cannot fuse: those Conv / Add run in float32 (MLAS
        # sgemm) between DQ and Q, and round differently from the integer kernel now and then.
        assert steps_off(qmodel, qm, feeds) <= 2.0 + 1e-3


# ---- own small models ---------------------------------------------------------------------------

def _model(nodes, inputs, output, inits, opset=17):
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(output[0], TensorProto.FLOAT, output[1])],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def matmul_block(tokens: int = 8, act: str = "Relu"):
    """x [N, T, 32] -> MatMul 32->64 + bias -> act -> MatMul 64->32 + bias (nn.Linear on 3-D input,
    exported as MatMul + Add); ``tokens=0``: x [N, 32] (QLinearMatMul on 2-D)."""
    rng = np.random.default_rng(5)
    d, f = 32, 64
    inits = {"w1": rng.normal(0, d ** -0.5, (d, f)), "b1": rng.normal(0, 0.1, f),
             "w2": rng.normal(0, f ** -0.5, (f, d)), "b2": rng.normal(0, 0.1, d)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
             helper.make_node("Add", ["m1", "b1"], ["h1"], name="add1"),
             helper.make_node(act, ["h1"], ["a1"], name="act"),
             helper.make_node("MatMul", ["a1", "w2"], ["m2"], name="mm2"),
             helper.make_node("Add", ["m2", "b2"], ["y"], name="add2")]
    shape = ["N", tokens, d] if tokens else ["N", d]
    model = _model(nodes, [("x", shape)], ("y", shape), inits)

    def inputs(rng, batch):
        return {"x": rng.standard_normal([batch] + shape[1:]).astype(np.float32)}
    return model, inputs


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("tokens", [0, 8], ids=["2d", "3d"])
def test_matmul_block_bit_exact(tokens, variant, tmp_path):
    """2-D: quant_pre_process makes MatMul + Add a Gemm -> QGemm; 3-D: QLinearMatMul, then the bias
    as QLinearAdd with a uint8 / int8 constant (a float step here: exact on this data, see the
    report in test_constant_add_agreement). Both matrix products are the ``linear`` step."""
    fmt, act, per_channel = variant
    model, make_inputs = matmul_block(tokens)
    qmodel = quantize_with_ort(model, make_inputs, tmp_path, fmt, act, per_channel)
    qm = eb.from_onnx_quantized(qmodel)
    feeds = make_inputs(np.random.default_rng(3), 16)
    want = ort_run(qmodel, feeds, int8_allowed=True)[0]
    assert np.array_equal(qm.run(feeds)["y"], want)
    assert np.array_equal(qm.run(feeds)["y"], ort_run(qmodel, feeds)[0])


@pytest.mark.parametrize("fmt", ["qdq", "qop"])
def test_sigmoid_is_a_table_equal_to_qlinear_sigmoid(fmt, tmp_path):
    """ORT fuses DQ -> Sigmoid -> Q into QLinearSigmoid (a 256-entry table of its float sigmoid);
    eightbit's lut step tabulates the float graph's sigmoid: equal on every code here."""
    model, make_inputs = matmul_block(8, act="Sigmoid")
    qmodel = quantize_with_ort(model, make_inputs, tmp_path, fmt, "u8", True)
    qm = eb.from_onnx_quantized(qmodel)
    assert "lut" in [s.op for s in qm.plan.steps]
    feeds = make_inputs(np.random.default_rng(4), 32)
    assert np.array_equal(qm.run(feeds)["y"], ort_run(qmodel, feeds)[0])


def test_constant_add_agreement(tmp_path):
    """The bias Add of a 3-D linear (MatMul + Add) reads a constant: ORT runs QLinearAdd with the
    quantized constant, eightbit a float step (DQ -> add -> Q; plan add steps take two tensors).
    They round differently only at ties: measured over 4096 tokens, at most one output step."""
    model, make_inputs = matmul_block(8)
    qmodel = quantize_with_ort(model, make_inputs, tmp_path, "qdq", "u8", True)
    qm = eb.from_onnx_quantized(qmodel)
    assert [s.op for s in qm.plan.steps].count("float") == 2
    feeds = make_inputs(np.random.default_rng(5), 512)
    assert steps_off(qmodel, qm, feeds) <= 1.0 + 1e-3


# ---- the rewrite and the stripping, on the ONNX level -------------------------------------------

def test_qoperator_rewrite_is_exact_in_onnxruntime(tmp_path):
    model, make_inputs = models.MODELS["resnet_block_folded"]()
    qmodel = quantize_with_ort(model, make_inputs, tmp_path, "qop", "u8", True)
    qdq = qoperator_to_qdq(qmodel)
    onnx.checker.check_model(qdq)
    ops = {n.op_type for n in qdq.graph.node}
    assert not ops & {"QLinearConv", "QGemm", "QLinearAdd", "QLinearGlobalAveragePool"}
    feeds = make_inputs(np.random.default_rng(1), 4)
    assert np.array_equal(ort_run(qmodel, feeds)[0], ort_run(qdq, feeds)[0])


def test_strip_qdq_gives_a_float_model_and_the_parameters(tmp_path):
    model, make_inputs = matmul_block(0)
    qmodel = quantize_with_ort(model, make_inputs, tmp_path, "qdq", "s8", True)
    assert is_quantized(qmodel) and not is_quantized(model)
    s = strip_qdq(qmodel)
    onnx.checker.check_model(s.model)
    assert not {n.op_type for n in s.model.graph.node} & {"QuantizeLinear", "DequantizeLinear"}
    scale, zp = s.tensor_qparams["x"]
    assert scale.dtype == np.float32 and zp.dtype == np.int8
    assert "y" in s.tensor_qparams                      # the output keeps its name and its Q / DQ
    (name, info), = [kv for kv in s.node_qparams.items() if kv[1]["w_scale"].size == 64]
    assert info["bias"].dtype == np.int32 and info["bias"].shape == (64,)
    # The float model runs. (It is not the float original: the quantizer removed the ReLUs that
    # the output ranges already clamp, zero point = qmin.)
    feeds = make_inputs(np.random.default_rng(2), 8)
    assert ort_run(s.model, feeds)[0].shape == (8, 32)


# ---- malformed and unsupported models: clear errors ----------------------------------------------

def _qdq_conv(w_scale=None, q_scale=0.02, dq_scale=0.02, drop_dq_scale=False):
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    ws = np.full(4, 0.01, np.float32) if w_scale is None else np.asarray(w_scale, np.float32)
    inits = [numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(ws, "w_s"),
             numpy_helper.from_array(np.zeros(ws.shape, np.int8), "w_z"),
             numpy_helper.from_array(np.float32(q_scale), "q_s"), numpy_helper.from_array(np.float32(dq_scale), "dq_s"),
             numpy_helper.from_array(np.uint8(128), "zp"), numpy_helper.from_array(np.float32(0.05), "y_s")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "q_s", "zp"], ["xq"], name="qx"),
             helper.make_node("DequantizeLinear", ["xq"] + ([] if drop_dq_scale else ["dq_s", "zp"]), ["xf"], name="dqx"),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], name="dqw", axis=0),
             helper.make_node("Conv", ["xf", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "y_s", "zp"], ["cq"], name="qc"),
             helper.make_node("DequantizeLinear", ["cq", "y_s", "zp"], ["y"], name="dqc")]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_handmade_qdq_conv_is_exact():
    m = _qdq_conv()
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    assert np.array_equal(eb.from_onnx_quantized(m).run({"x": x})["y"], ort_run(m, {"x": x})[0])


@pytest.mark.parametrize("kwargs, message", [
    ({"drop_dq_scale": True}, "dqx"),
    ({"dq_scale": 0.03}, "dqx.*differ from those of 'qx'"),
    ({"w_scale": [0.01, 0.02, 0.03]}, "dqw.*3 scales along axis 0"),
    ({"w_scale": [0.01, -0.02, 0.03, 0.01]}, "dqw.*scale must be finite and > 0"),
])
def test_malformed_models_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        import_quantized(_qdq_conv(**kwargs))


def test_dynamic_convolutions_are_refused_clearly(tmp_path):
    """quantize_dynamic's MatMul groups import (test_import_dynamic.py); its ConvInteger does not."""
    model, _ = models.MODELS["resnet_block_folded"]()
    src, out = tmp_path / "f.onnx", tmp_path / "d.onnx"
    onnx.save(model, src)
    quantization.quantize_dynamic(str(src), str(out), weight_type=quantization.QuantType.QInt8,
                                  op_types_to_quantize=["Conv"])
    with pytest.raises(ValueError, match="ConvInteger are not supported"):
        import_quantized(onnx.load(out))


def test_uint8_weights_that_do_not_fit_int8_raise(tmp_path):
    """Asymmetric uint8 weights (weight_type=QUInt8): w - zero point spans more than int8 here."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model, make_inputs = models.MODELS["mlp"]()
    onnx.save(model, tmp_path / "f.onnx")
    quant_pre_process(str(tmp_path / "f.onnx"), str(tmp_path / "p.onnx"))
    rng = np.random.default_rng(0)
    quantization.quantize_static(str(tmp_path / "p.onnx"), str(tmp_path / "q.onnx"),
                                 _Reader([make_inputs(rng, 8) for _ in range(4)]),
                                 quant_format=quantization.QuantFormat.QOperator,
                                 activation_type=quantization.QuantType.QUInt8,
                                 weight_type=quantization.QuantType.QUInt8)
    with pytest.raises(ValueError, match=r"'/0/Gemm_quant'.*does not fit int8"):
        import_quantized(str(tmp_path / "q.onnx"))
