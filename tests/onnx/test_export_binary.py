"""ONNX export of binary layers (binary_conv / binary_linear steps) in standard float ops:
DequantizeLinear -> Less (threshold) -> Where (-1, +1) -> Conv / MatMul with the +-1 weights ->
Mul (w_scale) -> Add (bias) -> QuantizeLinear (-> an integer Clip for the activation).

The sums of +-1 products are integers below 2^24, exact in float32 whatever the order, and the
scale and bias are applied as eightbit applies them (a multiply, then an add), so ONNX Runtime's
codes equal eightbit's bit for bit: with its graph optimizations off and on, in both export
formats, for uint8 / int8 / symmetric activations, per-channel thresholds, zero and one padding.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import eightbit as eb  # noqa: E402
from eightbit.model import QuantizedModel  # noqa: E402

F = np.float32
BINARY = ["b1", "b2", "b3", "bfc"]


def _graph():
    """x [N, 3, 10, 10] -> c0 (int8, relu) -> b1 (binary 3x3 pad 1, relu) -> b2 (binary 3x3
    stride 2 pad 1, no bias, relu6) -> b3 (binary 1x1, dilation-free) -> pool -> flatten ->
    bfc (binary linear 100 -> 24, relu) -> fc (int8, 10)."""
    rng = np.random.default_rng(7)

    def w(*shape, sd=0.3):
        return (rng.standard_normal(shape) * sd).astype(F)

    g = eb.Graph()
    x = g.input("x", (None, 3, 10, 10))
    h = g.relu(g.conv2d(x, w(16, 3, 3, 3), w(16, sd=0.1), padding=1, name="c0"))
    h = g.relu(g.conv2d(h, w(16, 16, 3, 3), w(16), padding=1, name="b1"))
    h = g.relu6(g.conv2d(h, w(20, 16, 3, 3), None, stride=2, padding=1, name="b2"))
    h = g.conv2d(h, w(4, 20, 1, 1), w(4), name="b3")
    h = g.flatten(g.max_pool2d(h, 1))
    h = g.relu(g.linear(h, w(24, 100, sd=0.1), w(24), name="bfc"))
    g.output(g.linear(h, w(10, 24), w(10), name="fc"))
    return g


def _data(batch, i):
    return np.random.default_rng([batch, i]).standard_normal((batch, 3, 10, 10)).astype(F)


VARIANTS = {"u8": {}, "s8": {"activation_dtype": "int8"}, "s8sym": {"activation_symmetric": True}}
_models: dict = {}


def _model(variant, threshold):
    key = (variant, threshold)
    if key not in _models:
        _models[key] = eb.quantize(_graph(), [_data(8, i) for i in range(2)], binary=BINARY,
                                   binary_threshold=threshold, min_sqnr=None, **VARIANTS[variant])
    return _models[key]


def _ort_runs(path, x):
    """ONNX Runtime's output with its graph optimizations off, then all on."""
    outs = []
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        outs.append(s.run(None, {s.get_inputs()[0].name: x})[0])
    return outs


def _check_exact(qm, path, fmt):
    eb.to_onnx(qm, path, format=fmt)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    for batch in (1, 7):
        x = _data(batch, 3)
        want = qm(x)
        for got in _ort_runs(path, x):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
@pytest.mark.parametrize("threshold", [0.0, "mean"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_binary_layers_run_in_onnx_runtime_bit_for_bit(tmp_path, variant, threshold, fmt):
    qm = _model(variant, threshold)
    steps = [s for s in qm.plan.steps if s.op in ("binary_conv", "binary_linear")]
    assert {s.source for s in steps} == set(BINARY)
    if threshold == "mean":                                   # per-channel thresholds, not one value
        assert any(np.ptp(s.consts["threshold"]) > 0 for s in steps)
    _check_exact(qm, tmp_path / "binary.onnx", fmt)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "binary.onnx")).graph.node}
    assert {"Less", "Where", "Conv", "MatMul"} <= ops


def test_one_padding_is_a_pad_of_ones(tmp_path):
    """pad_value 1.0 (larq's one padding: padded taps count as +1) exports as Pad(1.0) before an
    unpadded Conv; the zero-padded form would give other codes at the borders."""
    qm = _model("u8", "mean")          # threshold 0 after a relu would make every sign +1
    steps = [dataclasses.replace(s, attrs={**s.attrs, "pad_value": 1.0}, lowered={**s.lowered, "zero_padding": False})
             if s.op == "binary_conv" else s for s in qm.plan.steps]
    ones = QuantizedModel(dataclasses.replace(qm.plan, steps=steps))
    x = _data(3, 4)
    assert not np.array_equal(ones(x), qm(x))
    _check_exact(ones, tmp_path / "ones.onnx", "qdq")
    pads = [n for n in onnx.load(str(tmp_path / "ones.onnx")).graph.node if n.op_type == "Pad"]
    assert len(pads) == 2                                     # b1 and b2 pad; b3 (1x1) does not
