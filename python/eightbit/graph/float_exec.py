"""Float32 NumPy executor of a Graph: the reference a quantized model is compared with, and the
engine calibration streams activations from (layer 2 of DESIGN.md).

    y = g.run(x)                                  # one input: an array; one output: an array
    ys = g.run({"x": x, "mask": m})               # several outputs: {name: array}, output order
    g.run(batch, on_tensor=observe)               # calls observe(name, array) for every tensor
    every = g.run(x, return_all=True)             # {name: array} of every input and node output

``on_tensor(name, array)`` is called once per graph input (first, in input order) and then once
per node output, in node order, as soon as the tensor exists; the array is a read-only view
(holding on to it keeps its memory alive). Without ``return_all`` the executor drops each
intermediate after its last consumer, so a calibrator that folds each array into running
statistics and keeps nothing holds at most the live activations of one batch at a time.

Inputs: any floating dtype (converted to float32), and for an int64 input (token ids, an
attention mask) any integer dtype (converted to int64); the rank and every fixed dimension must
match the declared shape; inputs sharing a free batch dimension must have the same batch size,
and those with a sequence dimension the same length, in its range (the graph runs at that
length: sequence.at_length).
Everything is computed in float32 (GEMMs through NumPy's BLAS: convolution is im2col + one
matmul per group, depthwise a loop over the kh * kw taps; bmm is np.matmul of two float32
tensors, summing in float32); exact GELU evaluates erf in float64; reduce accumulates in
float64, in order, and rounds once.
"""
from __future__ import annotations

import math

import numpy as np

from .ir import FUSABLE_OPS, Node, format_shape
from .sequence import at_length, length_of, sequence_of_graph
from .shapes import window_out


def run(graph, inputs, *, on_tensor=None, return_all: bool = False):
    """Run `graph` on `inputs` (an array for a one-input graph, else {name: array}).

    Returns the single output as an array, several outputs as ``{name: array}`` (in
    ``graph.outputs`` order), or with ``return_all`` ``{name: array}`` of every tensor.
    """
    if not graph.outputs and not return_all:
        raise ValueError(f"run: graph {graph.name!r} has no outputs; mark one with g.output(t)")
    if on_tensor is not None and not callable(on_tensor):
        raise TypeError(f"run: on_tensor must be callable (name, array), got {type(on_tensor).__name__}")
    if sequence_of_graph(graph) is not None:           # run the graph at this run's length
        named = inputs if isinstance(inputs, dict) else {graph.inputs[0]: inputs} if len(graph.inputs) == 1 else {}
        # (a bad call, e.g. several inputs given as one array, is _bind_inputs' to report)
        length = length_of({n: graph.tensors[n].shape for n in graph.inputs}, named)
        if length is not None:
            graph = at_length(graph, length)
    feeds = _bind_inputs(graph, inputs)
    last_use: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            last_use[name] = i
    keep = set(graph.outputs)
    env: dict[str, np.ndarray] = {}

    def emit(name: str, arr: np.ndarray) -> None:
        env[name] = arr
        if on_tensor is not None:
            view = arr.view()
            view.flags.writeable = False
            on_tensor(name, view)
        if not return_all and name not in keep and name not in last_use:
            del env[name]                                  # nothing reads it

    for name in graph.inputs:
        emit(name, feeds[name])
    for i, node in enumerate(graph.nodes):
        y = KERNELS[node.op](node, *[env[name] for name in node.inputs])
        if node.op in FUSABLE_OPS:
            y = apply_activation(y, node.attrs["activation"])
        emit(node.output, y)
        if not return_all:
            for name in set(node.inputs):
                if last_use[name] == i and name not in keep:
                    del env[name]
    if return_all:
        return env
    if len(graph.outputs) == 1:
        return env[graph.outputs[0]]
    return {name: env[name] for name in graph.outputs}


def _bind_inputs(graph, inputs) -> dict[str, np.ndarray]:
    names = graph.inputs
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise ValueError(f"run: unknown input(s) {unknown}; the graph's inputs are {names}")
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ValueError(f"run: missing input(s) {missing}; the graph's inputs are {names}")
    elif len(names) == 1:
        inputs = {names[0]: inputs}
    else:
        raise TypeError(f"run: the graph has {len(names)} inputs {names}; pass a dict {{name: array}}")
    feeds, batch_from = {}, None
    for name in names:
        arr = np.asarray(inputs[name])
        integer = graph.tensors[name].dtype == "int64"
        if arr.dtype.kind not in ("iu" if integer else "f"):
            raise TypeError(f"run: input {name!r} must be {'an integer' if integer else 'a float32'} array, "
                            f"got dtype {arr.dtype}")
        declared = graph.tensors[name].shape
        if arr.ndim != len(declared) or any(d is not None and d != s for d, s in zip(declared, arr.shape)):
            raise ValueError(f"run: input {name!r} must have shape {format_shape(declared)}, got {list(arr.shape)}")
        if declared[0] is None:
            if batch_from is None:
                batch_from = name
            elif feeds[batch_from].shape[0] != arr.shape[0]:
                raise ValueError(f"run: inputs {batch_from!r} and {name!r} share the free batch dimension "
                                 f"but have batch sizes {feeds[batch_from].shape[0]} and {arr.shape[0]}")
        feeds[name] = np.ascontiguousarray(arr, dtype=np.int64 if integer else np.float32)
    return feeds


def apply_activation(y: np.ndarray, act) -> np.ndarray:
    if act is None:
        return y
    if act == "relu":
        return np.maximum(y, np.float32(0))
    return np.clip(y, np.float32(act[1]), np.float32(act[2]))


# ---- window helpers -----------------------------------------------------------------------------

def _padded(x: np.ndarray, pads, kernel, stride, dilation, out, value: float) -> np.ndarray:
    """x [N, C, H, W] padded by (top, left) and at the end by at least (bottom, right), more
    where a ceil_mode window runs past it, so that every window lies inside; fill `value`."""
    top, left, bottom, right = pads
    need = [(o - 1) * s + (k - 1) * d + 1 for o, s, k, d in zip(out, stride, kernel, dilation)]
    bottom = max(bottom, need[0] - x.shape[2] - top)
    right = max(right, need[1] - x.shape[3] - left)
    if not (top or left or bottom or right):
        return x
    xp = np.full(x.shape[:2] + (x.shape[2] + top + bottom, x.shape[3] + left + right), value, np.float32)
    xp[:, :, top:top + x.shape[2], left:left + x.shape[3]] = x
    return xp


def _tap(xp: np.ndarray, i: int, j: int, stride, dilation, out) -> np.ndarray:
    """View [N, C, OH, OW] of kernel tap (i, j) of every window."""
    (sh, sw), (dh, dw), (oh, ow) = stride, dilation, out
    return xp[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]


def _window_geometry(node: Node, x: np.ndarray, kernel):
    a = node.attrs
    stride, dilation, pads = a["stride"], a.get("dilation", (1, 1)), a["pads"]
    ceil_mode = a.get("ceil_mode", False)
    out = tuple(window_out(x.shape[2 + i], kernel[i], stride[i], dilation[i], pads[i], pads[2 + i], ceil_mode)
                for i in range(2))
    return stride, dilation, pads, out


# ---- kernels: one per op ------------------------------------------------------------------------

def _binarized(node: Node, x, axis: int):
    """A binary node's input (passes.binarize): -1 where x < threshold (one per channel on
    ``axis``, or one for all), else +1; other nodes' x as it is."""
    t = node.attrs.get("binary_threshold")
    if t is None:
        return x
    t = np.asarray(t, np.float32)
    if t.ndim:
        t = t.reshape([-1 if d == axis % x.ndim else 1 for d in range(x.ndim)])
    return np.where(x < t, np.float32(-1), np.float32(1))


def _conv2d(node: Node, x):
    x = _binarized(node, x, 1)
    w, bias = node.consts["weight"], node.consts.get("bias")
    groups = node.attrs["groups"]
    m, cg, kh, kw = w.shape
    n, c = x.shape[:2]
    stride, dilation, pads, out = _window_geometry(node, x, (kh, kw))
    xp = _padded(x, pads, (kh, kw), stride, dilation, out, 0.0)
    if cg == 1 and groups > 1:
        # depthwise (with channel multiplier m // c): a multiply-add per tap beats tiny GEMMs
        w4 = w.reshape(c, m // c, kh, kw)
        y = np.zeros((n, c, m // c) + out, np.float32)
        for i in range(kh):
            for j in range(kw):
                y += _tap(xp, i, j, stride, dilation, out)[:, :, None] * w4[None, :, :, i, j, None, None]
        y = y.reshape((n, m) + out)
    else:
        # im2col: one [N*OH*OW, Cg*kh*kw] patch matrix per group, then one GEMM per group
        ext = [(k - 1) * d + 1 for k, d in zip((kh, kw), dilation)]
        win = np.lib.stride_tricks.sliding_window_view(xp, ext, axis=(2, 3))
        win = win[:, :, :(out[0] - 1) * stride[0] + 1:stride[0], :(out[1] - 1) * stride[1] + 1:stride[1],
                  ::dilation[0], ::dilation[1]]
        win = win.reshape((n, groups, cg) + out + (kh, kw)).transpose(1, 0, 3, 4, 2, 5, 6)
        cols = np.ascontiguousarray(win).reshape(groups, n * out[0] * out[1], cg * kh * kw)
        wmat = w.reshape(groups, m // groups, cg * kh * kw).transpose(0, 2, 1)
        y = np.matmul(cols, wmat)                                     # [G, N*OH*OW, M/G]
        y = y.reshape((groups, n) + out + (m // groups,)).transpose(1, 0, 4, 2, 3).reshape((n, m) + out)
        y = np.ascontiguousarray(y)
    if bias is not None:
        y += bias[:, None, None]
    return y


def _rows_matmul(x, b):
    """x [N, ..., K] @ b [K, M] as one 2-D product: NumPy runs a 3-D @ 2-D (transposed) product
    outside BLAS, 20x slower for token sequences."""
    return np.matmul(x.reshape(-1, x.shape[-1]), b).reshape(x.shape[:-1] + (b.shape[1],))


def _linear(node: Node, x):
    y = _rows_matmul(_binarized(node, x, -1), node.consts["weight"].T)
    bias = node.consts.get("bias")
    return y + bias if bias is not None else y


def _matmul(node: Node, x):
    return _rows_matmul(x, node.consts["b"])


def _bmm(node: Node, a, b):
    return np.matmul(a, b)                  # float32 BLAS (sums in float32)


def _batch_norm2d(node: Node, x):
    c = node.consts
    scale = c["weight"].astype(np.float64) / np.sqrt(c["var"].astype(np.float64) + node.attrs["eps"])
    shift = c["bias"] - c["mean"].astype(np.float64) * scale
    shape = (-1,) + (1,) * (x.ndim - 2)
    return x * scale.astype(np.float32).reshape(shape) + shift.astype(np.float32).reshape(shape)


def _relu(node, x):
    return np.maximum(x, np.float32(0))


def _relu6(node, x):
    return np.clip(x, np.float32(0), np.float32(6))


def _clip(node, x):
    lo, hi = node.attrs["min"], node.attrs["max"]
    y = x if lo is None else np.maximum(x, np.float32(lo))
    return y if hi is None else np.minimum(y, np.float32(hi))


def _leaky_relu(node, x):
    return np.where(x > 0, x, x * np.float32(node.attrs["negative_slope"]))


def _sigmoid(node, x):
    e = np.exp(-np.abs(x))                      # never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(np.float32)


def _tanh(node, x):
    return np.tanh(x)


def _erf(node, x):
    return erf(x.astype(np.float64)).astype(np.float32)


def _hardswish(node, x):
    return x * np.clip(x + np.float32(3), np.float32(0), np.float32(6)) / np.float32(6)


# erf(x) from the rational approximations of Cephes ndtr.c (S. L. Moshier, public domain; the
# ones SciPy's erf compiles): |x| <= 1: x * T(x^2) / U(x^2); 1 < |x|: 1 - exp(-x^2) P(|x|) / Q(|x|)
# (Cephes switches to another pair past 8, where erf is 1 in float32 and double alike: we clamp
# to 6). Evaluated in float64, the error is below 4e-16 (tested against math.erf).
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
          7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
          2.26290000613890934246e4, 4.92673942608635921086e4)
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
           9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
           9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
           1.65666309194161350182e3, 5.57535340817727675546e2)


def erf(x) -> np.ndarray:
    """The error function, elementwise, in float64 (abs error < 4e-16)."""
    x = np.asarray(x, np.float64)
    a = np.minimum(np.abs(x), 6.0)
    z = a * a
    small = a * np.polyval(_ERF_T, z) / np.polyval(_ERF_U, z)
    large = 1.0 - np.exp(-z) * np.polyval(_ERFC_P, a) / np.polyval(_ERFC_Q, a)
    return np.copysign(np.where(a <= 1.0, small, large), x)


def _gelu(node, x):
    if node.attrs["approximate"] == "tanh":
        inner = np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x * x * x)
        return np.float32(0.5) * x * (1 + np.tanh(inner))
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1.0 + erf(x64 / math.sqrt(2.0)))).astype(np.float32)


def _softmax(node, x, mask=None):
    axis = node.attrs["axis"]
    if node.attrs.get("scale") is not None:
        x = x * np.float32(node.attrs["scale"])
    if mask is not None:
        x = x + mask
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _identity(node, x):
    return x


def _add(node, a, b=None):
    return a + (node.consts["b"] if b is None else b)


def _mul(node, a, b=None):
    return a * (node.consts["b"] if b is None else b)


def _div(node, a, b):
    with np.errstate(divide="ignore", invalid="ignore"):   # IEEE: x / 0 is inf or NaN, as in C++
        return a / b


def _concat(node, *xs):
    return np.concatenate(xs, axis=node.attrs["axis"])


def _max_pool2d(node, x):
    kernel = node.attrs["kernel_size"]
    stride, dilation, pads, out = _window_geometry(node, x, kernel)
    xp = _padded(x, pads, kernel, stride, dilation, out, -np.inf)
    y = _tap(xp, 0, 0, stride, dilation, out).copy()
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            if i or j:
                np.maximum(y, _tap(xp, i, j, stride, dilation, out), out=y)
    return y


def _pool_counts(n: int, k: int, s: int, pad_begin: int, pad_end: int, out: int, include_pad: bool):
    """Divisor along one axis, as PyTorch: a window [o*s - b, o*s - b + k) clipped to the padded
    input [-b, n + e) with count_include_pad, else to the input [0, n)."""
    start = np.arange(out) * s - pad_begin
    end = np.minimum(start + k, n + pad_end)
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, n)
    return np.maximum(end - start, 0)


def _avg_pool2d(node, x):
    kernel, include = node.attrs["kernel_size"], node.attrs["count_include_pad"]
    stride, dilation, pads, out = _window_geometry(node, x, kernel)
    xp = _padded(x, pads, kernel, stride, dilation, out, 0.0)
    y = _tap(xp, 0, 0, stride, dilation, out).copy()
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            if i or j:
                y += _tap(xp, i, j, stride, dilation, out)
    counts = [_pool_counts(x.shape[2 + a], kernel[a], stride[a], pads[a], pads[2 + a], out[a], include)
              for a in range(2)]
    div = np.outer(counts[0], counts[1]).astype(np.float32)
    return np.divide(y, div, out=np.zeros_like(y), where=div > 0)


def _global_avg_pool2d(node, x):
    return x.mean(axis=(2, 3), keepdims=True, dtype=np.float32)


def _flatten(node, x):
    start = node.attrs["start_dim"]
    return x.reshape(x.shape[:start] + (-1,))


def _reshape(node, x):
    return x.reshape((x.shape[0],) + tuple(node.attrs["shape"]))


def _transpose(node, x):
    return np.ascontiguousarray(np.transpose(x, node.attrs["perm"]))


_NUMPY_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad(node, x):
    pads, mode = node.attrs["pads"], node.attrs["mode"]
    width = [(pads[i], pads[x.ndim + i]) for i in range(x.ndim)]
    if mode == "constant":
        return np.pad(x, width, constant_values=np.float32(node.attrs["value"]))
    return np.pad(x, width, mode=_NUMPY_PAD_MODES[mode])


def _hardsigmoid(node, x):
    y = np.float32(node.attrs["alpha"]) * x + np.float32(node.attrs["beta"])
    return np.clip(y, np.float32(0), np.float32(1))


def _layer_norm(node, x):
    axes = tuple(range(x.ndim - len(node.attrs["normalized_shape"]), x.ndim))
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    var = np.square(x64 - mean).mean(axis=axes, keepdims=True)
    y = (x64 - mean) / np.sqrt(var + node.attrs["eps"])
    if "weight" in node.consts:
        y = y * node.consts["weight"]
    if "bias" in node.consts:
        y = y + node.consts["bias"]
    return y.astype(np.float32)


def _lrn(node, x):
    """ONNX LRN: a window of `size` channels, (size - 1) // 2 before c and size // 2 after (the
    sum of squares in float64, the result rounded to float32 once)."""
    at = node.attrs
    size = int(at["size"])
    sq = np.square(x.astype(np.float64))
    c = x.shape[1]
    before, after = (size - 1) // 2, size // 2
    padded = np.pad(sq, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
    csum = np.cumsum(padded, axis=1)
    csum = np.concatenate([np.zeros_like(csum[:, :1]), csum], axis=1)
    window = csum[:, size:size + c] - csum[:, :c]
    y = x / (at["bias"] + at["alpha"] / size * window) ** at["beta"]
    return y.astype(np.float32)


def integer_ids(x: np.ndarray, limit: int, where: str, what: str) -> np.ndarray:
    """`x` (integers, or float32 holding exact integers) as int64 ids, every one in [0, limit);
    ValueError naming the first bad value otherwise. Nothing is indexed before this check."""
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x) | (x != np.floor(x)) | (x < 0) | (x >= limit)
    else:
        bad = (x < 0) | (x >= limit)
    if np.any(bad):
        v = x.reshape(-1)[int(np.flatnonzero(bad.reshape(-1))[0])].item()
        raise ValueError(f"{where}: {what} {v:g} is not an integer in [0, {limit})")
    return x.astype(np.int64)


def _embedding(node, ids):
    table = node.consts["weight"]
    return table[integer_ids(ids, table.shape[0], node.name, "token id")]


def _additive_mask(node, mask):
    keep = integer_ids(mask, 2, node.name, "attention mask value")
    out = np.where(keep == 0, np.float32(node.attrs["fill"]), np.float32(0)).astype(np.float32)
    return out.reshape(mask.shape[0], 1, 1, mask.shape[1])


def _padded_positions(node, ids):
    pad = node.attrs["pad"]
    real = ids != pad
    return np.where(real, pad + np.cumsum(real, axis=1), pad).astype(np.float32)


def _select(node, x):
    return np.ascontiguousarray(np.take(x, node.attrs["index"], axis=node.attrs["axis"]))


def _reduce(node, x):
    """Sum / mean / L2 norm / max over node.attrs["axes"]: each output value accumulates its
    inputs one after the other in C order, in float64, and is rounded to float32 once (the C++
    float_reduce step's order, so the same bits; NumPy's pairwise sum would differ in the last
    float64 bits). Max is exact (NaN propagates)."""
    at = node.attrs
    axes = at["axes"]
    out_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    # [outer..., len, inner...]: the reduced axes are contiguous (shapes._reduce)
    rows = x.reshape(x.shape[:axes[0]] + (-1,) + x.shape[axes[-1] + 1:])
    k = axes[0]
    if at["mode"] == "max":
        y = np.max(rows, axis=k)
    else:
        acc = np.zeros(rows.shape[:k] + rows.shape[k + 1:], np.float64)
        for i in range(rows.shape[k]):
            v = np.take(rows, i, axis=k).astype(np.float64)
            acc += v * v if at["mode"] == "l2" else v
        if at["mode"] == "mean":
            acc /= rows.shape[k]
        elif at["mode"] == "l2":
            acc = np.sqrt(acc)
        y = acc.astype(np.float32)
    y = y.reshape(out_shape)
    return y if at["keepdims"] else y.reshape(tuple(d for i, d in enumerate(x.shape) if i not in axes))


KERNELS = {
    "conv2d": _conv2d, "linear": _linear, "matmul": _matmul, "batch_norm2d": _batch_norm2d,
    "relu": _relu, "relu6": _relu6, "clip": _clip, "leaky_relu": _leaky_relu, "sigmoid": _sigmoid,
    "tanh": _tanh, "hardswish": _hardswish, "erf": _erf, "gelu": _gelu, "softmax": _softmax,
    "dropout": _identity, "identity": _identity, "add": _add, "mul": _mul, "div": _div, "bmm": _bmm,
    "concat": _concat,
    "max_pool2d": _max_pool2d, "avg_pool2d": _avg_pool2d, "global_avg_pool2d": _global_avg_pool2d,
    "flatten": _flatten, "reshape": _reshape,
    "transpose": _transpose, "pad": _pad, "hardsigmoid": _hardsigmoid, "layer_norm": _layer_norm,
    "lrn": _lrn, "embedding": _embedding, "additive_mask": _additive_mask, "select": _select,
    "padded_positions": _padded_positions, "reduce": _reduce,
}
