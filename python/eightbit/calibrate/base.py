"""Calibration (layer 3 of DESIGN.md): the Observer interface every range estimator implements.

An observer folds activation batches into running statistics, one ``update(x)`` per batch, and
answers ``compute_range() -> (lo, hi)``. Its state is O(1) or O(bins), whatever the number of
batches (calibration data is streamed, never kept: the memory complaints of ONNX Runtime's
calibrators, microsoft/onnxruntime#10503, #11020, are what this layer exists to avoid).

The range -> (scale, zero_point) step is not an observer's business: ``range_to_qparams`` in
calibrator.py delegates to ``eightbit.numerics.qparams.choose_qparams``, written once.

Rules shared by every observer (checked here, once):
- a batch is any real numeric array (bool, complex and object arrays raise TypeError);
- an empty batch is ignored (it carries no information);
- NaN or +-inf in a batch raises ValueError naming the tensor (no silent dropping, unlike
  PyTorch's HistogramObserver, which warns and skips infinities);
- the final range always contains 0, so real 0 is exactly representable (DESIGN.md, Numerics);
- ``compute_range()`` before any non-empty batch raises ValueError (PyTorch only warns and
  returns scale 1.0, which hides a tensor that calibration never reached).
"""
from __future__ import annotations

import copy

import numpy as np

__all__ = ["Observer"]


class Observer:
    """Base class: ``update(x)`` per batch, ``compute_range() -> (lo, hi)``, ``reset()``.

    ``name`` labels the tensor in error messages (the Calibrator passes the graph tensor name).
    Subclasses implement ``_reset()``, ``_update(arr, lo, hi)`` (called only for a non-empty,
    finite batch whose min/max are already known) and ``_range()`` (called only after data).
    """

    def __init__(self, *, name: str = "tensor"):
        if not isinstance(name, str):
            raise TypeError(f"name must be a str (the tensor's name), got {type(name).__name__}")
        self.name = name
        self.reset()

    def reset(self) -> None:
        """Forget everything observed (configuration is kept)."""
        self.num_values = 0           # values seen so far (int; for reports and the no-data check)
        self._reset()

    def update(self, x) -> None:
        """Fold one batch (any shape) into the statistics."""
        checked = check_batch(x, self.name)
        if checked is None:
            return
        arr, lo, hi = checked
        self._update(arr, lo, hi)
        self.num_values += arr.size

    def compute_range(self) -> tuple[float, float]:
        """(lo, hi) as Python floats with lo <= 0 <= hi."""
        if self.num_values == 0:
            raise ValueError(f"tensor {self.name!r}: no values observed (no batch reached it, or every "
                             f"batch was empty); cannot compute a range")
        lo, hi = self._range()
        return include_zero(lo, hi)

    def merge(self, other: "Observer") -> None:
        """Fold in the statistics of ``other``, an observer of the same kind and options that saw
        the batches *after* this one's (eightbit.distributed: one observer per partition, merged
        on the client in partition order). The result equals one observer updated with every
        batch in that order; a method for which no exact merge exists raises TypeError."""
        if type(other) is not type(self):
            raise TypeError(f"tensor {self.name!r}: cannot merge a {type(other).__name__} into a {type(self).__name__}")
        self._check_merge(other)
        if other.num_values == 0:
            return
        if self.num_values == 0:
            self.__dict__.update(copy.deepcopy({k: v for k, v in other.__dict__.items() if k != "name"}))
            return
        self._merge(other)
        self.num_values += other.num_values

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, num_values={self.num_values})"

    # -- for subclasses ---------------------------------------------------------------------------
    def _reset(self) -> None:
        raise NotImplementedError

    def _update(self, arr: np.ndarray, lo: float, hi: float) -> None:
        raise NotImplementedError

    def _range(self) -> tuple[float, float]:
        raise NotImplementedError

    def _check_merge(self, other: "Observer") -> None:
        """Raise ValueError when ``other``'s options differ from this one's."""

    def _merge(self, other: "Observer") -> None:
        """Called only when both have data; ``num_values`` is summed by ``merge``."""
        raise TypeError(f"tensor {self.name!r}: {type(self).__name__} statistics cannot be merged exactly")


def check_batch(x, name: str):
    """(array, min, max) of a batch, or None when it is empty; raises on bad dtypes and NaN/inf.

    The finiteness check rides on the min/max reductions (NaN propagates through both, an
    infinity shows up as one of them), so it costs no extra pass over the batch.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged nested lists and the like: keep NumPy's reason
        raise TypeError(f"tensor {name!r}: a batch must be a numeric array, got {type(x).__name__} ({exc})") from exc
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"tensor {name!r}: a batch must be a real numeric array, got dtype {arr.dtype}")
    if arr.size == 0:
        return None
    lo, hi = arr.min(), arr.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"tensor {name!r}: batch has {bad} non-finite value(s) (NaN or infinity) out of "
                         f"{arr.size}; calibration data must be finite")
    return arr, float(lo), float(hi)


def include_zero(lo: float, hi: float) -> tuple[float, float]:
    """Widen [lo, hi] to contain 0 (real 0 must be exactly representable); never returns -0.0."""
    lo, hi = float(lo), float(hi)
    return (lo if lo < 0.0 else 0.0), (hi if hi > 0.0 else 0.0)
