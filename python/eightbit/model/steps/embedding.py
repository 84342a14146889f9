"""embedding: rows of a table by token ids (the float graph's ``embedding`` node).

=========  ======================================================================================
embedding  ids [N, ...] float32 holding exact integers (the plan's inputs are float32; an int64
           graph input arrives converted), const ``table`` [V, D] (V <= 2^24, so every id is
           exact) -> float32 [N, ..., D]. The table is float32, or int8 with const ``row_scale``
           [V] (float32, positive, finite; eb.quantize's default: symmetric per row, 4x smaller):
           a row then reads ``float32(q) * row_scale[id]``, one float32 product per value. An id
           that is not an integer in [0, V) raises ValueError before any row is read. Exported as
           Cast (to int64) + Gather (int8: Gather of the rows and of their scales, Cast, Mul)
=========  ======================================================================================
"""
from __future__ import annotations

import numpy as np

from ...graph.float_exec import integer_ids
from ..plan_types import FLOAT
from .kind import StepKind

MAX_ROWS = 1 << 24     # float32 represents every integer up to 2^24 exactly


def _check(step, ins, out):
    t, scale = step.consts["table"], step.consts.get("row_scale")
    if ins[0].dtype != FLOAT:
        raise ValueError("the ids must be a float32 tensor holding integers")
    if t.dtype not in (np.float32, np.int8) or t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"table must be a [V, D] float32 or int8 array, got {t.dtype} {list(t.shape)}")
    if t.shape[0] > MAX_ROWS:
        raise ValueError(f"the table has {t.shape[0]} rows; float32 ids address at most 2^24 exactly")
    if (t.dtype == np.int8) != (scale is not None):
        raise ValueError("an int8 table needs row_scale (one float32 per row), a float32 table none")
    if scale is not None and (scale.dtype != np.float32 or scale.shape != (t.shape[0],) or
                              not np.all(np.isfinite(scale) & (scale > 0))):
        raise ValueError(f"row_scale must be {t.shape[0]} positive finite float32 values")


def _shape(step, ins):
    return tuple(ins[0].shape) + (step.consts["table"].shape[1],)


def _run(m, step, xs, ins, out, w):
    table, scale = step.consts["table"], step.consts.get("row_scale")
    ids = integer_ids(np.asarray(xs[0]), table.shape[0], step.source or "embedding", "token id")
    if scale is None:
        return table[ids]
    return table[ids].astype(np.float32) * scale[ids][..., None]


def _export(ex, step, label):
    ids = ex.tmp(f"{label}.ids")
    ex.b.node("Cast", [step.inputs[0]], [ids], f"{label}.cast", to=7)          # TensorProto.INT64
    table, scale = step.consts["table"], step.consts.get("row_scale")
    if scale is None:
        ex.b.node("Gather", [ex.b.const(f"{label}.table", table, np.float32), ids], [step.output], label, axis=0)
        return
    rows, rows_f, scales, scales_col = (ex.tmp(f"{label}.{n}") for n in ("rows", "rows_f", "scales", "scales_col"))
    ex.b.node("Gather", [ex.b.const(f"{label}.table", table, np.int8), ids], [rows], f"{label}.rows", axis=0)
    ex.b.node("Cast", [rows], [rows_f], f"{label}.rows_f", to=1)                # TensorProto.FLOAT
    ex.b.node("Gather", [ex.b.const(f"{label}.row_scale", scale, np.float32), ids], [scales], f"{label}.scales",
              axis=0)
    ex.b.node("Unsqueeze", [scales, ex.int_const(f"{label}.last", [-1], np.int64)], [scales_col],
              f"{label}.scales_col")
    ex.b.node("Mul", [rows_f, scales_col], [step.output], label)


EMBEDDING = StepKind("embedding", 1, "float", consts=("table",), check=_check, shape=_shape, run=_run,
                     lower=lambda step, ins, out: {"kind": "embedding"}, export=_export)
