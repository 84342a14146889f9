"""Dask data -> partitions of model feeds: the one rule predict and calibration share.

- a dask array (a one-input model): the input's samples along axis 0, one partition per chunk
  of axis 0 (other axes are rechunked to one chunk: a sample is never split);
- a dask dataframe (a one-input model): rows are samples, the columns (in the frame's order) are
  the features; each row is reshaped, in C order, to the input's per-sample shape, whose
  dimensions must then all be fixed with a product equal to the number of columns (a 64-column
  frame feeds a [N, 64] or a [N, 1, 8, 8] input). One partition per dataframe partition; every
  column must be numeric;
- a dict {input name: dask array} (any model): one per input, all with the same chunks along
  axis 0 (partition i of the model is chunk i of every array).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._dask import da, dask

__all__ = ["Partitions", "partitions", "as_batch", "check_batch_size"]


@dataclass
class Partitions:
    blocks: list          # per partition: {input name: a Delayed block (ndarray, or pandas for a dataframe)}
    lengths: list         # samples per partition (nan where not known before computing: dataframes)
    sample_shapes: dict   # {input name: per-sample shape its rows are reshaped to}; absent: kept as they are
    names: list           # the model's input names

    def __len__(self) -> int:
        return len(self.blocks)


def _is_dataframe(data) -> bool:
    return dask.is_dask_collection(data) and hasattr(data, "columns") and hasattr(data, "to_delayed") \
        and not isinstance(data, da.Array)


def _array_blocks(x, where: str) -> list:
    if x.ndim == 0:
        raise ValueError(f"{where}: expected samples along axis 0, got a 0-d array")
    if x.ndim > 1 and any(len(c) > 1 for c in x.chunks[1:]):
        x = x.rechunk({i: -1 for i in range(1, x.ndim)})     # a sample is never split across blocks
    return list(x.to_delayed().ravel())


def _check_sample_shape(x, shape, where: str) -> None:
    """x's per-sample dims against the input's fixed ones (None / SeqLen dims are free)."""
    if shape is None:
        return
    if x.ndim != len(shape) + 1 or any(isinstance(d, int) and not isinstance(d, bool) and d != n
                                       for d, n in zip(shape, x.shape[1:])):
        want = "[N, " + ", ".join(str(d) if isinstance(d, int) else "?" for d in shape) + "]"
        raise ValueError(f"{where}: expected samples of shape {want}, got a dask array of shape {x.shape}")


def partitions(data, inputs: dict, where: str = "data") -> Partitions:
    """``data`` as Partitions for a model whose inputs are ``inputs`` ({name: per-sample shape,
    ints for fixed dimensions, anything else for free ones}); see the module docstring."""
    names = list(inputs)
    if isinstance(data, dict):
        if sorted(data) != sorted(names):
            raise ValueError(f"{where}: the model's inputs are {names}, the dict has {sorted(map(str, data))}")
        arrays = {}
        for n in names:
            if not isinstance(data[n], da.Array):
                raise TypeError(f"{where}[{n!r}]: expected a dask array, got {type(data[n]).__name__}")
            _check_sample_shape(data[n], inputs[n], f"{where}[{n!r}]")
            arrays[n] = data[n]
        chunks = {n: a.chunks[0] for n, a in arrays.items()}
        if len(set(chunks.values())) != 1:
            raise ValueError(f"{where}: the arrays must have the same chunks along axis 0, got {chunks}; "
                             "rechunk them alike (x.rechunk({0: ...}))")
        per_input = {n: _array_blocks(a, f"{where}[{n!r}]") for n, a in arrays.items()}
        lengths = list(next(iter(chunks.values())))
        blocks = [{n: per_input[n][i] for n in names} for i in range(len(lengths))]
        return Partitions(blocks, lengths, {}, names)
    if len(names) != 1 and (isinstance(data, da.Array) or _is_dataframe(data)):
        raise TypeError(f"{where}: the model has inputs {names}: pass {{name: dask array}}")
    if isinstance(data, da.Array):
        _check_sample_shape(data, inputs[names[0]], where)
        return Partitions([{names[0]: b} for b in _array_blocks(data, where)], list(data.chunks[0]), {}, names)
    if _is_dataframe(data):
        kinds = {str(c): np.dtype(t).kind if isinstance(t, np.dtype) else "O" for c, t in data.dtypes.items()}
        bad = sorted(c for c, k in kinds.items() if k not in "fiub")
        if bad:
            raise TypeError(f"{where}: dataframe columns must be numeric (each column is a feature), "
                            f"got non-numeric column(s) {bad[:5]}")
        shape = inputs[names[0]]
        columns = len(data.columns)
        fixed = shape is not None and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        if not fixed or math.prod(shape) != columns:
            raise ValueError(f"{where}: a dataframe's rows are reshaped to the input's per-sample shape, which must "
                             f"be fixed with {columns} elements (one per column); input {names[0]!r} has per-sample "
                             f"shape {shape}")
        blocks = [{names[0]: b} for b in data.to_delayed()]
        return Partitions(blocks, [math.nan] * len(blocks), {names[0]: tuple(shape)}, names)
    raise TypeError(f"{where}: expected a dask array, a dask dataframe or a dict {{input name: dask array}}, "
                    f"got {type(data).__name__}")


def check_batch_size(batch_size):
    """``batch_size``: a positive int, or None (a whole partition at once); ValueError otherwise."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size: expected a positive int or None (a whole partition at once), got {batch_size!r}")
    return batch_size


def as_batch(block, sample_shape=None) -> np.ndarray:
    """A computed block as the model's input array: a pandas frame's values, rows reshaped to
    ``sample_shape`` where one is given (dataframes)."""
    arr = block.to_numpy() if hasattr(block, "to_numpy") else np.asarray(block)
    if sample_shape is not None:
        arr = arr.reshape((arr.shape[0], *sample_shape))
    return arr
