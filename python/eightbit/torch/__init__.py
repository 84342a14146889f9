"""Quantization-aware training with PyTorch (docs/qat.md): ``prepare_qat`` puts fake quantization
that equals the int8 engine bit for bit into a float model, ``convert`` turns the trained model
into an ``eb.QuantizedModel``. Needs PyTorch (``pip install "eightbit[torch]"``)."""
from . import _torch  # noqa: F401  (a clear ImportError without PyTorch)
from .config import ActivationQuant, QATConfig, WeightQuant
from .convert import convert
from .prepare import freeze_bn, freeze_observers, layers, prepare_qat

__all__ = ["prepare_qat", "convert", "QATConfig", "WeightQuant", "ActivationQuant", "freeze_observers",
           "freeze_bn", "layers"]
