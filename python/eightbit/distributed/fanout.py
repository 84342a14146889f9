"""Per-node evaluations of eb.sensitivity and the accuracy-budget search, fanned out over workers.

Each node's evaluation (the model with only that node int8, run on the evaluation data:
``accuracy.analyze.isolated_outputs``) is independent of the others, so the nodes are dealt
round-robin into one group per worker thread; the calibrated graph and the data are sent to each
worker once (``Client.scatter(broadcast=True)``). A group's task recomputes the float graph's
values on the data (once per group, not per node) and returns each node's predictions; the
client ranks them exactly as the single-process loop does, so the ranking is the same.
"""
from __future__ import annotations

import numpy as np

from ..accuracy.analyze import isolated_outputs
from ._dask import check_client
from .models import _use_worker_threads

__all__ = ["isolated_predictions"]


def _predict_group(cal, nodes, feeds) -> dict:
    _use_worker_threads()
    preds = {n: [] for n in nodes}
    for _, chunk in isolated_outputs(cal, nodes, feeds):
        for n in nodes:
            preds[n].append(chunk[n])
    return {n: np.concatenate(p) for n, p in preds.items()}


def isolated_predictions(client, cal, nodes, feeds: dict) -> dict:
    """{node: the first output on ``feeds`` with only that node quantized}, computed on
    ``client``'s workers."""
    check_client(client)
    if client is None:
        raise TypeError("client: expected a dask.distributed.Client")
    nodes = list(nodes)
    if not nodes:
        return {}
    threads = sum(client.nthreads().values())
    if threads < 1:
        raise ValueError("client: the cluster has no workers")
    groups = [nodes[i::threads] for i in range(min(threads, len(nodes)))]
    cal_f, feeds_f = client.scatter([cal, feeds], broadcast=True)
    futures = [client.submit(_predict_group, cal_f, group, feeds_f, pure=False) for group in groups]
    out = {}
    for result in client.gather(futures):
        out.update(result)
    return {n: out[n] for n in nodes}
