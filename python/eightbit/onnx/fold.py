"""Constant folding of ONNX nodes: a node whose inputs are all known is evaluated once, at import.

Numerics are ONNX's own: each node runs alone in ``onnx.reference.ReferenceEvaluator`` at the
model's opset. Folded by hand: ``Shape`` (and ``Size``) of a tensor that is not a constant,
whose value is the tensor's static shape, and the shape arithmetic that carries a free batch.

**The free batch is a symbol.** In the shape of a tensor whose batch is free, dimension 0 is
``BATCH`` (a ``Dim``), never a number, so a model whose real dimension happens to equal some
chosen stand-in is never misread. A shape value holding it is an object array of Python ints
and ``BATCH``; ``evaluate_symbolic`` carries it through Identity, Cast (to an integer type),
Gather, Slice, Squeeze, Unsqueeze, Concat and Reshape (the ops of the shape sub-graphs exporters
write, e.g. ``x.view(x.size(0), -1)``); a result without ``BATCH`` is an ordinary int64 constant
again (Shape of such a value, Equal with a number below 1 and Where choosing between shape values
are carried too: torch's ``expand(h.size())``). Any other op on a value holding the batch
(arithmetic, ConstantOfShape, Expand, ...) is
refused: its result would depend on the batch size, which is known only at run time.

**Size limits.** A few bytes of ONNX can ask for a huge constant (``ConstantOfShape`` of
[30000, 30000] is a model of about 150 bytes and 3.6 GB once folded; so are Expand, Tile, Range, Pad,
Resize, OneHot, broadcasting Add / Mul, Concat chains, a sparse Constant ...). Before a node is
evaluated, ONNX shape inference (with the values of its small constant inputs, so data-dependent
shapes resolve) gives the size of every output; a node whose outputs would exceed
``MAX_FOLDED_BYTES`` (one tensor) or take the import's folded constants past
``MAX_TOTAL_FOLDED_BYTES`` (all of them) is refused with an ``OnnxImportError`` naming it,
before anything is allocated. A node ONNX cannot infer at all (wrong input types, a deprecated
op) is refused too; an output whose size depends on input values (NonZero, Unique, Compress)
is bounded by its inputs and checked once computed. For a model that really holds bigger folded
constants (VGG's fully connected weights written as ConstantOfShape are 392 MiB), raise the limits
of one import::

    g = eb.from_onnx(path, max_folded_bytes=1 << 30, max_total_folded_bytes=2 << 30)

or the module constants (the defaults of every import)::

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


class Dim:
    """A dimension whose size is known only at run time (the free batch): a symbol that folded
    shape arithmetic carries along, equal only to itself."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


BATCH = Dim("N")

# ops evaluate_symbolic carries a shape value holding BATCH through
SYMBOLIC_OPS = ("Identity", "Cast", "Gather", "Slice", "Squeeze", "Unsqueeze", "Concat", "Reshape",
                "Shape", "Equal", "Where")
_INT_TYPES = (6, 7)        # TensorProto.INT32, INT64

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


def has_batch(value) -> bool:
    """Whether `value` is a shape value holding the free batch symbol."""
    return isinstance(value, np.ndarray) and value.dtype == object and any(v is BATCH for v in value.flat)


def _settled(value: np.ndarray) -> np.ndarray:
    """A symbolic result as an int64 constant once it no longer holds the batch."""
    return value if has_batch(value) else value.astype(np.int64)


def shape_value(node, shape: tuple, where: str) -> np.ndarray:
    """Shape / Size of a tensor of static `shape` (a free batch given as BATCH): int64, or an
    object array holding BATCH."""
    if node.op_type == "Size":
        if BATCH in shape:
            raise OnnxImportError(f"{where}: the size of a tensor with a free batch dimension is known only at "
                                  "run time; fix the batch with input_shapes={name: shape} to fold it")
        return np.array(math.prod(shape), np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", None)
    dims = list(shape[start:end])                         # Python slicing clamps as Shape-15 does
    return _settled(np.array(dims, dtype=object).reshape(len(dims)))


def _ints(value, where: str, what: str) -> list:
    if has_batch(value) or value is None:
        raise OnnxImportError(f"{where}: {what} must be a constant")
    return [int(v) for v in np.asarray(value).reshape(-1)]


def evaluate_symbolic(op: str, attrs: dict, inputs: list, where: str) -> list:
    """One node of SYMBOLIC_OPS on inputs of which at least one holds BATCH (module docstring);
    returns its one output, int64 or an object array still holding BATCH."""
    if op not in SYMBOLIC_OPS:
        raise OnnxImportError(
            f"{where}: computes with the free batch dimension (from the Shape of a tensor whose batch is "
            f"free), which is known only at run time; only {', '.join(SYMBOLIC_OPS)} may carry it into a "
            "Reshape target. Fix the batch with input_shapes={name: shape} to fold this node")
    data = inputs[0]
    if op == "Where":      # torch's expand(h.size()): Where(Equal(shape, -1), ones, shape)
        cond = inputs[0]
        if has_batch(cond) or np.asarray(cond).dtype != np.bool_:
            raise OnnxImportError(f"{where}: the condition must be a boolean constant")
        x, y = (np.asarray(v, dtype=object) if has_batch(v) else np.asarray(v).astype(np.int64).astype(object)
                for v in inputs[1:3])
        return [_settled(np.where(np.asarray(cond), x, y))]
    if not has_batch(data) and op != "Concat":
        raise OnnxImportError(f"{where}: only its data input may hold the free batch dimension")
    if op == "Shape":      # of a shape value: its own (static) shape
        return [np.array(data.shape[attrs.get("start", 0):attrs.get("end")], np.int64)]
    if op == "Equal":      # a batch is >= 1: it never equals a number below 1, any other is unknown
        other = np.asarray(inputs[1])
        if has_batch(other) or other.dtype.kind not in "iu":
            raise OnnxImportError(f"{where}: compares the free batch dimension with a non-constant")
        a, b = np.broadcast_arrays(data, other)
        if any(u is BATCH and v >= 1 for u, v in zip(a.flat, b.flat)):
            raise OnnxImportError(f"{where}: compares the free batch dimension with {b.max()}, which it may equal")
        return [np.array([u is not BATCH and int(u) == int(v) for u, v in zip(a.flat, b.flat)]).reshape(a.shape)]
    if op == "Identity":
        out = data
    elif op == "Cast":
        if attrs.get("to") not in _INT_TYPES:
            raise OnnxImportError(f"{where}: casts the free batch dimension to a non-integer type")
        out = data
    elif op == "Gather":
        if data.ndim != 1 or int(attrs.get("axis", 0)) not in (0, -1):
            raise OnnxImportError(f"{where}: gathers from a shape holding the free batch along an axis other than 0")
        idx = np.asarray(inputs[1])
        if has_batch(idx) or idx.dtype.kind not in "iu" or np.any((idx < -data.size) | (idx >= data.size)):
            raise OnnxImportError(f"{where}: indices {idx.tolist()} out of range for a shape of {data.size} values")
        out = data[np.where(idx < 0, idx + data.size, idx)]
    elif op == "Slice":
        if data.ndim != 1:
            raise OnnxImportError(f"{where}: slices a shape holding the free batch that is not 1-D")
        starts, ends = _ints(inputs[1], where, "starts"), _ints(inputs[2], where, "ends")
        axes = _ints(inputs[3], where, "axes") if len(inputs) > 3 and inputs[3] is not None else [0]
        steps = _ints(inputs[4], where, "steps") if len(inputs) > 4 and inputs[4] is not None else [1]
        if len(starts) != 1 or len(ends) != 1 or axes not in ([0], [-1]) or len(steps) != 1 or steps[0] == 0:
            raise OnnxImportError(f"{where}: slices a shape holding the free batch with starts {starts}, ends "
                                  f"{ends}, axes {axes}, steps {steps}")
        out = data[slice(starts[0], ends[0], steps[0])]   # Python clamps as ONNX Slice does
    elif op in ("Squeeze", "Unsqueeze"):
        axes = list(attrs["axes"]) if "axes" in attrs else \
            (_ints(inputs[1], where, "axes") if len(inputs) > 1 and inputs[1] is not None else None)
        rank = data.ndim + (len(axes or ()) if op == "Unsqueeze" else 0)
        if op == "Squeeze" and axes is None:
            axes = [i for i, d in enumerate(data.shape) if d == 1]
        if not axes or rank == 0 or any(not -rank <= a < rank for a in axes):
            raise OnnxImportError(f"{where}: axes {axes} out of range for a shape value of rank {data.ndim}")
        axes = {a % rank for a in axes}
        if op == "Squeeze":
            if any(data.shape[a] != 1 for a in axes):
                raise OnnxImportError(f"{where}: squeezes an axis of a shape value whose size is not 1")
            out = data.reshape([d for i, d in enumerate(data.shape) if i not in axes])
        else:
            dims = iter(data.shape)
            out = data.reshape([1 if i in axes else next(dims) for i in range(rank)])
    elif op == "Concat":
        parts = [np.asarray(v, dtype=object) if has_batch(v) else np.asarray(v).astype(np.int64).astype(object)
                 for v in inputs if v is not None]
        if any(p.ndim != 1 for p in parts) or int(attrs.get("axis", 0)) not in (0, -1):
            raise OnnxImportError(f"{where}: concatenates shape values that are not 1-D")
        out = np.concatenate(parts)
    else:  # Reshape
        target = _ints(inputs[1], where, "the target shape")
        dims = [data.shape[i] if t == 0 and not attrs.get("allowzero", 0) else t for i, t in enumerate(target)]
        try:
            out = data.reshape(dims)
        except ValueError as e:
            raise OnnxImportError(f"{where}: {e}") from None
    return [_settled(np.asarray(out, dtype=object))]


class FoldBudget:
    """The bytes of constants one import has folded so far, against the module's limits (read
    when the budget is made, so a test or a user may change them before an import)."""

    def __init__(self, per_tensor: int | None = None, total: int | None = None):
        for what, v in (("max_folded_bytes", per_tensor), ("max_total_folded_bytes", total)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0):
                raise TypeError(f"{what} must be a non-negative int or None, got {v!r}")
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
                    "(eb.from_onnx's max_folded_bytes=, default eightbit.onnx.fold.MAX_FOLDED_BYTES)")
        if self.used + sum(sizes) > self.total:
            raise OnnxImportError(
                f"{where}: {doing} {_size(sum(sizes))}, which takes the model's folded constants "
                f"past {_size(self.total)} (eb.from_onnx's max_total_folded_bytes=, default "
                "eightbit.onnx.fold.MAX_TOTAL_FOLDED_BYTES)")

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


def _gather_elements(node, inputs: list, where: str) -> np.ndarray:
    """GatherElements by NumPy: onnx 1.23's reference implementation fails when the data is larger
    than the indices along an axis other than `axis` (RoBERTa's token types: data [N, 512], ids [N, T])."""
    data, idx = np.asarray(inputs[0]), np.asarray(inputs[1])
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    if data.ndim != idx.ndim or not -data.ndim <= axis < data.ndim or idx.dtype.kind not in "iu":
        raise OnnxImportError(f"{where}: GatherElements of data {list(data.shape)} by indices {list(idx.shape)}")
    axis %= data.ndim
    if any(i > d for k, (i, d) in enumerate(zip(idx.shape, data.shape)) if k != axis):
        raise OnnxImportError(f"{where}: GatherElements indices {list(idx.shape)} exceed data {list(data.shape)}")
    extent = data.shape[axis]
    if np.any((idx < -extent) | (idx >= extent)):
        raise OnnxImportError(f"{where}: GatherElements indices out of range [-{extent}, {extent})")
    sliced = data[tuple(slice(0, i) if k != axis else slice(None) for k, i in enumerate(idx.shape))]
    return np.take_along_axis(sliced, np.where(idx < 0, idx + extent, idx), axis=axis)


# ops evaluated with NumPy instead of ONNX's reference implementation (where that one is wrong)
_NUMPY_OPS = {"GatherElements": _gather_elements}


def evaluate(node, inputs: list, opset: int, where: str, budget: FoldBudget | None = None) -> list:
    """Run one node on NumPy `inputs` (None for an absent optional input) with ONNX's reference
    implementation; returns its outputs (None for an output name that is empty). The outputs'
    sizes are checked against `budget` (a fresh FoldBudget if None) before and after."""
    onnx = require_onnx()
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    budget = FoldBudget() if budget is None else budget
    budget.check([b for b in predicted_sizes(node, inputs, opset, where) if b is not None], where)
    if node.op_type in _NUMPY_OPS and node.domain in ("", "ai.onnx"):
        values = [_NUMPY_OPS[node.op_type](node, inputs, where)]
        budget.add(values, where)
        return values

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
