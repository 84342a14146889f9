"""conv / linear: QLinearConv with per-output-channel weight scales, its requantization and fused
activation clamp.

======  ======================================================================================
conv    QLinearConv, NHWC. consts: ``w`` int8 OIHW, ``w_scale`` float32 [O], ``bias`` int32 [O].
        attrs: strides, pads (top, left, bottom, right), dilations, group, activation (None,
        "relu", "relu6", ("clip", lo, hi))
linear  x [N, ..., K] (not 4-D) times ``w`` int8 [O, K] (PyTorch layout), + ``bias`` int32 [O],
        requantized per output channel (``w_scale`` [O]); attrs: activation. Exactly QLinearConv
        with a 1x1 kernel on each row [K, 1, 1]
======  ======================================================================================

Both also take attrs["requant"]: "float" (ONNX Runtime, default) or "fixed" (TFLite).
"""
from __future__ import annotations

import numpy as np

from ...numerics.clamp import activation_range
from ...numerics.requant import requant_multipliers
from ..plan_shapes import spatial
from .common import MS, check_activation, check_w_scale, check_weight_grid, need_2d_window, qp, scale_zp
from .kind import StepKind

CONSTS = ("w", "w_scale", "bias")


# ---- schema and shape ---------------------------------------------------------------------------

def _check(step, ins, out):
    c = step.consts
    w, ws, b = (np.asarray(c[k]) for k in CONSTS)
    ndim = 4 if step.op == "conv" else 2
    if w.dtype != np.int8 or w.ndim != ndim or w.shape[0] == 0:
        raise ValueError(f"w must be a {ndim}-D int8 array with output channels first, got {w.dtype} {w.shape}")
    o = w.shape[0]
    check_w_scale(ws, o)
    if b.dtype != np.int32 or b.shape != (o,):
        raise ValueError(f"bias must be {o} int32 values")
    check_activation(step.attrs.get("activation"))
    check_weight_grid(step, w)


def _conv_shape(step, ins):
    x, a, w = ins[0].shape, step.attrs, step.consts["w"].shape
    group = a.get("group", 1)
    if len(x) != 4 or not isinstance(group, int) or group < 1 or x[3] != w[1] * group or w[0] % group:
        raise ValueError(f"input {x} does not match weights {w} with group {group!r}")
    return (x[0],) + spatial(x, a, w[2:], False) + (w[0],)


def rows_shape(step, ins, allow_4d: bool):
    """x [N, ..., K] -> [N, ..., O] (linear, dynamic_linear); a quantized 4-D x is NHWC: refused."""
    x, w = ins[0].shape, step.consts["w"].shape
    if len(x) < 2 or (len(x) == 4 and not allow_4d) or x[-1] != w[1]:
        raise ValueError(f"input {x} does not match weights {w}")
    return tuple(x[:-1]) + (w[0],)


# ---- reference interpretation -------------------------------------------------------------------

def _weights(step):
    """The weights argument of the conv op: OIHW int8 (a linear's [O, K] as [O, K, 1, 1])."""
    w = step.consts["w"]
    return w.reshape(w.shape[0], w.shape[1], 1, 1) if step.op == "linear" else w


def _pack(ops, step):
    return ops.pack_conv(_weights(step), np.zeros(step.consts["w"].shape[0], np.int8), step.attrs.get("group", 1))


def _conv_call(m, step, x, x_spec, out, weights):
    xs, xzp = qp(x_spec)
    ys, yzp = qp(out)
    c = step.consts
    a = step.attrs
    o = c["w"].shape[0]
    return m.qlinear_conv(x, xs, xzp, weights, c["w_scale"], np.zeros(o, np.int8), ys, yzp, c["bias"],
                          strides=a.get("strides", (1, 1)), pads=a.get("pads", (0, 0, 0, 0)),
                          dilations=a.get("dilations", (1, 1)), group=a.get("group", 1),
                          activation=a.get("activation"), layout="NHWC", requant=a.get("requant", "float"))


def _conv_run(m, step, xs, ins, out, w):
    return _conv_call(m, step, xs[0], ins[0], out, w)


def _linear_run(m, step, xs, ins, out, w):
    x = xs[0]                                  # [N, ..., K]: rows of a 1x1 convolution
    y = _conv_call(m, step, x.reshape(-1, 1, 1, x.shape[-1]), ins[0], out, w)
    return y.reshape(x.shape[:-1] + (-1,))


# ---- lowering -----------------------------------------------------------------------------------

def _record(step, x, y) -> dict:
    a = step.attrs
    x_s, _ = scale_zp(x)
    y_s, y_zp = scale_zp(y)
    w_s = np.asarray(step.consts["w_scale"], np.float32).reshape(-1)
    qmin, qmax = activation_range(a.get("activation"), y_s, y_zp, y.dtype)
    rec = {"kind": "conv", "strides": list(a.get("strides", (1, 1))), "pads": list(a.get("pads", (0, 0, 0, 0))),
           "dilations": list(a.get("dilations", (1, 1))), "group": int(a.get("group", 1)),
           "qmin": int(qmin), "qmax": int(qmax)}
    requant = a.get("requant", "float")
    if requant == "float":
        rec["multiplier"] = np.ascontiguousarray(requant_multipliers(x_s, w_s, y_s, "float"), np.float32)
    elif requant == "fixed":
        m0_shift = requant_multipliers(x_s, w_s, y_s, "fixed")
        rec["m0"], rec["shift"] = (np.ascontiguousarray(v, np.int32).reshape(-1) for v in m0_shift)
    else:
        raise ValueError(f"requant must be 'float' or 'fixed', got {requant!r}")
    return rec


def _conv_lower(step, ins, out):
    need_2d_window(step.op, ins)
    return _record(step, ins[0], out)


def _linear_lower(step, ins, out):
    return _record(step, ins[0], out)


# ---- ONNX export --------------------------------------------------------------------------------

def _export_check(step):
    if step.attrs.get("requant", "float") != "float":
        return ("uses fixed-point requantization (requant='fixed'), which has no ONNX equivalent; quantize "
                "with requant='float' to export")
    return None


def _initializers(ex, step, label, x_spec):
    """Initializers of a conv / linear step: int8 OIHW weights, their scales and zero points
    (per-tensor when every channel has the same scale), int32 bias."""
    c = step.consts
    w = np.asarray(c["w"])
    ws = np.asarray(c["w_scale"], np.float32)
    per_tensor = bool(np.all(ws == ws[0]))
    w_scale = ws[:1].reshape(()) if per_tensor else ws
    wn = ex.b.const(f"{label}.weight", w, np.int8)
    wsn = ex.b.const(f"{label}.weight_scale", w_scale, np.float32)
    wzn = ex.b.const(f"{label}.weight_zero_point", np.zeros(w_scale.shape, np.int8))
    bn = ex.b.const(f"{label}.bias", c["bias"], np.int32)
    bias_scale = (np.float32(x_spec.scale) * ws).astype(np.float32)  # ONNX's bias convention
    return wn, wsn, wzn, bn, bias_scale, per_tensor


def _export_core(ex, step, label, x, y, attrs):
    """x (quantized, NCHW, or rows [M, K] for a Gemm: attrs None) -> y (quantized), clamped to
    the activation's range."""
    b = ex.b
    x_spec, y_spec = ex.spec(step.inputs[0]), ex.spec(step.output)
    wn, wsn, wzn, bn, bias_scale, per_tensor = _initializers(ex, step, label, x_spec)
    lo, hi = activation_range(step.attrs.get("activation"), np.float32(y_spec.scale), y_spec.zero_point,
                              y_spec.dtype)
    info = np.iinfo(y_spec.dtype)
    free = (lo, hi) == (info.min, info.max)
    pre = y if free else ex.tmp(f"{y}.pre_act")
    gemm = attrs is None
    if ex.fmt == "qoperator" and gemm:
        b.node("QGemm", [x, *ex.qp(step.inputs[0]), wn, wsn, wzn, bn, *ex.qp(step.output)], [pre],
               label, domain=MS, transB=1)
    elif ex.fmt == "qoperator":
        b.node("QLinearConv", [x, *ex.qp(step.inputs[0]), wn, wsn, wzn, *ex.qp(step.output), bn],
               [pre], label, **attrs)
    else:
        axis = {} if per_tensor else {"axis": 0}
        wd = ex.tmp(f"{label}.weight_dq")
        b.node("DequantizeLinear", [wn, wsn, wzn], [wd], f"{label}.weight_dq", **axis)
        bs = b.const(f"{label}.bias_scale", bias_scale[:1].reshape(()) if per_tensor else bias_scale)
        bz = b.const(f"{label}.bias_zero_point", np.zeros(() if per_tensor else bias_scale.shape, np.int32))
        bd = ex.tmp(f"{label}.bias_dq")
        b.node("DequantizeLinear", [bn, bs, bz], [bd], f"{label}.bias_dq", **axis)
        f = ex.tmp(f"{y}.f32")
        if gemm:
            b.node("Gemm", [ex.dq(x, label, step.inputs[0]), wd, bd], [f], label, transB=1)
        else:
            b.node("Conv", [ex.dq(x, label, step.inputs[0]), wd, bd], [f], label, **attrs)
        if free and step.attrs.get("activation") == "relu":
            # the canonical QDQ form: ORT removes a Relu before a Q whose zero point is the minimum
            r = ex.tmp(f"{y}.relu")
            b.node("Relu", [f], [r], f"{label}.relu")
            f = r
        b.node("QuantizeLinear", [f, *ex.qp(step.output)], [pre], f"{label}.q")
    if not free:
        # eightbit clamps the requantized value to [Q(lo), Q(hi)]: an integer Clip is exactly that
        b.node("Clip", [pre, ex.int_const(f"{label}.act_min", lo, y_spec.dtype),
                        ex.int_const(f"{label}.act_max", hi, y_spec.dtype)], [y], f"{label}.act")


def _conv_export(ex, step, label):
    a = step.attrs
    w = np.asarray(step.consts["w"])
    attrs = dict(kernel_shape=list(w.shape[2:]), strides=list(a.get("strides", (1, 1))),
                 pads=list(a.get("pads", (0, 0, 0, 0))), dilations=list(a.get("dilations", (1, 1))),
                 group=int(a.get("group", 1)))
    _export_core(ex, step, label, step.inputs[0], step.output, attrs)


def _linear_export(ex, step, label):
    # Gemm(transB=1) on rows [M, K]: ORT fuses DQ -> Gemm -> Q into QGemm, whose requantization
    # is QLinearConv's (the plan's linear is QLinearConv 1x1), for uint8 and int8 activations
    x, y = step.inputs[0], step.output
    rank = len(ex.spec(x).shape)
    x2, y2 = x, y
    if rank != 2:
        x2, y2 = ex.tmp(f"{x}.rows"), ex.tmp(f"{y}.rows")
        k = int(ex.spec(x).shape[-1])
        ex.b.node("Reshape", [x, ex.int_const(f"{label}.rows_shape", [-1, k], np.int64)], [x2], f"{label}.to_rows")
    _export_core(ex, step, label, x2, y2, None)
    if rank != 2:
        shape = ex.b.rows_back_shape(x, int(ex.spec(y).shape[-1]), label)  # the batch, the sequence free
        ex.b.node("Reshape", [y2, shape], [y], f"{label}.from_rows")


CONV = StepKind("conv", 1, "quant", consts=CONSTS, check=_check, shape=_conv_shape, run=_conv_run,
                weights=_weights, pack=_pack, lower=_conv_lower, export=_conv_export, export_check=_export_check)
LINEAR = StepKind("linear", 1, "quant", consts=CONSTS, check=_check,
                  shape=lambda step, ins: rows_shape(step, ins, allow_4d=False), run=_linear_run,
                  weights=_weights, pack=_pack, lower=_linear_lower, export=_linear_export,
                  export_check=_export_check)
