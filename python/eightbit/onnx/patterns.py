"""Multi-node ONNX patterns that become one graph node (step 3 of import_float.py).

A ``Match`` claims a set of ONNX nodes; its ``anchor`` (the node writing the pattern's final
output) gives the graph node its name and output tensor, and the other nodes disappear. Every
tensor inside a pattern must be read only inside it (and not be a graph output, nor one of the
``keep_tensors`` given to import_float).

* **Elementwise functions of one tensor** (``match_function``): the largest single-use sub-graph
  of Mul / Add / Sub / Div / Pow / Erf / Tanh / HardSigmoid / Clip / Sqrt nodes, with scalar
  constants, that computes y from ONE tensor x is evaluated (ONNX's reference implementation)
  on probe values and compared with GELU (exact), GELU (tanh approximation) and hardswish. This
  catches PyTorch's erf GELU ``x * 0.5 * (1 + Erf(x / 1.4142))`` in any operand order (Div by
  sqrt 2 or Mul by 1/sqrt 2), its tanh form, and ``x * HardSigmoid(x)`` with alpha 1/6.
* **MatMul + Add** (``match_linear``): MatMul(x, constant W [K, N]) then Add of a constant
  [N] bias (either order) -> linear(weight W^T, bias), named as the Add.
* **LayerNorm written out** (``match_layer_norm``), as exporters write it before opset 17:
  ``d = x - ReduceMean(x)``, ``d / Sqrt(ReduceMean(Pow(d, 2)) + eps)`` over the last axes, then
  optionally ``* gamma`` and ``+ beta`` (constants) -> layer_norm, named as the last node.
* **NaN guard after softmax** (``match_nan_guard``): ``Where(IsNaN(p), 0, p)``, which the
  SDPA exporters write after the attention softmax -> identity(p). The softmax of a row with at
  least one key kept is never NaN; a row whose every key is padded is not defined in eightbit
  (ONNX Runtime gives zeros there).
* **Transpose through a batch-merging reshape** (``match_merged_transpose``): the dynamo
  exporter transposes K for SDPA as ``Reshape(x [N, H, T, D] -> [-1, T, D])``, ``Transpose(0, 2,
  1)``, ``Reshape(-> [N, H, D, T])``: one transpose of x (perm (0, 1, 3, 2)). The merged batch
  never exists in eightbit (the batch stays dimension 0).
* **Pad into a window** (``match_pad``): Pad (constant mode, value 0, spatial axes only) whose
  output only feeds a Conv, or an AveragePool with count_include_pad=1 and ceil_mode=0 -> the
  pads are added to the Conv's / AveragePool's.
"""
from __future__ import annotations

import math
import numpy as np

from .converters import convert_avg_pool, convert_conv, convert_pad, pad_amounts
from .match import Match

FUNCTION_OPS = ("Mul", "Add", "Sub", "Div", "Pow", "Erf", "Tanh", "HardSigmoid", "Clip", "Sqrt")
_CORE_OPS = ("Erf", "Tanh", "HardSigmoid", "Clip")     # a region without one is just arithmetic
_MAX_REGION = 16
_PROBE = np.linspace(-8.0, 8.0, 161).astype(np.float32)


def match_all(imp, live) -> None:
    """Find the patterns among the live nodes (outermost first) and record them on `imp`."""
    for n in reversed(live):
        if n.index in imp.claimed:
            continue
        for matcher in (match_function, match_linear, match_layer_norm, match_nan_guard, match_merged_transpose,
                        match_pad):
            m = imp._guard(n, lambda matcher=matcher, n=n: matcher(imp, n))
            if m is not None and not any(k.index in imp.claimed for k in m.nodes):
                imp.anchors[n.index] = m
                for k in m.nodes:
                    imp.claimed[k.index] = m
                break


def _producer(imp, name):
    """The live node writing `name`, unless it is a constant or a graph input."""
    if not name or name in imp.constable:
        return None
    return imp.producers.get(name)


# ---- GELU / hardswish from elementwise sub-graphs --------------------------------------------------

def _region(imp, anchor):
    """(nodes, the one tensor input x) of the elementwise sub-graph ending at `anchor`, or None."""
    nodes, leaves, stack = {anchor.index: anchor}, set(), [anchor]
    while stack:
        n = stack.pop()
        for i, name in enumerate(n.inputs):
            if not name:
                continue
            if name in imp.constable:
                c = imp.consts.get(name)
                if c is None or np.asarray(c).size != 1:
                    return None
                continue
            p = _producer(imp, name)
            if (p is not None and p.op in FUNCTION_OPS and p.domain in ("", "ai.onnx") and imp.single_use(name)
                    and p.index not in imp.claimed):
                if p.index not in nodes:
                    nodes[p.index] = p
                    stack.append(p)
                    if len(nodes) > _MAX_REGION:
                        return None
            else:
                leaves.add(name)
    if len(leaves) != 1 or len(nodes) < 2 or not any(n.op in _CORE_OPS for n in nodes.values()):
        return None
    return sorted(nodes.values(), key=lambda n: n.index), leaves.pop()


def _evaluate_region(imp, nodes, x_name, out_name):
    """The region's output on the probe values, by ONNX's reference implementation."""
    from onnx import TypeProto, helper
    from onnx.reference import ReferenceEvaluator
    consts = {i for n in nodes for i in n.inputs if i and i in imp.consts}
    inits = [helper.make_node("Constant", [], [c], value=_tensor(imp.consts[c], c)) for c in sorted(consts)]
    graph = helper.make_graph(inits + [n.proto for n in nodes], "region",
                              [helper.make_value_info(x_name, TypeProto())],
                              [helper.make_value_info(out_name, TypeProto())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", imp.opset)])
    try:
        (y,) = ReferenceEvaluator(model).run(None, {x_name: _PROBE})
    except Exception:
        return None
    y = np.asarray(y, np.float64)
    return y if y.shape == _PROBE.shape else None


def _tensor(value, name):
    from onnx import numpy_helper
    return numpy_helper.from_array(np.asarray(value), name)


def _gelu(x, approximate):
    from ..graph.float_exec import erf
    x = x.astype(np.float64)
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def _hardswish(x):
    x = x.astype(np.float64)
    return x * np.clip(x + 3, 0, 6) / 6


_FUNCTIONS = (("gelu", {"approximate": "none"}, lambda x: _gelu(x, "none")),
              ("gelu", {"approximate": "tanh"}, lambda x: _gelu(x, "tanh")),
              ("hardswish", {}, _hardswish))


def match_function(imp, anchor):
    if anchor.op not in FUNCTION_OPS or anchor.domain not in ("", "ai.onnx") or len(anchor.outputs) != 1:
        return None
    found = _region(imp, anchor)
    if found is None:
        return None
    nodes, x = found
    y = _evaluate_region(imp, nodes, x, anchor.outputs[0])
    if y is None:
        return None
    for op, attrs, fn in _FUNCTIONS:
        ref = fn(_PROBE)
        if np.max(np.abs(y - ref)) <= 2e-5 * (1 + np.abs(ref)).max():
            def convert(imp, op=op, attrs=attrs, x=x, anchor=anchor):
                imp.emit(anchor, op, [imp.graph.tensor(x)], dict(attrs))
            return Match(anchor, nodes, convert)
    return None


# ---- MatMul + bias -> linear ------------------------------------------------------------------------

def match_linear(imp, anchor):
    if anchor.op != "Add" or len(anchor.inputs) != 2:
        return None
    for mm_out, bias_name in (anchor.inputs, anchor.inputs[::-1]):
        bias = imp.consts.get(bias_name)
        mm = _producer(imp, mm_out)
        if bias is None or mm is None or mm.op != "MatMul" or not imp.single_use(mm_out):
            continue
        w = imp.consts.get(mm.inputs[1])
        if w is None or w.ndim != 2 or mm.inputs[0] in imp.constable or w.dtype.kind != "f":
            continue
        n_out = w.shape[1]
        if bias.size != n_out or (bias.ndim and bias.shape[-1] != n_out) or bias.dtype.kind != "f":
            continue

        def convert(imp, mm=mm, w=w, bias=bias, anchor=anchor):
            x = imp.graph.tensor(mm.inputs[0])
            imp.emit(anchor, "linear", [x], {"activation": None},
                     {"weight": np.ascontiguousarray(w.T), "bias": bias.reshape(-1)})
        return Match(anchor, [mm, anchor], convert)
    return None


# ---- LayerNorm from ReduceMean / Sub / Pow / Sqrt / Div ------------------------------------------

def _split_const(imp, n):
    """(tensor input, constant value) of a binary node with exactly one constant operand, else None."""
    if len(n.inputs) != 2:
        return None
    a, b = n.inputs
    if b in imp.consts and a not in imp.constable:
        return a, imp.consts[b]
    if a in imp.consts and b not in imp.constable and n.op in ("Add", "Mul"):
        return b, imp.consts[a]
    return None


def _reduce_axes(imp, n):
    """The axes of a keepdims ReduceMean as a sorted tuple of negative axes, or None."""
    if n.op != "ReduceMean" or not n.attrs.get("keepdims", 1):
        return None
    axes = n.attrs.get("axes")
    if axes is None and len(n.inputs) > 1 and n.inputs[1]:
        axes = imp.consts.get(n.inputs[1])
    if axes is None:
        return None
    return tuple(sorted(int(a) for a in np.asarray(axes).reshape(-1)))


def _ln_core(imp, div):
    """(nodes, x, axes, eps) when `div` divides x - mean(x) by sqrt(var(x) + eps), else None."""
    if div.op != "Div" or len(div.inputs) != 2:
        return None
    d_name, s_name = div.inputs
    sub, sqrt = _producer(imp, d_name), _producer(imp, s_name)
    if sub is None or sqrt is None or sub.op != "Sub" or sqrt.op != "Sqrt" or not imp.single_use(s_name):
        return None
    x, m_name = sub.inputs
    mean = _producer(imp, m_name)
    add = _producer(imp, sqrt.inputs[0])
    if mean is None or add is None or add.op != "Add" or mean.inputs[0] != x or not imp.single_use(m_name):
        return None
    axes = _reduce_axes(imp, mean)
    split = _split_const(imp, add)
    if axes is None or split is None or np.asarray(split[1]).size != 1 or not imp.single_use(add.outputs[0]):
        return None
    v_name, eps = split
    var = _producer(imp, v_name)
    if var is None or _reduce_axes(imp, var) != axes or not imp.single_use(v_name):
        return None
    sq = _producer(imp, var.inputs[0])
    if sq is None or not imp.single_use(sq.outputs[0]):
        return None
    squares = (sq.op == "Pow" and sq.inputs[0] == d_name and np.asarray(imp.consts.get(sq.inputs[1], 0)).size == 1
               and float(np.asarray(imp.consts.get(sq.inputs[1], 0)).reshape(())) == 2.0) or \
        (sq.op == "Mul" and sq.inputs == [d_name, d_name])
    # d is read by the square and the division only
    if not squares or imp.uses.get(d_name) != 2 or d_name in imp.output_names or d_name in imp.keep:
        return None
    return [mean, sub, sq, var, add, sqrt, div], x, axes, float(np.asarray(eps).reshape(()))


def match_layer_norm(imp, anchor):
    gamma = beta = None
    n, chain = anchor, []
    if n.op == "Add" and (split := _split_const(imp, n)) is not None:
        p = _producer(imp, split[0])
        if p is not None and p.op == "Mul" and imp.single_use(split[0]):
            beta, chain, n = split[1], [n], p
    if n.op == "Mul" and (split := _split_const(imp, n)) is not None:
        p = _producer(imp, split[0])
        if p is not None and p.op == "Div" and imp.single_use(split[0]):
            gamma, chain, n = split[1], chain + [n], p
    if beta is not None and gamma is None:
        return None
    core = _ln_core(imp, n)
    if core is None:
        return None
    nodes, x, axes, eps = core

    def convert(imp, x=x, axes=axes, eps=eps, gamma=gamma, beta=beta, anchor=anchor):
        t = imp.graph.tensor(x)
        rank = len(t.shape)
        if axes != tuple(range(-len(axes), 0)) and axes != tuple(range(rank - len(axes), rank)):
            anchor.fail(f"a LayerNorm written out over axes {list(axes)}: only the last axes are supported")
        if len(axes) >= rank:
            anchor.fail("a LayerNorm written out over the batch dimension is not supported")
        ns = tuple(t.shape[rank - len(axes):])
        consts = {}
        for key, v in (("weight", gamma), ("bias", beta)):
            if v is not None:
                v = np.asarray(v)
                while v.ndim > len(ns) and v.shape[0] == 1:
                    v = v.reshape(v.shape[1:])
                consts[key] = np.broadcast_to(v, ns)
        imp.emit(anchor, "layer_norm", [t], {"normalized_shape": ns, "eps": eps}, consts)
    return Match(anchor, nodes + chain, convert)


# ---- Pad folded into a Conv / AveragePool -----------------------------------------------------------

def match_nan_guard(imp, anchor):
    if anchor.op != "Where" or len(anchor.inputs) != 3:
        return None
    cond, zero, x = anchor.inputs
    guard = _producer(imp, cond)
    if guard is None or guard.op != "IsNaN" or guard.inputs[0] != x or not imp.single_use(cond):
        return None
    z = imp.consts.get(zero)
    if z is None or np.asarray(z).size != 1 or float(np.asarray(z).reshape(())) != 0.0:
        return None

    def convert(imp, x=x, anchor=anchor):
        imp.emit(anchor, "identity", [imp.graph.tensor(x)], {})
    return Match(anchor, [guard, anchor], convert)


def match_merged_transpose(imp, anchor):
    if anchor.op != "Reshape":
        return None
    t = _producer(imp, anchor.inputs[0])
    if t is None or t.op != "Transpose" or not imp.single_use(anchor.inputs[0]):
        return None
    merge = _producer(imp, t.inputs[0])
    if merge is None or merge.op != "Reshape" or not imp.single_use(t.inputs[0]):
        return None
    if not merge.inputs[1] in imp.constable or not anchor.inputs[1] in imp.constable:
        return None

    def convert(imp, merge=merge, t=t, anchor=anchor):
        perm = _merged_transpose_perm(imp, merge, t, anchor)
        if perm is None:                             # not the merged-batch form: the three nodes as usual
            from .converters import CONVERTERS
            for n in (merge, t, anchor):
                imp._guard(n, lambda n=n: CONVERTERS[n.op](imp, n))
            return
        imp.emit(anchor, "transpose", [imp.tensor(merge, 0)], {"perm": perm})
    return Match(anchor, [merge, t, anchor], convert)


def _merged_transpose_perm(imp, merge, t, anchor):
    """The perm of x of Reshape(x -> [-1, rest]) + Transpose + Reshape(-> [N, .., permuted rest]),
    or None when the three nodes are not that."""
    from .fold import BATCH
    target = imp.consts.get(merge.inputs[1])
    final = imp.consts.get(anchor.inputs[1], imp.symbolic.get(anchor.inputs[1]))
    if target is None or final is None:
        return None
    shape = imp.shape(merge.inputs[0])
    merged = [int(v) for v in np.asarray(target).reshape(-1)]
    k = len(merged) - 1                              # the trailing dims kept; the leading ones merge
    lead = len(shape) - k
    perm = [int(p) for p in t.attrs.get("perm", range(k, -1, -1))]
    if k < 1 or lead < 2 or merged[0] != -1 or merged[1:] != list(shape[lead:]) or \
            sorted(perm) != list(range(k + 1)) or perm[0] != 0:
        return None
    want = list(shape[:lead]) + [shape[lead - 1 + p] for p in perm[1:]]
    final = list(np.asarray(final).reshape(-1))
    if len(final) != len(want):
        return None
    for i, (f, w) in enumerate(zip(final, want)):
        if i == 0:
            ok = f is BATCH or int(f) in (-1, 0) or (w is not BATCH and int(f) == w)
        else:
            ok = f is not BATCH and (int(f) == w or (int(f) == 0 and shape[i] == w))
        if not ok:
            return None
    return tuple(range(lead)) + tuple(lead - 1 + p for p in perm[1:])


def match_pad(imp, anchor):
    if anchor.op == "AveragePool":
        if not anchor.attrs.get("count_include_pad", 0) or anchor.attrs.get("ceil_mode", 0):
            return None
    elif anchor.op != "Conv":
        return None
    pad_out = anchor.inputs[0]
    pad = _producer(imp, pad_out)
    if pad is None or pad.op != "Pad" or not imp.single_use(pad_out):
        return None
    if pad.attrs.get("mode", "constant") != "constant" or any(
            i and i not in imp.consts for i in pad.inputs[1:]):
        return None
    if anchor.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return None

    def convert(imp, pad=pad, anchor=anchor):
        x = imp.tensor(pad, 0)
        if len(x.shape) != 4:
            pad.fail("only a 4-D input can be folded into a window's pads")
        pads, _, value = pad_amounts(imp, pad, 4)
        if pads[1] or pads[5] or value != 0.0:
            # not foldable after all: convert both nodes on their own
            convert_pad(imp, pad)
            (convert_conv if anchor.op == "Conv" else convert_avg_pool)(imp, anchor)
            return
        extra = (pads[2], pads[3], pads[6], pads[7])
        (convert_conv if anchor.op == "Conv" else convert_avg_pool)(imp, anchor, x=x, extra_pads=extra)
    return Match(anchor, [pad, anchor], convert)
