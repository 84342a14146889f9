"""Watching a quantized model in production: ``qm.monitor()`` makes the C++ executor count, on every
``qm(x)`` / ``qm.run`` while it is on, how the data it serves fits the ranges calibration chose.

Per quantized tensor:

- ``count``: elements written since the last reset;
- ``saturation_rate``: the share of those codes at qmin or qmax of the dtype: values the
  quantization clipped (or that sit exactly at the edge of the calibrated range). The low end is
  counted only where the zero point is not qmin, the high end only where it is not qmax, so a
  ReLU output's zeros (zero point = qmin) are not saturation;
- ``out_of_range_rate``, for tensors written by a quantize step (where float values enter int8):
  the share of the float inputs outside [scale * (qmin - zp), scale * (qmax - zp)], the range the
  calibration data set; None for every other tensor.

Rates that grow over time show drift: production inputs leaving the range the model was
calibrated on, which costs accuracy long before anything fails. Recalibrate on recent data when
they rise.

The counting is one pass over each quantized step output (and over the float input of a quantize
step), done inside the executor's run under its run mutex; with monitoring off a run checks one
flag. Counters are per model (executor), shared by every thread calling it.

    with qm.monitor() as m:
        for batch in stream:
            qm(batch)
        print(m.table())
"""
from __future__ import annotations

from .report import format_table

__all__ = ["Monitor"]


class Monitor:
    """The handle ``qm.monitor()`` returns: ``stats()``, ``reset()``, ``stop()``; a context
    manager that stops on exit. Counters stay readable after ``stop``."""

    def __init__(self, model):
        if model._executor is None:
            raise NotImplementedError("monitor: this model has a step the C++ executor lacks (it runs step by step)")
        self._model = model
        self._executor = model._executor
        self._executor.reset_stats()
        self._executor.set_monitoring(True)

    @property
    def active(self) -> bool:
        return bool(self._executor.monitoring)

    def stats(self) -> dict:
        """{tensor name: {"count", "saturation_rate", "out_of_range_rate"}} in plan order;
        rates are 0.0 before any element was seen; out_of_range_rate is None where it does not
        apply (tensors not written by a quantize step)."""
        out = {}
        for name, (count, saturated, outside) in self._executor.stats().items():
            rate = (lambda k: k / count if count else 0.0)
            out[name] = {"count": int(count), "saturation_rate": rate(saturated),
                         "out_of_range_rate": None if outside is None else rate(outside)}
        return out

    def reset(self) -> None:
        """Set every counter to zero (monitoring stays as it is)."""
        self._executor.reset_stats()

    def stop(self) -> None:
        """Stop counting; the counters keep their values."""
        self._executor.set_monitoring(False)
        if self._model._monitor is self:
            self._model._monitor = None

    def table(self) -> str:
        rows = [(name, s["count"], f"{100 * s['saturation_rate']:.3f}%",
                 "-" if s["out_of_range_rate"] is None else f"{100 * s['out_of_range_rate']:.3f}%")
                for name, s in self.stats().items()]
        return format_table(["tensor", "elements", "saturated", "out of range"], rows)

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Monitor(active={self.active}, tensors={len(self._executor.stats())})"
