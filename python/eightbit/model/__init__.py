"""Quantized models: the execution plan (``plan``), the step registry (``steps``: every step kind's
schema, shape rule, reference interpreter, lowering and ONNX export), the step-by-step
interpreter (``execute``), the lowering for the C++ executor (``lowering``) and
``QuantizedModel``, the object ``eb.quantize`` returns."""
from .plan import Plan, Step, TensorSpec
from .quantized_model import QuantizedModel

__all__ = ["Plan", "Step", "TensorSpec", "QuantizedModel"]
