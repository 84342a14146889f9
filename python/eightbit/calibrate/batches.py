"""iterate_batches: stream a calibration iterable once, checking each batch (layer 3).

``calibration`` is any iterable of batches: an array for a one-input graph, or a dict
{input name: array}. It is consumed once and never stored, so a generator reading from disk
keeps memory bounded however many batches there are. Each batch is yielded as
{input name: array}, after checks that name the batch index and input:

- a dict must have exactly the graph's input names; a bare array needs a one-input graph;
- arrays must be floating point (the float executor's rule) and finite;
- empty batches (a zero-size array, e.g. the last slice of an off-by-one split) are skipped;
- an iterable that yields no non-empty batch raises ValueError at its end;
- a bare ndarray, dict or str as ``calibration`` raises TypeError: iterating an array would feed
  its rows one by one as batches, which is never what was meant.

Progress: ``progress=None`` (default) shows a tqdm bar once the run has taken more than
SHOW_AFTER_S (2 s) and only if tqdm is importable (it is not a dependency: without it nothing is
shown and nothing is said); True shows it from the first batch (if tqdm is importable); False
never. The bar counts batches, with a total when ``calibration`` has a len().
"""
from __future__ import annotations

import time

import numpy as np

__all__ = ["iterate_batches", "SHOW_AFTER_S"]

SHOW_AFTER_S = 2.0
_clock = time.monotonic            # tests replace it


def _load_tqdm():
    try:
        from tqdm import tqdm
    except Exception:              # ImportError, or a broken install: degrade silently
        return None
    return tqdm


class _Progress:
    def __init__(self, mode, total):
        self.total = total
        self.bar = None
        self.tqdm = None if mode is False else _load_tqdm()
        self.auto = mode is None
        self.start = _clock()
        if mode is True and self.tqdm is not None:
            self.bar = self.tqdm(total=total, desc="calibrating", unit="batch")

    def step(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
        elif self.auto and self.tqdm is not None and _clock() - self.start > SHOW_AFTER_S:
            self.bar = self.tqdm(total=self.total, initial=done, desc="calibrating", unit="batch")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_array(value, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{where}: expected an array, got {type(value).__name__} ({exc})") from exc
    if arr.dtype.kind in "iu":        # token ids / attention masks of an int64 input (the graph checks which)
        return arr
    if arr.dtype.kind != "f":
        raise TypeError(f"{where}: expected a floating-point array (float32), or integers for an int64 input, "
                        f"got dtype {arr.dtype}")
    if arr.size and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{where}: {bad} non-finite value(s) (NaN or infinity); calibration data must be finite")
    return arr


def check_feeds_batch(batch, names: list, index: int):
    """{name: array}, or None for an empty batch."""
    if isinstance(batch, dict):
        missing = [n for n in names if n not in batch]
        unknown = sorted(str(k) for k in batch if k not in names)
        if missing or unknown:
            what = "; ".join(s for s in (f"missing input(s) {missing}" if missing else "",
                                         f"unknown input(s) {unknown}" if unknown else "") if s)
            raise ValueError(f"calibration batch {index}: {what}; the graph's inputs are {names}")
        out = {n: _check_array(batch[n], f"calibration batch {index}, input {n!r}") for n in names}
    else:
        if len(names) != 1:
            raise TypeError(f"calibration batch {index}: the graph has {len(names)} inputs {names}; "
                            f"each batch must be a dict {{name: array}}, got {type(batch).__name__}")
        out = {names[0]: _check_array(batch, f"calibration batch {index}")}
    if any(a.size == 0 for a in out.values()):
        return None
    return out


def iterate_batches(calibration, input_names, *, progress=None):
    """Yield each non-empty batch of `calibration` as {input name: array}; see the module docstring."""
    if isinstance(calibration, (np.ndarray, dict, str, bytes)):
        kind = "a dict" if isinstance(calibration, dict) else f"a single {type(calibration).__name__}"
        raise TypeError(f"calibration: expected an iterable of batches, got {kind}; "
                        f"pass a list of batches (e.g. [x] or np.array_split(x, n)) or a generator")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be None (automatic), True or False, got {progress!r}")
    if isinstance(input_names, str):
        input_names = [input_names]
    names = list(input_names)
    if not names:
        raise ValueError("input_names: the graph has no inputs")
    try:
        iterator = iter(calibration)
    except TypeError:
        raise TypeError(f"calibration: expected an iterable of batches (arrays, or dicts by input name), "
                        f"got {type(calibration).__name__}") from None
    try:
        total = len(calibration)
    except Exception:
        total = None
    bar = _Progress(progress, total)
    used = 0
    try:
        for index, batch in enumerate(iterator):
            checked = check_feeds_batch(batch, names, index)
            if checked is not None:
                yield checked
                used += 1
            bar.step(index + 1)
    finally:
        bar.close()
    if used == 0:
        raise ValueError("calibration: no non-empty batch was given; calibration needs at least one batch of data")
