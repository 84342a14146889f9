"""eb.evaluate: several models side by side on the same data: metrics, size, memory and latency.

    ev = eb.evaluate({"float32": graph, "int8": qm, "int8 mse": qm2}, x_test, y_test)
    print(ev.table())
    ev.to_json("eval.json")

The first model is the reference. "cosine" and "sqnr" compare each model's (first) output with
the reference's; the class metrics (accuracy, f1, recall, precision) and "loss" use ``labels``
when given, else the reference's outputs (then they measure agreement with the reference). The
metrics are eightbit.accuracy.metrics' (names, Metric objects or callables ``fn(pred, target)``).

An ``eb.Ensemble`` is measured as one model (row "<name>", kind "ensemble") and each of its members
alone (rows "<name>/member0", ... or its ``names``), so the table shows what combining gained.

Per model: ``model_bytes`` (a Graph's constants, a QuantizedModel's ``size_bytes``, an
ensemble's members' together, None for a callable); ``peak_bytes``, the memory one run of the
latency batch needs: for a QuantizedModel the executor's arena for that batch plus the constants
the executor holds (packed weights, per-channel parameters, tables: ``PlanExecutor.const_bytes``),
for an ensemble the sum of its members' (they run at once), for a Graph the peak of the
allocations ``tracemalloc`` sees during one run plus its constants, for a callable that peak
alone; ``latency_p50_ms`` / ``latency_p99_ms`` of single calls on one batch (``batch_size`` rows,
default all of ``data``), ``repeats`` times after one warm-up call.
"""
from __future__ import annotations

import math
import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np

from .metrics import resolve
from .report import _plain, format_table, write_json
from .runner import ModelRunner

__all__ = ["Evaluation", "evaluate", "DEFAULT_METRICS"]

DEFAULT_METRICS = ("accuracy", "f1", "recall", "precision", "loss", "cosine", "sqnr")
_VERSUS_REFERENCE = ("cosine", "sqnr")
_FIELDS = ("name", "kind", "model_bytes", "peak_bytes", "latency_p50_ms", "latency_p99_ms")


@dataclass
class Evaluation:
    """eb.evaluate's result. ``rows``: one dict per model, in the order given, with "name",
    "kind" ("graph", "quantized", "ensemble" or "callable"), one entry per metric, "model_bytes",
    "peak_bytes", "latency_p50_ms" and "latency_p99_ms". ``target`` says what the class
    metrics and loss compared with: "labels" or "reference"."""

    rows: list
    metrics: list
    reference: str
    target: str
    samples: int
    batch_size: int
    repeats: int
    extra: dict = field(default_factory=dict)

    def row(self, name: str) -> dict:
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(f"no model named {name!r} in the evaluation")

    def table(self) -> str:
        header = ["model", "kind"] + [_metric_header(m) for m in self.metrics] + [
            "model bytes", "peak bytes", "p50 ms", "p99 ms"]
        rows = []
        for r in self.rows:
            rows.append([r["name"], r["kind"]] + [_fmt_metric(m, r[m]) for m in self.metrics] + [
                "-" if r["model_bytes"] is None else str(r["model_bytes"]), str(r["peak_bytes"]),
                f"{r['latency_p50_ms']:.3f}", f"{r['latency_p99_ms']:.3f}"])
        against = "labels" if self.target == "labels" else f"the outputs of {self.reference!r}"
        return (format_table(header, rows) +
                f"\n{self.samples} samples; reference {self.reference!r}; class metrics and loss against {against}; "
                f"latency of a batch of {self.batch_size} over {self.repeats} calls")

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        return _plain({"reference": self.reference, "target": self.target, "metrics": list(self.metrics),
                       "samples": self.samples, "batch_size": self.batch_size, "repeats": self.repeats,
                       "rows": self.rows, **self.extra})

    def to_json(self, path=None) -> str:
        """The evaluation as JSON (written to ``path`` when given); infinities as "inf" / "-inf"."""
        return write_json(self.to_dict(), path)


def _metric_header(name: str) -> str:
    return "sqnr dB" if name == "sqnr" else name


def _fmt_metric(name: str, v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.1f}" if name == "sqnr" else f"{v:.4f}"


# ------------------------------------------------------------------------------ models

# ------------------------------------------------------------------------------ data

def _check_data(data) -> int:
    """Number of samples; every array of a dict must have it."""
    if isinstance(data, dict):
        if not data:
            raise ValueError("data: the dict of inputs is empty")
        sizes = {}
        for k, v in data.items():
            a = np.asarray(v)
            if a.ndim == 0:
                raise ValueError(f"data[{k!r}]: expected an array with a batch dimension, got a scalar")
            sizes[k] = a.shape[0]
        if len(set(sizes.values())) != 1:
            raise ValueError(f"data: the inputs have different numbers of samples: {sizes}")
        n = next(iter(sizes.values()))
    else:
        if data is None or isinstance(data, (str, bytes)):
            raise TypeError(f"data: expected an array or {{input name: array}}, got {type(data).__name__}")
        a = np.asarray(data)
        if a.ndim == 0:
            raise ValueError("data: expected an array with a batch dimension, got a scalar")
        n = a.shape[0]
    if n == 0:
        raise ValueError("data: no samples")
    return int(n)


def _slice(data, start: int, stop: int):
    if isinstance(data, dict):
        return {k: np.asarray(v)[start:stop] for k, v in data.items()}
    return np.asarray(data)[start:stop]


def _outputs(runner: ModelRunner, data, n: int, batch: int) -> np.ndarray:
    parts = [runner(_slice(data, i, min(i + batch, n))) for i in range(0, n, batch)]
    try:
        return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    except ValueError as e:
        raise ValueError(f"models[{runner.name!r}]: outputs of different batches do not concatenate: {e}") from None


# ------------------------------------------------------------------------------ measurements

def _latency_ms(runner: ModelRunner, x, repeats: int) -> tuple:
    runner(x)  # warm-up: arenas, caches, lazy packing
    times = np.empty(repeats)
    for i in range(repeats):
        t = time.perf_counter()
        runner(x)
        times[i] = time.perf_counter() - t
    p50, p99 = np.percentile(times * 1e3, [50, 99])
    return float(p50), float(p99)


def _traced_peak(runner: ModelRunner, x) -> int:
    """Peak bytes allocated (as tracemalloc sees them: Python objects and NumPy's buffers) during one call."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        runner(x)
        return max(0, tracemalloc.get_traced_memory()[1] - base)
    finally:
        if started:
            tracemalloc.stop()


def _executor_bytes(qm, batch: int):
    ex = qm._executor
    return None if ex is None else int(ex.arena_bytes_per_sample) * batch + int(ex.const_bytes)


def _peak_bytes(runner: ModelRunner, x, batch: int) -> int:
    if runner.kind == "quantized" and runner.model._executor is not None:
        return _executor_bytes(runner.model, batch)
    if runner.kind == "ensemble":  # the members run at once: all their arenas are alive together
        parts = [_executor_bytes(m, batch) for m in runner.model.members]
        if all(p is not None for p in parts):
            return sum(parts)
    peak = _traced_peak(runner, x)
    return peak + (runner.model_bytes or 0)


# ------------------------------------------------------------------------------ evaluate

def _with_members(models: dict) -> dict:
    """The models, each eb.Ensemble followed by its members as "<name>/<member name>"."""
    from ..ensemble import Ensemble

    out = {}
    for name, model in models.items():
        out[name] = model
        if isinstance(model, Ensemble):
            for member_name, member in zip(model.names, model.members):
                key = f"{name}/{member_name}"
                if key in models:
                    raise ValueError(f"models: {key!r} names both a model and a member of ensemble {name!r}")
                out[key] = member
    return out


def evaluate(models, data, labels=None, metrics=DEFAULT_METRICS, *, batch_size=None, repeats=20) -> Evaluation:
    """Evaluate ``models`` ({name: eb.Graph | QuantizedModel | eb.Ensemble | callable x -> y}; the
    first is the reference; an ensemble adds a row per member, "<name>/<member name>", after its
    own) on ``data`` (an array, or {input name: array}); see the module docstring.

    ``labels``: integer class labels [N] (optional). ``metrics``: names from
    eightbit.accuracy.metrics.METRICS, Metric objects or callables. ``batch_size``: run the
    metrics in batches of this many samples, and time one such batch (default: all of data at
    once). ``repeats``: timed calls per model."""
    if not isinstance(models, dict):
        raise TypeError(f"models: expected a dict {{name: model}}, got {type(models).__name__}")
    if not models:
        raise ValueError("models: the dict is empty; give at least one model (the first is the reference)")
    for name in models:
        if not isinstance(name, str) or not name:
            raise TypeError(f"models: names must be non-empty strings, got {name!r}")
    if isinstance(metrics, (str, bytes)) or callable(metrics):
        metrics = (metrics,)
    resolved = [resolve(m) for m in metrics]
    names = [m.name for m in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"metrics: names must be unique, got {names}")
    clash = [m for m in names if m in _FIELDS]
    if clash:
        raise ValueError(f"metrics: {clash} clash with the evaluation's own fields {list(_FIELDS)}")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats: expected an int >= 1, got {repeats!r}")
    n = _check_data(data)
    if batch_size is None:
        batch = n
    elif isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1 or None, got {batch_size!r}")
    else:
        batch = min(int(batch_size), n)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim < 1 or labels.shape[0] != n:
            raise ValueError(f"labels: expected {n} labels (one per sample of data), got shape {labels.shape}")

    runners = [ModelRunner(name, model) for name, model in _with_members(models).items()]
    for r in runners:
        r.check_data(data)
    outputs = {}
    for r in runners:
        y = _outputs(r, data, n, batch)
        if y.ndim < 1 or y.shape[0] != n:
            raise ValueError(f"models[{r.name!r}]: expected an output with {n} samples, got shape {y.shape}")
        outputs[r.name] = y
    ref_name = runners[0].name
    ref = outputs[ref_name]
    for r in runners[1:]:
        if outputs[r.name].shape != ref.shape:
            raise ValueError(f"models[{r.name!r}]: output shape {outputs[r.name].shape} differs from the "
                             f"reference {ref_name!r}'s {ref.shape}")

    x_batch = _slice(data, 0, batch)
    rows = []
    for r in runners:
        pred = outputs[r.name]
        row = {"name": r.name, "kind": r.kind}
        for m in resolved:
            target = ref if (m.name in _VERSUS_REFERENCE or labels is None) else labels
            try:
                row[m.name] = m(pred, target)
            except ValueError as e:
                raise ValueError(f"metric {m.name!r} on model {r.name!r}: {e}") from None
        row["model_bytes"] = r.model_bytes
        row["peak_bytes"] = _peak_bytes(r, x_batch, batch)
        row["latency_p50_ms"], row["latency_p99_ms"] = _latency_ms(r, x_batch, int(repeats))
        rows.append(row)
    return Evaluation(rows, names, ref_name, "labels" if labels is not None else "reference", n, batch, int(repeats))
