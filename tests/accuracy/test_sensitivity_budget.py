"""Planted faults (fault_models.py): eb.sensitivity ranks them first, eb.quantize's warning names
them, and the accuracy budget recovers the model by keeping them float32. Every metric value is
recomputed here from the models' outputs with NumPy."""
import warnings

import numpy as np
import pytest

import eightbit as eb

import fault_models as fm
from eightbit.quantizer import calibrate


@pytest.fixture(scope="module", params=["outlier_channel", "mask_add", "imbalanced_channels"])
def fault(request):
    return getattr(fm, request.param)()


def _accuracy(pred, labels):
    return float(np.mean(np.asarray(pred).argmax(-1) == labels))


def _run(model, x):
    """The first output of a Graph or a QuantizedModel."""
    if isinstance(model, eb.Graph):
        out = model.run(x)
        return out[model.outputs[0]] if isinstance(out, dict) else out
    return model.run(x)[model.plan.outputs[0]] if isinstance(x, dict) else model(x)


@pytest.mark.parametrize("metric", ["accuracy", "sqnr"])
def test_sensitivity_ranks_the_planted_fault_first(fault, metric):
    data = (fault.data, fault.labels) if metric == "accuracy" else fault.data
    s = eb.sensitivity(fault.graph, fault.calib, data, metric=metric)
    assert s.ranking()[0] in fault.fragile
    healthy = [r for r in s.nodes if r.node not in fault.fragile]
    assert s.nodes[0].relative_drop > 10 * max(r.relative_drop for r in healthy)
    # The top row, recomputed: the graph lowered with every other node float32 (eb.quantize itself
    # would keep a mask add among float neighbours float).
    top = s.nodes[0]
    alone = calibrate(fault.graph, fault.calib).lower([n.name for n in fault.graph.nodes if n.name != top.node])
    y_float, y_q = _run(fault.graph, fault.data), _run(alone, fault.data)
    if metric == "accuracy":
        assert top.metric_float == pytest.approx(_accuracy(y_float, fault.labels))
        assert top.metric_quant == pytest.approx(_accuracy(y_q, fault.labels))
        assert top.relative_drop == pytest.approx((top.metric_float - top.metric_quant) / top.metric_float)
    else:
        noise = np.sum((y_q.astype(np.float64) - y_float) ** 2)
        assert top.metric_quant == pytest.approx(10 * np.log10(np.sum(y_float.astype(np.float64) ** 2) / noise))
        assert top.relative_drop == pytest.approx(noise / np.sum(y_float.astype(np.float64) ** 2))


def test_the_warning_names_the_fault(fault):
    with pytest.warns(eb.QuantizationWarning) as record:
        eb.quantize(fault.graph, fault.calib)
    message = str(record[0].message)
    first = message.split("hurt the output most: ")[1].split(" (")[0]
    assert first in fault.fragile


def test_the_budget_keeps_the_fault_float(fault):
    qm = eb.quantize(fault.graph, fault.calib, accuracy_budget=0.01, eval_data=(fault.data, fault.labels))
    assert fault.fragile & set(qm.float_nodes)
    acc_float = _accuracy(_run(fault.graph, fault.data), fault.labels)
    acc_q = _accuracy(_run(qm, fault.data), fault.labels)
    assert (acc_float - acc_q) / acc_float <= 0.01
    default = eb.quantize(fault.graph, fault.calib, min_sqnr=None)
    assert (acc_float - _accuracy(_run(default, fault.data), fault.labels)) / acc_float > 0.03   # 3x the budget
    chosen = qm.tradeoffs[-1] if qm.tradeoffs[-1].meets_budget else next(t for t in qm.tradeoffs if t.meets_budget)
    assert chosen.meets_budget and chosen.relative_drop <= 0.01
    assert not qm.tradeoffs[0].meets_budget and qm.tradeoffs[0].float_nodes == ()
    assert all(t.size_bytes > 0 and t.latency_ms > 0 for t in qm.tradeoffs)
    # Fewest nodes: every candidate with fewer float nodes than the answer failed the budget.
    kept = min(len(t.float_nodes) for t in qm.tradeoffs if t.meets_budget)
    assert all(not t.meets_budget for t in qm.tradeoffs if len(t.float_nodes) < kept)


def test_methods_share_one_calibration_pass():
    m = fm.outlier_channel()
    once = (b for b in m.calib)                           # a generator: a second pass would see nothing
    s = eb.sensitivity(m.graph, once, m.data, metric="cosine", methods=["minmax", "percentile", "entropy"])
    assert [r.method for r in s.methods] == ["minmax", "percentile", "entropy"]
    y = _run(m.graph, m.data).astype(np.float64)
    for row in s.methods:
        q = _run(eb.quantize(m.graph, m.calib, method=row.method, min_sqnr=None), m.data).astype(np.float64)
        cos = np.mean(np.sum(q * y, 1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(y, axis=1)))
        assert row.metric_quant == pytest.approx(cos)
        assert row.drop == pytest.approx(1.0 - cos)


def test_callable_metric_and_errors():
    m = fm.outlier_channel()

    def top1(pred, target):
        return float(np.mean(pred.argmax(1) == target))

    s = eb.sensitivity(m.graph, m.calib, (m.data, m.labels), metric=top1)
    assert s.metric == "top1" and s.ranking()[0] in m.fragile
    with pytest.raises(ValueError, match="metric"):
        eb.sensitivity(m.graph, m.calib, m.data, metric="auc")
    with pytest.raises(ValueError, match="accuracy_budget"):
        eb.quantize(m.graph, m.calib, accuracy_budget=1.5, eval_data=m.data)
    with pytest.raises(ValueError, match="eval_data"):
        eb.quantize(m.graph, m.calib, eval_data=m.data)
    with pytest.raises(ValueError, match="labels"):
        eb.quantize(m.graph, m.calib, accuracy_budget=0.01, eval_data=(m.data, m.labels[:3]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", eb.QuantizationWarning)
        qm = eb.quantize(m.graph, m.calib, accuracy_budget=0.5, eval_data=(m.data, m.labels))
    assert len(qm.tradeoffs) == 1 and qm.tradeoffs[0].meets_budget


def test_cli_accuracy_budget(tmp_path, capsys):
    pytest.importorskip("onnx")
    from eightbit.cli import main
    m = fm.imbalanced_channels()
    onnx_path = tmp_path / "m.onnx"
    eb.to_onnx(m.graph, str(onnx_path))
    np.save(tmp_path / "calib.npy", np.concatenate(m.calib))
    np.savez(tmp_path / "eval.npz", x=m.data, labels=m.labels)
    out = tmp_path / "m.eb"
    assert main(["quantize", str(onnx_path), "--calib", str(tmp_path / "calib.npy"), "--accuracy-budget", "0.01",
                 "--eval", str(tmp_path / "eval.npz"), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "meets the budget" in text
    qm = eb.load(str(out))
    acc_float = _accuracy(m.graph.run(m.data), m.labels)
    assert (acc_float - _accuracy(qm(m.data), m.labels)) / acc_float <= 0.01
