"""Models quantized by onnxruntime.quantization.quantize_dynamic (DynamicQuantizeLinear +
MatMulInteger groups) import as dynamic_linear steps that quantize their input per tensor:
ONNX Runtime's numerics, float32(acc) * float32(x_scale * w_scale) + bias, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")

import eightbit as eb  # noqa: E402
from eightbit.onnx import OnnxImportError  # noqa: E402

import models  # noqa: E402


def _quantize_dynamic(model, tmp_path, per_channel):
    onnx.save(model, tmp_path / "float.onnx")
    quantization.quantize_dynamic(str(tmp_path / "float.onnx"), str(tmp_path / "dyn.onnx"),
                                  weight_type=quantization.QuantType.QInt8, per_channel=per_channel)
    return onnx.load(tmp_path / "dyn.onnx")


def _ort(model, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
@pytest.mark.parametrize("name", ["mlp", "transformer_ffn", "transformer_ffn_gelu20"])
def test_quantize_dynamic_models_equal_ort(name, per_channel, tmp_path, isa):
    model, make_inputs = models.MODELS[name]()
    qmodel = _quantize_dynamic(model, tmp_path, per_channel)
    qm = eb.from_onnx_quantized(qmodel)
    ops = [s.op for s in qm.plan.steps]
    assert ops.count("dynamic_linear") == sum(n.op_type == "MatMulInteger" for n in qmodel.graph.node)
    assert all(s.attrs["granularity"] == "tensor" for s in qm.plan.steps if s.op == "dynamic_linear")
    out = qmodel.graph.output[0].name
    for batch in (1, 16):
        feeds = make_inputs(np.random.default_rng(batch), batch)
        want, got = _ort(qmodel, feeds), qm.run(feeds)[out]
        np.testing.assert_array_equal(got, qm.reference_run(feeds)[out])
        if name == "mlp":
            np.testing.assert_array_equal(got, want)
        else:
            # The GELU between the two layers is float32 in both, but ORT's erf / Gelu and ours
            # round differently now and then; the second layer's per-tensor quantization can then
            # round one input code differently: measured up to 0.0033 (3e-4 of max |y|).
            assert np.abs(got - want).max() <= 2e-3 * np.abs(want).max()
    qm.save(tmp_path / "dyn.eb")
    feeds = make_inputs(np.random.default_rng(0), 4)
    np.testing.assert_array_equal(eb.load(tmp_path / "dyn.eb").run(feeds)[out], qm.run(feeds)[out])


def test_a_dynamic_group_in_an_unexpected_form_is_refused(tmp_path):
    model, _ = models.MODELS["mlp"]()
    qmodel = _quantize_dynamic(model, tmp_path, False)
    cast = next(n for n in qmodel.graph.node if n.op_type == "Cast")
    cast.op_type = "Identity"
    del cast.attribute[:]
    with pytest.raises(OnnxImportError, match="Cast"):
        eb.from_onnx_quantized(qmodel)
