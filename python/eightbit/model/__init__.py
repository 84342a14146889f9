"""Quantized models: the execution plan (``plan``), its step-by-step interpreter (``execute``) and
``QuantizedModel``, the object ``eb.quantize`` returns."""
from .plan import Plan, Step, TensorSpec
from .quantized_model import QuantizedModel

__all__ = ["Plan", "Step", "TensorSpec", "QuantizedModel"]
