"""Quantization math shared by every layer: scale / zero point choice and fixed-point multipliers."""
from .fixed_point import (multiply_by_quantized_multiplier, quantize_multiplier,
                          rounding_divide_by_pot, srdhm)
from .qparams import choose_qparams, float_multiplier, quantize_weight_symmetric

__all__ = [
    "choose_qparams", "float_multiplier", "quantize_weight_symmetric",
    "quantize_multiplier", "srdhm", "rounding_divide_by_pot", "multiply_by_quantized_multiplier",
]
