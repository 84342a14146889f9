"""Mixed precision under an accuracy budget: eb.quantize(..., accuracy_budget=0.01, eval_data=...).

1. The default int8 model is measured on ``eval_data``; within the budget, it is the answer.
2. Otherwise the int8 nodes are ranked by sensitivity (each quantized alone, sensitivity.py) and
   the k most sensitive are kept float32, k = 1, 2, 4, ... until a candidate meets the budget,
   then bisected down to the smallest k that does. Every candidate is measured, not predicted:
   metric, relative drop, constant bytes and latency on the evaluation data.

With a dask.distributed ``client`` (eb.quantize(client=...)), the per-node sensitivity runs
on its workers (eightbit.distributed.fanout); the candidates, each depending on the last, are
measured here.

The model returned has ``tradeoffs`` (every candidate, in the order measured) and
``float_nodes`` (every node running in float32).
"""
from __future__ import annotations

import time

import numpy as np

from .analyze import int8_nodes
from .report import Tradeoff
from .sensitivity import Scorer, rank_nodes

__all__ = ["mixed_precision"]


def _latency_ms(qm, feeds: dict, repeats: int = 5) -> float:
    part = {k: v[:64] for k, v in feeds.items()}
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        qm.run(part)
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def mixed_precision(cal, budget, eval_data, metric, exclude: set, client=None):
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 <= budget < 1:
        raise ValueError(f"accuracy_budget: expected a relative metric drop in [0, 1), e.g. 0.01, got {budget!r}")
    if eval_data is None:
        if cal.check_feeds is None:
            raise ValueError("eval_data: accuracy_budget needs evaluation data, x or (x, labels)")
        eval_data = cal.check_feeds if len(cal.graph.inputs) > 1 else cal.check_feeds[cal.graph.inputs[0]]
    scorer = Scorer(cal, eval_data, metric, where="eval_data")
    tradeoffs, models = [], {}

    def measure(kept: tuple):
        qm = cal.default_model(exclude | set(kept))
        value, _, rel = scorer(qm)
        tradeoffs.append(Tradeoff(tuple(sorted(exclude)) + kept, qm.size_bytes, _latency_ms(qm, scorer.feeds),
                                  value, rel, rel <= budget))
        models[kept] = qm
        return rel <= budget

    chosen = ()
    if not measure(()):
        ranked = [r.node for r in rank_nodes(cal, scorer, list(dict.fromkeys(int8_nodes(models[()]))), client)]
        lo, hi = 0, 1                                   # lo fails, hi is tried next
        while not measure(tuple(ranked[:hi])):
            if hi == len(ranked):                       # cannot happen: all float is the float model
                raise RuntimeError("accuracy_budget: no candidate met the budget")
            lo, hi = hi, min(2 * hi, len(ranked))
        while hi - lo > 1:                              # smallest k in (lo, hi] that meets it
            mid = (lo + hi) // 2
            if measure(tuple(ranked[:mid])):
                hi = mid
            else:
                lo = mid
        chosen = tuple(ranked[:hi])
    qm = models[chosen]
    qm.tradeoffs = tradeoffs
    return qm
