"""eightbit.reference: the executable specification, one plain NumPy module per integer op.

Every C++ kernel path must return bit-identical results to these functions; docs/numerics.md
states the same formulas in prose.
"""
from .binary import (binary_conv2d, binary_linear, binary_matmul, binary_qlinear, binary_qlinear_conv,
                     pack_signs)
from .blockwise import (blockwise_linear, pack_nibbles, quantize_blockwise, quantize_rows_symmetric,
                        unpack_nibbles)
from .conv_integer import conv_integer
from .dequantize_linear import dequantize_linear
from .int8_attention import dynamic_bmm, softmax_bmm
from .dynamic_quantize_linear import dynamic_quantize_linear, dynamic_quantize_rows
from .matmul_integer import matmul_integer
from .qlinear_matmul import qlinear_matmul
from .lookup_table import lookup_table, make_lookup_table
from .max_pool import max_pool
from .qlinear_add import qlinear_add
from .qlinear_average_pool import qlinear_average_pool
from .qlinear_concat import qlinear_concat
from .qlinear_conv import qlinear_conv
from .qlinear_global_average_pool import qlinear_global_average_pool
from .qlinear_leaky_relu import qlinear_leaky_relu
from .qlinear_mul import qlinear_mul
from .qlinear_sigmoid import qlinear_sigmoid
from .quantize_linear import quantize_linear
from .quantized_linear import quantized_linear
from .requantize import requantize_fixed, requantize_float

__all__ = [
    "quantize_linear", "dequantize_linear", "dynamic_quantize_linear", "dynamic_quantize_rows",
    "matmul_integer", "qlinear_matmul", "requantize_float", "requantize_fixed", "quantized_linear",
    "conv_integer", "qlinear_conv", "qlinear_add", "qlinear_mul", "qlinear_average_pool",
    "qlinear_global_average_pool", "qlinear_concat", "qlinear_leaky_relu", "qlinear_sigmoid", "max_pool",
    "lookup_table", "make_lookup_table", "dynamic_bmm", "softmax_bmm",
    "pack_signs", "binary_matmul", "binary_linear", "binary_conv2d", "binary_qlinear", "binary_qlinear_conv",
    "quantize_blockwise", "pack_nibbles", "unpack_nibbles", "quantize_rows_symmetric", "blockwise_linear",
]
