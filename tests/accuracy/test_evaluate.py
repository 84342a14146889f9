"""eb.evaluate: metrics checked against scikit-learn and NumPy, sizes, peak memory against the
executor's own figures, latency fields, argument errors, and the `eightbit evaluate` command."""
import json

import numpy as np
import pytest
from sklearn import metrics as skm

import eightbit as eb
from eightbit.cli import main
from eightbit.data import cnn_graph, digits

LONG = "an int8 model with a name far longer than any column width one might pick"


@pytest.fixture(scope="module")
def data():
    return digits()


@pytest.fixture(scope="module")
def graph(data):
    return cnn_graph(data.weights)


@pytest.fixture(scope="module")
def qms(data, graph):
    calib = [data.calib_images[i:i + 64] for i in range(0, 256, 64)]
    return eb.quantize(graph, calib), eb.quantize(graph, calib, method="percentile", percentile=99.0)


def _softmax(z):
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _cosine(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.mean(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _sqnr(ref, test):
    ref, test = ref.astype(np.float64), test.astype(np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - test) ** 2))


def test_metrics_against_sklearn_with_labels(data, graph, qms):
    x, y = data.test_images, data.test_labels
    ev = eb.evaluate({"float32": graph, LONG: qms[0], "int8 p99": qms[1]}, x, y, repeats=3)
    assert [r["name"] for r in ev.rows] == ["float32", LONG, "int8 p99"]
    assert [r["kind"] for r in ev.rows] == ["graph", "quantized", "quantized"]
    assert ev.target == "labels" and ev.reference == "float32" and ev.samples == len(x)
    ref = graph.run(x)
    for row, out in zip(ev.rows, (ref, qms[0](x), qms[1](x))):
        pred = out.argmax(axis=1)
        assert row["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
        assert row["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)
        assert row["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro", zero_division=0), abs=1e-12)
        assert row["precision"] == pytest.approx(
            skm.precision_score(y, pred, average="macro", zero_division=0), abs=1e-12)
        assert row["loss"] == pytest.approx(skm.log_loss(y, _softmax(out), labels=np.arange(10)), rel=1e-6)
        assert row["cosine"] == pytest.approx(_cosine(out, ref), abs=1e-9)
    assert ev.rows[0]["sqnr"] == float("inf")
    for row, q in zip(ev.rows[1:], qms):
        assert row["sqnr"] == pytest.approx(_sqnr(ref, q(x)), abs=1e-6)
        assert 20 < row["sqnr"] < 60


def test_without_labels_metrics_measure_agreement(data, graph, qms):
    x = data.test_images
    ev = eb.evaluate({"ref": graph, "q": qms[1]}, x, metrics=["accuracy", "f1", "loss", "cosine"], repeats=2)
    assert ev.target == "reference" and ev.metrics == ["accuracy", "f1", "loss", "cosine"]
    ref, q = graph.run(x), qms[1](x)
    r0, r1 = ev.rows
    assert r0["accuracy"] == 1.0 and r0["f1"] == 1.0 and r0["loss"] == 0.0 and r0["cosine"] == pytest.approx(1.0)
    assert r1["accuracy"] == pytest.approx(skm.accuracy_score(ref.argmax(1), q.argmax(1)), abs=1e-12)
    assert r1["f1"] == pytest.approx(skm.f1_score(ref.argmax(1), q.argmax(1), average="macro"), abs=1e-12)
    assert r1["loss"] == pytest.approx(np.mean((q.astype(np.float64) - ref) ** 2), rel=1e-9)
    assert "sqnr" not in r1


def test_batched_metrics_equal_whole(data, graph, qms):
    x, y = data.test_images, data.test_labels
    whole = eb.evaluate({"q": qms[0], "f": graph}, x, y, repeats=2)
    batched = eb.evaluate({"q": qms[0], "f": graph}, x, y, batch_size=50, repeats=2)
    assert batched.batch_size == 50 and whole.batch_size == len(x)
    for a, b in zip(whole.rows, batched.rows):
        for m in whole.metrics:
            assert b[m] == pytest.approx(a[m], rel=1e-5, abs=1e-9), m


def test_sizes_memory_and_latency(data, graph, qms):
    qm = qms[0]
    x = data.test_images
    small = eb.evaluate({"f": graph, "q": qm}, x, batch_size=8, repeats=5, metrics=["accuracy"])
    large = eb.evaluate({"f": graph, "q": qm}, x, batch_size=128, repeats=5, metrics=["accuracy"])
    ex = qm._executor
    for ev, batch in ((small, 8), (large, 128)):
        f, q = ev.rows
        assert f["model_bytes"] == sum(v.nbytes for k, v in data.weights.items() if k.startswith("cnn_"))
        assert q["model_bytes"] == qm.size_bytes == qm.plan.const_bytes()
        assert q["peak_bytes"] == ex.arena_bytes_per_sample * batch + ex.const_bytes
        # the Graph's peak holds at least its weights and the first conv's float32 output
        assert f["peak_bytes"] >= f["model_bytes"] + batch * 16 * 8 * 8 * 4
        for r in ev.rows:
            assert 0 < r["latency_p50_ms"] <= r["latency_p99_ms"]
    assert large.rows[1]["peak_bytes"] > small.rows[1]["peak_bytes"]
    assert large.rows[0]["peak_bytes"] > small.rows[0]["peak_bytes"]
    # the executor's figures, checked independently: the arena holds the largest intermediate
    # tensor and no more than all of them; the constants hold at least the int8 weights
    inner = [t for n, t in qm.plan.tensors.items() if n not in qm.plan.inputs + qm.plan.outputs]
    per_sample = [int(np.prod(t.shape[1:])) * t.dtype.itemsize for t in inner]
    assert max(per_sample) <= ex.arena_bytes_per_sample <= sum(-(-b // 64) * 64 for b in per_sample)
    w_bytes = sum(s.consts["w"].nbytes for s in qm.plan.steps if "w" in s.consts)
    assert w_bytes <= ex.const_bytes
    qm(x[:128])
    assert ex.arena_bytes >= ex.arena_bytes_per_sample * 128


def test_callables_dict_data_and_custom_metric(rng):
    g = eb.Graph()
    a, b = g.input("a", (None, 6)), g.input("b", (None, 6))
    g.output(g.linear(g.relu(g.add(a, b)), rng.normal(0, 0.5, (3, 6)).astype(np.float32), name="y"))
    feeds = {"a": rng.uniform(-1, 1, (40, 6)).astype(np.float32), "b": rng.uniform(-1, 1, (40, 6)).astype(np.float32)}
    qm = eb.quantize(g, [feeds])
    ref = g.run(feeds)

    def max_err(pred, target):
        return float(np.max(np.abs(pred - target)))

    ev = eb.evaluate({"g": g, "q": qm, "fn": lambda d: (g.run(d), None)}, feeds,
                     metrics=[max_err, "cosine"], repeats=2)
    assert ev.metrics == ["max_err", "cosine"]
    assert ev.row("fn")["max_err"] == 0.0 and ev.row("fn")["model_bytes"] is None
    assert ev.row("fn")["kind"] == "callable" and ev.row("fn")["peak_bytes"] > 0
    assert ev.row("q")["max_err"] == pytest.approx(float(np.max(np.abs(qm.run(feeds)["y"] - ref))))
    with pytest.raises(ValueError, match="inputs"):
        eb.evaluate({"g": g}, feeds["a"])
    with pytest.raises(ValueError, match="expects inputs"):
        eb.evaluate({"g": g}, {"a": feeds["a"]})
    with pytest.raises(ValueError, match="different numbers of samples"):
        eb.evaluate({"g": g}, {"a": feeds["a"], "b": feeds["b"][:5]})


def test_table_and_json(tmp_path, data, graph, qms):
    ev = eb.evaluate({"float32": graph, LONG: qms[0]}, data.test_images[:60], data.test_labels[:60], repeats=2)
    text = ev.table()
    assert LONG in text and "float32" in text and "inf" in text and str(ev) == text
    for m in ev.metrics:
        assert (m if m != "sqnr" else "sqnr dB") in text.splitlines()[0]
    path = tmp_path / "ev.json"
    s = ev.to_json(path)
    d = json.loads(path.read_text())
    assert d == json.loads(s)
    assert d["rows"][0]["sqnr"] == "inf" and d["rows"][1]["name"] == LONG and d["samples"] == 60
    assert d["rows"][1]["accuracy"] == ev.rows[1]["accuracy"]
    assert ev.to_dict()["reference"] == "float32"


def test_errors(data, graph, qms):
    x, y = data.test_images[:20], data.test_labels[:20]
    with pytest.raises(ValueError, match="empty"):
        eb.evaluate({}, x)
    with pytest.raises(TypeError, match="dict"):
        eb.evaluate([graph], x)
    with pytest.raises(TypeError, match="Graph, a QuantizedModel or a callable"):
        eb.evaluate({"f": graph, "bad": 3}, x)
    with pytest.raises(ValueError, match="metric"):
        eb.evaluate({"f": graph}, x, metrics=["accuracy", "top5"])
    with pytest.raises(ValueError, match="20 labels"):
        eb.evaluate({"f": graph}, x, y[:19])
    with pytest.raises(ValueError, match="expected shape"):
        eb.evaluate({"q": qms[0]}, x.reshape(20, 1, 4, 16))
    with pytest.raises(ValueError, match="differs from the reference"):
        eb.evaluate({"f": graph, "g": lambda v: graph.run(v)[:, :5]}, x)
    with pytest.raises(ValueError, match="batch_size"):
        eb.evaluate({"f": graph}, x, batch_size=0)
    with pytest.raises(ValueError, match="repeats"):
        eb.evaluate({"f": graph}, x, repeats=0)
    with pytest.raises(ValueError, match="no samples"):
        eb.evaluate({"f": graph}, x[:0])
    with pytest.raises(ValueError, match="unique"):
        eb.evaluate({"f": graph}, x, metrics=["accuracy", "accuracy"])


def test_cli_evaluate(tmp_path, capsys, data, graph, qms):
    a, b = tmp_path / "minmax.eb", tmp_path / "p99.eb"
    qms[0].save(a)
    qms[1].save(b)
    x, y = data.test_images[:100], data.test_labels[:100]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "out.json"
    assert main(["evaluate", str(a), str(b), "--data", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--metrics", "accuracy", "cosine", "--batch-size", "25", "--repeats", "3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "minmax" in text and "p99" in text and "accuracy" in text and "f1" not in text
    d = json.loads(out.read_text())
    assert [r["name"] for r in d["rows"]] == ["minmax", "p99"] and d["batch_size"] == 25
    assert d["rows"][1]["accuracy"] == pytest.approx(skm.accuracy_score(y, qms[1](x).argmax(1)))
    # an .npz by input name, no labels: agreement with the first model
    np.savez(tmp_path / "x.npz", x=x)
    assert main(["evaluate", str(a), str(b), "--data", str(tmp_path / "x.npz"), "--repeats", "2"]) == 0
    assert "the outputs of 'minmax'" in capsys.readouterr().out


def test_cli_evaluate_onnx(tmp_path, capsys, data, graph, qms):
    pytest.importorskip("onnx")
    eb.to_onnx(graph, tmp_path / "digits.onnx")
    qms[0].save(tmp_path / "digits_int8.eb")
    np.save(tmp_path / "x.npy", data.test_images[:50])
    assert main(["evaluate", str(tmp_path / "digits.onnx"), str(tmp_path / "digits_int8.eb"),
                 "--data", str(tmp_path / "x.npy"), "--repeats", "2", "--json", str(tmp_path / "e.json")]) == 0
    d = json.loads((tmp_path / "e.json").read_text())
    assert [(r["name"], r["kind"]) for r in d["rows"]] == [("digits", "graph"), ("digits_int8", "quantized")]
    assert d["rows"][0]["sqnr"] == "inf" and d["rows"][1]["sqnr"] > 20
