"""Constant folding of ONNX nodes: a node whose inputs are all known is evaluated once, at import.

Numerics are ONNX's own: each node runs alone in ``onnx.reference.ReferenceEvaluator`` at the
model's opset. The only node folded by hand is ``Shape`` (and ``Size``) of a tensor that is not
a constant: its value is the tensor's static shape, with a free batch dimension replaced by
``BATCH_SENTINEL`` (see import_float.py for how Reshape recognizes it).

**Size limits.** A few bytes of ONNX can ask for a huge constant (``ConstantOfShape`` of
[30000, 30000] is a model of about 150 bytes and 3.6 GB once folded; so are Expand, Tile, Range, Pad,
Resize, OneHot, broadcasting Add / Mul, Concat chains, a sparse Constant ...). Before a node is
evaluated, ONNX shape inference (with the values of its small constant inputs, so data-dependent
shapes resolve) gives the size of every output; a node whose outputs would exceed
``MAX_FOLDED_BYTES`` (one tensor) or take the import's folded constants past
``MAX_TOTAL_FOLDED_BYTES`` (all of them) is refused with an ``OnnxImportError`` naming it,
before anything is allocated. A node ONNX cannot infer at all (wrong input types, a deprecated
op) is refused too; an output whose size depends on input values (NonZero, Unique, Compress)
is bounded by its inputs and checked once computed. Raise the module constants for a model
that really holds bigger folded constants::

    eightbit.onnx.fold.MAX_FOLDED_BYTES = 1 << 30
"""
from __future__ import annotations

import math

import numpy as np

from .errors import OnnxImportError, require_onnx

# Bytes one folded constant may have, and all the constants folded during one import together
# (initializers are not counted: they are in the file already).
MAX_FOLDED_BYTES = 256 << 20
MAX_TOTAL_FOLDED_BYTES = 1 << 30
# inputs up to this many elements are given to shape inference by value (shape-like operands)
_INFER_DATA_ELEMENTS = 1 << 16

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


class FoldBudget:
    """The bytes of constants one import has folded so far, against the module's limits (read
    when the budget is made, so a test or a user may change them before an import)."""

    def __init__(self, per_tensor: int | None = None, total: int | None = None):
        self.per_tensor = MAX_FOLDED_BYTES if per_tensor is None else int(per_tensor)
        self.total = MAX_TOTAL_FOLDED_BYTES if total is None else int(total)
        self.used = 0

    def check(self, sizes: list, where: str, doing: str = "constant folding would produce") -> None:
        """OnnxImportError unless tensors of `sizes` bytes fit (each, and added to the total)."""
        for b in sizes:
            if b > self.per_tensor:
                raise OnnxImportError(
                    f"{where}: {doing} a tensor of {_size(b)}, more than the "
                    f"{_size(self.per_tensor)} one folded constant may have "
                    "(eightbit.onnx.fold.MAX_FOLDED_BYTES)")
        if self.used + sum(sizes) > self.total:
            raise OnnxImportError(
                f"{where}: {doing} {_size(sum(sizes))}, which takes the model's folded constants "
                f"past {_size(self.total)} (eightbit.onnx.fold.MAX_TOTAL_FOLDED_BYTES)")

    def add(self, values: list, where: str) -> None:
        sizes = [int(np.asarray(v).nbytes) for v in values if v is not None]
        self.check(sizes, where, "constant folding produced")
        self.used += sum(sizes)


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB ({n} bytes)"


def predicted_sizes(node, inputs: list, opset: int, where: str) -> list:
    """Bytes of each output of `node` (None where it depends on input values), from ONNX shape
    inference, without evaluating the node."""
    onnx = require_onnx()
    from onnx import defs, helper, numpy_helper, shape_inference

    types, data = {}, {}
    for i, (name, value) in enumerate(zip(node.input, inputs)):
        if not name or value is None:
            continue
        a = np.asarray(value)
        key = f"in{i}"
        try:
            elem = helper.np_dtype_to_tensor_dtype(a.dtype)
        except Exception:
            elem = onnx.TensorProto.STRING if a.dtype.kind in "OUS" else onnx.TensorProto.UNDEFINED
        types[key] = helper.make_tensor_type_proto(elem, a.shape)
        if a.size <= _INFER_DATA_ELEMENTS and a.dtype.kind in "biuf":
            data[key] = numpy_helper.from_array(a, key)
    names = [f"in{i}" if name and value is not None else "" for i, (name, value) in enumerate(zip(node.input, inputs))]
    outs = [f"out{i}" if o else "" for i, o in enumerate(node.output)]
    copy = helper.make_node(node.op_type, names, outs)
    copy.attribute.extend(node.attribute)
    try:
        schema = defs.get_schema(node.op_type, opset, "")
        inferred = shape_inference.infer_node_outputs(schema, copy, types, data,
                                                      opset_imports=[helper.make_opsetid("", opset)])
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxImportError(f"{where}: cannot be folded: ONNX shape inference refuses it ({first})") from None
    sizes = []
    for o in outs:
        if not o:
            continue
        t = inferred.get(o)
        tt = t.tensor_type if t is not None and t.HasField("tensor_type") else None
        if tt is None or not tt.HasField("shape") or \
                not all(d.HasField("dim_value") and d.dim_value >= 0 for d in tt.shape.dim):
            sizes.append(None)
            continue
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(tt.elem_type).itemsize
        except Exception:
            itemsize = 8
        sizes.append(math.prod(d.dim_value for d in tt.shape.dim) * max(itemsize, 1))
    return sizes


def evaluate(node, inputs: list, opset: int, where: str, budget: FoldBudget | None = None) -> list:
    """Run one node on NumPy `inputs` (None for an absent optional input) with ONNX's reference
    implementation; returns its outputs (None for an output name that is empty). The outputs'
    sizes are checked against `budget` (a fresh FoldBudget if None) before and after."""
    onnx = require_onnx()
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    budget = FoldBudget() if budget is None else budget
    budget.check([b for b in predicted_sizes(node, inputs, opset, where) if b is not None], where)

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
    values = [np.asarray(next(results)) if o else None for o in outs]
    budget.add(values, where)
    return values
