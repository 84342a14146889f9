"""Pools over NHWC windows.

================  ===========================================================================
max_pool          MaxPool (output keeps the input's quantization); attrs: kernel, strides,
                  pads, dilations, ceil_mode
avg_pool          QLinearAveragePool; attrs: kernel, strides, pads, ceil_mode, count_include_pad
global_avg_pool   QLinearGlobalAveragePool, output [N, 1, 1, C]
================  ===========================================================================
"""
from __future__ import annotations

from ..plan_shapes import ints, no_empty_window, spatial
from .common import MS, need_2d_window, qp
from .kind import StepKind


def _window_shape(step, ins):
    x, a = ins[0].shape, step.attrs
    if len(x) != 4:
        raise ValueError(f"pooling needs a 4-D NHWC input, got {x}")
    kernel = ints(a.get("kernel"), 2, "kernel", 1)
    out = spatial(x, a, kernel, bool(a.get("ceil_mode", 0)))
    if step.op == "avg_pool" and not a.get("count_include_pad", 1):
        no_empty_window(x, a, kernel, out)
    return (x[0],) + out + (x[3],)


def _global_shape(step, ins):
    x = ins[0].shape
    if len(x) != 4:
        raise ValueError(f"global pooling needs a 4-D NHWC input, got {x}")
    return (x[0], 1, 1, x[3])


# ---- reference interpretation -------------------------------------------------------------------

def _max_run(m, step, xs, ins, out, w):
    a = step.attrs
    return m.max_pool(xs[0], kernel_shape=a["kernel"], strides=a["strides"], pads=a["pads"],
                      dilations=a.get("dilations", (1, 1)), ceil_mode=int(a.get("ceil_mode", 0)), layout="NHWC")


def _avg_run(m, step, xs, ins, out, w):
    a = step.attrs
    return m.qlinear_average_pool(xs[0], *qp(ins[0]), *qp(out), kernel_shape=a["kernel"], strides=a["strides"],
                                  pads=a["pads"], ceil_mode=int(a.get("ceil_mode", 0)),
                                  count_include_pad=int(a.get("count_include_pad", 1)), layout="NHWC")


def _global_run(m, step, xs, ins, out, w):
    return m.qlinear_global_average_pool(xs[0], *qp(ins[0]), *qp(out), layout="NHWC")


# ---- lowering -----------------------------------------------------------------------------------

def _window(a: dict) -> dict:
    return {"kernel": list(a["kernel"]), "strides": list(a["strides"]), "pads": list(a["pads"]),
            "ceil_mode": bool(a.get("ceil_mode", 0))}


def _max_lower(step, ins, out):
    need_2d_window(step.op, ins)
    return {"kind": "max_pool", **_window(step.attrs), "dilations": list(step.attrs.get("dilations", (1, 1)))}


def _avg_lower(step, ins, out):
    need_2d_window(step.op, ins)
    a = step.attrs
    return {"kind": "avg_pool", **_window(a), "count_include_pad": bool(a.get("count_include_pad", 1))}


def _global_lower(step, ins, out):
    need_2d_window(step.op, ins)
    return {"kind": "global_avg_pool"}


# ---- ONNX export --------------------------------------------------------------------------------

def _max_export(ex, step, label):
    a = step.attrs
    attrs = dict(kernel_shape=list(a["kernel"]), strides=list(a["strides"]), pads=list(a["pads"]),
                 dilations=list(a.get("dilations", (1, 1))), ceil_mode=int(a.get("ceil_mode", 0)))
    if ex.fmt == "qoperator":  # max commutes with the monotone dequantization: integer MaxPool
        ex.b.node("MaxPool", [step.inputs[0]], [step.output], label, **attrs)
    else:
        ex.unary_qdq(step, label, "MaxPool", **attrs)


def _avg_export(ex, step, label):
    a = step.attrs
    attrs = dict(kernel_shape=list(a["kernel"]), strides=list(a["strides"]), pads=list(a["pads"]),
                 ceil_mode=int(a.get("ceil_mode", 0)), count_include_pad=int(a.get("count_include_pad", 1)))
    if ex.fmt == "qoperator":
        x, y = step.inputs[0], step.output
        ex.b.node("QLinearAveragePool", [x, *ex.qp(x), *ex.qp(y)], [y], label, domain=MS, channels_last=0, **attrs)
    else:
        ex.unary_qdq(step, label, "AveragePool", **attrs)


def _global_export(ex, step, label):
    if ex.fmt == "qoperator":
        x, y = step.inputs[0], step.output
        ex.b.node("QLinearGlobalAveragePool", [x, *ex.qp(x), *ex.qp(y)], [y], label, domain=MS, channels_last=0)
    else:
        ex.unary_qdq(step, label, "GlobalAveragePool")


MAX_POOL = StepKind("max_pool", 1, "quant", copies=True, shape=_window_shape, run=_max_run, lower=_max_lower,
                    export=_max_export)
AVG_POOL = StepKind("avg_pool", 1, "quant", shape=_window_shape, run=_avg_run, lower=_avg_lower,
                    export=_avg_export)
GLOBAL_AVG_POOL = StepKind("global_avg_pool", 1, "quant", shape=_global_shape, run=_global_run,
                           lower=_global_lower, export=_global_export)
