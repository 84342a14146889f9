"""Shape inference and consistency checks for graph nodes (layer 2 of DESIGN.md).

``infer_shape(node, input_shapes)`` returns the output shape of a node whose attrs are already
normalized (builders.py does that), or raises ValueError naming the node and the argument.
It runs every time a node is added, by a builder, a pass or an importer, so a graph can never
hold a node whose shapes do not fit.

Dimension 0 of every tensor is the batch; it may be ``None`` (free) and no op mixes it with the
other dimensions: reductions, softmax, flatten, reshape and concat work on dimensions >= 1 (a
softmax over the batch would make each sample's result depend on the others), and broadcasting
treats a free batch like any size, so it only meets 1 or None.

Bounds (a hostile graph or file must get a ValueError, not an overflow or a huge allocation):
strides, dilations, pads and pooling kernels are at most ``MAX_WINDOW`` (2^20, as the plan
allows), and no tensor may hold more than ``MAX_SAMPLE_ELEMENTS`` (2^31) values per sample.
An average pool that does not count its padding must have no window lying wholly in padding
(its mean would be 0 / 0; ONNX Runtime refuses pads >= kernel for the same reason), and clip
bounds must not be NaN.

A free sequence dimension (``SeqLen``, graph/sequence.py) may stand in the shapes of the ops of
``SEQUENCE_OPS``, which never do arithmetic with it: elementwise ops, linear / matmul rows, bmm,
softmax, transpose, layer_norm over other axes, select / reduce / concat along other axes (select
may pick from it an index below its minimum; reduce may reduce it), and reshape, whose target may
hold it as long as every sample keeps the same count of values for every length. Any other op
refuses it. The per-sample bound counts it at its maximum.

Window geometry (conv2d, pools), per spatial axis with input n, kernel k, stride s, dilation d,
pads (b, e) and dilated extent dk = (k - 1) * d + 1, as in PyTorch:

    out = floor((n + b + e - dk) / s) + 1
    ceil_mode: out = ceil((n + b + e - dk) / s) + 1, minus 1 if that last window would start at
               or after n + b (in the end padding): every window starts inside x or the left pad.
"""
from __future__ import annotations

import math

import numpy as np

from .ir import Node, SeqLen, format_shape

MAX_WINDOW = 1 << 20
MAX_SAMPLE_ELEMENTS = 1 << 31


def window_out(n: int, k: int, s: int, d: int, pad_begin: int, pad_end: int, ceil_mode: bool = False):
    """Output length of one spatial axis, or None when the dilated kernel exceeds the padded input."""
    dk = (k - 1) * d + 1
    span = n + pad_begin + pad_end - dk
    if span < 0:
        return None
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= n + pad_begin:
            out -= 1
        return out
    return span // s + 1


def _fail(node: Node, message: str):
    raise ValueError(f"{node.name} ({node.op}): {message}")


def _rank(node: Node, shape, rank: int, what: str):
    if len(shape) != rank:
        _fail(node, f"x must be {what} (rank {rank}), got shape {format_shape(shape)}")


def _min_rank(node: Node, shape, rank: int, what: str):
    if len(shape) < rank:
        _fail(node, f"x must have rank >= {rank} ({what}), got shape {format_shape(shape)}")


def _vector(node: Node, key: str, length: int, what: str):
    v = node.consts.get(key)
    if v is not None and v.shape != (length,):
        _fail(node, f"{key} must have shape [{length}] (one per {what}), got {list(v.shape)}")


def _window_ints(node: Node, key: str, values, count: int, low: int) -> tuple:
    try:
        values = tuple(values)
    except TypeError:
        values = None
    if values is None or len(values) != count or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and low <= v <= MAX_WINDOW
            for v in values):
        _fail(node, f"{key} must be {count} ints in [{low}, 2^20], got {values if values is not None else '?'}")
    return tuple(int(v) for v in values)


def _windows(node: Node, x, kernel, ceil_mode: bool):
    stride = _window_ints(node, "stride", node.attrs["stride"], 2, 1)
    dil = _window_ints(node, "dilation", node.attrs.get("dilation", (1, 1)), 2, 1)
    pads = _window_ints(node, "pads", node.attrs["pads"], 4, 0)
    out = []
    for i in range(2):
        o = window_out(x[2 + i], kernel[i], stride[i], dil[i], pads[i], pads[2 + i], ceil_mode)
        if o is None or o <= 0:
            dk = (kernel[i] - 1) * dil[i] + 1
            _fail(node, f"kernel (extent {dk} on spatial axis {i}) is larger than the padded input "
                        f"({x[2 + i]} + padding {pads[i]} + {pads[2 + i]})")
        out.append(o)
    return out


def _conv2d(node: Node, shapes):
    (x,) = shapes
    _rank(node, x, 4, "NCHW")
    w = node.consts["weight"]
    if w.ndim != 4:
        _fail(node, f"weight must have rank 4 [out, in/groups, kh, kw], got shape {list(w.shape)}")
    groups = node.attrs["groups"]
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        _fail(node, f"groups must be an int >= 1, got {groups!r}")
    c, m = x[1], w.shape[0]
    if c % groups:
        _fail(node, f"groups={groups} does not divide the {c} input channels of x")
    if m % groups:
        _fail(node, f"groups={groups} does not divide the {m} output channels of weight")
    if w.shape[1] != c // groups:
        _fail(node, f"weight has {w.shape[1]} input channels per group, but x has {c} channels "
                    f"/ groups={groups} = {c // groups}")
    _vector(node, "bias", m, "output channel")
    oh, ow = _windows(node, x, w.shape[2:], False)
    return (x[0], m, oh, ow)


def _linear(node: Node, shapes):
    (x,) = shapes
    _min_rank(node, x, 2, "[batch, ..., in_features]")
    w = node.consts["weight"]
    if w.ndim != 2:
        _fail(node, f"weight must have rank 2 [out_features, in_features], got shape {list(w.shape)}")
    if w.shape[1] != x[-1]:
        _fail(node, f"weight has {w.shape[1]} input features, but x has {x[-1]} (last dimension)")
    _vector(node, "bias", w.shape[0], "output feature")
    return tuple(x[:-1]) + (w.shape[0],)


def _matmul(node: Node, shapes):
    (x,) = shapes
    _min_rank(node, x, 2, "[batch, ..., K]")
    b = node.consts["b"]
    if b.ndim != 2:
        _fail(node, f"b must be a [K, N] matrix, got shape {list(b.shape)}")
    if b.shape[0] != x[-1]:
        _fail(node, f"b has K={b.shape[0]} rows, but x has {x[-1]} (last dimension)")
    return tuple(x[:-1]) + (b.shape[1],)


def _bmm(node: Node, shapes):
    a, b = shapes
    if len(a) < 3 or len(a) != len(b):
        _fail(node, f"a and b must have the same rank >= 3 ([batch, ..., M, K] and [batch, ..., K, P]: "
                    f"dimension 0 of each is the batch), got {format_shape(a)} and {format_shape(b)}")
    if a[-1] != b[-2]:
        _fail(node, f"a {format_shape(a)} has K={a[-1]} columns, but b {format_shape(b)} has {b[-2]} rows")
    lead = broadcast(node, a[:-2], b[:-2], "b's leading dimensions")
    return lead + (a[-2], b[-1])


def _batch_norm2d(node: Node, shapes):
    (x,) = shapes
    _min_rank(node, x, 2, "channels on axis 1")
    for key in ("mean", "var", "weight", "bias"):
        _vector(node, key, x[1], "channel of x")
    return x


def _same(node: Node, shapes):
    return shapes[0]


def broadcast(node: Node, a, b, b_name: str = "b"):
    """NumPy broadcasting of shapes a and b where None (a free batch) matches only None or 1."""
    if len(b) > len(a):
        _fail(node, f"{b_name} (shape {format_shape(b)}) has more dimensions than a "
                    f"({format_shape(a)}); it would move the batch dimension")
    b = (1,) * (len(a) - len(b)) + tuple(b)
    out = []
    for i, (da, db) in enumerate(zip(a, b)):
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            _fail(node, f"shapes {format_shape(a)} and {b_name} {format_shape(b)} do not broadcast "
                        f"(dimension {i}: {'?' if da is None else da} vs {'?' if db is None else db})")
    return tuple(out)


def _binary(node: Node, shapes):
    if len(shapes) == 2:
        if len(shapes[0]) != len(shapes[1]):
            _fail(node, f"a and b must have the same rank (dimension 0 of each is the batch), got "
                        f"{format_shape(shapes[0])} and {format_shape(shapes[1])}")
        return broadcast(node, shapes[0], shapes[1])
    return broadcast(node, shapes[0], const_shape(node, shapes[0]))


def const_shape(node: Node, x) -> tuple:
    """The shape of an add / mul node's constant b. With ``b_seq_axis`` = k, b is a table stored
    for the longest sequence whose first S entries along axis k are used (a BERT's position
    embeddings): axis k is the sequence of x, and every axis before it has extent 1 (the prefix
    is contiguous)."""
    b = node.consts["b"]
    k = node.attrs.get("b_seq_axis")
    if k is None:
        return b.shape
    seq = sequence_of(x)
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < b.ndim or seq is None:
        _fail(node, f"b_seq_axis={k!r} must name an axis of b {list(b.shape)}, and x {format_shape(x)} must "
                    "have a sequence dimension")
    if b.shape[k] != seq.hi or any(d != 1 for d in b.shape[:k]):
        _fail(node, f"b {list(b.shape)} must hold the longest sequence ({seq.hi}) on axis {k} and extent 1 "
                    "before it")
    return b.shape[:k] + (seq,) + b.shape[k + 1:]


def sequence_of(shape):
    """The SeqLen in `shape`, or None."""
    return next((d for d in shape if isinstance(d, SeqLen)), None)


def _values_per_sample(shape) -> tuple:
    """(c, k): a sample of `shape` holds c * S^k values."""
    c, k = 1, 0
    for d in shape[1:]:
        if isinstance(d, SeqLen):
            k += 1
        else:
            c *= d
    return c, k


def _axis_ok(node: Node, axis: int, rank: int, lowest: int):
    if not lowest <= axis < rank:
        _fail(node, f"axis={axis} is out of range [{lowest}, {rank - 1}] for rank {rank}")


def _div(node: Node, shapes):
    return _binary(node, shapes)          # two tensors (graph.add_node checks the count)


def _softmax(node: Node, shapes):
    axis, rank = node.attrs["axis"], len(shapes[0])
    if axis == 0 or (isinstance(axis, int) and axis == -rank):
        _fail(node, "axis 0 is the batch dimension: a softmax over it would mix the samples of a batch")
    _axis_ok(node, axis, rank, 1)
    scale = node.attrs.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating))
                              or not np.isfinite(scale)):
        _fail(node, f"scale must be a finite number or None, got {scale!r}")
    if len(shapes) == 2 and _binary(node, shapes) != tuple(shapes[0]):
        _fail(node, f"mask {format_shape(shapes[1])} must broadcast to x {format_shape(shapes[0])}")
    return shapes[0]


def _clip(node: Node, shapes):
    lo, hi = node.attrs.get("min"), node.attrs.get("max")
    for key, v in (("min", lo), ("max", hi)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
                              or math.isnan(v)):
            _fail(node, f"{key} must be a number (not NaN) or None, got {v!r}")
    if lo is not None and hi is not None and lo > hi:
        _fail(node, f"min must be <= max, got min={lo}, max={hi}")
    return shapes[0]


def _concat(node: Node, shapes):
    axis, first = node.attrs["axis"], shapes[0]
    _axis_ok(node, axis, len(first), 1)
    if any(isinstance(s[axis], SeqLen) for s in shapes if len(s) > axis):
        _fail(node, f"axis {axis} is the sequence dimension: a concatenation along it is not supported")
    total = 0
    for i, s in enumerate(shapes):
        if len(s) != len(first) or any(s[d] != first[d] for d in range(len(s)) if d != axis):
            _fail(node, f"input {i} has shape {format_shape(s)}, which differs from input 0 "
                        f"{format_shape(first)} outside axis {axis}")
        total += s[axis]
    return tuple(first[:axis]) + (total,) + tuple(first[axis + 1:])


def _pool(node: Node, shapes):
    (x,) = shapes
    _rank(node, x, 4, "NCHW")
    kernel = _window_ints(node, "kernel_size", node.attrs["kernel_size"], 2, 1)
    oh, ow = _windows(node, x, kernel, node.attrs["ceil_mode"])
    if node.op == "avg_pool2d" and not node.attrs.get("count_include_pad", True):
        pads, stride = node.attrs["pads"], node.attrs["stride"]
        for i, o in enumerate((oh, ow)):
            # window o covers [o * s - b, o * s - b + k): the first and the last are the ones that
            # may miss x [0, n) entirely
            if pads[i] >= kernel[i] or (o - 1) * stride[i] - pads[i] >= x[2 + i]:
                _fail(node, f"with count_include_pad=False, a window on spatial axis {i} lies wholly in the "
                            f"padding (kernel {kernel[i]}, pads {pads[i]}, {pads[2 + i]}, input {x[2 + i]}): "
                            "its mean would be 0 / 0; pads must be smaller than the kernel")
    return (x[0], x[1], oh, ow)


def _global_pool(node: Node, shapes):
    (x,) = shapes
    _rank(node, x, 4, "NCHW")
    return (x[0], x[1], 1, 1)


def _flatten(node: Node, shapes):
    (x,) = shapes
    start = node.attrs["start_dim"]
    _axis_ok(node, start, len(x), 1)
    return tuple(x[:start]) + (math.prod(x[start:]),)


def _reshape(node: Node, shapes):
    (x,) = shapes
    target = tuple(node.attrs["shape"])
    seq = sequence_of(target)
    if seq is not None and seq != sequence_of(x):
        _fail(node, f"shape={format_shape(target)} holds a sequence dimension that x {format_shape(x)} lacks")
    want, have = _values_per_sample((None,) + target), _values_per_sample(x)
    if want != have:
        count = lambda c, k: f"{c}" + " * S" * k  # noqa: E731
        shown = format_shape(target) if seq is not None else target
        _fail(node, f"shape={shown} holds {count(*want)} values per sample, but x {format_shape(x)} has "
                    f"{count(*have)}")
    return (x[0],) + target


def _transpose(node: Node, shapes):
    (x,) = shapes
    perm = tuple(node.attrs["perm"])
    if sorted(perm) != list(range(len(x))):
        _fail(node, f"perm={perm} is not a permutation of the {len(x)} axes of x {format_shape(x)}")
    if perm[0] != 0:
        _fail(node, f"perm={perm} would move the batch dimension (perm[0] must be 0)")
    return tuple(x[p] for p in perm)


PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _pad(node: Node, shapes):
    (x,) = shapes
    pads, mode, rank = tuple(node.attrs["pads"]), node.attrs["mode"], len(x)
    if len(pads) != 2 * rank:
        _fail(node, f"pads must hold 2 * rank = {2 * rank} entries (begins, then ends), got {len(pads)}")
    if min(pads) < 0:
        _fail(node, f"pads must be >= 0, got {pads}")
    if pads[0] or pads[rank]:
        _fail(node, f"pads={pads} would pad the batch dimension (axis 0)")
    if mode not in PAD_MODES:
        _fail(node, f"mode must be one of {PAD_MODES}, got {mode!r}")
    for i in range(1, rank):
        if mode in ("reflect", "circular") and max(pads[i], pads[rank + i]) > x[i] - (mode == "reflect"):
            _fail(node, f"{mode} padding of axis {i} by {pads[i]}, {pads[rank + i]} needs a dimension longer "
                        f"than the padding, got {x[i]}")
    return (x[0],) + tuple(x[i] + pads[i] + pads[rank + i] for i in range(1, rank))


def _layer_norm(node: Node, shapes):
    (x,) = shapes
    ns = tuple(node.attrs["normalized_shape"])
    if not 1 <= len(ns) < len(x) or tuple(x[len(x) - len(ns):]) != ns:
        _fail(node, f"normalized_shape={ns} must be the last dimensions of x {format_shape(x)} (not the batch)")
    for key in ("weight", "bias"):
        v = node.consts.get(key)
        if v is not None and v.shape != ns:
            _fail(node, f"{key} must have shape {list(ns)} (normalized_shape), got {list(v.shape)}")
    return x


def _lrn(node: Node, shapes):
    (x,) = shapes
    if len(x) < 3:
        _fail(node, f"x must be N x C x D1 x ... (rank >= 3), got {format_shape(x)}")
    at = node.attrs
    size = at.get("size")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= MAX_WINDOW:
        _fail(node, f"size must be an int in 1..{MAX_WINDOW}, got {size!r}")
    for key in ("alpha", "beta", "bias"):
        v = at.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            _fail(node, f"{key} must be a finite number, got {v!r}")
    return x


def _embedding(node: Node, shapes):
    table = node.consts["weight"]
    if table.ndim != 2 or table.shape[0] == 0:
        _fail(node, f"weight must be a [V, D] table with V >= 1, got shape {list(table.shape)}")
    if table.shape[0] > 1 << 24:
        _fail(node, f"the table has {table.shape[0]} rows; ids travel as float32, exact up to 2^24 rows")
    return tuple(shapes[0]) + (table.shape[1],)


def _additive_mask(node: Node, shapes):
    _rank(node, shapes[0], 2, "mask")
    fill = node.attrs.get("fill")
    if isinstance(fill, bool) or not isinstance(fill, (int, float)) or math.isnan(fill):
        _fail(node, f"fill must be a number (not NaN), got {fill!r}")
    return (shapes[0][0], 1, 1, shapes[0][1])


def _padded_positions(node: Node, shapes):
    _rank(node, shapes[0], 2, "ids")
    pad = node.attrs.get("pad")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        _fail(node, f"pad must be an int >= 0, got {pad!r}")
    return shapes[0]


def _select(node: Node, shapes):
    x, axis, index = shapes[0], node.attrs.get("axis"), node.attrs.get("index")
    if isinstance(axis, bool) or not isinstance(axis, int):
        _fail(node, f"axis must be an int, got {axis!r}")
    _axis_ok(node, axis, len(x), 1)
    extent = x[axis].lo if isinstance(x[axis], SeqLen) else x[axis]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < extent:
        _fail(node, f"index {index!r} is out of range [0, {extent}) of axis {axis}")
    return x[:axis] + x[axis + 1:]


REDUCE_MODES = ("sum", "mean", "l2", "max")


def _reduce(node: Node, shapes):
    x, at = shapes[0], node.attrs
    if at.get("mode") not in REDUCE_MODES:
        _fail(node, f"mode must be one of {REDUCE_MODES}, got {at.get('mode')!r}")
    axes = at.get("axes")
    if not isinstance(axes, tuple) or not axes or any(isinstance(a, bool) or not isinstance(a, int) for a in axes):
        _fail(node, f"axes must be a non-empty tuple of ints, got {axes!r}")
    if 0 in axes:
        _fail(node, "axis 0 is the batch dimension: a reduction over it would mix the samples of a batch")
    for a in axes:
        _axis_ok(node, a, len(x), 1)
    # one run of adjacent axes: the C++ step reads x as [outer, len, inner]
    if list(axes) != list(range(axes[0], axes[0] + len(axes))):
        _fail(node, f"axes={axes} must be increasing and contiguous (e.g. (1, 2)); transpose first")
    if not isinstance(at.get("keepdims"), bool):
        _fail(node, f"keepdims must be a bool, got {at.get('keepdims')!r}")
    if at["keepdims"]:
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


_RULES = {
    "conv2d": _conv2d, "linear": _linear, "matmul": _matmul, "batch_norm2d": _batch_norm2d,
    "add": _binary, "mul": _binary, "div": _div, "bmm": _bmm,
    "relu": _same, "relu6": _same, "clip": _clip, "leaky_relu": _same, "sigmoid": _same,
    "tanh": _same, "hardswish": _same, "erf": _same, "gelu": _same, "dropout": _same, "identity": _same,
    "softmax": _softmax, "concat": _concat,
    "max_pool2d": _pool, "avg_pool2d": _pool, "global_avg_pool2d": _global_pool,
    "flatten": _flatten, "reshape": _reshape,
    "transpose": _transpose, "pad": _pad, "hardsigmoid": _same, "layer_norm": _layer_norm,
    "lrn": _lrn, "embedding": _embedding, "additive_mask": _additive_mask, "select": _select,
    "padded_positions": _padded_positions, "reduce": _reduce,
}


# the ops a sequence dimension may pass through (see the module docstring)
SEQUENCE_OPS = ("linear", "matmul", "bmm", "add", "mul", "div", "relu", "relu6", "clip", "leaky_relu",
                "sigmoid", "tanh", "hardswish", "erf", "gelu", "dropout", "identity", "hardsigmoid",
                "softmax", "concat", "reshape", "transpose", "layer_norm", "embedding", "additive_mask",
                "padded_positions", "select", "reduce")


def check_sample_size(shape, what: str) -> None:
    """ValueError when a tensor of `shape` holds more than MAX_SAMPLE_ELEMENTS values per sample
    (a sequence dimension counted at its maximum)."""
    n = math.prod(d.hi if isinstance(d, SeqLen) else d for d in shape[1:])
    if n > MAX_SAMPLE_ELEMENTS:
        raise ValueError(f"{what}: shape {format_shape(shape)} holds {n} values per sample, more than "
                         f"2^31 (MAX_SAMPLE_ELEMENTS)")


def infer_shape(node: Node, input_shapes) -> tuple:
    """The output shape of `node` given its input shapes; ValueError if they do not fit."""
    shapes = [tuple(s) for s in input_shapes]
    seqs = {d for s in shapes for d in s if isinstance(d, SeqLen)}
    if seqs and node.op not in SEQUENCE_OPS:
        _fail(node, f"a {node.op} does not take the free sequence dimension (inputs "
                    f"{', '.join(format_shape(s) for s in shapes)})")
    if len(seqs) > 1:
        _fail(node, f"the inputs hold different sequence ranges {sorted(map(repr, seqs))}")
    shape = _RULES[node.op](node, shapes)
    check_sample_size(shape, f"{node.name} ({node.op})")
    return shape
