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

Per model, the calls (``qm(x)`` / ``qm.run``) and samples served since the last reset and the
latency of each call (wall time around the C++ run, input conversion included), whose p50 / p90 /
p99 come from the last ``window`` calls (default 10 000, a bounded ring). ``as_dict()`` returns
all of it as plain JSON-serialisable values, for a metrics endpoint to serve (docs/deploy.md).

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

import collections
import threading

import numpy as np

from .report import format_table

__all__ = ["Monitor", "LATENCY_WINDOW"]

LATENCY_WINDOW = 10_000  # calls whose latencies the percentiles cover


class Monitor:
    """The handle ``qm.monitor()`` returns: ``stats()``, ``as_dict()``, ``latency_ms()``,
    ``reset()``, ``stop()``; a context manager that stops on exit. Counters stay readable after
    ``stop``."""

    def __init__(self, model, window: int = LATENCY_WINDOW):
        if model._executor is None:
            raise NotImplementedError("monitor: this model has a step the C++ executor lacks (it runs step by step)")
        self._model = model
        self._executor = model._executor
        self._lock = threading.Lock()  # calls are recorded from every thread that runs the model
        self._latencies = collections.deque(maxlen=_check_window(window))
        self._calls = self._samples = 0
        self._executor.reset_stats()
        self._executor.set_monitoring(True)

    def record(self, seconds: float, samples: int) -> None:
        """One call of the model (QuantizedModel.run and __call__ report theirs while active)."""
        with self._lock:
            self._latencies.append(seconds)
            self._calls += 1
            self._samples += samples

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

    def latency_ms(self) -> dict:
        """{"p50", "p90", "p99", "mean", "max"} in milliseconds over the last ``window`` calls
        (NumPy's linear-interpolation percentiles), each None before any call, and "window": the
        number of calls they cover."""
        with self._lock:
            t = np.array(self._latencies, np.float64) * 1e3
        if t.size == 0:
            return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None, "window": 0}
        p50, p90, p99 = np.percentile(t, [50, 90, 99])
        return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(t.mean()),
                "max": float(t.max()), "window": int(t.size)}

    def as_dict(self) -> dict:
        """Everything counted since the last reset, as plain JSON-serialisable values:

        ``{"active", "calls", "samples", "latency_ms": latency_ms(), "elements", "saturated",
        "saturation_rate", "out_of_range", "out_of_range_rate", "tensors": {name: {"count",
        "saturated", "saturation_rate", "out_of_range", "out_of_range_rate"}}}``. The totals sum
        every monitored tensor (out_of_range over the tensors written by a quantize step; None, like
        its rate, when the model has none)."""
        with self._lock:
            calls, samples = self._calls, self._samples
        tensors, elements, saturated, checked, outside = {}, 0, 0, 0, None
        for name, (count, sat, out) in self._executor.stats().items():
            count, sat = int(count), int(sat)
            tensors[name] = {"count": count, "saturated": sat, "saturation_rate": sat / count if count else 0.0,
                             "out_of_range": None if out is None else int(out),
                             "out_of_range_rate": None if out is None else (int(out) / count if count else 0.0)}
            elements += count
            saturated += sat
            if out is not None:
                checked += count
                outside = (outside or 0) + int(out)
        return {"active": self.active, "calls": calls, "samples": samples, "latency_ms": self.latency_ms(),
                "elements": elements, "saturated": saturated,
                "saturation_rate": saturated / elements if elements else 0.0,
                "out_of_range": outside,
                "out_of_range_rate": None if outside is None else (outside / checked if checked else 0.0),
                "tensors": tensors}

    def reset(self, window: int | None = None) -> None:
        """Set every counter to zero, the latencies and call counts too (monitoring stays as it
        is); ``window``: a new number of calls for the latency percentiles."""
        size = self._latencies.maxlen if window is None else _check_window(window)
        self._executor.reset_stats()
        with self._lock:
            self._latencies = collections.deque(maxlen=size)
            self._calls = self._samples = 0

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


def _check_window(window) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window: expected an int >= 1 (calls the latency percentiles cover), got {window!r}")
    return int(window)
