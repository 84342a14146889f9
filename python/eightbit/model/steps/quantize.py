"""quantize / dequantize: the plan's boundary between float32 and 8-bit tensors.

==========  ==================================================================================
quantize    float32 input (NCHW when 4-D) -> quantized (NHWC when 4-D): QuantizeLinear with the
            output's scale and zero point
dequantize  quantized (NHWC when 4-D) -> float32 (NCHW when 4-D): DequantizeLinear
==========  ==================================================================================

The layout change happens here, once; the executor fuses it into the same pass.
"""
from __future__ import annotations

import numpy as np

from .common import nchw, qp, to_nchw, to_nhwc
from .float_node import reads_float_weights
from .kind import StepKind


def _quantize_shape(step, ins):
    x = ins[0].shape
    return (x[0], x[2], x[3], x[1]) if len(x) == 4 else x


def _dequantize_shape(step, ins):
    x = ins[0].shape
    return (x[0], x[3], x[1], x[2]) if len(x) == 4 else x


def _quantize_run(m, step, xs, ins, out, w):
    scale, zp = qp(out)
    return m.quantize_linear(to_nhwc(xs[0]), scale, zp)


def _dequantize_run(m, step, xs, ins, out, w):
    scale, zp = qp(ins[0])
    return to_nchw(m.dequantize_linear(xs[0], scale, zp))


def _quantize_export(ex, step, label):
    ex.q(step.inputs[0], step.output, label)


def _dequantize_export(ex, step, label):
    x = step.inputs[0]
    if any(reads_float_weights(s) for s in ex.readers(step.output)):
        # ORT (WeightBiasQuantization) quantizes the float weights of a Conv / Gemm whose input
        # comes from a per-tensor DequantizeLinear, which would turn a float island into int8.
        # The same qparams repeated along axis 1 give the same values and keep it float.
        spec = ex.spec(x)
        c = nchw(spec)[1]
        s = ex.b.const(f"{x}.scale_per_channel", np.full(c, spec.scale, np.float32))
        z = ex.b.const(f"{x}.zero_point_per_channel", np.full(c, spec.zero_point, spec.dtype))
        ex.b.node("DequantizeLinear", [x, s, z], [step.output], label, axis=1)
    else:
        ex.b.node("DequantizeLinear", [x, *ex.qp(x)], [step.output], label)


QUANTIZE = StepKind("quantize", 1, "quant", shape=_quantize_shape, run=_quantize_run,
                    lower=lambda step, ins, out: {"kind": "quantize"}, export=_quantize_export)
DEQUANTIZE = StepKind("dequantize", 1, "float", shape=_dequantize_shape, run=_dequantize_run,
                      lower=lambda step, ins, out: {"kind": "dequantize"}, export=_dequantize_export)
