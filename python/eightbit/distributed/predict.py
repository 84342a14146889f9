"""eightbit.distributed.predict: batch inference of a ``.eb`` model over a dask array or dataframe.

One task per partition (partitions.py): the worker takes the model from its per-process cache
(models.py: loaded once per process, memory-mapped, thread pool sized to the worker) and runs the
partition through the C++ executor, ``batch_size`` samples per call. Samples are independent in
every eightbit model (static activations are per tensor, dynamic ones per row), so the result is,
bit for bit, ``eb.load(model_path).run`` of the whole data in one call.
"""
from __future__ import annotations

import math
import os

import numpy as np

from ..graph.ir import SeqLen
from ..model import file_format
from ._dask import check_client, da, dask
from .models import cached_model, file_stamp
from .partitions import as_batch, check_batch_size, partitions

__all__ = ["predict"]


def _output_sample_shape(plan, output: str, feeds_shapes: dict) -> tuple:
    """The output's per-sample shape; a sequence dimension is the inputs' (nan when unknown)."""
    seq = math.nan
    for name, shape in feeds_shapes.items():
        for d, n in zip(plan.tensors[name].shape[1:], shape):
            if isinstance(d, SeqLen):
                seq = n
    return tuple(seq if isinstance(d, SeqLen) else d for d in plan.tensors[output].shape[1:])


def _run_partition(path, stamp, blocks, sample_shapes, output, batch_size, out_shape):
    qm = cached_model(path, stamp)
    feeds = {n: as_batch(b, sample_shapes.get(n)) for n, b in blocks.items()}
    n = len(next(iter(feeds.values())))
    if n == 0:
        return np.zeros((0, *out_shape), np.float32)
    step = n if batch_size is None else batch_size
    parts = [qm.run({k: v[i:i + step] for k, v in feeds.items()})[output] for i in range(0, n, step)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def predict(model_path, data, *, batch_size=None, output=None, client=None):
    """The model's ``output`` on ``data``, as a lazy dask array (float32, samples along axis 0, one
    chunk per partition of ``data``): ``.compute()`` equals ``eb.load(model_path).run(...)`` on
    the whole data, bit for bit.

    ``data``: a dask array (one-input model), a dask dataframe (one-input model; rows are samples,
    columns features, each row reshaped to the input's per-sample shape) or a dict {input name:
    dask array} with the same chunks along axis 0 (eightbit.distributed.partitions).
    ``model_path``: a ``.eb`` file every worker can read at the same path; each worker process
    loads it once (memory-mapped) and runs its partitions ``batch_size`` samples per call (None:
    a partition per call). ``output``: the output's name (required when the model has several).
    ``client``: a dask.distributed Client to persist the result on (computing starts at once; it
    stays a dask array); None leaves it lazy, for whichever scheduler computes it.
    """
    check_client(client)
    check_batch_size(batch_size)
    if not isinstance(model_path, (str, os.PathLike)):
        raise TypeError(f"model_path: expected a path to a .eb file, got {type(model_path).__name__}")
    path = os.path.abspath(os.fspath(model_path))
    stamp = file_stamp(path)
    plan = file_format.read(path)[1]            # checks the file, gives the shapes (no executor built here)
    if output is None:
        if len(plan.outputs) != 1:
            raise ValueError(f"output: the model has outputs {list(plan.outputs)}; name one")
        output = plan.outputs[0]
    elif output not in plan.outputs:
        raise ValueError(f"output: {output!r} is not an output of the model; its outputs: {list(plan.outputs)}")
    parts = partitions(data, {n: plan.tensors[n].shape[1:] for n in plan.inputs}, "data")
    shapes = {n: parts.sample_shapes[n] if n in parts.sample_shapes else _data_sample_shape(data, n)
              for n in plan.inputs}
    out_shape = _output_sample_shape(plan, output, shapes)
    run = dask.delayed(_run_partition, pure=True)
    chunks = [da.from_delayed(run(path, stamp, blocks, parts.sample_shapes, output, batch_size, out_shape),
                              shape=(length, *out_shape), dtype=np.float32)
              for blocks, length in zip(parts.blocks, parts.lengths)]
    result = chunks[0] if len(chunks) == 1 else da.concatenate(chunks, axis=0)
    return result if client is None else client.persist(result)


def _data_sample_shape(data, name):
    x = data[name] if isinstance(data, dict) else data
    return tuple(x.shape[1:])
