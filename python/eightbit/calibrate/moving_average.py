"""MovingAverageMinMaxObserver: exponential moving average of per-batch min / max (layer 3).

PyTorch's semantics (torch.ao.quantization.MovingAverageMinMaxObserver), also ONNX Runtime's
``moving_average`` option of its MinMax calibrator:

    first non-empty batch:  min_val = min(x),  max_val = max(x)
    each later batch:       min_val = min_val + c * (min(x) - min_val)
                            max_val = max_val + c * (max(x) - max_val)      c = averaging_constant

Computed in float64 (PyTorch uses the float32 of its buffers; the difference is rounding only).
With the default c = 0.01 the first batch dominates for ~100 batches: the range then follows the
typical batch rather than the single most extreme one, which is the point of the method.
"""
from __future__ import annotations

import math

from .base import Observer

__all__ = ["MovingAverageMinMaxObserver"]


class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of per-batch min / max. State: two floats."""

    def __init__(self, averaging_constant: float = 0.01, *, name: str = "tensor"):
        if isinstance(averaging_constant, bool) or not isinstance(averaging_constant, (int, float)):
            raise TypeError(f"averaging_constant must be a number in (0, 1], got {type(averaging_constant).__name__}")
        if not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        self.averaging_constant = float(averaging_constant)
        super().__init__(name=name)

    def _reset(self) -> None:
        self.min_val = math.inf
        self.max_val = -math.inf

    def _update(self, arr, lo: float, hi: float) -> None:
        if self.num_values == 0:
            self.min_val, self.max_val = lo, hi
            return
        c = self.averaging_constant
        self.min_val = self.min_val + c * (lo - self.min_val)
        self.max_val = self.max_val + c * (hi - self.max_val)

    def _range(self) -> tuple[float, float]:
        return self.min_val, self.max_val

    def update_range(self, lo: float, hi: float, count: int) -> None:
        """Fold a batch known only by its min, max and number of values: the same as ``update``
        of that batch (the average reads nothing else). eightbit.distributed gathers these per
        batch from the workers and replays them here in batch order, since the average depends
        on that order and two partial averages cannot be merged."""
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"tensor {self.name!r}: a batch range must be finite with lo <= hi, got ({lo}, {hi})")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"tensor {self.name!r}: count must be a non-negative int, got {count!r}")
        if count == 0:
            return
        self._update(None, lo, hi)
        self.num_values += count

    def _check_merge(self, other: "MovingAverageMinMaxObserver") -> None:
        if other.averaging_constant != self.averaging_constant:
            raise ValueError(f"tensor {self.name!r}: averaging constants differ ({self.averaging_constant} and "
                             f"{other.averaging_constant})")

    def _merge(self, other) -> None:
        raise TypeError(f"tensor {self.name!r}: a moving average depends on the order of every batch; two partial "
                        f"averages cannot be merged (replay the batch ranges in order with update_range)")
