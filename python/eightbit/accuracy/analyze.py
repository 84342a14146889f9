"""eb.analyze: where quantization error enters a model, node by node.

For every node of the quantized plan the float graph and the int8 model run on the same data:

* cumulative SQNR: the node's output in the whole int8 model (its plan tensor, dequantized by an
  extra probe step appended to a copy of the plan, run by the C++ executor) against the float
  graph's value of that tensor;
* isolated SQNR: the node alone quantized (a one-node plan: its inputs quantized from the float
  graph's values, its output dequantized) against the float value;
* isolated output SQNR: the model's first output with only this node quantized (every other node
  float32) against the float model's output: what this node alone costs the model;
* saturation: the share of the float values of the output that its scale and zero point cannot
  represent (they are clipped to qmin / qmax);
* weight SQNR per output channel (min and median) of conv / linear / matmul weights.

Data is processed in chunks of ``batch_size`` samples; the sums behind every SQNR accumulate
across chunks, so the memory is one chunk's tensors.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..graph import Graph
from ..model import Plan, QuantizedModel, Step, TensorSpec
from ..model.plan import FLOAT
from ..model.quantized_model import step_weight_bits
from .metrics import resolve, sqnr_db
from .report import LayerRecord, Report

__all__ = ["analyze", "check_output_sqnr", "isolated_output_sqnr", "split_data", "feeds_of", "first_output",
           "int8_nodes", "probe_model", "QUANTIZE_OPTIONS"]

QUANTIZE_OPTIONS = ("method", "percentile", "per_channel", "activation_dtype", "activation_symmetric", "requant",
                    "per_token", "equalize", "smooth", "bias_correction", "progress")
_HIST_BINS = 128
_WEIGHT_OPS = ("conv", "linear")
_NOT_INT8 = ("float", "softmax", "quantize", "dequantize", "dynamic_linear")


# ---- data plumbing ---------------------------------------------------------------------------

def split_data(data, where: str = "data"):
    """(x, labels or None) from ``x`` or ``(x, labels)``."""
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"{where}: expected x or a pair (x, labels), got a tuple of {len(data)}")
        x, y = data
        return x, None if y is None else np.asarray(y)
    return data, None


def feeds_of(graph: Graph, x, where: str = "data") -> dict:
    """{input name: float32 array} from an array (one-input graph) or a dict; all of one batch size."""
    if isinstance(x, dict):
        missing = [n for n in graph.inputs if n not in x]
        if missing:
            raise ValueError(f"{where}: missing input(s) {missing}; the graph's inputs are {graph.inputs}")
        feeds = {n: np.ascontiguousarray(x[n], np.float32) for n in graph.inputs}
    else:
        if len(graph.inputs) != 1:
            raise TypeError(f"{where}: the graph has inputs {graph.inputs}: pass {{name: array}}")
        if not isinstance(x, np.ndarray) and not hasattr(x, "__array__"):
            raise TypeError(f"{where}: expected an array, got {type(x).__name__}")
        feeds = {graph.inputs[0]: np.ascontiguousarray(x, np.float32)}
    for name, v in feeds.items():
        bad = v.size - int(np.count_nonzero(np.isfinite(v)))
        if bad:
            raise ValueError(f"{where}: input {name!r} has {bad} non-finite value(s) (NaN or infinity)")
    sizes = {len(v) for v in feeds.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"{where}: inputs must share one non-zero batch size, got {sorted(sizes)}")
    return feeds


def chunks(feeds: dict, size: int):
    n = len(next(iter(feeds.values())))
    for i in range(0, n, size):
        yield i, {k: v[i:i + size] for k, v in feeds.items()}


def first_output(graph: Graph, out):
    """The first output of ``graph.run``'s result (an array or a dict)."""
    return out[graph.outputs[0]] if isinstance(out, dict) else out


def run_first(qm: QuantizedModel, feeds: dict, batch_size: int = 64) -> np.ndarray:
    """qm's first output, run ``batch_size`` samples at a time (the executor's arena grows with
    the batch: an attention model's scores take megabytes per sample)."""
    return np.concatenate([qm.run(part)[qm.plan.outputs[0]] for _, part in chunks(feeds, batch_size)])


def int8_nodes(qm: QuantizedModel) -> list:
    """Source node names of the plan's integer steps, in plan order."""
    return [s.source for s in qm.plan.steps if s.op not in _NOT_INT8]


# ---- probes and one-node plans ---------------------------------------------------------------

def _plan_tensor(plan: Plan, name: str, quantized: bool):
    for cand in ((f"{name}:q", name) if quantized else (name, f"{name}:f")):
        t = plan.tensors.get(cand)
        if t is not None and t.quantized == quantized:
            return t
    return None


def probe_model(qm: QuantizedModel, graph: Graph, names) -> tuple:
    """(a QuantizedModel computing qm's outputs plus the float32 value of each graph tensor in
    ``names`` as the int8 model holds it, {graph tensor: plan output name}). Quantized tensors are
    dequantized by appended steps; the steps qm runs are unchanged, so are their results."""
    plan = qm.plan
    tensors, steps, outputs, where = dict(plan.tensors), list(plan.steps), list(plan.outputs), {}
    for name in names:
        q = _plan_tensor(plan, name, True)
        if q is not None:
            probe = f"{name}:probe"
            tensors[probe] = TensorSpec(probe, FLOAT, graph.tensors[name].shape)
            steps.append(Step("dequantize", (q.name,), probe, source=f"probe {name}"))
        else:
            f = _plan_tensor(plan, name, False)
            if f is None:
                continue
            probe = f.name
        if probe not in outputs:
            outputs.append(probe)
        where[name] = probe
    return QuantizedModel(Plan(tensors, steps, list(plan.inputs), outputs)), where


def _one_node_model(cal, node):
    """The node alone, quantized as in the full model: its inputs quantized, its output dequantized."""
    from ..quantizer import lower_to_model
    g = cal.graph
    inputs = list(dict.fromkeys(node.inputs))
    sub = Graph.from_nodes(g.input_specs(inputs), [node], [node.output], f"only {node.name}")
    return lower_to_model(sub, cal.params, requant=cal.requant)


# ---- each node quantized alone ---------------------------------------------------------------

def isolated_outputs(cal, nodes, feeds: dict, batch_size: int = 64):
    """Per chunk of ``batch_size`` samples: (the float graph's first output, {node: the first
    output with only that node quantized}). Each node's model covers only what it changes
    (``Calibrated.only_downstream``), fed with the float graph's values; it is built, run and
    dropped one at a time (a model holds every weight it runs)."""
    g = cal.graph
    for _, part in chunks(feeds, batch_size):
        values = g.run(part, return_all=True)
        ref = values[g.outputs[0]]
        preds = {}
        for n in nodes:
            model = cal.only_downstream(n)
            preds[n] = ref if model is None else run_first(model, {t: values[t] for t in model.plan.inputs},
                                                           batch_size)
        yield ref, preds


def isolated_output_sqnr(cal, nodes, feeds: dict, batch_size: int = 64) -> dict:
    """{node: SQNR (dB) of the model's first output when only that node is quantized}."""
    signal, noise = 0.0, dict.fromkeys(nodes, 0.0)
    for ref, preds in isolated_outputs(cal, nodes, feeds, batch_size):
        r = np.asarray(ref, np.float64)
        signal += float(np.sum(r ** 2))
        for n in nodes:
            noise[n] += _noise(r, preds[n])
    return {n: _db(signal, noise[n]) for n in nodes}


# ---- the quick check eb.quantize makes -------------------------------------------------------


def check_output_sqnr(cal, qm: QuantizedModel, min_sqnr: float, samples: int = 8) -> None:
    """Warn (QuantizationWarning) when the int8 model's output SQNR on the last calibration
    batch is below ``min_sqnr`` dB, naming the nodes that hurt the output most when quantized
    alone (measured on up to ``samples`` samples of that batch)."""
    from ..quantizer import QuantizationWarning
    feeds, outs = cal.check_feeds, cal.check_outputs
    if feeds is None:
        return
    got = qm.run(feeds)
    worst_out = min((sqnr_db(outs[name], got[name]), name) for name in qm.plan.outputs)
    if worst_out[0] >= min_sqnr:
        return
    small = {k: v[:samples] for k, v in feeds.items()}
    iso = isolated_output_sqnr(cal, list(dict.fromkeys(int8_nodes(qm))), small)
    worst = sorted(iso.items(), key=lambda kv: kv[1])[:5]
    names = ", ".join(f"{n} ({v:.1f} dB)" for n, v in worst)
    warnings.warn(
        f"eb.quantize: the int8 model's output {worst_out[1]!r} has an SQNR of {worst_out[0]:.1f} dB against "
        f"float32 on the last calibration batch (below {min_sqnr:g} dB). Quantized alone, these nodes hurt the "
        f"output most: {names}. Keep them float32 with exclude=[...], let accuracy_budget= choose, or see "
        "eb.analyze (docs/accuracy.md).", QuantizationWarning, stacklevel=3)


# ---- eb.analyze ------------------------------------------------------------------------------

class _Sums:
    """Running sums behind one tensor's statistics."""

    def __init__(self):
        self.signal = self.cum_noise = self.iso_noise = 0.0
        self.clipped = self.count = 0
        self.lo, self.hi = np.inf, -np.inf
        self.hist = None


def _noise(ref: np.ndarray, test: np.ndarray) -> float:
    return float(np.sum((np.asarray(test, np.float64) - ref) ** 2))


def _weight_sqnr(w: np.ndarray, step: Step):
    """(min, median) over output channels of the weights' SQNR in dB."""
    w = np.asarray(w, np.float64).reshape(w.shape[0], -1)
    wd = step.consts["w"].reshape(w.shape[0], -1).astype(np.float64) * \
        np.asarray(step.consts["w_scale"], np.float64).reshape(-1, 1)
    sig = np.sum(w ** 2, axis=1)
    noise = np.sum((wd - w) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        db = np.where(noise == 0, np.inf, 10 * np.log10(np.where(sig == 0, 1e-300, sig) / np.where(noise == 0, 1, noise)))
    return float(np.min(db)), float(np.median(db))


def _float_weight(node) -> np.ndarray:
    return node.consts["weight"] if "weight" in node.consts else node.consts["b"].T


def analyze(graph: Graph, calibration, data=None, *, qm: QuantizedModel = None, metric=None, exclude=(),
            batch_size: int = 64, **quantize_options) -> Report:
    """Quantize ``graph`` (with ``quantize_options`` as eb.quantize takes them, unless ``qm`` is
    given: then it is analysed, and the calibration only gives the observed ranges) and report,
    for every node, how much error it adds (module docstring). ``data``: ``x`` or ``(x, labels)``
    (default: the calibration batches); ``metric``: a name or callable (accuracy, f1, loss, cosine,
    sqnr, ...), measured for float32 and int8 against the labels or, without labels, the float
    model's outputs."""
    from ..quantizer import calibrate, check_exclude
    unknown = set(quantize_options) - set(QUANTIZE_OPTIONS)
    if unknown:
        raise TypeError(f"analyze: unexpected option(s) {sorted(unknown)}; quantize options are {QUANTIZE_OPTIONS}")
    if not isinstance(graph, Graph):
        raise TypeError(f"graph: expected an eightbit Graph, got {type(graph).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if calibration is not None and iter(calibration) is calibration:
        calibration = list(calibration)          # used twice: calibration and, by default, data
    exclude = check_exclude(graph, exclude)
    cal = calibrate(graph, calibration, **quantize_options)
    if qm is None:
        qm = cal.default_model(exclude)
    elif not isinstance(qm, QuantizedModel):
        raise TypeError(f"qm: expected a QuantizedModel, got {type(qm).__name__}")
    g = cal.graph
    missing = sorted({s.source for s in qm.plan.steps if s.op in ("float", *_WEIGHT_OPS)} - set(g._nodes_by_name))
    if missing:
        raise ValueError(f"qm: steps come from nodes {missing[:5]} that the graph (prepared for quantization) "
                         "does not have: analyse qm with the graph it was quantized from")
    if data is None:
        batches = [b if isinstance(b, dict) else {g.inputs[0]: b} for b in calibration]
        x, labels = {k: np.concatenate([b[k] for b in batches]) for k in g.inputs}, None
    else:
        x, labels = split_data(data)
    feeds = feeds_of(g, x)
    n = len(next(iter(feeds.values())))
    if labels is not None and len(labels) != n:
        raise ValueError(f"data: {len(labels)} labels for {n} samples")
    metric = None if metric is None else resolve(metric)

    steps = [s for s in qm.plan.steps if s.source in g._nodes_by_name or
             (s.op == "quantize" and s.source.startswith("quantize ") and s.source[9:] in g.inputs)]
    rows = []   # (record, graph tensor, step)
    for s in steps:
        if s.op == "quantize":
            name, op, tensor = s.source[9:], "input", s.source[9:]
        else:
            node = g.node(s.source)
            name, op, tensor = node.name, node.op, node.output
        spec = qm.plan.tensors[s.output]
        rec = LayerRecord(name=name, op=op, step=s.op, precision="int8" if spec.quantized else "float32",
                          output=tensor, dtype=str(spec.dtype), scale=spec.scale if spec.quantized else None,
                          zero_point=spec.zero_point if spec.quantized else None, weight_bits=step_weight_bits(s))
        if s.op in _WEIGHT_OPS:
            rec.weight_sqnr_min, rec.weight_sqnr_median = _weight_sqnr(_float_weight(g.node(name)), s)
        rows.append((rec, tensor, s))

    probe, where = probe_model(qm, g, [t for _, t, _ in rows])
    int8 = [r.name for r, _, s in rows if r.precision == "int8" and s.op != "quantize"]
    singles = {name: _one_node_model(cal, g.node(name)) for name in int8}   # one node each: small
    sums = {t: _Sums() for _, t, _ in rows}
    out_sig = {o: 0.0 for o in qm.plan.outputs}
    out_noise = dict.fromkeys(qm.plan.outputs, 0.0)
    preds_f, preds_q = [], []
    for _, part in chunks(feeds, batch_size):
        ref = cal.graph.run(part, return_all=True)
        got = probe.run(part)
        for o in qm.plan.outputs:
            r = np.asarray(ref[o], np.float64)
            out_sig[o] += float(np.sum(r ** 2))
            out_noise[o] += _noise(r, got[o])
        preds_f.append(ref[g.outputs[0]])
        preds_q.append(got[qm.plan.outputs[0]])
        for rec, t, s in rows:
            acc = sums[t]
            r = np.asarray(ref[t], np.float64)
            acc.signal += float(np.sum(r ** 2))
            if t in where:
                acc.cum_noise += _noise(r, got[where[t]])
            acc.lo, acc.hi = min(acc.lo, float(r.min(initial=np.inf))), max(acc.hi, float(r.max(initial=-np.inf)))
            acc.count += r.size
            if rec.scale is not None:
                lo_r, hi_r = rec.representable_range
                half = rec.scale / 2
                acc.clipped += int(np.count_nonzero((r < lo_r - half) | (r > hi_r + half)))
                edges = acc.hist[1] if acc.hist is not None else _edges(cal, t, lo_r, hi_r)
                counts = np.histogram(np.clip(r, edges[0], edges[-1]), bins=edges)[0]
                acc.hist = (counts if acc.hist is None else acc.hist[0] + counts, edges)
            if rec.name in singles:
                one = singles[rec.name]
                acc.iso_noise += _noise(r, run_first(one, {i: ref[i] for i in one.plan.inputs}))
    iso_out = isolated_output_sqnr(cal, int8, feeds, batch_size)
    for rec, t, s in rows:
        acc = sums[t]
        rec.cumulative_sqnr = _db(acc.signal, acc.cum_noise) if t in where else None
        rec.observed_min, rec.observed_max = acc.lo, acc.hi
        if rec.scale is not None:
            rec.saturation = acc.clipped / max(acc.count, 1)
            rec.histogram = (acc.hist[0].tolist(), acc.hist[1].tolist())
        if rec.name in singles:
            rec.isolated_sqnr = _db(acc.signal, acc.iso_noise)
            rec.isolated_output_sqnr = iso_out[rec.name]
    report = Report(layers=[r for r, _, _ in rows],
                    output_sqnr={o: _db(out_sig[o], out_noise[o]) for o in qm.plan.outputs},
                    options={**quantize_options, "exclude": sorted(exclude)}, samples=n, qm=qm, graph=g)
    if metric is not None:
        pf, pq = np.concatenate(preds_f), np.concatenate(preds_q)
        target = labels if labels is not None else pf
        report.metric, report.metric_float, report.metric_int8 = metric.name, metric(pf, target), metric(pq, target)
    return report


def _db(signal: float, noise: float) -> float:
    if noise == 0.0:
        return float("inf")
    return float("-inf") if signal == 0.0 else 10.0 * float(np.log10(signal / noise))


def _edges(cal, tensor: str, lo_r: float, hi_r: float) -> np.ndarray:
    """Histogram bins spanning the calibrated range and the representable one."""
    lo, hi = cal.params.ranges.get(tensor, (lo_r, hi_r))
    lo, hi = min(lo, lo_r), max(hi, hi_r)
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, _HIST_BINS + 1)
