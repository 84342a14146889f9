"""Error compensation: float-graph rewrites that make int8 quantization lose less (issue 11).

Each function takes a *prepared* Graph (graph/passes.py: BatchNorm folded, ReLU / clip fused
into the producer's ``activation``) and returns a NEW Graph; the argument and its read-only
constants are never changed. Existing node and tensor names survive (calibration ranges are keyed
by tensor name); nodes a rewrite adds get fresh names.

* ``equalize``: cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through
  Weight Equalization and Bias Correction"). Rescales output channel i of a layer by 1 / s_i and
  the matching input channel of the next layer by s_i, so that both layers' per-channel weight
  ranges become equal. The float function is unchanged (ReLU is positively homogeneous); per-tensor
  weights stop being dominated by a few wide channels. Data-free.
* ``smooth``: SmoothQuant (Xiao et al. 2023). Moves activation outliers of a linear / matmul
  input into its weights: X' = X / s, W'[:, j] = W[:, j] * s_j. Needs per-channel max|X| from
  calibration data (``ChannelStats`` on ``smooth_targets``).
* ``correct_bias``: empirical bias correction (Nagel et al. 2019). Subtracts the expected output
  error that weight rounding causes, E[(W_q - W) x] = (W_q - W) E[x], from each layer's bias.
  Needs per-channel means of the layer inputs (``ChannelStats`` on ``bias_targets``).

Order in a pipeline: prepare -> equalize -> smooth -> calibrate (ranges and bias statistics on the
rewritten graph) -> correct_bias -> lower. The ranges must be observed after ``smooth``: it changes
the values of the tensors it smooths (under their old names).

Weights are handled in one canonical form, float64 ``[O, Cg, K]`` with ``groups``: rows are
output channels, Cg the input channels of one group, K the kernel taps (1 for linear / matmul;
a matmul's ``b [K, N]`` is read as ``b.T``). Input channel c = g * Cg + j is read by rows
``g * O / groups ... (g + 1) * O / groups - 1`` at column j.
"""
from __future__ import annotations


import numpy as np

from .graph import Graph
from .graph.ir import Node

__all__ = ["equalize", "ChannelStats", "smooth_targets", "smooth", "bias_targets", "correct_bias"]

_LAYERS = ("conv2d", "linear", "matmul")
_HOMOGENEOUS = (None, "relu")        # f(x / s) == f(x) / s for s > 0: clip / relu6 are not
_CLE_TOLERANCE = 1e-8                # stop equalizing when no scale moves by more than this
_SMOOTH_RANGE = (1e-5, 1e5)          # SmoothQuant scales are clamped into this range


# ---- canonical weights --------------------------------------------------------------------------

def _weight3(node: Node) -> np.ndarray:
    """The node's weight as float64 [O, Cg, K] (see the module docstring)."""
    if node.op == "conv2d":
        w = node.consts["weight"]
        return w.reshape(w.shape[0], w.shape[1], -1).astype(np.float64)
    w = node.consts["weight"] if node.op == "linear" else node.consts["b"].T
    return w.astype(np.float64)[:, :, None]


def _groups(node: Node) -> int:
    return node.attrs["groups"] if node.op == "conv2d" else 1


def _store_weight3(node: Node, w3: np.ndarray) -> None:
    """Write a canonical weight back into ``node.consts`` (float32, the op's own layout)."""
    if node.op == "conv2d":
        node.consts["weight"] = w3.reshape(node.consts["weight"].shape).astype(np.float32)
    elif node.op == "linear":
        node.consts["weight"] = w3[:, :, 0].astype(np.float32)
    else:
        node.consts["b"] = np.ascontiguousarray(w3[:, :, 0].T).astype(np.float32)


def _by_input_channel(w3: np.ndarray, groups: int) -> np.ndarray:
    """A view [G, O/G, Cg, K] of w3: axis (0, 2) flattened is the input channel."""
    o, cg, k = w3.shape
    return w3.reshape(groups, o // groups, cg, k)


def _in_absmax(w3: np.ndarray, groups: int) -> np.ndarray:
    """max |W| over everything that reads input channel c, for each c: [G * Cg]."""
    return np.abs(_by_input_channel(w3, groups)).max(axis=(1, 3)).reshape(-1)


def _scale_inputs(w3: np.ndarray, groups: int, s: np.ndarray) -> np.ndarray:
    """w3 with every weight reading input channel c multiplied by s[c]."""
    o, cg, k = w3.shape
    return (_by_input_channel(w3, groups) * s.reshape(groups, 1, cg, 1)).reshape(o, cg, k)


def _consumers(g: Graph) -> dict[str, list[Node]]:
    readers: dict[str, list[Node]] = {}
    for node in g.nodes:
        for name in dict.fromkeys(node.inputs):
            readers.setdefault(name, []).append(node)
    return readers


def _rebuild(g: Graph, nodes: list[Node]) -> Graph:
    return Graph.from_nodes(g.input_specs(), nodes, g.outputs, g.name)


def _check_graph(graph, fn: str) -> None:
    if not isinstance(graph, Graph):
        raise TypeError(f"{fn}: graph must be an eightbit Graph, got {type(graph).__name__}")


def _quantized_input(g: Graph, node: Node) -> bool:
    """Whether eb.quantize's lowering gives this layer int8 weights: a linear / matmul reading a
    4-D tensor stays float32 (int8 4-D tensors are NHWC inside; its last axis is not the graph's)."""
    return node.op == "conv2d" or len(g.tensors[node.inputs[0]].shape) != 4


# ---- cross-layer equalization -------------------------------------------------------------------

def _cle_pairs(g: Graph) -> list[tuple[Node, Node]]:
    """(layer1, layer2): layer1's output, read by layer2 alone and not a graph output, has its
    channels on the axis layer2 contracts (conv -> conv; linear / matmul -> linear / matmul)."""
    readers, outputs = _consumers(g), set(g.outputs)
    pairs = []
    for n1 in g.nodes:
        if n1.op not in _LAYERS or n1.attrs.get("activation") not in _HOMOGENEOUS or n1.output in outputs:
            continue
        users = readers.get(n1.output, [])
        if len(users) == 1 and users[0].op in _LAYERS and (users[0].op == "conv2d") == (n1.op == "conv2d"):
            pairs.append((n1, users[0]))
    return pairs


def equalize(graph: Graph, *, iterations: int = 10) -> Graph:
    """Cross-layer equalization of every layer1 -> layer2 pair (see the module docstring).

    For output channel i of layer1: r1 = max|W1[i]|, r2 = max|W2 reading channel i|,
    s = sqrt(r1 / r2); W1[i] and b1[i] are divided by s, W2's input channel i multiplied by s,
    which makes both ranges sqrt(r1 * r2). Pairs: conv2d -> conv2d (any groups, depthwise
    included) and linear / matmul -> linear / matmul, where layer1's activation is None or
    "relu" (clip and relu6 are not scale-invariant), its output feeds only layer2 and is not a
    graph output. A layer in the middle of a chain is in two pairs: all pairs are balanced in
    turn, ``iterations`` times at most, stopping early once no scale moves by more than 1e-8.
    Channels with r1 or r2 zero are left alone. Computed in float64, stored as float32.
    """
    _check_graph(graph, "equalize")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)):
        raise TypeError(f"equalize: iterations must be an int, got {iterations!r}")
    if iterations < 1:
        raise ValueError(f"equalize: iterations must be >= 1, got {iterations}")
    pairs = _cle_pairs(graph)
    w3 = {n.name: _weight3(n) for pair in pairs for n in pair}
    bias = {n1.name: n1.consts["bias"].astype(np.float64) for n1, _ in pairs if "bias" in n1.consts}
    for _ in range(int(iterations)):
        moved = 0.0
        for n1, n2 in pairs:
            r1 = np.abs(w3[n1.name]).max(axis=(1, 2))
            r2 = _in_absmax(w3[n2.name], _groups(n2))
            live = (r1 > 0) & (r2 > 0)
            s = np.ones_like(r1)
            s[live] = np.sqrt(r1[live] / r2[live])
            w3[n1.name] /= s[:, None, None]
            if n1.name in bias:
                bias[n1.name] /= s
            w3[n2.name] = _scale_inputs(w3[n2.name], _groups(n2), s)
            moved = max(moved, float(np.max(np.abs(s - 1.0), initial=0.0)))
        if moved <= _CLE_TOLERANCE:
            break
    nodes = []
    for node in graph.nodes:
        node = node.copy()
        if node.name in w3:
            _store_weight3(node, w3[node.name])
        if node.name in bias:
            node.consts["bias"] = bias[node.name].astype(np.float32)
        nodes.append(node)
    return _rebuild(graph, nodes)


# ---- per-channel statistics ---------------------------------------------------------------------

class ChannelStats:
    """Per-channel running mean and max |x| of named tensors, streamed batch by batch.

        stats = ChannelStats(smooth_targets(g))
        for batch in calibration:
            g.run(batch, on_tensor=stats.observe)
        stats.absmax("ln_out"), stats.mean("ln_out")

    The channel axis is 1 for 4-D (NCHW) tensors and the last axis otherwise (a linear layer's
    input features, [N, D] or [N, T, D] token sequences). Memory: three float64 numbers per
    channel, whatever the number of batches. Tensors not named at construction are ignored.
    """

    def __init__(self, names):
        if isinstance(names, str):
            names = [names]
        self._names = list(dict.fromkeys(names))
        for name in self._names:
            if not isinstance(name, str) or not name:
                raise TypeError(f"ChannelStats: tensor names must be non-empty str, got {name!r}")
        self._sum: dict[str, np.ndarray] = {}
        self._absmax: dict[str, np.ndarray] = {}
        self._count: dict[str, int] = {}

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def observe(self, name: str, array) -> None:
        """Fold one batch of tensor ``name`` into its statistics (``on_tensor`` of Graph.run)."""
        if name not in self._names:
            return
        x = np.asarray(array)
        if x.ndim < 2 or x.dtype.kind != "f":
            raise ValueError(f"ChannelStats: tensor {name!r} must be a float array of rank >= 2 "
                             f"(batch first), got dtype {x.dtype} shape {x.shape}")
        axis = 1 if x.ndim == 4 else x.ndim - 1
        rows = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
        if not np.isfinite(rows).all():
            raise ValueError(f"ChannelStats: tensor {name!r} has NaN or infinite values")
        if name in self._sum and self._sum[name].shape[0] != rows.shape[1]:
            raise ValueError(f"ChannelStats: tensor {name!r} had {self._sum[name].shape[0]} channels, "
                             f"this batch has {rows.shape[1]}")
        total = rows.sum(axis=0, dtype=np.float64)
        amax = np.abs(rows).max(axis=0, initial=0.0).astype(np.float64)
        if name in self._sum:
            self._sum[name] += total
            np.maximum(self._absmax[name], amax, out=self._absmax[name])
            self._count[name] += rows.shape[0]
        else:
            self._sum[name], self._absmax[name], self._count[name] = total, amax, rows.shape[0]

    def _check(self, name: str, fn: str) -> None:
        if name not in self._names:
            raise KeyError(f"ChannelStats.{fn}: tensor {name!r} is not watched (watched: {self._names})")
        if not self._count.get(name):
            raise ValueError(f"ChannelStats.{fn}: tensor {name!r} was never observed (empty calibration?)")

    def mean(self, name: str) -> np.ndarray:
        """Mean of each channel over every batch, position and token seen: float64 [C]."""
        self._check(name, "mean")
        return self._sum[name] / self._count[name]

    def absmax(self, name: str) -> np.ndarray:
        """max |x| of each channel over everything seen: float64 [C]."""
        self._check(name, "absmax")
        return self._absmax[name].copy()


def _channels(stats: ChannelStats, name: str, what: str, expected: int, fn: str) -> np.ndarray:
    if not isinstance(stats, ChannelStats):
        raise TypeError(f"{fn}: stats must be a ChannelStats, got {type(stats).__name__}")
    v = stats.mean(name) if what == "mean" else stats.absmax(name)
    if v.shape != (expected,):
        raise ValueError(f"{fn}: statistics of tensor {name!r} have {v.shape[0]} channels, the graph "
                         f"has {expected} (were they observed on another graph?)")
    return v


# ---- SmoothQuant --------------------------------------------------------------------------------

def _smooth_plan(g: Graph) -> list[tuple[str, list[Node], str]]:
    """(tensor X, the linear / matmul nodes reading it, how X / s is made) for each X smooth handles:

    "layer_norm"  X feeds only those layers and is not a graph output; its producer is a
                  layer_norm: divide the norm's weight and bias.
    "rows"        same, the producer a linear / matmul with activation None or "relu": divide its
                  output rows and bias.
    "mul"         X is a graph input, or a layer_norm output also read elsewhere (a post-LN
                  residual) or a graph output: a new ``mul`` node by the constant 1 / s feeds the
                  layers. Its input is float32 in eb.quantize (a graph input or a layer_norm, both
                  float steps), so the mul is a float32 step too and the layers read int8 X / s.
    Other producers (an int8 step such as a GELU table or an add) would quantize X before any
    division could help: those tensors are skipped, as are 4-D ones (their layers stay float).
    """
    readers, outputs = _consumers(g), set(g.outputs)
    plan = []
    for name in [*g.inputs, *(n.output for n in g.nodes)]:
        users = readers.get(name, [])
        layers = [n for n in users if n.op in ("linear", "matmul")]
        if not layers or len(g.tensors[name].shape) == 4:
            continue
        p = g.producer(name)
        alone = len(layers) == len(users) and name not in outputs
        if alone and p is not None and p.op == "layer_norm":
            plan.append((name, layers, "layer_norm"))
        elif alone and p is not None and p.op in ("linear", "matmul") and p.attrs["activation"] in _HOMOGENEOUS:
            plan.append((name, layers, "rows"))
        elif p is None or p.op == "layer_norm":
            plan.append((name, layers, "mul"))
    return plan


def smooth_targets(graph: Graph) -> list[str]:
    """The tensors ``smooth`` rewrites: observe their ``absmax`` with a ChannelStats first."""
    _check_graph(graph, "smooth_targets")
    return [name for name, _, _ in _smooth_plan(graph)]


def _fresh_name(taken: set, base: str) -> str:
    """``base``, or ``base_k`` with the first k that no node or tensor uses; reserved in taken."""
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def smooth(graph: Graph, stats: ChannelStats, alpha: float = 0.5) -> Graph:
    """SmoothQuant: migrate activation outliers of linear / matmul inputs into their weights.

    For each tensor X of ``smooth_targets(graph)`` (channels on its last axis), read by linear /
    matmul layers W_1..W_m: s_j = max|X_j|^alpha / max_k(max|W_k[:, j]|)^(1 - alpha), clamped to
    [1e-5, 1e5] (1 for a channel whose activation or weights are all zero). The layers' input
    columns are multiplied by s_j and X is divided by s upstream (see ``_smooth_plan``): folded
    into a layer_norm's weight / bias (a weight of ones is created if absent) or a producing
    layer's rows, else by a new float32 ``mul`` node (fresh name, "<X>_smooth") by 1 / s.
    alpha in (0, 1): the share of the outlier moved into the weights (0.5 balances both).
    ``stats``: max |X| per channel observed on ``graph`` itself. Returns a new graph with the same
    float function; smoothed tensors keep their names but have new ranges: calibrate after this.
    """
    _check_graph(graph, "smooth")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise TypeError(f"smooth: alpha must be a real number in (0, 1), got {alpha!r}")
    if not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"smooth: alpha must be in (0, 1), got {alpha}")
    alpha = float(alpha)
    w3: dict[str, np.ndarray] = {}
    bias: dict[str, np.ndarray] = {}
    norms: dict[str, dict] = {}                 # layer_norm name -> new consts
    inserts: dict[str, Node] = {}               # first layer name -> mul node to put before it
    rename: dict[str, tuple[str, str]] = {}     # layer name -> (X, X / s)
    taken = set(graph.tensors) | {n.name for n in graph.nodes}

    def weight(node):
        if node.name not in w3:
            w3[node.name] = _weight3(node)
        return w3[node.name]

    for x, layers, mode in _smooth_plan(graph):
        channels = graph.tensors[x].shape[-1]
        ax = _channels(stats, x, "absmax", channels, "smooth")
        aw = np.max([_in_absmax(weight(n), 1) for n in layers], axis=0)
        live = (ax > 0) & (aw > 0)
        s = np.ones(channels)
        s[live] = np.clip(ax[live] ** alpha / aw[live] ** (1.0 - alpha), *_SMOOTH_RANGE)
        for n in layers:
            w3[n.name] = _scale_inputs(weight(n), 1, s)
        p = graph.producer(x)
        if mode == "layer_norm":
            consts = norms.setdefault(p.name, dict(p.consts))
            shape = p.attrs["normalized_shape"]
            consts["weight"] = (consts.get("weight", np.ones(shape, np.float32)).astype(np.float64) / s).astype(np.float32)
            if "bias" in consts:
                consts["bias"] = (consts["bias"].astype(np.float64) / s).astype(np.float32)
        elif mode == "rows":
            w3[p.name] = weight(p) / s[:, None, None]
            if "bias" in p.consts:
                bias[p.name] = bias.get(p.name, p.consts["bias"].astype(np.float64)) / s
        else:
            out = _fresh_name(taken, f"{x}_smooth")
            inserts[layers[0].name] = Node("mul", out, [x], [out], {}, {"b": (1.0 / s).astype(np.float32)})
            for n in layers:
                rename[n.name] = (x, out)

    nodes = []
    for node in graph.nodes:
        if node.name in inserts:
            nodes.append(inserts[node.name])
        node = node.copy()
        if node.name in w3:
            _store_weight3(node, w3[node.name])
        if node.name in bias:
            node.consts["bias"] = bias[node.name].astype(np.float32)
        if node.name in norms:
            node.consts = norms[node.name]
        if node.name in rename:
            old, new = rename[node.name]
            node.inputs = [new if i == old else i for i in node.inputs]
        nodes.append(node)
    return _rebuild(graph, nodes)


# ---- bias correction ----------------------------------------------------------------------------

def _bias_layers(g: Graph) -> list[Node]:
    return [n for n in g.nodes if n.op in _LAYERS and _quantized_input(g, n)]


def bias_targets(graph: Graph) -> list[str]:
    """The input tensors of the layers ``correct_bias`` corrects: observe their ``mean`` first."""
    _check_graph(graph, "bias_targets")
    return list(dict.fromkeys(n.inputs[0] for n in _bias_layers(graph)))


def rounding_error(node: Node, w: np.ndarray, wq: np.ndarray, scales, mean: np.ndarray) -> np.ndarray:
    """The expected output error of each output channel, float64 [O], from rounding ``w`` (rows =
    output channels) to ``wq * scales`` on an input whose channel means are ``mean``: (W_q - W) @ m
    for linear / matmul; for conv2d, the sum over (c, kh, kw) of (W_q - W)[o, c, kh, kw] * m[c]
    (the zero padding at the borders is ignored: each tap is assumed to see the channel mean)."""
    scales = np.broadcast_to(np.asarray(scales, np.float64), (w.shape[0],))
    w_q = wq.astype(np.float64) * scales.reshape((-1,) + (1,) * (w.ndim - 1))
    dw = (w_q - w.astype(np.float64)).reshape(w.shape[0], w.shape[1], -1).sum(axis=2)   # [O, Cg]
    groups = _groups(node)
    o, cg = dw.shape
    return np.einsum("goc,gc->go", dw.reshape(groups, o // groups, cg), mean.reshape(groups, cg)).reshape(o)


def correct_bias(graph: Graph, stats: ChannelStats, quantize_weights) -> Graph:
    """Subtract from each layer's bias the mean output error its weight rounding causes.

    ``quantize_weights(node, w) -> (wq int8 [O, ...], scales float32 [O])`` must be the quantizer
    the lowering will use (w: rows = output channels; a matmul's ``b.T``), or None for a layer
    that stays float32 (an excluded node: its bias is left alone). With W_q = wq * scale
    and m = mean of the input per channel (``stats`` on ``bias_targets(graph)``), the expected
    error is (W_q - W) @ m for linear / matmul and, for conv2d, sum over (c, kh, kw) of
    (W_q - W)[o, c, kh, kw] * m[c] for each output channel o (the zero padding at the borders is
    ignored: each tap is assumed to see the channel mean). new bias = bias - error (a bias is
    created when absent). A matmul becomes a ``linear`` node with the same node and output names,
    weight = b.T and the corrected bias (matmul has no bias). Layers of 4-D linear inputs stay
    float32 in eb.quantize and are left alone. In float64; the bias is stored as float32.
    """
    _check_graph(graph, "correct_bias")
    if not callable(quantize_weights):
        raise TypeError(f"correct_bias: quantize_weights must be callable (node, w), got "
                        f"{type(quantize_weights).__name__}")
    corrected: dict[str, Node] = {}
    for node in _bias_layers(graph):
        x_shape = graph.tensors[node.inputs[0]].shape
        channels = x_shape[1] if node.op == "conv2d" else x_shape[-1]
        m = _channels(stats, node.inputs[0], "mean", channels, "correct_bias")
        w = node.consts["weight"] if node.op != "matmul" else np.ascontiguousarray(node.consts["b"].T)
        result = quantize_weights(node, w)
        if result is None:                       # the layer stays float32: nothing to correct
            continue
        wq, scales = np.asarray(result[0]), np.asarray(result[1])
        if wq.shape != w.shape or wq.dtype != np.int8:
            raise ValueError(f"correct_bias: quantize_weights returned {wq.dtype} weights of shape "
                             f"{wq.shape} for {node.name}; expected int8 of shape {w.shape}")
        if scales.shape not in ((), (w.shape[0],)) or not np.all(np.isfinite(scales)):
            raise ValueError(f"correct_bias: quantize_weights returned scales of shape {scales.shape} "
                             f"for {node.name}; expected finite float32 of shape ({w.shape[0]},)")
        error = rounding_error(node, w, wq, scales, m)
        old = node.consts.get("bias")
        new_bias = (-error if old is None else old.astype(np.float64) - error).astype(np.float32)
        if node.op == "matmul":
            corrected[node.name] = Node("linear", node.name, list(node.inputs), list(node.outputs),
                                        {"activation": node.attrs.get("activation")},
                                        {"weight": w, "bias": new_bias})
        else:
            new = node.copy()
            new.consts["bias"] = new_bias
            corrected[node.name] = new
    return _rebuild(graph, [corrected.get(n.name) or n.copy() for n in graph.nodes])
