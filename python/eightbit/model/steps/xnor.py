"""binary_conv / binary_linear: binary (+-1) layers between quantized tensors, computed by XOR and
popcount (eightbit.binary; docs/numerics.md, "Binary layers").

=============  ===================================================================================
binary_conv    quantized NHWC x -> quantized NHWC y. consts: ``w_signs`` uint8 [O, kh, kw, ceil(C/8)]
               (the weights' sign bits over C, packed LSB first: a set bit is -1), ``w_scale``
               float32 [O] (each channel's scale, mean |w|), ``bias`` float32 [O], ``threshold``
               float32 [C] (x's real values below it are -1). attrs: strides, pads (top, left,
               bottom, right), dilations, pad_value (0.0: zero padding, 1.0: padded taps +1),
               activation (None, "relu", "relu6", ("clip", lo, hi))
binary_linear  quantized rows x [N, ..., K] -> [N, ..., O]: ``w_signs`` uint8 [O, ceil(K/8)], the
               rest as binary_conv (``threshold`` [K]); attrs: activation
=============  ===================================================================================

Each computes y = float32(dot(signs of x, signs of w)) * w_scale + bias in float32 and quantizes
it to the output's parameters, clamped to the activation's range
(eightbit.reference.binary_qlinear_conv / binary_qlinear). ONNX export: in standard float ops, exact
in ONNX Runtime (below).
"""
from __future__ import annotations

import numpy as np

from ...numerics.clamp import activation_range
from ..plan_shapes import spatial
from .common import check_activation, check_w_scale, need_2d_window, qp, scale_zp
from .kind import StepKind

CONSTS = ("w_signs", "w_scale", "bias", "threshold")


def pack_sign_bytes(w: np.ndarray) -> np.ndarray:
    """Real weights [O, ..., C] -> their sign bits packed over the last axis (uint8, LSB first)."""
    return np.packbits(np.asarray(w) < 0, axis=-1, bitorder="little")


def _signs(step) -> np.ndarray:
    """The weights as float32 +-1: [O, C, kh, kw] (binary_conv) or [O, K] (binary_linear)."""
    bits = np.asarray(step.consts["w_signs"])
    c = np.asarray(step.consts["threshold"]).shape[0]
    negative = np.unpackbits(bits, axis=-1, count=c, bitorder="little").astype(bool)
    signs = np.where(negative, np.float32(-1), np.float32(1))
    return np.ascontiguousarray(signs.transpose(0, 3, 1, 2)) if signs.ndim == 4 else signs


def _check(step, ins, out):
    c = step.consts
    bits, ws, b, t = (np.asarray(c[k]) for k in CONSTS)
    ndim = 4 if step.op == "binary_conv" else 2
    if bits.dtype != np.uint8 or bits.ndim != ndim or bits.shape[0] == 0:
        raise ValueError(f"w_signs must be a {ndim}-D uint8 array with output channels first, got "
                         f"{bits.dtype} {bits.shape}")
    o = bits.shape[0]
    check_w_scale(ws, o)
    if b.dtype != np.float32 or b.shape != (o,) or not np.all(np.isfinite(b)):
        raise ValueError(f"bias must be {o} finite float32 values")
    if t.dtype != np.float32 or t.ndim != 1 or t.shape[0] < 1 or np.isnan(t).any():
        raise ValueError("threshold must be a 1-D float32 array without NaN (one per input channel)")
    if bits.shape[-1] != -(-t.shape[0] // 8):
        raise ValueError(f"w_signs holds {bits.shape[-1]} bytes per tap; {t.shape[0]} channels take "
                         f"{-(-t.shape[0] // 8)}")
    if t.shape[0] % 8 and np.any(bits[..., -1] >> (t.shape[0] % 8)):
        raise ValueError("w_signs has bits set past the input channels (they must be 0)")
    if step.attrs.get("pad_value", 0.0) not in (0.0, 1.0):
        raise ValueError("pad_value must be 0.0 or 1.0")
    check_activation(step.attrs.get("activation"))


def _conv_shape(step, ins):
    x, bits, c = ins[0].shape, step.consts["w_signs"].shape, step.consts["threshold"].shape[0]
    if len(x) != 4 or x[3] != c:
        raise ValueError(f"input {x} does not match the weights' {c} input channels")
    return (x[0],) + spatial(x, step.attrs, bits[1:3], False) + (bits[0],)


def _linear_shape(step, ins):
    x, c = ins[0].shape, step.consts["threshold"].shape[0]
    if len(x) < 2 or len(x) == 4 or x[-1] != c:
        raise ValueError(f"input {x} does not match the weights' {c} input features")
    return tuple(x[:-1]) + (step.consts["w_signs"].shape[0],)


def _args(step, xs, ins, out, w) -> tuple:
    """The positional arguments of binary_qlinear_conv / binary_qlinear."""
    c = step.consts
    return (xs[0], *qp(ins[0]), w, c["w_scale"], c["threshold"], c["bias"], *qp(out))


def _conv_run(m, step, xs, ins, out, w):
    a = step.attrs
    return m.binary_qlinear_conv(*_args(step, xs, ins, out, w), strides=a.get("strides", (1, 1)),
                                 pads=a.get("pads", (0, 0, 0, 0)), dilations=a.get("dilations", (1, 1)),
                                 pad_value=a.get("pad_value", 0.0), activation=a.get("activation"))


def _linear_run(m, step, xs, ins, out, w):
    return m.binary_qlinear(*_args(step, xs, ins, out, w), activation=step.attrs.get("activation"))


def _pack(ops, step):
    from ... import binary
    pack = binary.pack_binary_conv_weights if step.op == "binary_conv" else binary.pack_binary_weights
    return pack(_signs(step), scale=step.consts["w_scale"])


def _record(step, x, y) -> dict:
    from ...binary import code_thresholds
    a = step.attrs
    x_s, x_zp = scale_zp(x)
    y_s, y_zp = scale_zp(y)
    qmin, qmax = activation_range(a.get("activation"), y_s, y_zp, y.dtype)
    return {"kind": step.op, "strides": list(a.get("strides", (1, 1))), "pads": list(a.get("pads", (0, 0, 0, 0))),
            "dilations": list(a.get("dilations", (1, 1))), "zero_padding": a.get("pad_value", 0.0) == 0.0,
            "qmin": int(qmin), "qmax": int(qmax),
            "x_codes": code_thresholds(x_s, x_zp, step.consts["threshold"], step.consts["threshold"].shape[0])}


def _conv_lower(step, ins, out):
    need_2d_window(step.op, ins)
    return _record(step, ins[0], out)


# ---- ONNX export --------------------------------------------------------------------------------
#
# The step in standard float ops (both formats), exact in ONNX Runtime: DequantizeLinear -> Less
# (threshold) -> Where (-1, +1) -> Conv / MatMul with the +-1 weights (sums of +-1 are integers
# below 2^24: float32 adds them exactly in any order; one padding is a Pad with 1.0 first) ->
# Mul (w_scale) -> Add (bias) -> QuantizeLinear, the activation an integer Clip of the codes.

def _export(ex, step, label):
    b, c, a = ex.b, step.consts, step.attrs
    x, y = step.inputs[0], step.output
    conv = step.op == "binary_conv"
    per_channel = (-1, 1, 1) if conv else (-1,)      # NCHW channels, or the last axis of rows
    below = ex.tmp(f"{label}.below")
    b.node("Less", [ex.dq(x, label), b.const(f"{label}.threshold", np.asarray(c["threshold"]).reshape(per_channel))],
           [below], f"{label}.below")
    signs = ex.tmp(f"{label}.signs")
    b.node("Where", [below, b.const(f"{label}.minus_one", np.float32(-1)), b.const(f"{label}.one", np.float32(1))],
           [signs], f"{label}.signs")
    w = _signs(step)
    dot = ex.tmp(f"{label}.dot")
    if conv:
        pads = list(a.get("pads", (0, 0, 0, 0)))
        if a.get("pad_value", 0.0) == 1.0 and any(pads):
            padded = ex.tmp(f"{label}.padded")
            b.node("Pad", [signs, ex.int_const(f"{label}.pads", [0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]], np.int64),
                           b.const(f"{label}.pad_one", np.float32(1))], [padded], f"{label}.pad", mode="constant")
            signs, pads = padded, [0, 0, 0, 0]
        b.node("Conv", [signs, b.const(f"{label}.weight_signs", w)], [dot], label, kernel_shape=list(w.shape[2:]),
               strides=list(a.get("strides", (1, 1))), pads=pads, dilations=list(a.get("dilations", (1, 1))))
    else:
        b.node("MatMul", [signs, b.const(f"{label}.weight_signs", np.ascontiguousarray(w.T))], [dot], label)
    scaled, f = ex.tmp(f"{label}.scaled"), ex.tmp(f"{y}.f32")
    b.node("Mul", [dot, b.const(f"{label}.weight_scale", np.asarray(c["w_scale"]).reshape(per_channel))], [scaled],
           f"{label}.scale")
    b.node("Add", [scaled, b.const(f"{label}.bias", np.asarray(c["bias"]).reshape(per_channel))], [f], f"{label}.bias")
    y_spec = ex.spec(y)
    lo, hi = activation_range(a.get("activation"), np.float32(y_spec.scale), y_spec.zero_point, y_spec.dtype)
    info = np.iinfo(y_spec.dtype)
    if (lo, hi) == (info.min, info.max):
        ex.q(f, y, label)
        return
    pre = ex.tmp(f"{y}.pre_act")
    b.node("QuantizeLinear", [f, *ex.qp(y)], [pre], f"{label}.q")
    b.node("Clip", [pre, ex.int_const(f"{label}.act_min", lo, y_spec.dtype),
                    ex.int_const(f"{label}.act_max", hi, y_spec.dtype)], [y], f"{label}.act")




BINARY_CONV = StepKind("binary_conv", 1, "quant", consts=CONSTS, check=_check, shape=_conv_shape, run=_conv_run,
                       weights=_signs, pack=_pack, lower=_conv_lower, export=_export)
BINARY_LINEAR = StepKind("binary_linear", 1, "quant", consts=CONSTS, check=_check, shape=_linear_shape,
                         run=_linear_run, weights=_signs, pack=_pack,
                         lower=lambda step, ins, out: _record(step, ins[0], out), export=_export)
