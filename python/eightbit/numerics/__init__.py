"""Quantization math shared by every layer: every build-time numerics rule lives here once, and
eightbit.reference, eightbit.ops, the lowering (model/lowering.py) and the ONNX exporter call it.

    qparams.py      scale / zero point choice, symmetric int8 weights, binary weights' scale
    requant.py      requantization multipliers: float32 (ONNX Runtime) or (m0, shift) (TFLite)
    fixed_point.py  the gemmlowp / TFLite fixed-point arithmetic
    rounding.py     clamp-then-round, the float32 -> integer step of every quantizing op
    clamp.py        a fused activation's clamp bounds on a quantized output
    tables.py       256-entry lookup tables; QLinearConcat's requantization table
    broadcast.py    QLinearAdd's operand order (ONNX Runtime's)
    window.py       convolution / pooling window geometry (ONNX attribute rules)
    checks.py       argument checks (named TypeError / ValueError)
"""
from .broadcast import qlinear_add_b_first
from .clamp import activation_range
from .fixed_point import (multiply_by_quantized_multiplier, quantize_multiplier,
                          rounding_divide_by_pot, srdhm)
from .qparams import binary_weight_scale, choose_qparams, quantize_weight_symmetric
from .requant import REQUANT_MODES, float_multiplier, requant_multipliers
from .rounding import clamp_then_round, quantize_per_tensor
from .tables import make_lookup_table, requantize_table

__all__ = [
    "choose_qparams", "float_multiplier", "quantize_weight_symmetric", "binary_weight_scale",
    "quantize_multiplier", "srdhm", "rounding_divide_by_pot", "multiply_by_quantized_multiplier",
    "REQUANT_MODES", "requant_multipliers", "activation_range", "clamp_then_round", "quantize_per_tensor",
    "make_lookup_table", "requantize_table", "qlinear_add_b_first",
]
