"""Float ONNX model -> eightbit Graph (layer 1 of DESIGN.md: the ONNX front-end).

    g = import_float(onnx.load("model.onnx"))              # eb.from_onnx does the loading
    g = import_float(model, input_shapes={"x": (None, 3, 224, 224)})

How a model is read (opsets 11-21 of the default domain):

1. Inputs: the graph inputs that are not initializers, float32. Dimension 0 is the batch: a
   number keeps it fixed, a symbolic or missing one leaves it free (None). Every other dimension
   must be static, from the model or from ``input_shapes={name: shape}`` (which may also free or
   fix the batch).
2. Constants: initializers, Constant nodes and every node whose inputs are all constants are
   evaluated once, by ONNX's reference implementation (fold.py). ``Shape`` / ``Size`` of a
   computed tensor fold to its static shape, so the shape sub-graphs exporters write
   (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) become constant Reshape targets.
   **The batch rule**: in that arithmetic the batch is its declared size when it is fixed, and
   ``fold.BATCH_SENTINEL`` (9973) when it is free; a Reshape target whose dimension 0 is the
   batch value, -1 or 0 (copy) keeps the batch; any other dimension 0, or the batch value
   showing up elsewhere, would move the batch and is refused.
3. Patterns (patterns.py) fuse several ONNX nodes into one graph node: the GELU sub-graphs
   (erf and tanh forms, any operand order), ``x * HardSigmoid(x)`` -> hardswish, MatMul by a
   constant + Add of a [N] bias -> linear, and a zero constant Pad feeding a Conv (or an
   AveragePool counting its padding) -> the Conv's own pads.
4. Every other node is converted by the function ``CONVERTERS[op_type]``. Before any of that,
   one pass lists all the nodes no converter takes; a model with any raises ONE
   ``OnnxImportError`` naming each op type and its nodes.

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
from . import fold
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


def import_float(model_proto, *, input_shapes=None, keep_tensors=()) -> Graph:
    """The float eightbit Graph of a float ONNX model (see the module docstring).

    ``keep_tensors``: names of tensors that must remain graph tensors, so no pattern fuses them
    away (the quantized importer passes the tensors its model quantizes: a MatMul output with
    its own scale must not vanish into a MatMul + Add -> linear fusion)."""
    return Importer(model_proto, input_shapes, keep_tensors).run()


class Importer:
    """The state of one import: constants, the graph being built, and the node list."""

    def __init__(self, proto, input_shapes=None, keep_tensors=()):
        onnx = require_onnx()
        from onnx import helper, numpy_helper
        self.proto = proto
        self.opset = opset_of(proto)
        og = proto.graph
        self.graph = Graph(og.name or "graph")
        self.consts: dict[str, np.ndarray] = {}
        self.constable: set[str] = set()
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
        self.keep = set(keep_tensors)
        self.fold_batch = fold.BATCH_SENTINEL
        self.fold_budget = fold.FoldBudget()          # bytes of constants folded (fold.MAX_*_BYTES)
        self.claimed: dict[int, object] = {}          # node index -> the pattern Match claiming it
        self.anchors: dict[int, object] = {}          # anchor node index -> its Match
        self._onnx = onnx

    # ---- the steps ------------------------------------------------------------------------------

    def run(self) -> Graph:
        from . import patterns
        self._declare_inputs()
        live = self._live_nodes()
        self.uses = self._use_counts(live)
        self.live = live
        self.producers = {t: n for n in live for t in n.outputs if t}
        self._fold_pure_constants(live)
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
        missing, batches = [], []
        for vi in declared:
            tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
            if tt is None or tt.elem_type != self._onnx.TensorProto.FLOAT:
                kind = _dtype_name(self._onnx, tt.elem_type) if tt is not None else "not a tensor"
                raise OnnxImportError(f"input {vi.name!r}: eightbit graphs take float32 inputs, got {kind}")
            if vi.name in self.input_shapes:
                shape = self._user_shape(vi.name, self.input_shapes[vi.name],
                                         len(tt.shape.dim) if tt.HasField("shape") else None)
            else:
                if not tt.HasField("shape"):
                    missing.append(f"{vi.name} (no shape at all)")
                    continue
                shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
                if not shape:
                    raise OnnxImportError(f"input {vi.name!r} is a scalar; eightbit inputs start with a batch "
                                          "dimension")
                free = [f"dim {i} ({d.dim_param or '?'})" for i, (s, d) in enumerate(zip(shape, tt.shape.dim))
                        if i and s is None]
                if free:
                    missing.append(f"{vi.name} {', '.join(free)}")
                    continue
            batches.append(shape[0])
            self.graph.input(vi.name, tuple(shape))
        if missing:
            raise OnnxImportError("every dimension but the batch (0) must be static; give these with "
                                  f"input_shapes={{name: shape}}: {'; '.join(missing)}")
        fixed = [b for b in batches if b is not None]
        if fixed and len(fixed) == len(batches):
            self.fold_batch = fixed[0]

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
        if n.op in fold.SHAPE_OPS and ins and ins[0] not in self.consts:
            values = [fold.shape_value(n.proto, self.shape(ins[0]))]
        else:
            missing = [i for i in ins if i not in self.consts]
            if missing:
                n.fail(f"input {missing[0]!r} is not a constant")
            inputs = [self.consts[i] if i else None for i in n.inputs]
            values = fold.evaluate(n.proto, inputs, self.opset, n.where, self.fold_budget)
        for name, v in zip(n.outputs, values):
            if name:
                self.consts[name] = v

    # ---- helpers for converters and patterns ----------------------------------------------------

    def const(self, name: str):
        """The folded value of tensor `name`, or None when it is computed from the inputs (or absent)."""
        return self.consts.get(name) if name else None

    def need_const(self, n: OnnxNode, i: int, what: str) -> np.ndarray:
        name = n.inputs[i] if i < len(n.inputs) else ""
        if not name:
            n.fail(f"input {i} ({what}) is missing")
        if name not in self.consts:
            n.fail(f"input {i} ({what}, tensor {name!r}) must be a constant (an initializer or foldable), "
                   "but it is computed from the graph inputs")
        return self.consts[name]

    def tensor(self, n: OnnxNode, i: int = 0):
        """The graph Tensor of input `i` of `n` (it must be computed, not a constant)."""
        name = n.inputs[i] if i < len(n.inputs) else ""
        if not name:
            n.fail(f"input {i} is missing")
        if name in self.consts:
            n.fail(f"input {i} ({name!r}) is a constant; eightbit expects a tensor computed from the graph "
                   "inputs there")
        return self.graph.tensor(name)

    def shape(self, name: str) -> tuple:
        """Static shape of a computed tensor, a free batch as ``fold_batch``."""
        return tuple(self.fold_batch if d is None else d for d in self.graph.tensor(name).shape)

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


def _dtype_name(onnx, elem_type: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"unknown element type {elem_type}"


# ---- attribute helpers ----------------------------------------------------------------------------

def _ints(n: OnnxNode, key: str, default, length: int | None = None) -> tuple:
    v = n.attrs.get(key, default)
    v = tuple(int(x) for x in v)
    if length is not None and len(v) != length:
        n.fail(f"attribute {key} must hold {length} values, got {list(v)}")
    return v


def _axis(n: OnnxNode, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        n.fail(f"{what}={axis} is out of range for rank {rank}")
    return axis % rank


def _not_batch(n: OnnxNode, axis: int, what: str = "axis") -> None:
    if axis == 0:
        n.fail(f"{what} 0 is the batch dimension; eightbit keeps the batch dimension first and untouched")


def _scalar(n: OnnxNode, value, what: str) -> float:
    a = np.asarray(value)
    if a.size != 1:
        n.fail(f"{what} must be a scalar, got shape {list(a.shape)}")
    return float(a.reshape(()))


def window_pads(n: OnnxNode, in_hw, kernel, strides, dilations) -> tuple:
    """(top, left, bottom, right) from ``pads`` or ``auto_pad`` (SAME_UPPER puts the odd pixel at
    the end, SAME_LOWER at the beginning, as ONNX defines them)."""
    auto = n.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(in_hw, kernel, strides, dilations):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return (begin[0], begin[1], end[0], end[1])
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto != "NOTSET":
        n.fail(f"auto_pad={auto!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    pads = _ints(n, "pads", (0, 0, 0, 0), 4)
    if min(pads) < 0:
        n.fail(f"negative pads {pads} are not supported")
    return pads


def _spatial_rank_2(n: OnnxNode, rank: int, what: str = "x") -> None:
    if rank != 4:
        n.fail(f"only 2-D windows are supported: {what} must be 4-D NCHW, got rank {rank}")


# ---- converters: one per ONNX op -------------------------------------------------------------------

def convert_conv(imp: Importer, n: OnnxNode, x=None, extra_pads=(0, 0, 0, 0)) -> None:
    x = imp.tensor(n, 0) if x is None else x
    w = imp.need_const(n, 1, "weight")
    if w.ndim != 4 or len(x.shape) != 4:
        n.fail(f"only 2-D convolution is supported (a 4-D NCHW input and OIHW weight), got weight shape "
               f"{list(w.shape)} and input rank {len(x.shape)}")
    bias = imp.const(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
    if len(n.inputs) > 2 and n.inputs[2] and bias is None:
        n.fail("the bias (input 2) must be a constant")
    kernel = _ints(n, "kernel_shape", w.shape[2:], 2)
    if kernel != tuple(w.shape[2:]):
        n.fail(f"kernel_shape={kernel} does not match the weight's {tuple(w.shape[2:])}")
    strides, dil = _ints(n, "strides", (1, 1), 2), _ints(n, "dilations", (1, 1), 2)
    in_hw = [x.shape[2 + i] + extra_pads[i] + extra_pads[2 + i] for i in range(2)]
    pads = window_pads(n, in_hw, kernel, strides, dil)
    pads = tuple(p + e for p, e in zip(pads, extra_pads))
    attrs = {"stride": strides, "pads": pads, "dilation": dil, "groups": int(n.attrs.get("group", 1)),
             "activation": None}
    consts = {"weight": w} if bias is None else {"weight": w, "bias": bias}
    imp.emit(n, "conv2d", [x], attrs, consts)


def convert_gemm(imp: Importer, n: OnnxNode) -> None:
    a = imp.tensor(n, 0)
    b = imp.need_const(n, 1, "B").astype(np.float64)
    if n.attrs.get("transA", 0):
        n.fail("transA=1 is not supported (A is the batch of activations)")
    if len(a.shape) != 2 or b.ndim != 2:
        n.fail(f"A and B must be matrices, got ranks {len(a.shape)} and {b.ndim}")
    alpha, beta = float(n.attrs.get("alpha", 1.0)), float(n.attrs.get("beta", 1.0))
    weight = alpha * (b if n.attrs.get("transB", 0) else b.T)             # [N, K]
    consts = {"weight": weight}
    if len(n.inputs) > 2 and n.inputs[2]:
        c = imp.need_const(n, 2, "C").astype(np.float64)
        out = weight.shape[0]
        if c.size not in (1, out) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
            n.fail(f"C must broadcast as a bias of {out} values (shape [], [{out}] or [1, {out}]), got "
                   f"{list(c.shape)}")
        consts["bias"] = beta * np.broadcast_to(c.reshape(-1), (out,))
    imp.emit(n, "linear", [a], {"activation": None}, consts)


def convert_matmul(imp: Importer, n: OnnxNode) -> None:
    if imp.const(n.inputs[0]) is not None:
        n.fail("a constant left operand is not supported (only x @ constant or x @ y)")
    x = imp.tensor(n, 0)
    b = imp.const(n.inputs[1])
    if b is None:                                        # attention: q @ k^T, p @ v
        y = imp.tensor(n, 1)
        if len(x.shape) < 3 or len(x.shape) != len(y.shape):
            n.fail(f"the product of two computed tensors needs operands of the same rank >= 3 (dimension 0 "
                   f"of each is the batch), got shapes {list(x.shape)} and {list(y.shape)}")
        imp.emit(n, "bmm", [x, y], {})
        return
    if b.ndim != 2:
        n.fail(f"the constant right operand must be a [K, N] matrix, got shape {list(b.shape)}")
    imp.emit(n, "matmul", [x], {"activation": None}, {"b": b})


def _const_operand(n: OnnxNode, c: np.ndarray, rank: int) -> np.ndarray:
    """A constant operand broadcast against a tensor of rank `rank`: extra leading 1s dropped."""
    c = np.asarray(c)
    if c.dtype.kind not in "fiu":
        n.fail(f"the constant operand has dtype {c.dtype}, expected a number")
    while c.ndim > rank and c.shape[0] == 1:
        c = c.reshape(c.shape[1:])
    if c.ndim > rank:
        n.fail(f"the constant operand (shape {list(c.shape)}) has more dimensions than the tensor (rank {rank})")
    return c.astype(np.float64)


def convert_binary(imp: Importer, n: OnnxNode) -> None:
    op = n.op
    ca, cb = imp.const(n.inputs[0]), imp.const(n.inputs[1])
    if ca is None and cb is None:
        a, b = imp.tensor(n, 0), imp.tensor(n, 1)
        if op in ("Add", "Mul"):
            imp.emit(n, op.lower(), [a, b], {"activation": None} if op == "Add" else {})
        elif op == "Sub":
            neg = imp.emit(n, "mul", [b], {}, {"b": np.float32(-1)}, helper="neg")
            imp.emit(n, "add", [a, neg], {"activation": None})
        else:
            imp.emit(n, "div", [a, b], {})
        return
    if ca is not None and cb is not None:                      # folded before; kept for safety
        n.fail("both operands are constants")
    x_first = cb is not None
    x = imp.tensor(n, 0 if x_first else 1)
    c = _const_operand(n, cb if x_first else ca, len(x.shape))
    if op == "Add":
        imp.emit(n, "add", [x], {"activation": None}, {"b": c})
    elif op == "Mul":
        imp.emit(n, "mul", [x], {}, {"b": c})
    elif op == "Sub" and x_first:                                # x - c
        imp.emit(n, "add", [x], {"activation": None}, {"b": -c})
    elif op == "Sub":                                            # c - x
        neg = imp.emit(n, "mul", [x], {}, {"b": np.float32(-1)}, helper="neg")
        imp.emit(n, "add", [neg], {"activation": None}, {"b": c})
    elif x_first:                                                # x / c
        if np.any(c == 0):
            n.fail("division by a constant holding zeros")
        imp.emit(n, "mul", [x], {}, {"b": 1.0 / c})
    else:
        n.fail("a constant divided by a computed tensor is not supported")


_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hardswish", "Erf": "erf",
          "Identity": "identity"}


def convert_unary(imp: Importer, n: OnnxNode) -> None:
    imp.emit(n, _UNARY[n.op], [imp.tensor(n, 0)], {})


def convert_leaky_relu(imp: Importer, n: OnnxNode) -> None:
    imp.emit(n, "leaky_relu", [imp.tensor(n, 0)], {"negative_slope": float(n.attrs.get("alpha", 0.01))})


def convert_hardsigmoid(imp: Importer, n: OnnxNode) -> None:
    attrs = {"alpha": float(n.attrs.get("alpha", 0.2)), "beta": float(n.attrs.get("beta", 0.5))}
    imp.emit(n, "hardsigmoid", [imp.tensor(n, 0)], attrs)


def convert_gelu(imp: Importer, n: OnnxNode) -> None:
    approx = n.attrs.get("approximate", "none")
    if approx not in ("none", "tanh"):
        n.fail(f"approximate={approx!r} is not 'none' or 'tanh'")
    imp.emit(n, "gelu", [imp.tensor(n, 0)], {"approximate": approx})


def convert_clip(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    bounds = []
    for i, what in ((1, "min"), (2, "max")):
        if len(n.inputs) > i and n.inputs[i]:
            v = _scalar(n, imp.need_const(n, i, what), what)
            if math.isnan(v):
                n.fail(f"{what} is NaN (ONNX Runtime's result would depend on the instruction set)")
            bounds.append(None if math.isinf(v) else v)
        else:
            bounds.append(None)
    lo, hi = bounds
    if lo is not None and hi is not None and lo > hi:
        n.fail(f"min={lo} > max={hi}")
    imp.emit(n, "clip", [x], {"min": lo, "max": hi})


def convert_batch_norm(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    if n.attrs.get("training_mode", 0):
        n.fail("training_mode=1 is not supported (inference only)")
    imp.only_first_output(n)
    consts = {key: imp.need_const(n, i, key) for i, key in ((1, "weight"), (2, "bias"), (3, "mean"), (4, "var"))}
    if (consts["var"] < 0).any():
        n.fail("the variance holds negative values")
    eps = float(n.attrs.get("epsilon", 1e-5))
    imp.emit(n, "batch_norm2d", [x], {"eps": eps}, consts)


def convert_layer_norm(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    imp.only_first_output(n)
    rank = len(x.shape)
    axis = _axis(n, int(n.attrs.get("axis", -1)), rank)
    _not_batch(n, axis, "axis (LayerNormalization normalizes every dimension from axis on)")
    ns = tuple(x.shape[axis:])
    # scale and bias are broadcast to normalized_shape: a scalar must not become a huge constant
    imp.fold_budget.check([math.prod(ns) * 4] * (2 if len(n.inputs) > 2 and n.inputs[2] else 1), n.where,
                          "broadcasting its scale and bias would produce")
    consts = {"weight": np.broadcast_to(imp.need_const(n, 1, "scale"), ns)}
    if len(n.inputs) > 2 and n.inputs[2]:
        consts["bias"] = np.broadcast_to(imp.need_const(n, 2, "bias"), ns)
    attrs = {"normalized_shape": ns, "eps": float(n.attrs.get("epsilon", 1e-5))}
    imp.emit(n, "layer_norm", [x], attrs, consts)


def _pool_common(imp: Importer, n: OnnxNode, x, extra_pads=(0, 0, 0, 0)):
    _spatial_rank_2(n, len(x.shape))
    kernel = _ints(n, "kernel_shape", (), 2)
    strides = _ints(n, "strides", (1, 1), 2)
    if any(d != 1 for d in _ints(n, "dilations", (1, 1), 2)):
        n.fail("dilated pooling is not supported")
    in_hw = [x.shape[2 + i] + extra_pads[i] + extra_pads[2 + i] for i in range(2)]
    pads = window_pads(n, in_hw, kernel, strides, (1, 1))
    pads = tuple(p + e for p, e in zip(pads, extra_pads))
    return {"kernel_size": kernel, "stride": strides, "pads": pads,
            "ceil_mode": bool(n.attrs.get("ceil_mode", 0))}


def convert_max_pool(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    imp.only_first_output(n)
    if n.attrs.get("storage_order", 0):
        n.fail("storage_order=1 is not supported")
    imp.emit(n, "max_pool2d", [x], _pool_common(imp, n, x))


def convert_avg_pool(imp: Importer, n: OnnxNode, x=None, extra_pads=(0, 0, 0, 0)) -> None:
    x = imp.tensor(n, 0) if x is None else x
    attrs = _pool_common(imp, n, x, extra_pads)
    attrs["count_include_pad"] = bool(n.attrs.get("count_include_pad", 0))
    imp.emit(n, "avg_pool2d", [x], attrs)


def convert_global_avg_pool(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    _spatial_rank_2(n, len(x.shape))
    imp.emit(n, "global_avg_pool2d", [x], {})


def convert_global_max_pool(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    _spatial_rank_2(n, len(x.shape))
    hw = tuple(x.shape[2:])
    imp.emit(n, "max_pool2d", [x], {"kernel_size": hw, "stride": (1, 1), "pads": (0, 0, 0, 0), "ceil_mode": False})


def _reshape_to(imp: Importer, n: OnnxNode, x, per_sample, helper=None):
    return imp.emit(n, "reshape", [x], {"shape": tuple(int(d) for d in per_sample)}, helper=helper)


def convert_flatten(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    rank = len(x.shape)
    axis = n.attrs.get("axis", 1)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis <= rank:
        n.fail(f"axis={n.attrs.get('axis')} is out of range for rank {rank}")
    if axis == 1 and rank >= 2:
        imp.emit(n, "flatten", [x], {"start_dim": 1})
        return
    shape = x.shape
    if axis == 0 or math.prod(shape[1:axis]) != 1:
        n.fail(f"axis={axis} would merge the batch dimension into another (the output must be [batch, ...])")
    _reshape_to(imp, n, x, (math.prod(shape[axis:]),))


def convert_reshape(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    target = [int(d) for d in np.asarray(imp.need_const(n, 1, "shape")).reshape(-1)]
    full = imp.shape(x.name)
    allowzero = n.attrs.get("allowzero", 0)
    out = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if i >= len(full):
                n.fail(f"shape {target}: the 0 at position {i} copies a dimension x {list(full)} does not have")
            d = full[i]
        elif d == 0:
            n.fail(f"shape {target} has a zero-size dimension")
        out.append(d)
    if not out:
        n.fail("reshaping to a scalar would drop the batch dimension")
    batch = imp.fold_batch
    per_sample = math.prod(full[1:])
    rest = out[1:]
    rule = (f"dimension 0 of the target must be the batch ({'free' if x.shape[0] is None else batch}), "
            "-1 or 0 (see the batch rule of eightbit.onnx.import_float)")
    if x.shape[0] is None and batch in rest:
        n.fail(f"shape {target} moves the batch dimension away from dimension 0; {rule}")
    if out[0] == -1:
        if -1 in rest or math.prod(rest) != per_sample:
            n.fail(f"shape {target} changes the batch dimension ({per_sample} values per sample in x "
                   f"{list(full)}); {rule}")
    elif out[0] != batch:
        n.fail(f"shape {target}: dimension 0 is {out[0]}; {rule}")
    if rest.count(-1) > 1:
        n.fail(f"shape {target} holds more than one -1")
    if -1 in rest:
        known = -math.prod(rest)
        if known == 0 or per_sample % known:
            n.fail(f"shape {target} cannot hold the {per_sample} values per sample of x {list(full)}")
        rest[rest.index(-1)] = per_sample // known
    if any(d <= 0 for d in rest):
        n.fail(f"shape {target} has a negative dimension")
    _reshape_to(imp, n, x, rest)


def _axes(imp: Importer, n: OnnxNode, attr_until: int):
    """Squeeze / Unsqueeze axes: an attribute before opset `attr_until`, input 1 from it on."""
    if imp.opset < attr_until:
        return list(n.attrs["axes"]) if "axes" in n.attrs else None
    if len(n.inputs) > 1 and n.inputs[1]:
        return [int(a) for a in np.asarray(imp.need_const(n, 1, "axes")).reshape(-1)]
    return None


def convert_squeeze(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    rank, shape = len(x.shape), x.shape
    axes = _axes(imp, n, 13)
    if axes is None:
        if shape[0] == 1:
            n.fail("squeezing every size-1 dimension would squeeze the batch (of size 1); give axes")
        axes = [i for i in range(1, rank) if shape[i] == 1]
    axes = sorted({_axis(n, a, rank) for a in axes})
    for a in axes:
        _not_batch(n, a)
        if shape[a] != 1:
            n.fail(f"axis {a} has size {shape[a]}, not 1")
    _reshape_to(imp, n, x, [d for i, d in enumerate(shape) if i and i not in axes])


def convert_unsqueeze(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    axes = _axes(imp, n, 13)
    if not axes:
        n.fail("axes are missing")
    rank = len(x.shape) + len(axes)
    axes = sorted({_axis(n, a, rank) for a in axes})
    if len(axes) != len(n.attrs.get("axes", axes)) and imp.opset < 13:
        n.fail("repeated axes")
    for a in axes:
        _not_batch(n, a)
    dims = iter(x.shape[1:])
    _reshape_to(imp, n, x, [1 if i in axes else next(dims) for i in range(1, rank)])


def convert_transpose(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    rank = len(x.shape)
    perm = _ints(n, "perm", tuple(reversed(range(rank))), rank)
    if perm[0] != 0:
        n.fail(f"perm={list(perm)} moves the batch dimension (perm[0] must be 0)")
    imp.emit(n, "transpose", [x], {"perm": perm})


def convert_concat(imp: Importer, n: OnnxNode) -> None:
    names = [i for i in n.inputs if i]
    consts = [i for i in names if i in imp.consts]
    if consts:
        n.fail(f"constant inputs {consts} are not supported (every input must be computed)")
    xs = [imp.graph.tensor(i) for i in names]
    axis = _axis(n, int(n.attrs["axis"]), len(xs[0].shape))
    _not_batch(n, axis)
    imp.emit(n, "concat", xs, {"axis": axis})


def convert_softmax(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    rank = len(x.shape)
    if imp.opset >= 13:
        axis = _axis(n, int(n.attrs.get("axis", -1)), rank)
        _not_batch(n, axis, "axis (a softmax over the batch would mix its samples)")
        imp.emit(n, "softmax", [x], {"axis": axis})
        return
    # opsets 11-12: softmax over x coerced to 2-D at `axis` (every dimension from axis on)
    axis = _axis(n, int(n.attrs.get("axis", 1)), rank)
    if axis and all(d == 1 for d in x.shape[axis + 1:]):
        imp.emit(n, "softmax", [x], {"axis": axis})
        return
    _not_batch(n, axis, "axis (opset < 13 softmax over all dimensions from axis)")
    flat = _reshape_to(imp, n, x, tuple(x.shape[1:axis]) + (math.prod(x.shape[axis:]),), helper="flatten")
    sm = imp.emit(n, "softmax", [flat], {"axis": axis}, helper="softmax")
    _reshape_to(imp, n, sm, x.shape[1:])


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def pad_amounts(imp: Importer, n: OnnxNode, rank: int):
    """(pads over all axes in ONNX order, mode, constant value) of a Pad node."""
    mode = n.attrs.get("mode", "constant")
    if mode not in _PAD_MODES:
        n.fail(f"mode={mode!r} is not supported")
    pads = [int(p) for p in np.asarray(imp.need_const(n, 1, "pads")).reshape(-1)]
    value = 0.0
    if len(n.inputs) > 2 and n.inputs[2]:
        value = _scalar(n, imp.need_const(n, 2, "constant_value"), "constant_value")
    axes = list(range(rank))
    if len(n.inputs) > 3 and n.inputs[3]:
        axes = [_axis(n, int(a), rank) for a in np.asarray(imp.need_const(n, 3, "axes")).reshape(-1)]
    if len(pads) != 2 * len(axes):
        n.fail(f"pads holds {len(pads)} values for {len(axes)} axes")
    full = [0] * (2 * rank)
    for k, a in enumerate(axes):
        full[a], full[rank + a] = pads[k], pads[len(axes) + k]
    if min(full) < 0:
        n.fail(f"negative pads (cropping) are not supported, got {pads}")
    if full[0] or full[rank]:
        n.fail(f"pads {pads} pad the batch dimension")
    return tuple(full), _PAD_MODES[mode], value


def convert_pad(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    pads, mode, value = pad_amounts(imp, n, len(x.shape))
    imp.emit(n, "pad", [x], {"pads": pads, "mode": mode, "value": value})


def convert_dropout(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    imp.only_first_output(n)
    p = float(n.attrs.get("ratio", 0.5))
    if len(n.inputs) > 1 and n.inputs[1]:
        p = _scalar(n, imp.need_const(n, 1, "ratio"), "ratio")
    if len(n.inputs) > 2 and n.inputs[2] and bool(_scalar(n, imp.need_const(n, 2, "training_mode"), "training_mode")):
        n.fail("training_mode=True is not supported (inference only)")
    imp.emit(n, "dropout", [x], {"p": p})


def convert_cast(imp: Importer, n: OnnxNode) -> None:
    to = n.attrs.get("to")
    if to != imp._onnx.TensorProto.FLOAT:
        n.fail(f"casting a computed tensor to {_dtype_name(imp._onnx, to) if isinstance(to, int) else to!r} is not supported "
               "(eightbit graphs compute in float32)")
    imp.emit(n, "identity", [imp.tensor(n, 0)], {})


CONVERTERS = {
    "Conv": convert_conv, "Gemm": convert_gemm, "MatMul": convert_matmul,
    "Add": convert_binary, "Sub": convert_binary, "Mul": convert_binary, "Div": convert_binary,
    "Relu": convert_unary, "Sigmoid": convert_unary, "Tanh": convert_unary, "HardSwish": convert_unary,
    "Erf": convert_unary,
    "Identity": convert_unary, "LeakyRelu": convert_leaky_relu, "HardSigmoid": convert_hardsigmoid,
    "Gelu": convert_gelu, "Clip": convert_clip, "BatchNormalization": convert_batch_norm,
    "LayerNormalization": convert_layer_norm,
    "MaxPool": convert_max_pool, "AveragePool": convert_avg_pool, "GlobalAveragePool": convert_global_avg_pool,
    "GlobalMaxPool": convert_global_max_pool, "Flatten": convert_flatten, "Reshape": convert_reshape,
    "Squeeze": convert_squeeze, "Unsqueeze": convert_unsqueeze, "Transpose": convert_transpose,
    "Concat": convert_concat, "Softmax": convert_softmax, "Pad": convert_pad, "Dropout": convert_dropout,
    "Cast": convert_cast,
}
