"""int8 attention: dynamic_bmm (Q K^T) and softmax_bmm (softmax, then P V), float32 in and out,
both operands of each product quantized at run time (reference/int8_attention.py).

===========  ==================================================================================
dynamic_bmm  float32 a [N, ..., M, K], b [N, ..., K, P] (same rank >= 3, leading dimensions
             broadcasting as bmm's) -> float32 [N, ..., M, P]: a's rows uint8
             (DynamicQuantizeLinear), b's columns symmetric int8, int32 accumulation; attrs
             "alpha" (a folded output scale, default 1.0). reference.dynamic_bmm
softmax_bmm  float32 scores [N, ..., M, T], v [N, ..., T, D] (, mask broadcasting to the
             scores) -> float32 [N, ..., M, D]: softmax(scores * scale + mask) as uint8
             probabilities (integer exp table, const ``exp_table`` int32 [4097]), v's columns
             symmetric int8; attrs "scale" (None or a float), "p_scale" ("row", default, or
             "fixed": 1/255). The scores carry the output's leading dimensions. reference.softmax_bmm
===========  ==================================================================================
"""
from __future__ import annotations

import numpy as np

from ...reference.int8_attention import EXP_ONE, EXP_TABLE_SIZE, P_SCALES
from ..plan_types import FLOAT
from .kind import StepKind


def _bmm_shape(a, b, a_full=False):
    if len(a) < 3 or len(a) != len(b):
        raise ValueError(f"a {a} and b {b} must have the same rank >= 3")
    if a[-1] != b[-2]:
        raise ValueError(f"a {a} has {a[-1]} columns, but b {b} has {b[-2]} rows")
    lead = []
    for x, y in zip(a[:-2], b[:-2]):
        if x == y or y == 1:
            lead.append(x)
        elif x == 1 and not a_full:
            lead.append(y)
        else:
            raise ValueError(f"the leading dimensions of a {a} and b {b} do not broadcast"
                             + (" (the scores must have the output's)" if a_full else ""))
    return tuple(lead) + (a[-2], b[-1])


def _check_float(ins):
    if any(spec.dtype != FLOAT for spec in ins):
        raise ValueError("int8 attention steps read float32 tensors")


def _check_dynamic_bmm(step, ins, out):
    _check_float(ins)
    alpha = step.attrs.get("alpha", 1.0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")


def _check_softmax_bmm(step, ins, out):
    _check_float(ins)
    scale = step.attrs.get("scale")
    if scale is not None and not (isinstance(scale, float) and np.isfinite(scale)):
        raise ValueError(f"scale must be a finite float or None, got {scale!r}")
    if step.attrs.get("p_scale", "row") not in P_SCALES:
        raise ValueError(f"p_scale must be one of {P_SCALES}, got {step.attrs.get('p_scale')!r}")
    t = np.asarray(step.consts["exp_table"])
    if t.dtype != np.int32 or t.shape != (EXP_TABLE_SIZE,) or t[0] != EXP_ONE or t.min() < 0 or t.max() > EXP_ONE:
        raise ValueError(f"exp_table must be int32 [{EXP_TABLE_SIZE}] with values in [0, 2^24], the first 2^24")
    if len(ins) == 3:
        x, m = ins[0].shape, ins[2].shape
        if len(m) != len(x) or any(b not in (1, a) for a, b in zip(x[1:], m[1:])):
            raise ValueError(f"mask {m} must broadcast to the scores {x} (same rank, extents 1 or the scores')")


def _softmax_bmm_shape(step, ins):
    if len(ins) not in (2, 3):
        raise ValueError(f"expected 2 inputs (scores, v) or 3 (with a mask), got {len(ins)}")
    return _bmm_shape(ins[0].shape, ins[1].shape, a_full=True)


def _run_softmax_bmm(m, step, xs, ins, out, w):
    return m.softmax_bmm(xs[0], xs[1], xs[2] if len(xs) == 3 else None, step.attrs.get("scale"),
                         step.attrs.get("p_scale", "row"))


# ---- ONNX export: standard ops, the reference's arithmetic op for op ---------------------------------

class _Nodes:
    def __init__(self, ex, label, y):
        self.ex, self.b, self.label, self.y = ex, ex.b, label, y

    def __call__(self, op, ins, name, **attrs):
        out = self.ex.tmp(f"{self.y}.{name}")
        self.b.node(op, ins, [out], f"{self.label}.{name}", **attrs)
        return out

    def f32(self, v):
        return self.b.const(f"{self.label}.c{v:g}", np.float32(v))

    def i64(self, v, name):
        return self.b.const(f"{self.label}.{name}", np.int64(v))

    def reduce(self, op, x, axis, name):
        """ReduceMax / ReduceSum over one axis, keepdims (axes an input from opset 18 / 13)."""
        first_input = {"ReduceSum": 13}.get(op, 18)
        if self.b.opset >= first_input:
            return self(op, [x, self.ex.int_const(f"{self.label}.{name}.axes", [axis], np.int64)], name, keepdims=1)
        return self(op, [x], name, axes=[axis], keepdims=1)

    def columns_int8(self, b, name):
        """reference.quantize_columns_symmetric: (int8 columns, their scales [..., 1, P])."""
        amax = self.reduce("ReduceMax", self(op="Abs", ins=[b], name=f"{name}_abs"), -2, f"{name}_amax")
        positive = self("Greater", [amax, self.f32(0.0)], f"{name}_nonzero")
        scale = self("Where", [positive, self("Div", [amax, self.f32(127.0)], f"{name}_scale_raw"), self.f32(1.0)],
                     f"{name}_scale")
        v = self("Clip", [self("Div", [b, scale], f"{name}_over_scale"), self.f32(-127.0), self.f32(127.0)],
                 f"{name}_clamped")
        return self("Cast", [self("Round", [v], f"{name}_rounded")], f"{name}_q", to=3), scale  # INT8


def _export_dynamic_bmm(ex, step, label):
    n = _Nodes(ex, label, step.output)
    a, b = step.inputs
    f32 = n.f32
    # per-row DynamicQuantizeLinear (reference.dynamic_quantize_rows), rows along the last axis
    mn = n("Min", [n.reduce("ReduceMin", a, -1, "row_min_raw"), f32(0.0)], "row_min")
    mx = n("Max", [n.reduce("ReduceMax", a, -1, "row_max_raw"), f32(0.0)], "row_max")
    spread = n("Div", [n("Sub", [mx, mn], "spread"), f32(255.0)], "scale_raw")
    scale = n("Where", [n("Equal", [mx, mn], "flat"), f32(1.0), spread], "row_scale")
    initial = n("Sub", [f32(0.0), n("Div", [mn, scale], "min_over_scale")], "zp_initial")
    zp = n("Round", [n("Clip", [initial, f32(0.0), f32(255.0)], "zp_clamped")], "row_zero_point")
    v = n("Add", [n("Round", [n("Div", [a, scale], "a_over_scale")], "a_rounded"), zp], "a_shifted")
    aq = n("Cast", [n("Clip", [v, f32(0.0), f32(255.0)], "a_clamped")], "a_q", to=2)  # UINT8
    bq, b_scale = n.columns_int8(b, "b")
    acc = n("MatMulInteger", [aq, bq], "acc_raw")
    col_sum = n.reduce("ReduceSum", n("Cast", [bq], "b_i32", to=6), -2, "b_col_sum")
    corr = n("Mul", [n("Cast", [zp], "zp_i32", to=6), col_sum], "zp_correction")
    accf = n("Cast", [n("Sub", [acc, corr], "acc")], "acc_f32", to=1)
    col = n("Mul", [b_scale, f32(float(step.attrs.get("alpha", 1.0)))], "col_scale")
    out_scale = n("Mul", [scale, col], "out_scale")
    ex.b.node("Mul", [accf, out_scale], [step.output], label)


def _export_softmax_bmm(ex, step, label):
    n = _Nodes(ex, label, step.output)
    x, v = step.inputs[:2]
    f32 = n.f32
    if step.attrs.get("scale") is not None:
        x = n("Mul", [x, f32(float(step.attrs["scale"]))], "scaled")
    if len(step.inputs) == 3:
        x = n("Add", [x, step.inputs[2]], "masked")
    m = n.reduce("ReduceMax", x, -1, "row_max")
    dead = n("Equal", [m, f32(-np.inf)], "dead_row")
    d = n("Where", [dead, f32(np.inf), n("Sub", [m, x], "d_raw")], "d")
    t = n("Min", [n("Mul", [d, f32(256.0)], "d_steps"), f32(float(EXP_TABLE_SIZE - 1))], "d_clamped")
    idx = n("Cast", [n("Round", [t], "d_rounded")], "index", to=7)  # INT64
    table = ex.int_const(f"{label}.exp_table", np.asarray(step.consts["exp_table"], np.int64), np.int64)
    e = n("Gather", [table, idx], "e", axis=0)
    s = n.reduce("ReduceSum", e, -1, "e_sum")
    live = n("Greater", [s, n.i64(0, "zero")], "live")
    if step.attrs.get("p_scale", "row") == "row":
        p = n("Div", [n("Add", [n("Mul", [e, n.i64(255, "c255")], "e255"), n.i64(1 << 23, "half")], "e_rounding"),
                      n.i64(1 << 24, "one")], "p_i64")
        s64 = n("Cast", [n("Max", [s, n.i64(1, "c1")], "sum_nonzero")], "sum_f64", to=11)  # DOUBLE
        ratio = n("Div", [ex.b.const(f"{label}.exp_one", np.float64(EXP_ONE)),
                          n("Mul", [s64, ex.b.const(f"{label}.c255d", np.float64(255.0))], "sum255")], "p_scale_f64")
        s_p = n("Where", [live, n("Cast", [ratio], "p_scale_raw", to=1), f32(0.0)], "p_scale")
    else:
        r = n("Div", [n.i64(255 << 48, "r_num"), n("Max", [s, n.i64(1, "c1")], "sum_nonzero")], "r")
        p = n("Div", [n("Add", [n("Mul", [e, r], "er"), n.i64(1 << 47, "half")], "er_rounding"),
                      n.i64(1 << 48, "one")], "p_i64")
        s_p = n("Where", [live, f32(np.float32(1.0) / np.float32(255.0)), f32(0.0)], "p_scale")
    pq = n("Cast", [p], "p_q", to=2)  # UINT8
    vq, v_scale = n.columns_int8(v, "v")
    # int32 -> int64 -> float32 (exact, then the one rounding of int32 -> float32) keeps ONNX Runtime
    # from fusing MatMulInteger -> Cast -> Mul into its MatMulIntegerToFloat, which rounds the two
    # scales' product differently
    acc = n("Cast", [n("MatMulInteger", [pq, vq], "acc")], "acc_i64", to=7)
    accf = n("Cast", [acc], "acc_f32", to=1)
    out_scale = n("Mul", [s_p, v_scale], "out_scale")
    ex.b.node("Mul", [accf, out_scale], [step.output], label)


DYNAMIC_BMM = StepKind("dynamic_bmm", 2, "float", check=_check_dynamic_bmm,
                       shape=lambda step, ins: _bmm_shape(ins[0].shape, ins[1].shape),
                       run=lambda m, step, xs, ins, out, w: m.dynamic_bmm(xs[0], xs[1], step.attrs.get("alpha", 1.0)),
                       lower=lambda step, ins, out: {"kind": "dynamic_bmm",
                                                     "alpha": float(step.attrs.get("alpha", 1.0))},
                       export=_export_dynamic_bmm)

SOFTMAX_BMM = StepKind("softmax_bmm", None, "float", consts=("exp_table",), check=_check_softmax_bmm,
                       shape=_softmax_bmm_shape, run=_run_softmax_bmm,
                       lower=lambda step, ins, out: {
                           "kind": "softmax_bmm", "p_scale": step.attrs.get("p_scale", "row"),
                           "scale": None if step.attrs.get("scale") is None else float(step.attrs["scale"])},
                       export=_export_softmax_bmm)
