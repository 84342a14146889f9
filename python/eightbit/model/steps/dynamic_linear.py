"""dynamic_linear: a linear layer whose input rows are quantized at run time (no calibration).

==============  ===============================================================================
dynamic_linear  float32 x [N, ..., K] -> float32 [N, ..., O]: each row quantized at run time
                (uint8, DynamicQuantizeLinear), ``w`` int8 [O, K], ``w_scale`` float32 [O],
                ``bias`` float32 [O]; attrs: activation (None or "relu"), granularity ("row",
                default, or "tensor": the whole input with one scale, as ORT's quantize_dynamic
                models); optional ``outlier_cols`` int32 [J] and ``outlier_w`` float32 [O, J]:
                input columns computed in float32. reference.quantized_linear
==============  ===============================================================================
"""
from __future__ import annotations

import numpy as np

from ...numerics.checks import check_outliers
from .common import check_w_scale, check_weight_grid
from .conv import rows_shape
from .kind import StepKind

CONSTS = ("w", "w_scale", "bias")


def _check(step, ins, out):
    w, ws, b = (np.asarray(step.consts[k]) for k in CONSTS)
    if w.dtype != np.int8 or w.ndim != 2 or w.shape[0] == 0:
        raise ValueError(f"w must be a 2-D int8 array [O, K], got {w.dtype} {w.shape}")
    o = w.shape[0]
    check_w_scale(ws, o)
    if b.dtype != np.float32 or b.shape != (o,) or not np.all(np.isfinite(b)):
        raise ValueError(f"bias must be {o} finite float32 values")
    if step.attrs.get("activation") not in (None, "relu"):
        raise ValueError("activation must be None or 'relu'")
    if step.attrs.get("granularity", "row") not in ("row", "tensor"):
        raise ValueError("granularity must be 'row' or 'tensor'")
    cols = step.consts.get("outlier_cols")
    if cols is not None and np.asarray(cols).dtype != np.int32:
        raise ValueError("outlier_cols must be int32")
    if cols is not None and step.attrs.get("granularity", "row") == "tensor":
        raise ValueError("outlier columns need per-row quantization (granularity 'row')")
    check_outliers(cols, step.consts.get("outlier_w"), o, w.shape[1])
    check_weight_grid(step, w)


def _outliers(step) -> dict:
    return {k: step.consts[k] for k in ("outlier_cols", "outlier_w") if k in step.consts}


def _run(m, step, xs, ins, out, w):
    c, x = step.consts, xs[0]
    y = m.quantized_linear(x.reshape(-1, x.shape[-1]), w, c["w_scale"], c["bias"], step.attrs.get("activation"),
                           step.attrs.get("granularity", "row"), **_outliers(step))
    return y.reshape(x.shape[:-1] + (-1,))


def _pack(ops, step):
    return ops.PackedWeights(np.ascontiguousarray(step.consts["w"].T), None)


def _lower(step, ins, out):
    return {"kind": "dynamic_linear", "relu": step.attrs.get("activation") == "relu",
            "per_tensor": step.attrs.get("granularity", "row") == "tensor"}


def _reduce(ex, op, x, label, y):
    """ReduceMin / ReduceMax over axis 1 keeping it ([M, 1]); axes became an input in opset 18."""
    out = ex.tmp(f"{y}.{op[6:].lower()}_raw")
    if ex.b.opset >= 18:
        ex.b.node(op, [x, ex.int_const(f"{label}.axes", [1], np.int64)], [out], f"{label}.{op}", keepdims=1)
    else:
        ex.b.node(op, [x], [out], f"{label}.{op}", axes=[1], keepdims=1)
    return out


def _export(ex, step, label):
    """Per-row DynamicQuantizeLinear (reference.dynamic_quantize_rows) in float ops, then
    MatMulInteger and the dequantization of reference.quantized_linear, op for op."""
    b, c = ex.b, step.consts
    x, y = step.inputs[0], step.output
    w = np.asarray(c["w"])
    o, k = w.shape
    f32 = lambda v: b.const(f"{label}.c{v:g}", np.float32(v))  # noqa: E731

    def n(op, ins, name, **attrs):
        out = ex.tmp(f"{y}.{name}")
        b.node(op, ins, [out], f"{label}.{name}", **attrs)
        return out

    kept = rows = n("Reshape", [x, ex.int_const(f"{label}.rows_shape", [-1, k], np.int64)], "rows")
    cols = np.asarray(c.get("outlier_cols", np.zeros(0, np.int32)), np.int64)
    if cols.size:      # the outlier columns are zeroed before quantizing, added in float32 below
        keep = np.ones((1, k), bool)
        keep[0, cols] = False
        rows = n("Where", [b.const(f"{label}.int8_columns", keep), rows, f32(0.0)], "rows_int8")
    mn = n("Min", [_reduce(ex, "ReduceMin", rows, label, y), f32(0.0)], "row_min")
    mx = n("Max", [_reduce(ex, "ReduceMax", rows, label, y), f32(0.0)], "row_max")
    spread = n("Div", [n("Sub", [mx, mn], "spread"), f32(255.0)], "scale_raw")
    scale = n("Where", [n("Equal", [mx, mn], "flat"), f32(1.0), spread], "row_scale")
    initial = n("Sub", [f32(0.0), n("Div", [mn, scale], "min_over_scale")], "zp_initial")
    zp = n("Round", [n("Clip", [initial, f32(0.0), f32(255.0)], "zp_clamped")], "row_zero_point")
    # QuantizeLinear per row: clamp(rne(x / scale) + zp, 0, 255) (integer bounds: same as
    # clamping before rounding)
    v = n("Add", [n("Round", [n("Div", [rows, scale], "x_over_scale")], "x_rounded"), zp], "x_shifted")
    xq = n("Cast", [n("Clip", [v, f32(0.0), f32(255.0)], "x_clamped")], "x_q", to=2)  # UINT8
    wt = ex.int_const(f"{label}.weight_t", w.T, np.int8)
    acc = n("MatMulInteger", [xq, wt], "acc_raw")
    wsum = ex.int_const(f"{label}.weight_col_sum", w.astype(np.int32).sum(axis=1), np.int32)
    corr = n("Mul", [n("Cast", [zp], "zp_i32", to=6), wsum], "zp_correction")
    accf = n("Cast", [n("Sub", [acc, corr], "acc")], "acc_f32", to=1)  # FLOAT
    sc = n("Mul", [scale, b.const(f"{label}.weight_scale", np.asarray(c["w_scale"], np.float32))], "out_scale")
    out = n("Add", [n("Mul", [accf, sc], "scaled"), b.const(f"{label}.bias", np.asarray(c["bias"], np.float32))],
            "biased")
    for j, col in enumerate(cols):   # one Mul and one Add per column: the reference's order and roundings
        xj = n("Slice", [kept, *(ex.int_const(f"{label}.outlier{j}.{w}", [v], np.int64)
                                 for w, v in (("start", col), ("end", col + 1), ("axis", 1)))], f"outlier{j}.x")
        wj = b.const(f"{label}.outlier{j}.w", np.asarray(c["outlier_w"], np.float32)[:, j])
        out = n("Add", [out, n("Mul", [xj, wj], f"outlier{j}.product")], f"outlier{j}.sum")
    if step.attrs.get("activation") == "relu":
        out = n("Relu", [out], "relu")
    b.node("Reshape", [out, b.rows_back_shape(x, int(ex.spec(y).shape[-1]), label)], [y], label)


DYNAMIC_LINEAR = StepKind("dynamic_linear", 1, "float", consts=CONSTS, check=_check,
                          shape=lambda step, ins: rows_shape(step, ins, allow_4d=True), run=_run,
                          weights=lambda step: step.consts["w"], pack=_pack, lower=_lower, export=_export)
