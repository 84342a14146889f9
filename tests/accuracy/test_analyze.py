"""eb.analyze: every number of the per-layer report against an independent computation with the
float graph (g.run) and the int8 plan run step by step (qm.run_steps)."""
import json

import numpy as np
import pytest

import eightbit as eb
from eightbit.data import cnn_graph, digits
from eightbit.graph.passes import prepare_for_quantization

LONG = "encoder.layer.0.attention.output.dense_with_a_name_longer_than_any_column"


def _sqnr(ref, test):
    ref = np.asarray(ref, np.float64)
    noise = np.sum((np.asarray(test, np.float64) - ref) ** 2)
    return np.inf if noise == 0 else 10 * np.log10(np.sum(ref ** 2) / noise)


def _dequantized(plan, values, tensor):
    """The float32 value of graph tensor ``tensor`` as the int8 plan holds it (NumPy only)."""
    for name in (f"{tensor}:q", tensor):
        spec = plan.tensors.get(name)
        if spec is not None and spec.quantized:
            # ONNX DequantizeLinear: (q - zp) as float32 times the float32 scale
            v = (values[name].astype(np.int32) - spec.zero_point).astype(np.float32) * np.float32(spec.scale)
            return v.transpose(0, 3, 1, 2) if v.ndim == 4 else v
    for name in (tensor, f"{tensor}:f"):
        if name in plan.tensors:
            return values[name]
    raise KeyError(tensor)


@pytest.fixture(scope="module")
def cnn():
    d = digits()
    g = cnn_graph(d.weights)
    calib = [d.calib_images[i:i + 64] for i in range(0, 256, 64)]
    return g, calib, d.test_images[:96], d.test_labels[:96]


@pytest.fixture(scope="module")
def mlp():
    rng = np.random.default_rng(3)
    g = eb.Graph("mlp")
    x = g.input("x", (None, 24))
    h = g.linear(x, (rng.standard_normal((48, 24)) * 0.3).astype(np.float32), rng.standard_normal(48).astype(np.float32),
                 name="fc1")
    h = g.gelu(h, name="act")
    h = g.linear(h, (rng.standard_normal((32, 48)) * 0.2).astype(np.float32), None, name=LONG)
    h = g.add(h, g.linear(x, (rng.standard_normal((32, 24)) * 0.2).astype(np.float32), None, name="skip"), name="res")
    g.output(g.linear(g.relu(h), (rng.standard_normal((10, 32)) * 0.3).astype(np.float32), None, name="head"))
    calib = [rng.standard_normal((32, 24)).astype(np.float32) for _ in range(3)]
    return g, calib, rng.standard_normal((80, 24)).astype(np.float32)


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_every_row_against_an_independent_computation(model, request):
    g, calib, x = request.getfixturevalue(model)[:3]
    report = eb.analyze(g, calib, x, batch_size=40)   # chunks: the sums must add up across them
    qm = report.qm
    prepared = prepare_for_quantization(g)
    floats = prepared.run(x, return_all=True)
    held = qm.run_steps({"x": x}, return_all=True)
    nodes = {n.name: n for n in prepared.nodes}
    assert [r.name for r in report.layers if r.op != "input"] == [n.name for n in prepared.nodes]
    for r in report.layers:
        ref = floats[r.output]
        assert r.cumulative_sqnr == pytest.approx(_sqnr(ref, _dequantized(qm.plan, held, r.output)), abs=1e-6)
        assert (r.observed_min, r.observed_max) == pytest.approx((ref.min(), ref.max()))
        if r.precision != "int8":
            assert r.scale is None and r.isolated_sqnr is None
            continue
        lo, hi = r.scale * ((0 if r.dtype == "uint8" else -128) - r.zero_point), \
            r.scale * ((255 if r.dtype == "uint8" else 127) - r.zero_point)
        clipped = np.count_nonzero((ref < lo - r.scale / 2) | (ref > hi + r.scale / 2))
        assert r.saturation == pytest.approx(clipped / ref.size)
        assert sum(r.histogram[0]) == ref.size
        if r.op == "input":
            continue
        node = nodes[r.name]
        out = g.outputs[0]
        if node.op == "add":
            # eb.quantize keeps an add among float neighbours float: quantize its float inputs with
            # the int8 model's parameters and add them with eightbit.reference.
            specs = [qm.plan.tensors[i] for i in (node.inputs[0], node.inputs[1], r.output)]
            qa, qb = (eb.reference.quantize_linear(floats[t], np.float32(s.scale), s.dtype.type(s.zero_point))
                      for t, s in zip(node.inputs, specs))
            qc = eb.reference.qlinear_add(qa, np.float32(specs[0].scale), specs[0].dtype.type(specs[0].zero_point),
                                          qb, np.float32(specs[1].scale), specs[1].dtype.type(specs[1].zero_point),
                                          np.float32(r.scale), specs[2].dtype.type(r.zero_point))
            assert r.isolated_sqnr == pytest.approx(_sqnr(ref, _dequantized(qm.plan, {r.output: qc}, r.output)),
                                                    abs=1e-6)
            continue
        # Isolated: the public API with every other node excluded, run step by step.
        alone = eb.quantize(g, calib, exclude=[n.name for n in g.nodes if n.name != r.name], min_sqnr=None)
        steps = alone.run_steps({"x": x}, return_all=True)
        assert r.isolated_sqnr == pytest.approx(_sqnr(ref, _dequantized(alone.plan, steps, r.output)), abs=1e-6)
        # abs: the nodes upstream of this one are float32 steps in C++ here, NumPy's in the report
        assert r.isolated_output_sqnr == pytest.approx(_sqnr(floats[out], alone(x)), abs=1e-3)
        if node.op in ("conv2d", "linear"):
            w = node.consts["weight"].astype(np.float64).reshape(node.consts["weight"].shape[0], -1)
            scale = np.abs(w).max(axis=1, keepdims=True) / 127
            wq = np.clip(np.rint(w / scale), -127, 127) * scale
            per_channel = 10 * np.log10(np.sum(w ** 2, axis=1) / np.sum((wq - w) ** 2, axis=1))
            assert r.weight_sqnr_min == pytest.approx(per_channel.min(), abs=0.05)
            assert r.weight_sqnr_median == pytest.approx(np.median(per_channel), abs=0.05)
    out = g.outputs[0]
    assert report.output_sqnr[out] == pytest.approx(_sqnr(floats[out], qm(x)), abs=1e-6)


def test_metric_float_and_int8(cnn):
    g, calib, x, labels = cnn
    report = eb.analyze(g, calib, (x, labels), metric="accuracy")
    assert report.metric == "accuracy"
    assert report.metric_float == pytest.approx(np.mean(g.run(x).argmax(1) == labels))
    assert report.metric_int8 == pytest.approx(np.mean(report.qm(x).argmax(1) == labels))


def test_given_model_is_analysed_as_is(cnn):
    g, calib, x, _ = cnn
    qm = eb.quantize(g, calib, exclude=["conv2d_1"], min_sqnr=None)
    report = eb.analyze(g, calib, x, qm=qm)
    assert report.qm is qm
    assert report.layer("conv2d_1").precision == "float32"
    assert report.output_sqnr["logits"] == pytest.approx(_sqnr(g.run(x), qm(x)), abs=1e-6)


def test_default_data_is_the_calibration_and_a_generator_is_fine(mlp):
    g, calib, _ = mlp
    report = eb.analyze(g, (b for b in calib))
    assert report.samples == sum(len(b) for b in calib)


def test_names_are_never_cut(mlp):
    g, calib, x = mlp
    report = eb.analyze(g, calib, x)
    assert LONG in report.table()
    assert report.worst(1)[0].name in {r.name for r in report.layers}
    assert LONG in report.qm.summary()


def test_json(mlp, tmp_path):
    g, calib, x = mlp
    report = eb.analyze(g, calib, x, metric="cosine")
    path = tmp_path / "r.json"
    report.to_json(path)
    d = json.loads(path.read_text())
    assert [r["name"] for r in d["layers"]] == [r.name for r in report.layers]
    assert d["metric"] == "cosine" and d["output_sqnr"]["head"] == pytest.approx(report.output_sqnr["head"])


def test_options_reach_the_quantizer(mlp):
    g, calib, x = mlp
    report = eb.analyze(g, calib, x, activation_symmetric=True, exclude=["act"])
    int8 = [r for r in report.layers if r.precision == "int8"]
    assert int8 and all(r.dtype == "int8" and r.zero_point == 0 for r in int8)
    assert report.layer("act").precision == "float32"


def test_bad_arguments(mlp, cnn):
    g, calib, x = mlp
    with pytest.raises(TypeError, match="unexpected option"):
        eb.analyze(g, calib, x, methd="minmax")
    with pytest.raises(ValueError, match="batch_size"):
        eb.analyze(g, calib, x, batch_size=0)
    with pytest.raises(ValueError, match="labels"):
        eb.analyze(g, calib, (x, np.zeros(3)), metric="accuracy")
    with pytest.raises(TypeError, match="graph"):
        eb.analyze("model.onnx", calib, x)
    with pytest.raises(ValueError, match="non-finite"):
        eb.analyze(g, calib, np.where(x > 1, np.nan, x))
    with pytest.raises(ValueError, match="batch size"):
        eb.sensitivity(g, calib, x[:0])
    with pytest.raises(TypeError, match="min_sqnr"):
        eb.quantize(g, calib, min_sqnr="20")
    other = eb.quantize(cnn[0], cnn[1], min_sqnr=None)
    with pytest.raises(ValueError, match="does not have"):
        eb.analyze(g, calib, x, qm=other)
