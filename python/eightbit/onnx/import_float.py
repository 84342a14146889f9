"""Float ONNX model -> eightbit Graph (layer 1 of DESIGN.md: the ONNX front-end).

    g = import_float(onnx.load("model.onnx"))              # eb.from_onnx does the loading
    g = import_float(model, input_shapes={"x": (None, 3, 224, 224)})

How a model is read (opsets 11-21 of the default domain; load.py converts opsets 7-10 to 11 first):

1. Inputs: the graph inputs that are not initializers, float32, or int64 / int32 (token ids and
   attention masks: int64 graph inputs, read by embedding and additive_mask nodes). Dimension 0
   is the batch: a number keeps it fixed, a symbolic or missing one leaves it free (None). Every
   other dimension must be static, from the model, from ``dims={dimension name: size}`` (every
   input dimension the model names so, e.g. ``dims={"sequence": 128}``: one import per sequence
   length) or from ``input_shapes={name: shape}`` (which may also free or fix the batch).
2. Constants: initializers, Constant nodes and every node whose inputs are all constants are
   evaluated once, by ONNX's reference implementation (fold.py). ``Shape`` / ``Size`` of a
   computed tensor fold to its static shape, so the shape sub-graphs exporters write
   (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) become constant Reshape targets.
   **The batch rule**: in that arithmetic a fixed batch is its declared size, and a free batch
   is the symbol ``fold.BATCH`` (never a number: see fold.py for the ops that carry it; any
   other computation with it is refused, except the Expand of constant ids to [batch, ..] read
   only by embedding lookups: the same ids for every sample, kept as [1, ..]). A Reshape target whose dimension 0 is the batch (the
   number or the symbol), -1 or 0 (copy) keeps the batch; any other dimension 0, or the free
   batch showing up elsewhere, would move the batch and is refused.
   2b. The attention-mask sub-graphs (attention_mask.py): what is computed from an integer input
   alone (not an embedding lookup) is evaluated on probe masks and becomes one additive_mask node.
3. Patterns (patterns.py) fuse several ONNX nodes into one graph node: the GELU sub-graphs
   (erf and tanh forms, any operand order), ``x * HardSigmoid(x)`` -> hardswish, MatMul by a
   constant + Add of a [N] bias -> linear, and a zero constant Pad feeding a Conv (or an
   AveragePool counting its padding) -> the Conv's own pads.
4. Every other node is converted by the function ``CONVERTERS[op_type]`` (converters.py).
   Before any of that, one pass lists all the nodes no converter takes; a model with any raises
   ONE ``OnnxImportError`` naming each op type and its nodes.

Names: a node that maps to one graph node keeps its ONNX name and its output tensor's name; a
fused pattern takes the name and output of the node writing its final output; an unnamed ONNX
node is named ``f"{op_type}_{index}"`` (its position in the ONNX graph). Helper nodes a
converter adds before the final one are named ``f"{node name}/{what}"``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..graph import Graph
from ..graph.ir import SeqLen
from ..graph.sequence import unify
from . import attention_mask, fold, patterns
from .converters import CONVERTERS, dtype_name
from .errors import OnnxImportError, guarded, require_onnx
from .load import opset_of


@dataclass
class OnnxNode:
    """One ONNX node, with its attributes decoded to Python values."""

    index: int
    name: str
    op: str
    domain: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    proto: object = None

    @property
    def where(self) -> str:
        return f"node {self.name!r} ({self.op})"

    def fail(self, message: str):
        raise OnnxImportError(f"{self.where}: {message}")


def import_float(model_proto, *, input_shapes=None, dims=None, keep_tensors=(), max_folded_bytes=None,
                 max_total_folded_bytes=None) -> Graph:
    """The float eightbit Graph of a float ONNX model (see the module docstring).

    ``keep_tensors``: names of tensors that must remain graph tensors, so no pattern fuses them
    away (the quantized importer passes the tensors its model quantizes: a MatMul output with
    its own scale must not vanish into a MatMul + Add -> linear fusion).
    ``max_folded_bytes`` / ``max_total_folded_bytes``: the folding limits (fold.FoldBudget; None:
    fold.MAX_FOLDED_BYTES / fold.MAX_TOTAL_FOLDED_BYTES)."""
    ranged = {k: v for k, v in (dims or {}).items() if isinstance(dims, dict) and isinstance(v, (tuple, list))}
    if not ranged:
        return Importer(model_proto, input_shapes, keep_tensors, max_folded_bytes, max_total_folded_bytes, dims).run()
    return _import_free_sequence(model_proto, input_shapes, dims, ranged, keep_tensors, max_folded_bytes,
                                 max_total_folded_bytes)


def _import_free_sequence(model_proto, input_shapes, dims, ranged, *args) -> Graph:
    """``dims={name: (lo, hi)}``: one graph for every length in [lo, hi] of that dimension, from
    imports at lengths hi and hi - 1 unified (graph/sequence.py)."""
    if len(ranged) != 1:
        raise OnnxImportError(f"dims: one dimension may be a range (the sequence), got {sorted(ranged)}")
    (key, bounds), = ranged.items()
    if len(bounds) != 2 or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) for b in bounds) \
            or not 1 <= bounds[0] <= bounds[1]:
        raise OnnxImportError(f"dims[{key!r}] = {bounds!r}: expected a size or a range (lo, hi) of ints "
                              "1 <= lo <= hi")
    lo, hi = int(bounds[0]), int(bounds[1])
    at = lambda n: Importer(model_proto, input_shapes, *args[:3], {**dims, key: n}).run()  # noqa: E731
    long = at(hi)
    if lo == hi:
        return long
    try:
        return unify(long, at(hi - 1), SeqLen(lo, hi))
    except ValueError as e:
        raise OnnxImportError(f"dims[{key!r}] = ({lo}, {hi}): {e}") from None


class Importer:
    """The state of one import: constants, the graph being built, and the node list."""

    def __init__(self, proto, input_shapes=None, keep_tensors=(), max_folded_bytes=None,
                 max_total_folded_bytes=None, dims=None):
        onnx = require_onnx()
        from onnx import helper, numpy_helper
        self.proto = proto
        self.opset = opset_of(proto)
        og = proto.graph
        self.graph = Graph(og.name or "graph")
        self.consts: dict[str, np.ndarray] = {}
        self.constable: set[str] = set()
        self.symbolic: dict[str, np.ndarray] = {}     # shape values holding the free batch (fold.BATCH)
        for t in og.initializer:
            try:
                self.consts[t.name] = numpy_helper.to_array(t)
            except Exception as e:
                raise OnnxImportError(f"initializer {t.name!r} cannot be read: {e}") from None
        if len(og.sparse_initializer):
            raise OnnxImportError("sparse initializers are not supported")
        self.constable.update(self.consts)
        self.nodes = [guarded(f"node {n.name!r} ({n.op_type})", self._decode, i, n, helper)
                      for i, n in enumerate(og.node)]
        self.output_names = [o.name for o in og.output]
        self._reserved = {n.name for n in self.nodes} | {t for n in self.nodes for t in (*n.inputs, *n.outputs)} \
            | {i.name for i in og.input} | set(self.output_names)
        self._fresh_k = 0
        self.input_shapes = dict(input_shapes or {})
        self.dims = self._named_dims(dims)
        self.keep = set(keep_tensors)
        # bytes of constants folded, against the limits (fold.MAX_*_BYTES unless given)
        self.fold_budget = fold.FoldBudget(max_folded_bytes, max_total_folded_bytes)
        self.claimed: dict[int, object] = {}          # node index -> the pattern Match claiming it
        self.anchors: dict[int, object] = {}          # anchor node index -> its Match
        self.mask_indicators: dict[str, tuple] = {}   # boolean mask tensor -> (mask input, "padded" / "kept")
        self.additive_masks: dict[tuple, object] = {} # (mask input, fill) -> its additive_mask Tensor
        self._onnx = onnx

    # ---- the steps ------------------------------------------------------------------------------

    def run(self) -> Graph:
        self._declare_inputs()
        live = self._live_nodes()
        self.uses = self._use_counts(live)
        self.live = live
        self.producers = {t: n for n in live for t in n.outputs if t}
        self._fold_pure_constants(live)
        attention_mask.match_masks(self, live)
        patterns.match_all(self, live)
        self._check_supported(live)
        for n in live:
            if n.index in self.anchors:
                self._guard(n, lambda n=n: self.anchors[n.index].convert(self))
            elif n.index in self.claimed:
                continue
            elif all(o in self.constable for o in n.outputs if o):
                self._guard(n, lambda n=n: self._fold(n))
            else:
                self._guard(n, lambda n=n: CONVERTERS[n.op](self, n))
        for name in self.output_names:
            if name in self.consts:
                raise OnnxImportError(f"graph output {name!r} is a constant (it does not depend on any input); "
                                      "eightbit graphs compute their outputs from their inputs")
            if name not in self.graph.tensors:
                raise OnnxImportError(f"graph output {name!r} is not computed by any converted node")
            self.graph.output(self.graph.tensor(name))
        return self.graph

    def _decode(self, index, proto, helper) -> OnnxNode:
        attrs = {}
        for a in proto.attribute:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [s.decode("utf-8", "replace") for s in v]
            attrs[a.name] = v
        return OnnxNode(index, proto.name, proto.op_type, proto.domain, list(proto.input), list(proto.output),
                        attrs, proto)

    def _declare_inputs(self) -> None:
        og = self.proto.graph
        inits = {t.name for t in og.initializer}
        declared = [i for i in og.input if i.name not in inits]
        unknown = sorted(set(self.input_shapes) - {i.name for i in declared})
        if unknown:
            raise OnnxImportError(f"input_shapes names no input of the model: {unknown}; the inputs are "
                                  f"{[i.name for i in declared]}")
        # unnamed nodes: deterministic names, unique among all node names
        taken = {n.name for n in self.nodes if n.name}
        for n in self.nodes:
            if not n.name:
                base, k = f"{n.op}_{n.index}", 0
                name = base
                while name in taken:
                    k += 1
                    name = f"{base}_{k}"
                n.name = name
                taken.add(name)
        self._reserved |= taken
        missing = []
        for vi in declared:
            tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
            integer = tt is not None and tt.elem_type in (self._onnx.TensorProto.INT64, self._onnx.TensorProto.INT32)
            if tt is None or (tt.elem_type != self._onnx.TensorProto.FLOAT and not integer):
                kind = dtype_name(self._onnx, tt.elem_type) if tt is not None else "not a tensor"
                raise OnnxImportError(f"input {vi.name!r}: eightbit graphs take float32 inputs and int64 / int32 "
                                      f"ids or masks, got {kind}")
            if vi.name in self.input_shapes:
                shape = self._user_shape(vi.name, self.input_shapes[vi.name],
                                         len(tt.shape.dim) if tt.HasField("shape") else None)
            else:
                if not tt.HasField("shape"):
                    missing.append(f"{vi.name} (no shape at all)")
                    continue
                shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else self.dims.get(d.dim_param)
                         for d in tt.shape.dim]
                if not shape:
                    raise OnnxImportError(f"input {vi.name!r} is a scalar; eightbit inputs start with a batch "
                                          "dimension")
                free = [f"dim {i} ({d.dim_param or '?'})" for i, (s, d) in enumerate(zip(shape, tt.shape.dim))
                        if i and s is None]
                if free:
                    missing.append(f"{vi.name} {', '.join(free)}")
                    continue
            self.graph.input(vi.name, tuple(shape), "int64" if integer else "float32")
        if missing:
            raise OnnxImportError("every dimension but the batch (0) must be static; give these with "
                                  f"input_shapes={{name: shape}} or dims={{dimension name: size}} (e.g. "
                                  f"dims={{'sequence': 128}}): {'; '.join(missing)}")

    def _named_dims(self, dims) -> dict:
        """``dims={dim_param: size}``: every input dimension the model names so gets that size
        (as ONNX Runtime's free dimension overrides by name)."""
        if dims is None:
            return {}
        if not isinstance(dims, dict):
            raise OnnxImportError(f"dims must be a dict {{dimension name: size}}, got {type(dims).__name__}")
        for k, v in dims.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise OnnxImportError(f"dims[{k!r}] = {v!r}: expected a dimension name and a positive int")
        named = {d.dim_param for i in self.proto.graph.input if i.type.HasField("tensor_type")
                 for d in i.type.tensor_type.shape.dim if d.dim_param}
        unknown = sorted(set(dims) - named)
        if unknown:
            raise OnnxImportError(f"dims names no dimension of the model's inputs: {unknown}; the named dimensions "
                                  f"are {sorted(named)}")
        return {k: int(v) for k, v in dims.items()}

    def _user_shape(self, name, shape, rank):
        try:
            dims = tuple(shape)
        except TypeError:
            raise OnnxImportError(f"input_shapes[{name!r}] must be a sequence, got {shape!r}") from None
        if rank is not None and len(dims) != rank:
            raise OnnxImportError(f"input_shapes[{name!r}] = {dims} has rank {len(dims)}, the model's input has "
                                  f"rank {rank}")
        for i, d in enumerate(dims):
            if d is None and i == 0:
                continue
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0:
                raise OnnxImportError(f"input_shapes[{name!r}]: dimension {i} must be a positive int"
                                      f"{' or None' if i == 0 else ''}, got {d!r}")
        return dims

    def _live_nodes(self) -> list:
        """The nodes the graph outputs depend on, in ONNX order."""
        producer = {t: n for n in self.nodes for t in n.outputs if t}
        need, stack = set(), list(self.output_names)
        seen = set()
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            n = producer.get(t)
            if n is not None and n.index not in need:
                need.add(n.index)
                stack.extend(i for i in n.inputs if i)
        for name in self.output_names:
            if name not in producer and name not in self.graph.tensors and name not in self.consts:
                raise OnnxImportError(f"graph output {name!r} is produced by no node")
        return [n for n in self.nodes if n.index in need]

    def _use_counts(self, live) -> dict:
        uses: dict[str, int] = {}
        for n in live:
            for t in set(i for i in n.inputs if i):
                uses[t] = uses.get(t, 0) + 1
        for t in self.output_names:
            uses[t] = uses.get(t, 0) + 1
        return uses

    def _fold_pure_constants(self, live) -> None:
        """Mark every tensor computable at import (``constable``) and evaluate now those that do not
        depend on a Shape of a computed tensor (the rest are folded during conversion)."""
        for n in live:
            ins = [i for i in n.inputs if i]
            if not fold.foldable(n.proto):
                continue
            if n.op in fold.SHAPE_OPS and ins and ins[0] not in self.consts:
                self.constable.update(o for o in n.outputs if o)
                continue
            if all(i in self.constable for i in ins):
                self.constable.update(o for o in n.outputs if o)
                if all(i in self.consts for i in ins):
                    self._guard(n, lambda n=n: self._fold(n))

    def _check_supported(self, live) -> None:
        bad: dict[str, list] = {}
        for n in live:
            if n.index in self.claimed or all(o in self.constable for o in n.outputs if o):
                continue
            if n.domain not in ("", "ai.onnx") or n.op not in CONVERTERS:
                key = n.op if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op}"
                bad.setdefault(key, []).append(n.name)
        if bad:
            listed = ", ".join(f"{op} ({', '.join(names)})" for op, names in sorted(bad.items()))
            raise OnnxImportError(f"unsupported ONNX ops: {listed}")

    def _guard(self, n: OnnxNode, convert):
        """convert(), with what a malformed node provokes in plain Python or NumPy raised as an
        OnnxImportError naming the node (the original exception stays chained as its cause)."""
        return guarded(n.where, convert)

    def _fold(self, n: OnnxNode) -> None:
        ins = [i for i in n.inputs if i]
        if n.op in fold.SHAPE_OPS and ins and ins[0] not in self.consts and ins[0] not in self.symbolic:
            values = [fold.shape_value(n.proto, self.shape(ins[0]), n.where)]
        else:
            missing = [i for i in ins if i not in self.consts and i not in self.symbolic]
            if missing:
                n.fail(f"input {missing[0]!r} is not a constant")
            if n.op == "Expand" and n.inputs[0] in self.consts and self._read_as_ids_only(n.outputs[0]):
                values = [self._ids_for_every_sample(n)]
            elif any(i in self.symbolic for i in ins):
                inputs = [self.symbolic.get(i, self.consts.get(i)) if i else None for i in n.inputs]
                values = fold.evaluate_symbolic(n.op, n.attrs, inputs, n.where)
            else:
                inputs = [self.consts[i] if i else None for i in n.inputs]
                values = fold.evaluate(n.proto, inputs, self.opset, n.where, self.fold_budget)
        for name, v in zip(n.outputs, values):
            if name:
                (self.symbolic if fold.has_batch(v) else self.consts)[name] = v

    def _read_as_ids_only(self, name: str) -> bool:
        return name not in self.output_names and all(
            attention_mask._is_embedding_lookup(self, m) and m.inputs[1] == name
            for m in self.live if name in m.inputs)

    def _ids_for_every_sample(self, n: OnnxNode) -> np.ndarray:
        """Expand of constant ids to [batch, ..] read only by embedding lookups (BERT's token types
        from its buffer when the model has no token_type_ids input): the same ids for every
        sample, kept as [1, ..]; the lookups fold, and the adds reading them broadcast."""
        data = np.asarray(self.consts[n.inputs[0]])
        target = self.symbolic.get(n.inputs[1], self.consts.get(n.inputs[1]))
        dims = list(np.asarray(target, dtype=object).reshape(-1))
        if any(d is fold.BATCH for d in dims[1:]) or len(dims) < data.ndim:
            n.fail(f"expands constant ids to {dims}: only the batch may be free, in dimension 0")
        try:
            shape = np.broadcast_shapes(data.shape, tuple([1] + [int(d) for d in dims[1:]]))
        except ValueError:
            n.fail(f"the ids of shape {list(data.shape)} do not broadcast to {dims}")
        if shape[0] != 1:
            n.fail(f"expands constant ids of shape {list(data.shape)} to {dims}: they differ between samples")
        self.fold_budget.check([math.prod(shape) * data.itemsize], n.where)
        return np.broadcast_to(data, shape).copy()

    # ---- helpers for converters and patterns ----------------------------------------------------

    def const(self, name: str):
        """The folded value of tensor `name`, or None when it is computed from the inputs (or absent)."""
        return self.consts.get(name) if name else None

    def need_const(self, n: OnnxNode, i: int, what: str, batch_ok: bool = False) -> np.ndarray:
        """The folded value of input `i`; with ``batch_ok``, a shape value may hold fold.BATCH."""
        name = n.inputs[i] if i < len(n.inputs) else ""
        if not name:
            n.fail(f"input {i} ({what}) is missing")
        if name in self.symbolic:
            if batch_ok:
                return self.symbolic[name]
            n.fail(f"input {i} ({what}, tensor {name!r}) depends on the free batch dimension, which is known only "
                   "at run time; fix the batch with input_shapes={name: shape}")
        if name not in self.consts:
            n.fail(f"input {i} ({what}, tensor {name!r}) must be a constant (an initializer or foldable), "
                   "but it is computed from the graph inputs")
        return self.consts[name]

    def tensor(self, n: OnnxNode, i: int = 0):
        """The graph Tensor of input `i` of `n` (it must be computed, not a constant)."""
        name = n.inputs[i] if i < len(n.inputs) else ""
        if not name:
            n.fail(f"input {i} is missing")
        if name in self.consts or name in self.symbolic:
            n.fail(f"input {i} ({name!r}) is a constant; eightbit expects a tensor computed from the graph "
                   "inputs there")
        return self.graph.tensor(name)

    def shape(self, name: str) -> tuple:
        """Static shape of a computed tensor, a free batch as the symbol ``fold.BATCH``."""
        return tuple(fold.BATCH if d is None else d for d in self.graph.tensor(name).shape)

    def fresh(self, base: str) -> str:
        """A name used by no ONNX node or tensor and no graph node or tensor."""
        name, k = base, 0
        while name in self._reserved or name in self.graph.tensors or name in self.graph._nodes_by_name:
            k += 1
            name = f"{base}_{k}"
        self._reserved.add(name)
        return name

    def emit(self, n: OnnxNode, op: str, inputs, attrs=None, consts=None, *, helper: str | None = None):
        """Add a graph node for ONNX node `n`: the final one (named as `n`, writing n's first
        output) or, with ``helper="what"``, an intermediate one named ``f"{n.name}/{what}"``."""
        if helper is None:
            name, out = n.name, n.outputs[0]
        else:
            name = out = self.fresh(f"{n.name}/{helper}")
        return self.graph.add_node(op, inputs, attrs, consts, name=name, output_name=out)

    def single_use(self, name: str) -> bool:
        """Read by exactly one live node, not a graph output, not to be kept: a pattern may
        swallow it."""
        return self.uses.get(name, 0) == 1 and name not in self.output_names and name not in self.keep

    def only_first_output(self, n: OnnxNode) -> None:
        extra = [o for o in n.outputs[1:] if o and self.uses.get(o, 0)]
        if extra:
            n.fail(f"only its first output is supported, but {extra} is used")
