"""eb.sensitivity: what each node costs the model's metric when it alone is quantized.

One calibration pass (shared by every calibration method asked for); every candidate model is a
lowering of the same calibrated graph run by the C++ executor: for each node that the default
int8 model quantizes, the model with only that node int8 (every other node float32; only the part
the node changes is run, fed with the float graph's values), ranked by its relative metric drop,
worst first. With ``methods=[...]``, also the whole model quantized
with each calibration method.
"""
from __future__ import annotations

import time

import numpy as np

from ..graph import Graph
from .analyze import (QUANTIZE_OPTIONS, chunks, feeds_of, first_output, int8_nodes, isolated_outputs, run_first,
                      split_data)
from .metrics import resolve
from .report import MethodRow, Sensitivity, SensitivityRow

__all__ = ["sensitivity", "default_metric", "Scorer"]


def default_metric(labels):
    """accuracy with labels, SQNR against the float model without."""
    return "accuracy" if labels is not None else "sqnr"


class Scorer:
    """A metric evaluated on fixed data: the float model's value once, then any int8 model's."""

    def __init__(self, cal, data, metric=None, where: str = "data"):
        x, labels = split_data(data, where)
        self.feeds = feeds_of(cal.graph, x, where)
        n = len(next(iter(self.feeds.values())))
        if labels is not None and len(labels) != n:
            raise ValueError(f"{where}: {len(labels)} labels for {n} samples")
        self.metric = resolve(default_metric(labels) if metric is None else metric)
        self.float_pred = np.concatenate([first_output(cal.graph, cal.graph.run(part))
                                          for _, part in chunks(self.feeds, 64)])
        self.target = labels if labels is not None else self.float_pred
        self.float_value = self.metric(self.float_pred, self.target)

    def __call__(self, qm) -> tuple:
        """(metric, drop, relative drop) of ``qm`` on the data."""
        value = self.metric(run_first(qm, self.feeds), self.target)
        return (value, *self.metric.drop(self.float_value, value))


def rank_nodes(cal, scorer: Scorer, nodes, client=None) -> list:
    """SensitivityRows of ``nodes`` quantized one at a time, worst (largest relative drop) first;
    with a dask.distributed ``client``, the nodes are evaluated on its workers."""
    if client is not None:
        from ..distributed.fanout import isolated_predictions
        preds = isolated_predictions(client, cal, nodes, scorer.feeds)
    else:
        parts = {n: [] for n in nodes}
        for _, chunk in isolated_outputs(cal, nodes, scorer.feeds):
            for n in nodes:
                parts[n].append(chunk[n])
        preds = {n: np.concatenate(parts[n]) for n in nodes}
    rows = []
    for name in nodes:
        value = scorer.metric(preds[name], scorer.target)
        drop, rel = scorer.metric.drop(scorer.float_value, value)
        rows.append(SensitivityRow(name, cal.graph.node(name).op, scorer.float_value, value, drop, rel))
    rows.sort(key=lambda r: (-r.relative_drop, -r.drop))
    return rows


def sensitivity(graph: Graph, calibration, data, *, metric=None, methods=None, exclude=(), client=None,
                **quantize_options) -> Sensitivity:
    """Rank the nodes of ``graph`` by what quantizing each one alone costs ``metric`` on ``data``
    (``x`` or ``(x, labels)``); ``metric``: a name (accuracy, f1, recall, precision, loss, cosine,
    sqnr) or a callable ``fn(pred, target)``, higher is better; default accuracy with labels, SQNR
    against the float model without. ``methods``: calibration methods to compare for the whole
    model (one calibration pass serves all). ``quantize_options`` as eb.quantize takes them.
    ``client``: a dask.distributed Client whose workers evaluate the nodes (and observe dask
    ``calibration`` data); the result is the same (docs/distributed.md)."""
    from ..quantizer import calibrate, check_exclude
    unknown = set(quantize_options) - set(QUANTIZE_OPTIONS)
    if unknown:
        raise TypeError(f"sensitivity: unexpected option(s) {sorted(unknown)}; quantize options are {QUANTIZE_OPTIONS}")
    start = time.perf_counter()
    exclude = check_exclude(graph, exclude)
    method = quantize_options.pop("method", "minmax")
    extra = [] if methods is None else [m for m in ([methods] if isinstance(methods, str) else methods)]
    cals = calibrate(graph, calibration, methods=list(dict.fromkeys([method, *extra])), client=client,
                     **quantize_options)
    cal = cals[method]
    scorer = Scorer(cal, data, metric)
    nodes = list(dict.fromkeys(int8_nodes(cal.default_model(exclude))))
    result = Sensitivity(scorer.metric.name, rank_nodes(cal, scorer, nodes, client))
    for m in extra:
        value, drop, rel = scorer(cals[m].default_model(exclude))
        result.methods.append(MethodRow(m, scorer.float_value, value, drop, rel))
    result.seconds = time.perf_counter() - start
    return result
