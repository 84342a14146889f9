"""Calibrator: one observer per named tensor, fed by the float executor (layer 3).

    cal = Calibrator("percentile", percentile=99.99)
    for batch in iterate_batches(calibration, graph.inputs):
        graph.run(batch, on_tensor=cal.observe)          # observe(name, array) per tensor
    cal.ranges()          -> {name: (lo, hi)}            lo <= 0 <= hi, floats
    cal.qparams("uint8")  -> {name: (scale float32, zero_point uint8)}

Observers are created on a tensor's first ``observe``, in that order; ``observe`` keeps nothing
of the array (the executor frees intermediates after their last use, so calibration holds one
batch's live activations at most).
"""
from __future__ import annotations

import numpy as np

from ..numerics.qparams import choose_qparams
from .base import Observer
from .factory import check_method, check_options, make_observer
from .histogram import _check_percentile

__all__ = ["Calibrator", "range_to_qparams"]


def range_to_qparams(lo, hi, dtype="uint8", *, symmetric: bool = False):
    """(scale float32, zero_point of dtype) for a calibrated range: numerics.choose_qparams on the
    float32 of lo and hi (which widens to include 0 and handles the all-zero range)."""
    return choose_qparams(np.float32(lo), np.float32(hi), dtype, symmetric=symmetric)


class Calibrator:
    """Owns one observer per tensor name, all of one ``method`` (see factory.make_observer).

    ``percentile`` mirrors ``eb.quantize``'s keyword: it is validated always and used only by
    method="percentile". Other ``options`` go to the observers and must belong to the method.
    """

    def __init__(self, method: str = "minmax", *, percentile: float = 99.99, **options):
        self.method = check_method(method)
        p = _check_percentile(percentile)
        if method == "percentile":
            options = {**options, "percentile": p}
        check_options(method, options)
        self.options = options
        make_observer(method, **options)             # validates the option values now, not at the first batch
        self._observers: dict[str, Observer] = {}

    def observe(self, name: str, array) -> None:
        """Fold one batch of tensor `name` into its observer (created on first sight)."""
        self.observer(name).update(array)

    def observer(self, name: str) -> Observer:
        """The observer of tensor `name`, created (last in the observed order) if it has none."""
        obs = self._observers.get(name)
        if obs is None:
            if not isinstance(name, str):
                raise TypeError(f"observe: the tensor name must be a str, got {type(name).__name__}")
            obs = self._observers[name] = make_observer(self.method, name=name, **self.options)
        return obs

    def replace_observer(self, name: str, observer: Observer) -> None:
        """Put ``observer`` in place of tensor ``name``'s (which must exist; its place in the
        observed order stays): a partition observed again on another grid (eightbit.distributed)."""
        if name not in self._observers:
            raise KeyError(f"replace_observer: tensor {name!r} has no observer to replace")
        if not isinstance(observer, Observer):
            raise TypeError(f"observer: expected an Observer, got {type(observer).__name__}")
        self._observers[name] = observer

    def merge(self, other: "Calibrator") -> None:
        """Fold in ``other``, a Calibrator of the same method and options that saw the batches
        after this one's: tensor by tensor (Observer.merge; tensors new to this one keep their
        order, after this one's), so the result equals one Calibrator that saw every batch in
        that order."""
        if not isinstance(other, Calibrator):
            raise TypeError(f"other: expected a Calibrator, got {type(other).__name__}")
        if (other.method, other.options) != (self.method, self.options):
            raise ValueError(f"cannot merge a Calibrator({other.method!r}, {other.options}) into a "
                             f"Calibrator({self.method!r}, {self.options})")
        for name, obs in other._observers.items():
            self.observer(name).merge(obs)

    @property
    def observers(self) -> dict[str, Observer]:
        return dict(self._observers)

    def __contains__(self, name) -> bool:
        return name in self._observers

    def __len__(self) -> int:
        return len(self._observers)

    def ranges(self) -> dict[str, tuple[float, float]]:
        """{name: (lo, hi)} for every observed tensor, in first-observed order."""
        return {name: obs.compute_range() for name, obs in self._observers.items()}

    def qparams(self, dtype="uint8", *, symmetric: bool = False) -> dict[str, tuple]:
        """{name: (scale, zero_point)}; an unquantizable range raises ValueError naming the tensor."""
        out = {}
        for name, (lo, hi) in self.ranges().items():
            try:
                out[name] = range_to_qparams(lo, hi, dtype, symmetric=symmetric)
            except ValueError as exc:
                raise ValueError(f"tensor {name!r}: {exc}") from exc
        return out

    def reset(self) -> None:
        """Forget every tensor."""
        self._observers.clear()

    def __repr__(self) -> str:
        return f"Calibrator(method={self.method!r}, options={self.options}, tensors={len(self._observers)})"
