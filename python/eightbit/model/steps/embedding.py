"""embedding: rows of a float32 table by token ids (the float graph's ``embedding`` node).

=========  ======================================================================================
embedding  ids [N, ...] float32 holding exact integers (the plan's inputs are float32; an int64
           graph input arrives converted), const ``table`` [V, D] float32 (V <= 2^24, so every
           id is exact) -> [N, ..., D]. An id that is not an integer in [0, V) raises ValueError
           before any row is read. Exported as Cast (to int64) + Gather. The table stays float32
           in quantized models (an int8 per-row table is a later step)
=========  ======================================================================================
"""
from __future__ import annotations

import numpy as np

from ...graph.float_exec import integer_ids
from ..plan_types import FLOAT
from .kind import StepKind

MAX_ROWS = 1 << 24     # float32 represents every integer up to 2^24 exactly


def _check(step, ins, out):
    t = step.consts["table"]
    if ins[0].dtype != FLOAT:
        raise ValueError("the ids must be a float32 tensor holding integers")
    if t.dtype != np.float32 or t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"table must be a [V, D] float32 array, got {t.dtype} {list(t.shape)}")
    if t.shape[0] > MAX_ROWS:
        raise ValueError(f"the table has {t.shape[0]} rows; float32 ids address at most 2^24 exactly")


def _shape(step, ins):
    return tuple(ins[0].shape) + (step.consts["table"].shape[1],)


def _run(m, step, xs, ins, out, w):
    table = step.consts["table"]
    return table[integer_ids(np.asarray(xs[0]), table.shape[0], step.source or "embedding", "token id")]


def _export(ex, step, label):
    ids = ex.tmp(f"{label}.ids")
    ex.b.node("Cast", [step.inputs[0]], [ids], f"{label}.cast", to=7)          # TensorProto.INT64
    ex.b.node("Gather", [ex.b.const(f"{label}.table", step.consts["table"], np.float32), ids], [step.output], label,
              axis=0)


EMBEDDING = StepKind("embedding", 1, "float", consts=("table",), check=_check, shape=_shape, run=_run,
                     lower=lambda step, ins, out: {"kind": "embedding"}, export=_export)
