"""eightbit.reference: the executable specification, one plain NumPy module per integer op.

Every C++ kernel path must return bit-identical results to these functions; docs/numerics.md
states the same formulas in prose.
"""
from .dequantize_linear import dequantize_linear
from .dynamic_quantize_linear import dynamic_quantize_linear, dynamic_quantize_rows
from .matmul_integer import matmul_integer
from .qlinear_matmul import qlinear_matmul
from .quantize_linear import quantize_linear
from .quantized_linear import quantized_linear
from .requantize import requantize_fixed, requantize_float

__all__ = [
    "quantize_linear", "dequantize_linear", "dynamic_quantize_linear", "dynamic_quantize_rows",
    "matmul_integer", "qlinear_matmul", "requantize_float", "requantize_fixed", "quantized_linear",
]
