"""Calibration over Dask: each partition observed on a worker, the statistics merged exactly.

    eb.quantize(graph, dask_x, method="entropy")          # or: calibration(dask_x, batch_size=64)

The batches are the partitions of the data (partitions.py), each cut into ``batch_size`` samples
(None: a partition is one batch), in partition order: the model equals
``eb.quantize(graph, batches)`` over that list of NumPy batches in one process, scale for scale
and bit for bit. How each method's statistics combine:

- minmax: min of the minima, max of the maxima.
- percentile, entropy, mse: the streamed histogram (calibrate/histogram.py) only ever grows its
  half range T by powers of two from the T of the first non-zero batch, and re-binning by a
  power of two is exact. So every partition after the first starts its histogram on the grid of
  the first batch of all (``HistogramObserver.start_grid``; a small task computes those T from
  the first batch, beside the partitions), and the client re-bins each onto the widest grid and
  adds the counts: the result equals the histogram one process would have streamed, bin for bin.
  A tensor that is all zero in the first batch gets its T from the first partition where it is
  not; partitions that started it elsewhere are observed again for that tensor (rare: a dead ReLU
  in the first batch).
- moving_average: the average depends on the order of every batch, and partial averages do not
  combine. Workers send each batch's (min, max, count) per tensor; the client replays them in
  batch order (``MovingAverageMinMaxObserver.update_range``): exact, and the float graph still
  runs on the workers.
- ``smooth`` and ``binary`` read the batches in passes of their own first (order-dependent
  float64 sums): those stream the batches to the client in order (``iter``); the calibration
  pass after them runs on the workers. ``bias_correction`` gathers such sums in the calibration
  pass itself, which then runs on the client over the streamed batches. The same model either way.

The last batch and the float graph's outputs on it (eb.quantize's SQNR check) come back from the
last partition.
"""
from __future__ import annotations

import math

from ..calibrate import Calibrator, HistogramObserver
from ..calibrate.base import check_batch
from ..calibrate.batches import check_feeds_batch
from ..calibrate.histogram import HISTOGRAM_METHODS
from ._dask import check_client, compute, dask
from .models import _use_worker_threads
from .partitions import as_batch, check_batch_size, partitions

__all__ = ["DaskCalibration", "calibration"]


def calibration(data, *, batch_size=None, client=None) -> "DaskCalibration":
    """Calibration batches from dask ``data`` (a dask array, dataframe or {input name: dask array}),
    for eb.quantize / eb.sensitivity; ``batch_size``: samples per batch (None: a
    partition per batch); ``client``: the dask.distributed Client to observe them on (None: Dask's
    default scheduler). A bare dask collection passed to eb.quantize is the same as
    ``calibration(data)``."""
    return DaskCalibration(data, batch_size=batch_size, client=client)


class DaskCalibration:
    """An iterable of calibration batches backed by dask data; ``observe_calibrators`` is the
    distributed pass eb.quantize uses, ``iter()`` the same batches one by one on the client."""

    def __init__(self, data, *, batch_size=None, client=None, graph=None):
        if isinstance(data, DaskCalibration):
            raise TypeError("data: already a DaskCalibration")
        self.data = data
        self.batch_size = check_batch_size(batch_size)
        self.client = check_client(client)
        self._parts = None
        if not (isinstance(data, dict) or dask.is_dask_collection(data)):
            raise TypeError(f"data: expected a dask array, a dask dataframe or a dict {{input name: dask array}}, "
                            f"got {type(data).__name__}")
        if graph is not None:
            self._parts = partitions(data, {n: graph.tensors[n].shape[1:] for n in graph.inputs}, "calibration")

    def bound(self, graph, client=None) -> "DaskCalibration":
        """This calibration for ``graph``'s inputs (checks the data against them; a dataframe's
        rows are reshaped to the input's per-sample shape); ``client`` replaces a None one."""
        return DaskCalibration(self.data, batch_size=self.batch_size, client=self.client or check_client(client),
                               graph=graph)

    def _partitions(self):
        if self._parts is None:
            raise ValueError("calibration: bind it to a graph first (eb.quantize does: DaskCalibration.bound(graph))")
        return self._parts

    # ---- the same batches, one by one, on the client --------------------------------------------

    def __iter__(self):
        parts = self._partitions()
        single = len(parts.names) == 1
        for blocks in parts.blocks:
            values = dict(zip(blocks, compute(list(blocks.values()), self.client)))
            feeds = {n: as_batch(v, parts.sample_shapes.get(n)) for n, v in values.items()}
            for batch in _split(feeds, self.batch_size):
                yield batch[parts.names[0]] if single else batch

    def __len__(self) -> int:
        parts = self._partitions()
        if any(math.isnan(n) for n in parts.lengths):
            raise TypeError("the number of batches is not known before the dataframe's partitions are computed")
        if self.batch_size is None:
            return len(parts.lengths)
        return sum(-(-int(n) // self.batch_size) for n in parts.lengths)

    # ---- the distributed pass ---------------------------------------------------------------------

    def observe_calibrators(self, graph, calibrators: dict):
        """Observe every batch of the data with ``graph`` (prepared for quantization) on the
        workers and merge the statistics into ``calibrators`` ({method: empty Calibrator}): the
        same state as ``graph.run(batch, on_tensor=...)`` over every batch in order. Returns the
        last batch's feeds and the graph's output on it, as that loop leaves them."""
        parts = self._partitions()
        configs = {m: (c.method, dict(c.options)) for m, c in calibrators.items()}
        histograms = any(method in HISTOGRAM_METHODS for method, _ in configs.values())
        g = dask.delayed(graph, pure=False)
        observe = dask.delayed(_observe_partition, pure=False)
        anchors = dask.delayed(_first_batch_grid, pure=False)(g, parts.blocks[0], parts.sample_shapes,
                                                              self.batch_size) \
            if histograms and len(parts) > 1 else {}
        tasks = [observe(g, blocks, parts.sample_shapes, configs, anchors if p else {}, None, self.batch_size, p)
                 for p, blocks in enumerate(parts.blocks)]
        results = compute(tasks, self.client)
        self._observe_again(graph, parts, configs, results)
        last = None
        for r in results:
            for m, cal in calibrators.items():
                if m in r.ranges_of:
                    for name, seq in r.ranges_of[m].items():
                        obs = cal.observer(name)
                        for lo, hi, n in seq:
                            obs.update_range(lo, hi, n)
                else:
                    cal.merge(r.calibrators[m])
            if r.last is not None:
                last = r.last
        if last is None:
            raise ValueError("calibration: no non-empty batch was given; calibration needs at least one batch of data")
        return last

    def _observe_again(self, graph, parts, configs, results) -> None:
        """Tensors whose histogram some partition started on another grid than the first batch
        that has them (module docstring): observed again there, on the right grid."""
        grid = {}
        for r in results:                         # the first partition with the tensor non-zero sets its grid
            for name, t in r.first_grid.items():
                grid.setdefault(name, t)
        redo = {}
        for p, r in enumerate(results):
            wrong = {name for name, t in r.grid_used.items() if t != grid.get(name)}
            if wrong:
                redo[p] = wrong
        if not redo:
            return
        g = dask.delayed(graph, pure=False)
        observe = dask.delayed(_observe_partition, pure=False)
        tasks = [observe(g, parts.blocks[p], parts.sample_shapes, configs, {n: grid[n] for n in names}, names,
                         self.batch_size, p) for p, names in redo.items()]
        for p, again in zip(redo, compute(tasks, self.client)):
            for m, cal in again.calibrators.items():
                for name in redo[p]:
                    if name in cal:
                        results[p].calibrators[m].replace_observer(name, cal.observer(name))


class _PartitionResult:
    """What a worker sends back for one partition."""

    def __init__(self):
        self.calibrators = {}   # {method: Calibrator} (histogram, minmax methods)
        self.ranges_of = {}     # {method: {name: [(lo, hi, count) per batch]}} (moving_average)
        self.first_grid = {}    # {name: T set by this partition's first non-zero batch} (histograms started freely)
        self.grid_used = {}     # {name: the T this partition's histogram grid starts from} (non-zero tensors)
        self.last = None        # (feeds, outputs) of the partition's last non-empty batch


def _split(feeds: dict, batch_size):
    n = len(next(iter(feeds.values())))
    step = n if batch_size is None else batch_size
    for i in range(0, n, max(step, 1)):
        yield {k: v[i:i + step] for k, v in feeds.items()}


def _batches(blocks, sample_shapes, batch_size, where):
    feeds = {n: as_batch(b, sample_shapes.get(n)) for n, b in blocks.items()}
    for j, batch in enumerate(_split(feeds, batch_size)):
        checked = check_feeds_batch(batch, list(blocks), f"{j} of partition {where}")
        if checked is not None:
            yield checked


def _first_batch_grid(graph, blocks, sample_shapes, batch_size) -> dict:
    """{tensor: T its histogram gets from the first batch of all} (tensors non-zero in it)."""
    _use_worker_threads()
    cal = Calibrator("mse")
    for feeds in _batches(blocks, sample_shapes, batch_size, 0):
        graph.run(feeds, on_tensor=cal.observe)
        break
    return {name: obs.half_range for name, obs in cal.observers.items() if obs.half_range > 0}


def _observe_partition(graph, blocks, sample_shapes, configs, grid, only, batch_size, index) -> _PartitionResult:
    """Observe one partition's batches; histograms of tensors in ``grid`` start on that grid."""
    _use_worker_threads()
    r = _PartitionResult()
    cals = {}
    for m, (method, options) in configs.items():
        if method == "moving_average":
            r.ranges_of[m] = {}
        else:
            cals[m] = r.calibrators[m] = Calibrator(method, **options)

    def on_tensor(name, array):
        if only is not None and name not in only:
            return
        for cal in cals.values():
            fresh = name not in cal
            obs = cal.observer(name)
            if fresh and name in grid and isinstance(obs, HistogramObserver):
                obs.start_grid(grid[name])
            obs.update(array)
            if isinstance(obs, HistogramObserver) and obs.half_range > 0 and name not in r.grid_used:
                r.grid_used[name] = grid.get(name, obs.half_range)
                if name not in grid:
                    r.first_grid[name] = obs.half_range
        for seqs in r.ranges_of.values():
            seq = seqs.setdefault(name, [])
            checked = check_batch(array, name)
            if checked is not None:
                arr, lo, hi = checked
                seq.append((lo, hi, int(arr.size)))

    for feeds in _batches(blocks, sample_shapes, batch_size, index):
        outputs = graph.run(feeds, on_tensor=on_tensor)
        r.last = (feeds, outputs)
    if only is not None:
        r.last = None
    return r
