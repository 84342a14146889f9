"""Graph rewrites run before quantization (layer 2 of DESIGN.md).

Each pass takes a Graph and returns a NEW Graph (the argument is never changed) with the same
input and output names and, up to float32 rounding, the same outputs. Unchanged constant arrays
are shared (they are read-only). A fused node keeps its own node name and takes over the output
tensor name of the node it absorbed, so every tensor name a consumer or a graph output uses
survives.

* ``remove_identities``: drops dropout, identity, a one-input concat, a clip with no bounds, and
  reshape / flatten that keep the shape.
* ``fold_batch_norm``: conv2d or linear followed by batch_norm2d -> one conv2d / linear with
  ``w' = w * s`` (per output channel) and ``b' = (b - mean) * s + beta``, ``s = gamma /
  sqrt(var + eps)`` (computed in float64, stored as float32). linear folds only when its output
  is [N, C] (BatchNorm's channel axis 1 is then linear's output feature axis).
* ``fuse_activations``: relu, relu6 and clip after conv2d / linear / matmul / add -> the
  producer's ``activation`` attribute: "relu", ("clip", 0.0, 6.0), ("clip", lo, hi); a clip with
  only ``min=0`` is "relu"; a clip with one other open bound is left alone.
* ``fuse_masked_softmax``: attention's ``softmax(mul(scores, c) + mask)`` over the last axis ->
  one softmax node with ``scale=c`` and the mask as its second input (the same float32 roundings;
  one pass over the scores instead of three). The mul is optional.
* ``prepare_for_quantization``: the four, in that order (a dropout between a conv and its
  BatchNorm or ReLU would otherwise block folding).

A node is absorbed into its producer only if the producer's output feeds nothing else and is not
a graph output (the unfused value would be lost) and the producer has no activation yet.
"""
from __future__ import annotations

import numpy as np

from ..numerics.qparams import binary_weight_scale
from .graph import Graph
from .ir import FUSABLE_OPS, Node

__all__ = ["remove_identities", "fold_batch_norm", "fuse_activations", "fuse_masked_softmax", "binarize",
           "prepare_for_quantization"]


def _rebuild(g: Graph, nodes: list[Node]) -> Graph:
    return Graph.from_nodes(g.input_specs(), nodes, g.outputs, g.name)


def _use_counts(g: Graph) -> dict[str, int]:
    counts = {name: 0 for name in g.tensors}
    for node in g.nodes:
        for name in set(node.inputs):
            counts[name] += 1
    for name in g.outputs:
        counts[name] += 1                       # a graph output is a use nobody may take away
    return counts


def _absorb(g: Graph, can_absorb) -> Graph:
    """Shared walk of fold_batch_norm and fuse_activations: for each node whose single input is
    produced by a node P seen earlier and used only by it, ``can_absorb(P, node)`` may return a
    rewritten P; that P then takes the node's output name and the node disappears."""
    uses = _use_counts(g)
    kept: list[Node] = []
    position: dict[str, int] = {}       # output name -> index in kept of the node producing it
    for node in g.nodes:
        at = position.get(node.inputs[0]) if len(node.inputs) == 1 else None
        if at is not None and uses[node.inputs[0]] == 1:
            fused = can_absorb(kept[at], node)
            if fused is not None:
                fused.outputs = list(node.outputs)
                kept[at] = fused
                del position[node.inputs[0]]
                position[node.output] = at
                continue
        kept.append(node.copy())
        position[node.output] = len(kept) - 1
    return _rebuild(g, kept)


def _fold_into(producer: Node, bn: Node, g: Graph):
    if bn.op != "batch_norm2d" or producer.op not in ("conv2d", "linear"):
        return None
    if producer.attrs.get("activation") is not None:
        return None
    if producer.op == "linear" and len(g.tensors[producer.output].shape) != 2:
        return None
    c = bn.consts
    scale = c["weight"].astype(np.float64) / np.sqrt(c["var"].astype(np.float64) + bn.attrs["eps"])
    w = producer.consts["weight"].astype(np.float64)
    b = producer.consts.get("bias")
    b = np.zeros(w.shape[0]) if b is None else b.astype(np.float64)
    fused = producer.copy()
    fused.consts["weight"] = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
    fused.consts["bias"] = ((b - c["mean"]) * scale + c["bias"]).astype(np.float32)
    return fused


def fold_batch_norm(g: Graph) -> Graph:
    """Fold each batch_norm2d into the conv2d / linear that feeds it (see the module docstring)."""
    return _absorb(g, lambda producer, node: _fold_into(producer, node, g))


def activation_of(node: Node):
    """The ``activation`` attribute equivalent to a relu / relu6 / clip node, or None."""
    if node.op == "relu":
        return "relu"
    if node.op == "relu6":
        return ("clip", 0.0, 6.0)
    if node.op == "clip":
        lo, hi = node.attrs["min"], node.attrs["max"]
        if lo is not None and hi is not None:
            return ("clip", lo, hi)
        if lo == 0.0 and hi is None:
            return "relu"
    return None


def _fuse_into(producer: Node, node: Node):
    act = activation_of(node)
    if act is None or producer.op not in FUSABLE_OPS or producer.attrs.get("activation") is not None:
        return None
    fused = producer.copy()
    fused.attrs["activation"] = act
    return fused


def fuse_activations(g: Graph) -> Graph:
    """Move relu / relu6 / clip into the ``activation`` of the conv2d / linear / matmul / add
    that produces their input (see the module docstring)."""
    return _absorb(g, _fuse_into)


def _is_identity(node: Node, g: Graph) -> bool:
    if node.op in ("dropout", "identity"):
        return True
    if node.op == "concat":
        return len(node.inputs) == 1
    if node.op == "clip":
        return node.attrs["min"] is None and node.attrs["max"] is None
    if node.op in ("reshape", "flatten"):
        return g.tensors[node.inputs[0]].shape == g.tensors[node.output].shape
    return False


def remove_identities(g: Graph) -> Graph:
    """Drop nodes whose output equals their input (see the module docstring).

    Consumers of a dropped node read its input instead. When the dropped node's output is a
    graph output, the node producing its input is renamed to keep the output name; if that is
    impossible (the input is a graph input or itself a graph output) the node stays.
    """
    outputs, inputs = set(g.outputs), set(g.inputs)
    alias: dict[str, str] = {}          # name a later node asks for -> name that now holds it
    kept: list[Node] = []
    for node in g.nodes:
        node = node.copy()
        node.inputs = [alias.get(n, n) for n in node.inputs]
        if _is_identity(node, g):
            src, dst = node.inputs[0], node.output
            if dst not in outputs:
                alias[dst] = src
                continue
            if src not in inputs and src not in outputs:
                for k in kept:          # src becomes dst everywhere, before and after this node
                    k.inputs = [dst if n == src else n for n in k.inputs]
                    k.outputs = [dst if n == src else n for n in k.outputs]
                alias[src] = dst
                for key, value in alias.items():
                    if value == src:
                        alias[key] = dst
                continue
        kept.append(node)
    return _rebuild(g, kept)


def _scalar_const(node: Node):
    """The float value of a mul node's constant operand when it is one number, else None."""
    if node.op != "mul" or "b" not in node.consts or node.consts["b"].size != 1 or node.attrs.get("activation"):
        return None
    return float(node.consts["b"].reshape(()))


def fuse_masked_softmax(g: Graph) -> Graph:
    """softmax(x * c + mask) over the last axis -> one softmax node (module docstring). The add's
    operand of the softmax's own shape is the scores (the first when both are), the other the
    mask; the add and the mul must feed nothing else."""
    uses = _use_counts(g)
    producer = {n.output: n for n in g.nodes}
    gone: set = set()
    fused: dict = {}
    for node in g.nodes:
        if node.op != "softmax" or len(node.inputs) != 1 or node.attrs["axis"] != len(g.tensors[node.output].shape) - 1:
            continue
        add = producer.get(node.inputs[0])
        if add is None or add.op != "add" or len(add.inputs) != 2 or add.attrs.get("activation")                 or uses[add.output] != 1:
            continue
        shape = g.tensors[node.output].shape
        x, mask = add.inputs if g.tensors[add.inputs[0]].shape == shape or g.tensors[add.inputs[1]].shape != shape             else add.inputs[::-1]
        attrs = dict(node.attrs, scale=None)
        mul = producer.get(x)
        if mul is not None and uses[x] == 1 and _scalar_const(mul) is not None:
            attrs["scale"], x = _scalar_const(mul), mul.inputs[0]
            gone.add(mul.name)
        gone.add(add.name)
        fused[node.name] = Node("softmax", node.name, [x, mask], list(node.outputs), attrs, {})
    if not fused:
        return g
    return _rebuild(g, [fused.get(n.name) or n.copy() for n in g.nodes if n.name not in gone])


def prepare_for_quantization(g: Graph) -> Graph:
    """remove_identities, fold_batch_norm, fuse_activations, then fuse_masked_softmax."""
    return fuse_masked_softmax(fuse_activations(fold_batch_norm(remove_identities(g))))


def binarize(g: Graph, names, threshold=0.0) -> Graph:
    """The graph with the named linear / conv2d (groups 1) nodes made binary (eb.quantize(binary=)):
    weights alpha * sign(w) with alpha = mean |w| per output channel (XNOR-Net: the alpha that
    minimises ||w - alpha sign(w)||; sign(0) = +1), and ``attrs["binary_threshold"]``: the input
    becomes -1 where x < threshold, else +1, before the product (float_exec). Zero padding stays
    zero. ``threshold``: a float, or {node name: float or one per input channel}."""
    names = set([names] if isinstance(names, str) else names)
    unknown = names - {n.name for n in g.nodes}
    if unknown:
        raise ValueError(f"binary: no node named {sorted(unknown)} in the graph")
    nodes = []
    for node in g.nodes:
        if node.name not in names:
            nodes.append(node)
            continue
        if node.op not in ("linear", "conv2d") or node.attrs.get("groups", 1) != 1:
            raise ValueError(f"binary: {node.name} is a {node.op}{' with groups' if node.op == 'conv2d' else ''}; "
                             "only linear and conv2d (groups 1) layers can be binary")
        w = node.consts["weight"]
        try:
            alpha = binary_weight_scale(w)
        except ValueError:
            raise ValueError(f"binary: {node.name} has an output channel of zero (or infinite) weights") from None
        t = threshold.get(node.name, 0.0) if isinstance(threshold, dict) else threshold
        t = np.asarray(t, np.float32).reshape(-1)
        channels = w.shape[1]
        if t.size not in (1, channels) or np.isnan(t).any():
            raise ValueError(f"binary: {node.name}'s threshold must be one number or {channels} (no NaN)")
        b = node.copy()
        signs = np.where(w < 0, np.float32(-1), np.float32(1))
        b.consts["weight"] = (signs * alpha.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        b.attrs["binary_threshold"] = float(t[0]) if t.size == 1 else tuple(float(v) for v in t)
        nodes.append(b)
    return _rebuild(g, nodes)
