"""The float Graph (layer 2 of DESIGN.md): inputs, outputs and nodes in topological order.

    g = eb.Graph()
    x = g.input("x", shape=(None, 1, 8, 8))      # None: a free batch dimension
    h = g.relu(g.conv2d(x, w1, b1, padding=1))   # builders (builders.py) append nodes
    g.output(g.linear(g.flatten(h), w2, b2))
    y = g.run(x_batch)                           # float32 NumPy reference (float_exec.py)

Every node is added through ``add_node``, which checks that its inputs are tensors of this graph,
converts its constants (float32, C-contiguous, finite, read-only), infers its output shape
(shapes.py) and only then appends it: a graph is always valid and in construction order, which
is a topological order. The builders are the friendly, PyTorch-named front of ``add_node``;
passes and importers may call ``add_node`` (or ``Graph.from_nodes``) with normalized attrs.
"""
from __future__ import annotations

import numpy as np

from . import float_exec
from .builders import Builders, check_activation, check_name, const_array
from .ir import DTYPE, FUSABLE_OPS, INPUT_DTYPES, INT_INPUT_OPS, OPS, Node, SeqLen, Tensor, format_shape
from .shapes import check_sample_size, infer_shape


class Graph(Builders):
    """A float32 network: ``inputs``/``outputs`` (tensor names), ``nodes`` (topological order),
    ``tensors`` (name -> Tensor). See ir.py for the node records and the op table."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.nodes: list[Node] = []
        self.tensors: dict[str, Tensor] = {}
        self._nodes_by_name: dict[str, Node] = {}
        self._producers: dict[str, Node] = {}
        self._counters: dict[str, int] = {}

    # ---- construction -------------------------------------------------------------------------

    def input(self, name: str, shape, dtype: str = DTYPE) -> Tensor:
        """Declare a graph input. ``shape[0]`` is the batch: an int or None (any size). ``dtype``:
        "float32" (default) or "int64" (integer ids, read only by embedding / additive_mask). Other
        dimensions may be a ``SeqLen`` (the graph's free sequence length: graph/sequence.py)."""
        check_name(name, "input name")
        if dtype not in INPUT_DTYPES:
            raise ValueError(f"input {name!r}: dtype must be one of {INPUT_DTYPES}, got {dtype!r}")
        if name in self.tensors:
            raise ValueError(f"input {name!r}: the name is already used by a tensor")
        try:
            dims = tuple(shape)
        except TypeError:
            raise TypeError(f"input {name!r}: shape must be a sequence, got {type(shape).__name__}") from None
        if not dims:
            raise ValueError(f"input {name!r}: shape must have at least the batch dimension")
        for i, d in enumerate(dims):
            if (d is None and i == 0) or (isinstance(d, SeqLen) and i > 0):
                continue
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0:
                rule = "a positive int or None" if i == 0 else "a positive int (only dimension 0 may be None)"
                raise ValueError(f"input {name!r}: shape[{i}] must be {rule}, got {d!r}")
        dims = tuple(d if d is None or isinstance(d, SeqLen) else int(d) for d in dims)
        seqs = {d for t in self.tensors.values() for d in t.shape if isinstance(d, SeqLen)} | \
            {d for d in dims if isinstance(d, SeqLen)}
        if len(seqs) > 1:
            raise ValueError(f"input {name!r}: a graph has one sequence dimension, got {sorted(map(repr, seqs))}")
        check_sample_size(dims, f"input {name!r}")
        t = Tensor(name, dims, self, dtype)
        self.tensors[name] = t
        self.inputs.append(name)
        return t

    def output(self, t: Tensor) -> None:
        """Mark a tensor as a graph output (outputs keep the order they were marked in)."""
        t = self._tensor(t, "output", "t")
        if t.name in self.outputs:
            raise ValueError(f"output: tensor {t.name!r} is already an output")
        self.outputs.append(t.name)

    def add_node(self, op: str, inputs, attrs=None, consts=None, *, name=None, output_name=None) -> Tensor:
        """Append one node (normalized attrs, see ir.py) and return its output Tensor.

        ``inputs`` are Tensors of this graph or their names; ``name`` defaults to ``op_k``;
        ``output_name`` (the output tensor's name) defaults to ``name``.
        """
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; known ops: {', '.join(sorted(OPS))}")
        name = self._pick_name(op, name, output_name)
        where = f"{name} ({op})"
        if output_name is None:
            output_name = name
        else:
            check_name(output_name, f"{where}: output_name")
            if output_name in self.tensors:
                raise ValueError(f"{where}: output_name {output_name!r} is already used by a tensor")
        tensors = [self._tensor(t, where, f"inputs[{i}]") for i, t in enumerate(inputs)]
        consts = {key: const_array(v, where, key, share_readonly=True) for key, v in (consts or {}).items()}
        attrs = dict(attrs or {})
        self._check_signature(op, where, tensors, consts)
        ints = [t.name for t in tensors if t.dtype != DTYPE]
        if ints and op not in INT_INPUT_OPS:
            raise ValueError(f"{where}: input(s) {ints} hold integers (int64); only {', '.join(INT_INPUT_OPS)} "
                             "read integer tensors")
        if op in FUSABLE_OPS:
            attrs["activation"] = check_activation(attrs.get("activation"), where)
        node = Node(op, name, [t.name for t in tensors], [output_name], attrs, consts)
        shape = infer_shape(node, [t.shape for t in tensors])
        out = Tensor(output_name, shape, self)
        self.nodes.append(node)
        self._nodes_by_name[name] = node
        self.tensors[output_name] = out
        self._producers[output_name] = node
        if name == f"{op}_{self._counters.get(op, 0)}":
            self._counters[op] = self._counters.get(op, 0) + 1
        return out

    @classmethod
    def from_nodes(cls, inputs, nodes, outputs, name: str = "graph") -> "Graph":
        """A new graph from ``(name, shape)`` or ``(name, shape, dtype)`` inputs, Node records
        (re-checked, consts shared when already read-only float32) and output names: how passes and
        importers build graphs."""
        g = cls(name)
        for in_name, shape, *dtype in inputs:
            g.input(in_name, shape, *dtype)
        for n in nodes:
            g.add_node(n.op, n.inputs, n.attrs, n.consts, name=n.name, output_name=n.outputs[0])
        for out in outputs:
            g.output(g.tensor(out))
        return g

    def copy(self) -> "Graph":
        """An independent graph with the same names (constant arrays are shared: read-only)."""
        return Graph.from_nodes(self.input_specs(), self.nodes, self.outputs, self.name)

    def input_specs(self, names=None) -> list:
        """``(name, shape, dtype)`` of the inputs (or of the tensors ``names``), as ``from_nodes`` takes them."""
        return [(n, self.tensors[n].shape, self.tensors[n].dtype) for n in (self.inputs if names is None else names)]

    # ---- queries ------------------------------------------------------------------------------

    def tensor(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"graph {self.name!r} has no tensor {name!r}") from None

    def node(self, name: str) -> Node:
        try:
            return self._nodes_by_name[name]
        except KeyError:
            raise KeyError(f"graph {self.name!r} has no node {name!r}") from None

    def producer(self, tensor_name: str):
        """The node whose output `tensor_name` is, or None for a graph input."""
        return self._producers.get(tensor_name)

    def consumers(self, tensor_name: str) -> list[Node]:
        """The nodes reading `tensor_name`, in graph order (a node reading it twice appears once)."""
        return [n for n in self.nodes if tensor_name in n.inputs]

    # ---- execution and display ----------------------------------------------------------------

    def run(self, inputs, *, on_tensor=None, return_all: bool = False):
        """Execute the graph in float32 NumPy; see ``float_exec.run`` for the contract."""
        return float_exec.run(self, inputs, on_tensor=on_tensor, return_all=return_all)

    def summary(self) -> str:
        """One line per input, node and output, with shapes and attributes."""
        lines = [f"Graph {self.name!r}: {len(self.inputs)} input(s), {len(self.nodes)} node(s), "
                 f"{len(self.outputs)} output(s)"]
        for n in self.inputs:
            dtype = self.tensors[n].dtype
            lines.append(f"  input   {n} {format_shape(self.tensors[n].shape)}" + ("" if dtype == DTYPE else f" {dtype}"))
        for node in self.nodes:
            out = self.tensors[node.output]
            consts = ", ".join(f"{k}{format_shape(v.shape)}" for k, v in node.consts.items())
            attrs = ", ".join(f"{k}={v!r}" for k, v in node.attrs.items())
            extra = "; ".join(s for s in (consts, attrs) if s)
            lines.append(f"  {node.name:<20} {node.op}({', '.join(node.inputs)}) -> {out.name} "
                         f"{format_shape(out.shape)}" + (f"  [{extra}]" if extra else ""))
        for n in self.outputs:
            lines.append(f"  output  {n} {format_shape(self.tensors[n].shape)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    # ---- internals ----------------------------------------------------------------------------

    def _tensor(self, t, where: str, arg: str) -> Tensor:
        """`t` as a Tensor of this graph (a name is looked up); TypeError / ValueError otherwise."""
        if isinstance(t, str):
            if t not in self.tensors:
                raise ValueError(f"{where}: {arg} names no tensor of this graph: {t!r}")
            return self.tensors[t]
        if not isinstance(t, Tensor):
            raise TypeError(f"{where}: {arg} must be a Tensor of this graph, got {type(t).__name__}")
        if t._graph is not self or self.tensors.get(t.name) is not t:
            raise ValueError(f"{where}: {arg} (tensor {t.name!r}) belongs to another graph")
        return t

    def _pick_name(self, op: str, name, output_name=None) -> str:
        """`name` if it is free (ValueError if not), else the first free ``op_k``."""
        if name is not None:
            check_name(name, f"{op}: name")
            if name in self._nodes_by_name:
                raise ValueError(f"{op}: name {name!r} is already used by a node")
            if output_name is None and name in self.tensors:
                raise ValueError(f"{op}: name {name!r} is already used by a tensor")
            return name
        k = self._counters.get(op, 0)
        while f"{op}_{k}" in self._nodes_by_name or f"{op}_{k}" in self.tensors:
            k += 1
        self._counters[op] = k
        return f"{op}_{k}"

    @staticmethod
    def _check_signature(op: str, where: str, tensors, consts) -> None:
        allowed = {k.rstrip("?"): not k.endswith("?") for k in OPS[op]}
        for key in consts:
            if key not in allowed:
                raise ValueError(f"{where}: unexpected constant {key!r}; {op} takes "
                                 f"{sorted(allowed) or 'none'}")
        for key, required in allowed.items():
            if required and key not in consts:
                raise ValueError(f"{where}: constant {key!r} is missing")
        if op == "concat":
            expected = None if tensors else "at least 1"
        elif op in ("bmm", "div"):
            expected = None if len(tensors) == 2 else "2"
        elif op == "softmax":
            expected = None if len(tensors) in (1, 2) else "1 (or 2 with a mask)"
        elif op in ("add", "mul"):
            expected = None if len(tensors) == (1 if "b" in consts else 2) else \
                "1 (with constant b)" if "b" in consts else "2 (or 1 with constant b)"
        else:
            expected = None if len(tensors) == 1 else "1"
        if expected is not None:
            raise ValueError(f"{where}: expected {expected} input tensor(s), got {len(tensors)}")
