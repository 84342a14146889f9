"""Constant folding of ONNX nodes: a node whose inputs are all known is evaluated once, at import.

Numerics are ONNX's own: each node runs alone in ``onnx.reference.ReferenceEvaluator`` at the
model's opset. The only node folded by hand is ``Shape`` (and ``Size``) of a tensor that is not
a constant: its value is the tensor's static shape, with a free batch dimension replaced by
``BATCH_SENTINEL`` (see import_float.py for how Reshape recognizes it).
"""
from __future__ import annotations

import math

import numpy as np

from .errors import OnnxImportError, require_onnx

# Stands for a free batch dimension in folded shape arithmetic: a prime that no real layer
# size is likely to be, small enough that a ConstantOfShape of it stays cheap.
BATCH_SENTINEL = 9973

# ops whose value depends only on their inputs' shapes
SHAPE_OPS = ("Shape", "Size")
# never folded: random or stateful, or bodies that may read outer-scope values
NOT_FOLDABLE = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct", "SequenceInsert", "SequenceAt",
                "SequenceEmpty", "SplitToSequence", "ConcatFromSequence")


def foldable(node) -> bool:
    """Whether `node` may be evaluated at import when its inputs are all known."""
    return node.domain in ("", "ai.onnx") and node.op_type not in NOT_FOLDABLE and \
        not any(a.type in (a.GRAPH, a.GRAPHS) for a in node.attribute)


def shape_value(node, shape: tuple) -> np.ndarray:
    """Shape / Size of a tensor of static `shape` (a free batch given as BATCH_SENTINEL)."""
    if node.op_type == "Size":
        return np.array(math.prod(shape), np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return np.array(shape[start:end], np.int64)           # Python slicing clamps as Shape-15 does


def evaluate(node, inputs: list, opset: int, where: str) -> list:
    """Run one node on NumPy `inputs` (None for an absent optional input) with ONNX's reference
    implementation; returns its outputs (None for an output name that is empty)."""
    onnx = require_onnx()
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    feeds, names = {}, []
    for i, (name, value) in enumerate(zip(node.input, inputs)):
        if not name:
            names.append("")
            continue
        key = f"in{i}"
        feeds[key] = value
        names.append(key)
    outs = [f"out{i}" if o else "" for i, o in enumerate(node.output)]
    copy = helper.make_node(node.op_type, names, outs, domain=node.domain)
    copy.attribute.extend(node.attribute)
    graph = helper.make_graph([copy], "fold", [helper.make_value_info(k, onnx.TypeProto()) for k in feeds],
                              [helper.make_value_info(o, onnx.TypeProto()) for o in outs if o])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception as e:
        raise OnnxImportError(f"{where}: constant folding failed: {type(e).__name__}: {e}") from None
    results = iter(results)
    return [np.asarray(next(results)) if o else None for o in outs]
