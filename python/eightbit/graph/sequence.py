"""The free sequence dimension of a graph (layer 2 of DESIGN.md): one model for every sequence
length in a range.

A graph's inputs may hold a ``SeqLen`` (ir.py), the same one wherever a sequence length stands;
shape inference carries it through the ops of ``shapes.SEQUENCE_OPS``. Two attributes may hold it
too: a reshape's target shape, and ``b_seq_axis`` of an add / mul whose constant is a table for
the longest sequence of which a run uses the first S entries (the position embeddings).

* ``sequence_of_graph(g)``: its SeqLen, or None.
* ``length_of(g_inputs, feeds)``: the run's length, read from the inputs (all must agree, within
  the range).
* ``at_length(g, s)``: the same graph with every S made ``s``: what the NumPy executors run.
* ``unify(g_long, g_short, seq)``: the graph with S from two imports of one model at lengths hi
  and hi - 1 (onnx import with ``dims={"sequence": (lo, hi)}``): every dimension and attribute that differs
  between them must be the length itself, and every other constant the same.
"""
from __future__ import annotations

import numpy as np

from .ir import Node, SeqLen, format_shape


def sequence_of_graph(g):
    """The graph's SeqLen (from its inputs), or None."""
    for name in g.inputs:
        for d in g.tensors[name].shape:
            if isinstance(d, SeqLen):
                return d
    return None


def length_of(declared: dict, feeds: dict, where: str = "run"):
    """The sequence length of one run: ``declared`` maps input names to their declared shapes,
    ``feeds`` input names to arrays (or shapes). None when no shape holds a SeqLen; ValueError
    when the inputs disagree or the length is outside the range."""
    length, seq, first = None, None, None
    for name, shape in declared.items():
        if name not in feeds:
            continue
        got = np.shape(feeds[name]) if not isinstance(feeds[name], tuple) else feeds[name]
        for axis, d in enumerate(shape):
            if not isinstance(d, SeqLen) or axis >= len(got):
                continue
            seq = d
            if length is None:
                length, first = int(got[axis]), name
            elif got[axis] != length:
                raise ValueError(f"{where}: inputs {first!r} and {name!r} disagree on the sequence length "
                                 f"({length} vs {got[axis]})")
    if seq is not None and not seq.lo <= length <= seq.hi:
        raise ValueError(f"{where}: input {first!r} has sequence length {length}, outside the model's range "
                         f"{seq.lo} to {seq.hi}")
    return length


def concrete(value, s: int):
    """`value` (a shape, an attribute: ints, tuples, None, dicts of them) with every SeqLen made `s`."""
    if isinstance(value, SeqLen):
        return s
    if isinstance(value, dict):
        return {k: concrete(v, s) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(concrete(v, s) for v in value)
    if isinstance(value, list):
        return [concrete(v, s) for v in value]
    return value


def concrete_node(node: Node, s: int) -> Node:
    """The node at length `s` (``concrete_parts``)."""
    attrs, consts = concrete_parts(node.attrs, node.consts, s)
    return Node(node.op, node.name, list(node.inputs), list(node.outputs), attrs, consts)


def concrete_parts(attrs: dict, consts: dict, s: int) -> tuple:
    """A node's attrs and consts at length `s`: S made `s`, a prefix table (``b_seq_axis``) cut
    to its first `s` entries. A plan's float step holds a node's parts, so it uses this too."""
    axis = attrs.get("b_seq_axis")
    attrs = {k: concrete(v, s) for k, v in attrs.items() if k != "b_seq_axis"}
    consts = dict(consts)
    if axis is not None:
        consts["b"] = prefix(consts["b"], axis, s)
    return attrs, consts


def prefix(table: np.ndarray, axis: int, s: int) -> np.ndarray:
    """The first `s` entries of `table` along `axis` (every axis before it has extent 1: a
    contiguous prefix)."""
    index = [slice(None)] * table.ndim
    index[axis] = slice(0, s)
    return table[tuple(index)]


def at_length(g, s: int):
    """`g` with its sequence dimension fixed at `s` (a new graph; g itself when it has none)."""
    seq = sequence_of_graph(g)
    if seq is None:
        return g
    if not seq.lo <= s <= seq.hi:
        raise ValueError(f"sequence length {s} is outside the model's range {seq.lo} to {seq.hi}")
    # cached per length while the graph is unchanged (calibration runs it once per batch)
    cache = g.__dict__.setdefault("_at_length", {})
    key = (s, len(g.nodes), tuple(g.outputs))
    if key not in cache:
        if len(cache) >= 8:  # a bound on the graphs kept: calibration sees a handful of lengths
            cache.clear()
        inputs = [(n, concrete(g.tensors[n].shape, s), g.tensors[n].dtype) for n in g.inputs]
        cache[key] = type(g).from_nodes(inputs, [concrete_node(n, s) for n in g.nodes], g.outputs, name=g.name)
    return cache[key]


def unify(long, short, seq: SeqLen):
    """The graph with a free sequence dimension `seq`, from imports `long` at length seq.hi and
    `short` at seq.hi - 1; ValueError naming what depends on the length otherwise."""
    l1, l2 = seq.hi, seq.hi - 1
    if l2 < 1:
        raise ValueError(f"unify: the range {seq!r} needs a longest length of at least 2")

    def merge(a, b, where: str):
        if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
            return tuple(merge(x, y, where) for x, y in zip(a, b))
        if type(a) is type(b) and a == b:
            return a
        if (a, b) == (l1, l2) and isinstance(a, int):
            return seq
        raise ValueError(f"{where} depends on the sequence length other than as the length itself "
                         f"({a!r} at length {l1}, {b!r} at {l2}): the model cannot run every length from "
                         "one import")

    if [n for n in long.inputs] != [n for n in short.inputs] or len(long.nodes) != len(short.nodes):
        raise ValueError("the graph's structure depends on the sequence length")
    inputs = [(n, merge(long.tensors[n].shape, short.tensors[n].shape, f"input {n!r}"), long.tensors[n].dtype)
              for n in long.inputs]
    nodes = []
    for a, b in zip(long.nodes, short.nodes):
        where = f"{a.name} ({a.op})"
        if (a.op, a.name, a.inputs, a.outputs) != (b.op, b.name, b.inputs, b.outputs) or \
                set(a.attrs) != set(b.attrs) or set(a.consts) != set(b.consts):
            raise ValueError(f"{where}: the graph's structure depends on the sequence length")
        attrs = {k: merge(a.attrs[k], b.attrs[k], f"{where}: attribute {k!r}") for k in a.attrs}
        for k, va in a.consts.items():
            vb = b.consts[k]
            if va.shape == vb.shape and np.array_equal(va, vb):
                continue
            axis = _prefix_axis(va, vb, l1, l2)
            if k != "b" or a.op not in ("add", "mul") or axis is None:
                raise ValueError(f"{where}: constant {k!r} depends on the sequence length ({list(va.shape)} at "
                                 f"length {l1}, {list(vb.shape)} at {l2}), not as a prefix of one table")
            attrs["b_seq_axis"] = axis
        nodes.append(Node(a.op, a.name, list(a.inputs), list(a.outputs), attrs, dict(a.consts)))
    g = type(long).from_nodes(inputs, nodes, long.outputs, name=long.name)
    for name, t in g.tensors.items():
        for other, length in ((long, l1), (short, l2)):
            if concrete(t.shape, length) != other.tensors[name].shape:
                raise ValueError(f"tensor {name!r}: shape {format_shape(t.shape)} does not match the import at "
                                 f"length {length} ({format_shape(other.tensors[name].shape)})")
    return g


def _prefix_axis(long: np.ndarray, short: np.ndarray, l1: int, l2: int):
    """The axis along which `short` is the first l2 entries of `long` (l1 of them), or None."""
    if long.ndim != short.ndim:
        return None
    axes = [i for i, (x, y) in enumerate(zip(long.shape, short.shape)) if x != y]
    if len(axes) != 1 or (long.shape[axes[0]], short.shape[axes[0]]) != (l1, l2):
        return None
    axis = axes[0]
    if any(d != 1 for d in long.shape[:axis]) or not np.array_equal(prefix(long, axis, l2), short):
        return None
    return axis
