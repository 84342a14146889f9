"""Quantization-aware training with PyTorch (docs/qat.md): ``prepare_qat`` puts fake quantization
that equals the int8 engine bit for bit into a float model, ``convert`` turns the trained model
into an ``eb.QuantizedModel``. Needs PyTorch (``pip install "eightbit[torch]"``).

    config.py      QATConfig, WeightQuant, ActivationQuant: what is quantized, and how
    prepare.py     prepare_qat (torch.fx tracing, units in place of int8 ops), layers, freezing
    units.py       one QAT module per engine step; quantizers.py the observers and weight grids
    exact.py       the engine's integer arithmetic in torch, bit for bit
    convert.py     convert: the trained model -> the engine, through the given-parameters lowering
    optim.py       QuantParamOptimizer, param_groups: scales with their own learning rate
    schedules.py   gradual quantization: bit-width, layer-by-layer and step-refinement schedules
    online.py      OnlineQAT: training on a stream, re-exporting the int8 model every K batches
    distributed.py DistributedDataParallel helpers: identical quantization on every rank
    adaround.py    AdaRound: learned rounding of each layer's weights on calibration data
"""
from . import _torch  # noqa: F401  (a clear ImportError without PyTorch)
from .adaround import adaround, adaround_quantize, calibrate_observers
from .config import ActivationQuant, QATConfig, WeightQuant
from .convert import convert
from .online import OnlineQAT
from .optim import QuantParamOptimizer, param_groups
from .prepare import freeze_bn, freeze_observers, layers, prepare_qat
from .schedules import BitWidthSchedule, Callbacks, LayerwiseSchedule, QATCallback, StepRefinement

__all__ = ["prepare_qat", "convert", "QATConfig", "WeightQuant", "ActivationQuant", "layers", "freeze_observers",
           "freeze_bn", "QuantParamOptimizer", "param_groups", "QATCallback", "Callbacks", "BitWidthSchedule",
           "LayerwiseSchedule", "StepRefinement", "OnlineQAT", "adaround", "adaround_quantize", "calibrate_observers"]
