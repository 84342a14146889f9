"""MinMaxObserver: the range is the exact minimum and maximum over every batch (layer 3).

    lo = min over all batches of min(x),   hi = max over all batches of max(x)   (then 0 included)

The default of ONNX Runtime, PyTorch and TFLite; every outlier widens the range, which is what
the histogram methods (percentile, entropy, mse) trade against resolution.
"""
from __future__ import annotations

import math

from .base import Observer

__all__ = ["MinMaxObserver"]


class MinMaxObserver(Observer):
    """Running min / max. State: two floats."""

    def _reset(self) -> None:
        self.min_val = math.inf
        self.max_val = -math.inf

    def _update(self, arr, lo: float, hi: float) -> None:
        self.min_val = min(self.min_val, lo)
        self.max_val = max(self.max_val, hi)

    def _range(self) -> tuple[float, float]:
        return self.min_val, self.max_val

    def _merge(self, other: "MinMaxObserver") -> None:
        self.min_val = min(self.min_val, other.min_val)
        self.max_val = max(self.max_val, other.max_val)
