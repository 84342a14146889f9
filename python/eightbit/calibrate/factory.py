"""make_observer: a calibration method name + options -> a fresh observer (layer 3).

    minmax          MinMaxObserver()                               no options
    moving_average  MovingAverageMinMaxObserver(averaging_constant=0.01)
    percentile      HistogramObserver(bins=2048, percentile=99.99, symmetric=False)
    entropy         HistogramObserver(bins=2048, num_quantized_bins=128)
    mse             HistogramObserver(bins=2048)

Unknown methods, and options a method does not take, raise ValueError listing what is valid:
a misspelt option silently falling back to a default is a calibration bug nobody finds.
"""
from __future__ import annotations

from .base import Observer
from .histogram import HistogramObserver
from .minmax import MinMaxObserver
from .moving_average import MovingAverageMinMaxObserver

__all__ = ["METHODS", "make_observer"]

METHODS = ("minmax", "moving_average", "percentile", "entropy", "mse")
_OPTIONS = {
    "minmax": (),
    "moving_average": ("averaging_constant",),
    "percentile": ("bins", "percentile", "symmetric"),
    "entropy": ("bins", "num_quantized_bins"),
    "mse": ("bins",),
}


def check_method(method) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method: unknown calibration method {method!r}; valid methods: {', '.join(METHODS)}")
    return method


def check_options(method: str, options: dict) -> None:
    unknown = sorted(set(options) - set(_OPTIONS[method]))
    if unknown:
        valid = ", ".join(_OPTIONS[method]) or "none"
        raise ValueError(f"method {method!r} does not take option(s) {', '.join(unknown)}; its options: {valid}")


def make_observer(method: str = "minmax", *, name: str = "tensor", **options) -> Observer:
    """A new observer for `method`; ``name`` labels the tensor in its error messages."""
    check_method(method)
    check_options(method, options)
    if method == "minmax":
        return MinMaxObserver(name=name)
    if method == "moving_average":
        return MovingAverageMinMaxObserver(name=name, **options)
    return HistogramObserver(method=method, name=name, **options)
