"""Calibration (layer 3 of DESIGN.md): observers that stream activation statistics batch by batch in
bounded memory, and the range -> (scale, zero point) step.

    obs = make_observer("entropy")          # minmax | moving_average | percentile | entropy | mse
    for x in batches: obs.update(x)
    lo, hi = obs.compute_range()            # lo <= 0 <= hi
    scale, zp = range_to_qparams(lo, hi, "uint8")

    cal = Calibrator("percentile", percentile=99.99)     # one observer per tensor name
    for batch in iterate_batches(calibration, graph.inputs):
        graph.run(batch, on_tensor=cal.observe)
    cal.ranges(); cal.qparams("uint8")

One module per piece: base (Observer), minmax, moving_average, histogram (the streamed
histogram), percentile / entropy / mse (ranges from a histogram), factory (make_observer),
calibrator (Calibrator, range_to_qparams), batches (iterate_batches, progress bar), files
(CalibrationFiles: batches read lazily from .npy / .npz files, for the command line).
"""
from .base import Observer
from .batches import iterate_batches
from .calibrator import Calibrator, range_to_qparams
from .entropy import entropy_range
from .factory import METHODS, make_observer
from .files import CalibrationFiles
from .histogram import Histogram, HistogramObserver
from .minmax import MinMaxObserver
from .moving_average import MovingAverageMinMaxObserver
from .mse import mse_range
from .percentile import percentile_range

__all__ = [
    "Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "HistogramObserver", "Histogram",
    "percentile_range", "entropy_range", "mse_range",
    "METHODS", "make_observer", "Calibrator", "range_to_qparams", "iterate_batches", "CalibrationFiles",
]
