"""The step registry: every kind of plan step (``Step.op``) and everything the Python side knows
about it, in one ``StepKind`` object (kind.py): its schema (inputs, constants and their checks,
the output's dtype), its shape rule, its reference interpretation (with ``eightbit.reference`` or
``eightbit.ops``), its lowering (the C++ executor's record) and its ONNX export. ``Plan.validate``,
``execute.run_plan``, ``lowering.lower_step``, ``QuantizedModel.run_steps`` and
``onnx.export.to_onnx`` look the kind up here and name no step themselves.

==================  ==============  ============================================================
op                  module          what it is (each module's docstring: inputs, consts, attrs)
==================  ==============  ============================================================
quantize            quantize.py     float32 (NCHW when 4-D) -> quantized (NHWC when 4-D)
dequantize          quantize.py     quantized (NHWC when 4-D) -> float32 (NCHW when 4-D)
conv                conv.py         QLinearConv, NHWC, per-channel int8 weights, fused clamp
linear              conv.py         x [N, ..., K] times int8 [O, K]: QLinearConv 1x1 on each row
add, mul            binary.py       com.microsoft QLinearAdd / QLinearMul (broadcasting)
max_pool            pool.py         MaxPool (output keeps the input's quantization)
avg_pool            pool.py         QLinearAveragePool
global_avg_pool     pool.py         QLinearGlobalAveragePool, output [N, 1, 1, C]
concat              concat.py       QLinearConcat
lut                 lut.py          a 256-entry table lookup (any elementwise function)
reshape             reshape.py      the float graph's reshape; keeps the quantization
softmax             softmax.py      float32 -> float32 along an axis (a float island)
dynamic_linear      dynamic_linear  float32 -> float32, rows quantized at run time (uint8)
dynamic_bmm         attention.py    float32 a x b -> float32, a's rows and b's columns quantized at run time
softmax_bmm         attention.py    softmax to uint8 probabilities, then P V with v int8 (run time)
embedding           embedding.py    token ids (float32 holding integers) -> rows of a float32 table
float               float_node.py   a float graph node left float32
binary_conv         xnor.py         binary (+-1) conv, XOR + popcount, quantized NHWC in and out
binary_linear       xnor.py         binary (+-1) linear on quantized rows
blockwise_linear    blockwise.py    float32 -> float32, 2-4-bit weights with a scale per block of K
==================  ==============  ============================================================

Adding a step kind: write ``steps/<name>.py`` defining one ``StepKind`` (its docstring describes
the step), add its line to ``REGISTRY`` below and its row above, and give the C++ side its step
(one file in csrc/, see docs/models.md). A kind whose ``lower`` returns a new ``kind`` of
``lowered`` record also needs that record in docs/format.md and in the C++ builder.
"""
from __future__ import annotations

from . import (attention, binary, blockwise, concat, conv, dynamic_linear, embedding, float_node, lut, pool, quantize,
               reshape, softmax, xnor)
from .kind import StepKind

__all__ = ["REGISTRY", "StepKind", "get"]


def _register(*kinds: StepKind) -> dict:
    registry = {}
    for k in kinds:
        if k.op in registry:
            raise ValueError(f"step kind {k.op!r} is registered twice")
        registry[k.op] = k
    return registry


REGISTRY = _register(
    quantize.QUANTIZE,
    quantize.DEQUANTIZE,
    conv.CONV,
    conv.LINEAR,
    binary.ADD,
    binary.MUL,
    pool.MAX_POOL,
    pool.AVG_POOL,
    pool.GLOBAL_AVG_POOL,
    concat.CONCAT,
    lut.LUT,
    reshape.RESHAPE,
    softmax.SOFTMAX,
    float_node.FLOAT_NODE,
    dynamic_linear.DYNAMIC_LINEAR,
    embedding.EMBEDDING,
    attention.DYNAMIC_BMM,
    attention.SOFTMAX_BMM,
    xnor.BINARY_CONV,
    xnor.BINARY_LINEAR,
    blockwise.BLOCKWISE_LINEAR,
)


def get(op) -> StepKind | None:
    """The registered kind of ``Step.op``, or None for an unknown op."""
    return REGISTRY.get(op) if isinstance(op, str) else None
