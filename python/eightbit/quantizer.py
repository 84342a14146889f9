"""eb.quantize: a float Graph and calibration batches -> a QuantizedModel (static int8).

1. ``prepare_for_quantization``: BatchNorm folded into conv / linear, ReLU / ReLU6 / Clip fused
   into their producer, dropout and identities removed (graph/passes.py).
2. Calibration: the float graph runs batch by batch; every tensor's range is observed in bounded
   memory (calibrate/).
3. Lowering to a Plan (model/plan.py): per-channel symmetric int8 weights, int32 biases
   (scale s_x * s_w[c]), per-tensor activations of ``activation_dtype`` from the calibrated
   ranges; NHWC inside; quantize / dequantize steps where the graph enters and leaves int8.

Each node lowers to one plan step:

    conv2d, linear, matmul (constant b)    conv / linear, fused activation as a clamp
    add, mul (two tensors)                 add / mul; a fused ReLU is the output's range
    max_pool2d                             max_pool (keeps its input's quantization)
    avg_pool2d, global_avg_pool2d          avg_pool / global_avg_pool
    concat                                 concat (axis mapped to NHWC)
    relu, relu6, clip, leaky_relu, sigmoid, tanh, hardsigmoid, hardswish, erf, gelu
                                           lut: the float function on the 256 input codes
    flatten, reshape                       reshape (NCHW order, as the float graph)
    softmax                                float32 softmax on the dequantized input

Linear / matmul layers over token sequences (inputs of rank >= 3, [N, T, K]: transformers) quantize
their input per token at run time instead (``dynamic_linear`` steps, float32 output; ``per_token``):
a transformer's residual stream carries "massive activations" (one or two channels, or the first
token, 10-50x the rest) that a per-tensor scale cannot hold. The reshapes, activations, adds and
muls between such layers then stay float32 too (``float_neighbourhood``).

Nodes named in ``exclude``, and nodes no step can run (add / mul with a constant operand,
batch norm that did not fold, transpose, pad, layer_norm, and bmm / div of two tensors, which have
no int8 form), stay float32: they run as ``float`` steps on dequantized inputs.
"""
from __future__ import annotations

import warnings

import numpy as np

from .calibrate import Calibrator, iterate_batches
from .graph import Graph
from .graph.passes import prepare_for_quantization
from .graph.shapes import sequence_of
from .model import Plan, QuantizedModel, Step, TensorSpec
from .numerics.qparams import choose_qparams, quantize_weight_symmetric
from .numerics.tables import make_lookup_table

_NCHW_TO_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}
_LUT_OPS = ("relu", "relu6", "clip", "leaky_relu", "sigmoid", "tanh", "hardsigmoid", "hardswish", "erf", "gelu")
_INT32 = np.iinfo(np.int32)
MIN_SQNR_DB = 20.0   # eb.quantize warns when the model's output SQNR is below this (docs/accuracy.md)


def quantize(graph: Graph, calibration=None, *, method: str = "minmax", percentile: float = 99.99,
             per_channel: bool = True, activation_dtype=None, activation_symmetric: bool = False,
             requant: str = "float", exclude=(), dynamic: bool = False, per_token="auto", equalize: bool = False,
             smooth=None, bias_correction: bool = False, accuracy_budget=None, eval_data=None, metric=None,
             min_sqnr=MIN_SQNR_DB, progress=None, embeddings: str = "int8",
             attention: str = "float", binary=(), binary_threshold="mean", weight_bits: int = 8,
             block_size: int = 32, weight_levels=None, client=None) -> QuantizedModel:
    """Static int8 quantization of ``graph``; see the module docstring for what each node becomes.

    ``calibration``: an iterable of input batches (an array for a single-input graph, or a dict by
    input name), consumed once (twice with ``smooth``: a one-shot iterator is then kept in a list).
    ``method``: "minmax", "moving_average", "percentile" (uses ``percentile``), "entropy" or "mse".
    ``exclude``: node names that stay float32. ``requant``: "float" (ONNX Runtime's
    requantization) or "fixed" (TFLite's integer-only). ``activation_dtype``: "uint8" (default) or
    "int8"; ``activation_symmetric=True``: int8 activations with zero point 0.
    ``dynamic=True``: no calibration; linear / matmul layers get int8 weights and inputs quantized
    per row at run time (``dynamic_linear`` steps), everything else stays float32.
    ``per_token`` (static): "auto" (default) quantizes the input of every linear / matmul layer over
    a token sequence (input rank >= 3) per token at run time, with a float32 output; True does so
    for every linear / matmul layer, False for none (per-tensor scales from calibration).
    ``embeddings``: "int8" (default) stores embedding tables of 64 KiB or more as int8 with one
    float32 scale per row (symmetric: a 4x smaller table; a row reads float32(q) * scale), "float"
    keeps them float32.

    ``attention``: "float" (default) keeps attention's products and softmax float32; "int8" runs
    each bmm -> softmax -> bmm block (``attention_roles``) as a dynamic_bmm step (Q K^T, both
    operands quantized at run time) and a softmax_bmm step (uint8 probabilities from an integer
    exp table, then P V on int8 V): docs/numerics.md, "int8 attention". Static and dynamic.

    Error compensation (docs/accuracy.md): ``equalize=True`` (cross-layer equalization),
    ``smooth=alpha`` (SmoothQuant for linear layers), ``bias_correction=True``.

    Safe defaults: an add / mul whose neighbours all run in float32 stays float32; after
    quantizing, the output SQNR on the last calibration batch is measured and a
    ``QuantizationWarning`` names the most sensitive nodes when it is below ``min_sqnr`` dB
    (None: no check).

    ``binary``: names of linear / conv2d (groups 1) nodes that become binary layers: weights
    reduced to their signs times one scale per output channel (mean |w|), inputs to +-1 against
    a threshold per input channel (x < threshold is -1), products by XOR and popcount
    (eightbit.binary); calibration sees the binarized graph. ``binary_threshold``: "mean" (each
    channel's mean on the calibration batches, measured with the layers before already binary:
    a ReLU's output would otherwise be all +1) or a number for every channel (0.0: the plain
    sign). Keep the first and last layers int8, as binary networks do. Not with dynamic=True or
    accuracy_budget.

    ``weight_bits`` (2-8, default 8; or {node name: bits}, 8 for the nodes not named): the
    weights' grid, codes in [-(2^(b-1) - 1), 2^(b-1) - 1]. ``weight_levels=L`` (an odd count from 3
    to 255, instead of weight_bits) puts every layer with weights on the int8 kernels with codes in
    [-(L-1)/2, (L-1)/2], stored in the fewest bits that hold them.
    At 2-4 bits linear / matmul layers get block-quantized weights (one float32 scale per
    ``block_size`` input channels, a power of two in [16, 256]) and run as blockwise_linear steps,
    float32 in and out with their input rows quantized to symmetric int8 at run time
    (eightbit.lowbit). Every other layer with weights (convolutions; linear layers whose K the block
    does not divide; every layer at 5-7 bits) runs on the int8 kernels with per-channel codes on
    that grid, stored packed in the .eb file (b bits a weight).

    Mixed precision: ``accuracy_budget=0.01`` keeps the fewest nodes float32 whose relative metric
    drop on ``eval_data`` (``x`` or ``(x, labels)``) stays within the budget; ``metric``:
    "accuracy", "cosine", "sqnr" (default without labels) or a callable ``fn(pred, target)``.
    The model then has ``qm.tradeoffs`` (every candidate measured).

    Dask (eightbit[distributed], docs/distributed.md): ``calibration`` may be a dask array,
    dataframe or {input name: dask array}, observed partition by partition on the workers and
    merged exactly (the same model as its partitions as a list of NumPy batches);
    ``client``: the dask.distributed Client for that and for the accuracy-budget search's
    per-node evaluations (None: Dask's default scheduler, and the search runs here).
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"graph: expected an eightbit Graph, got {type(graph).__name__}")
    exclude = check_exclude(graph, exclude)
    check_embeddings(embeddings)
    _check_attention(attention)
    if binary and (dynamic or accuracy_budget is not None):
        raise ValueError("binary: not with dynamic=True or accuracy_budget (binary layers are static and chosen "
                         "by name)")
    grid = WeightGrid.of(graph, weight_bits, block_size, weight_levels)
    overlap = exclude & set([binary] if isinstance(binary, str) else binary)
    if overlap:
        raise ValueError(f"binary and exclude both name {sorted(overlap)}")
    if dynamic:
        static_only = {"accuracy_budget": accuracy_budget is not None, "smooth": smooth not in (None, False),
                       "equalize": equalize, "bias_correction": bias_correction,
                       "activation_symmetric": activation_symmetric}
        if any(static_only.values()):
            raise ValueError(f"{', '.join(k for k, v in static_only.items() if v)}: static quantization only, "
                             "not with dynamic=True")
        if per_token != "auto":
            raise ValueError("per_token: static quantization only (dynamic=True quantizes every linear per row)")
        dtype = _activation_dtype(activation_dtype, activation_symmetric)
        if requant not in ("float", "fixed"):
            raise ValueError(f"requant: expected 'float' or 'fixed', got {requant!r}")
        prepared = prepare_for_quantization(graph)
        params = CalibratedQParams(prepared, {}, dtype, per_channel, embeddings=embeddings, attention=attention)
        params.weight_grid = grid
        return lower_to_model(prepared, params, exclude=exclude, requant=requant, dynamic=True)
    if min_sqnr is not None and (isinstance(min_sqnr, bool) or not isinstance(min_sqnr, (int, float))):
        raise TypeError(f"min_sqnr: expected a number of dB or None, got {min_sqnr!r}")
    if accuracy_budget is None and (eval_data is not None or metric is not None):
        raise ValueError("eval_data / metric: they go with accuracy_budget=")
    cal = calibrate(graph, calibration, method=method, percentile=percentile, per_channel=per_channel,
                    activation_dtype=activation_dtype, activation_symmetric=activation_symmetric,
                    requant=requant, per_token=per_token, equalize=equalize, smooth=smooth,
                    bias_correction=bias_correction, progress=progress, embeddings=embeddings, attention=attention,
                    binary=binary, binary_threshold=binary_threshold, client=client)
    cal.params.weight_grid = grid
    if accuracy_budget is not None:
        from .accuracy.budget import mixed_precision
        return mixed_precision(cal, accuracy_budget, eval_data, metric, exclude, client=client)
    qm = cal.default_model(exclude)
    if min_sqnr is not None:
        from .accuracy.analyze import check_output_sqnr
        check_output_sqnr(cal, qm, float(min_sqnr))
    return qm


class WeightGrid:
    """Bits per weight, per node (eb.quantize's weight_bits: one number, or {node name: bits} with
    8 for the others), and the block size of the block-quantized linear layers."""

    def __init__(self, bits: int = 8, per_node=None, block_size: int = 32, levels=None):
        self.bits, self.per_node, self.block_size = bits, dict(per_node or {}), block_size
        self.levels = levels    # an odd level count for every layer instead of bits (int8 kernels)

    @classmethod
    def of(cls, graph, weight_bits, block_size, levels=None) -> "WeightGrid":
        from .reference.blockwise import BLOCK_SIZES

        def checked(v, where):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v not in range(2, 9):
                raise ValueError(f"weight_bits{where}: expected 2 to 8, got {v!r}")
            return int(v)
        if isinstance(weight_bits, dict):
            unknown = set(weight_bits) - {n.name for n in graph.nodes}
            if unknown:
                raise ValueError(f"weight_bits: no node named {sorted(unknown)} in the graph")
            grid = cls(8, {k: checked(v, f"[{k!r}]") for k, v in weight_bits.items()}, block_size)
        else:
            grid = cls(checked(weight_bits, ""), None, block_size)
        if min([grid.bits, *grid.per_node.values()]) <= 4 and (isinstance(block_size, bool)
                                                              or block_size not in BLOCK_SIZES):
            raise ValueError(f"block_size: expected one of {BLOCK_SIZES}, got {block_size!r}")
        if levels is not None:
            if weight_bits != 8:
                raise ValueError("weight_levels: give weight_bits or weight_levels, not both")
            if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or not 3 <= levels <= 255 \
                    or levels % 2 == 0:
                raise ValueError(f"weight_levels: expected an odd int from 3 to 255, got {levels!r}")
            grid.levels = int(levels)
        return grid

    def bits_for(self, node) -> int:
        """Bits a code of the node's weights takes (with levels: the fewest that hold them)."""
        if self.levels is not None:
            return ((self.levels - 1) // 2).bit_length() + 1
        return self.per_node.get(node.name, self.bits)


class QuantizationWarning(UserWarning):
    """eb.quantize made a model whose output is far from the float model's (docs/accuracy.md)."""


SMALL_TABLE_BYTES = 1 << 16   # embedding tables below this stay float32


def check_embeddings(embeddings) -> None:
    if embeddings not in ("int8", "float"):
        raise ValueError(f"embeddings: expected 'int8' or 'float', got {embeddings!r}")


def check_exclude(graph: Graph, exclude) -> set:
    """``exclude`` (a node name or names) as a set; ValueError naming any the graph lacks."""
    exclude = set([exclude] if isinstance(exclude, str) else exclude)
    unknown = exclude - {n.name for n in graph.nodes}
    if unknown:
        raise ValueError(f"exclude: no node named {sorted(unknown)} in the graph")
    return exclude


def _activation_dtype(activation_dtype, symmetric: bool) -> np.dtype:
    if activation_dtype is None:
        return np.dtype(np.int8 if symmetric else np.uint8)
    dtype = np.dtype(activation_dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
        raise ValueError(f"activation_dtype: expected 'uint8' or 'int8', got {activation_dtype!r}")
    if symmetric and dtype != np.dtype(np.int8):
        raise ValueError("activation_symmetric: symmetric activations are int8 with zero point 0; "
                         f"activation_dtype={activation_dtype!r} contradicts it")
    return dtype


class Calibrated:
    """A float graph ready to lower with different choices, without calibrating again: the
    prepared (and compensated) graph, the quantization parameters of every tensor, and the last
    calibration batch with the float outputs on it (for checks). ``lower(exclude)`` builds a
    QuantizedModel in which exactly the nodes in ``exclude`` (and nodes with no int8 step) are
    float32: the tools of eightbit.accuracy call it once per candidate."""

    def __init__(self, graph: Graph, params, requant: str, check_feeds=None, check_outputs=None):
        self.graph, self.params, self.requant = graph, params, requant
        self.check_feeds, self.check_outputs = check_feeds, check_outputs

    def default_model(self, exclude=()) -> QuantizedModel:
        """What eb.quantize returns: ``exclude`` and the adds / muls among float neighbours float32."""
        exclude = set(exclude)
        return self.lower(exclude | float_neighbourhood(self.graph, exclude, self.params.per_token))

    def lower(self, exclude=()) -> QuantizedModel:
        return lower_to_model(self.graph, self.params, exclude=exclude, requant=self.requant)

    def only_downstream(self, name: str):
        """The model with only node ``name`` quantized, cut to the part that ``name`` changes:
        ``name`` and the nodes it feeds, up to the graph's first output, with the float32 tensors
        entering that part as inputs (feed them the float graph's values: every node outside it is
        float32). None when the first output does not depend on ``name``."""
        g = self.graph
        changed, nodes = {g.node(name).output}, [g.node(name)]
        for n in g.nodes[g.nodes.index(nodes[0]) + 1:]:
            if changed.intersection(n.inputs):
                changed.add(n.output)
                nodes.append(n)
        out = g.outputs[0]
        if out not in changed:
            return None
        needed, kept = {out}, []
        for n in reversed(nodes):          # only what the first output needs
            if n.output in needed:
                kept.append(n)
                needed.update(n.inputs)
        nodes = kept[::-1]
        inputs = list(dict.fromkeys(t for n in nodes for t in n.inputs if t not in changed))
        part = Graph.from_nodes(g.input_specs(inputs), nodes, [out], f"{name} and after")
        return lower_to_model(part, self.params, exclude={n.name for n in nodes} - {name}, requant=self.requant)


def calibrate(graph: Graph, calibration, *, method: str = "minmax", methods=None, percentile: float = 99.99,
              per_channel: bool = True, activation_dtype=None, activation_symmetric: bool = False,
              requant: str = "float", per_token="auto", equalize: bool = False, smooth=None,
              bias_correction: bool = False, progress=None, embeddings: str = "int8", attention: str = "float",
              binary=(), binary_threshold="mean", client=None):
    """Prepare, compensate and calibrate ``graph`` once: a ``Calibrated`` (or, with
    ``methods=[...]``, {method: Calibrated} from one shared pass over the batches). Dask data
    (or an eightbit.distributed.DaskCalibration) is observed on the workers of ``client``."""
    if not isinstance(graph, Graph):
        raise TypeError(f"graph: expected an eightbit Graph, got {type(graph).__name__}")
    dtype = _activation_dtype(activation_dtype, activation_symmetric)
    if requant not in ("float", "fixed"):
        raise ValueError(f"requant: expected 'float' or 'fixed', got {requant!r}")
    if not (per_token == "auto" or isinstance(per_token, bool)):
        raise ValueError(f"per_token: expected 'auto', True or False, got {per_token!r}")
    check_embeddings(embeddings)
    _check_attention(attention)
    if calibration is None:
        raise ValueError("calibration: static quantization needs calibration batches (or dynamic=True)")
    names = [method] if methods is None else list(methods)
    if not names:
        raise ValueError("methods: expected at least one calibration method")
    calibrators = {m: Calibrator(m, percentile=percentile) for m in names}
    prepared = prepare_for_quantization(graph)
    if isinstance(calibration, dict) or hasattr(calibration, "__dask_graph__") \
            or hasattr(calibration, "observe_calibrators"):
        calibration = _dask_calibration(calibration, prepared, client)
    if equalize:
        from .compensation import equalize as _equalize
        prepared = _equalize(prepared)
    if smooth is not None and smooth is not False:
        from .compensation import ChannelStats, smooth as _smooth, smooth_targets
        if iter(calibration) is calibration:
            calibration = list(calibration)     # a one-shot iterator: kept for the second pass
        stats = ChannelStats(smooth_targets(prepared))
        for batch in iterate_batches(calibration, prepared.inputs, progress=progress):
            prepared.run(batch, on_tensor=stats.observe)
        prepared = _smooth(prepared, stats, 0.5 if smooth is True else float(smooth))
    if binary:
        if iter(calibration) is calibration:
            calibration = list(calibration)     # a one-shot iterator: kept for the passes below
        prepared = _binarize_calibrated(prepared, binary, binary_threshold, calibration, progress)
    bias_stats = None
    if bias_correction:
        from .compensation import ChannelStats, bias_targets
        bias_stats = ChannelStats(bias_targets(prepared))
    observers = [c.observe for c in calibrators.values()] + ([bias_stats.observe] if bias_stats else [])

    def observe(name, array):
        for fn in observers:
            fn(name, array)

    feeds = outputs = None
    if hasattr(calibration, "observe_calibrators") and bias_stats is None:
        feeds, outputs = calibration.observe_calibrators(prepared, calibrators)   # on the Dask workers
    else:
        for feeds in iterate_batches(calibration, prepared.inputs, progress=progress):
            outputs = prepared.run(feeds, on_tensor=observe)
    if len(prepared.outputs) == 1:
        outputs = {prepared.outputs[0]: outputs}
    result = {}
    for m, c in calibrators.items():
        params = CalibratedQParams(prepared, c.ranges(), dtype, per_channel, symmetric=activation_symmetric,
                                   bias_stats=bias_stats, per_token=per_token, embeddings=embeddings,
                                   attention=attention)
        result[m] = Calibrated(prepared, params, requant, feeds, outputs)
    return result if methods is not None else result[method]


def _dask_calibration(calibration, graph: Graph, client):
    """Dask data (or {input: dask array}) as an eightbit.distributed.DaskCalibration bound to
    ``graph``'s inputs; any other dict is left for iterate_batches to refuse."""
    if isinstance(calibration, dict) and not any(hasattr(v, "__dask_graph__") for v in calibration.values()):
        return calibration
    from .distributed.dask_calibration import DaskCalibration

    if not isinstance(calibration, DaskCalibration):
        calibration = DaskCalibration(calibration, client=client)
    return calibration.bound(graph, client)


def _binarize_calibrated(g: Graph, binary, threshold, calibration, progress) -> Graph:
    """graph.passes.binarize of the named nodes, in graph order, each threshold "mean" measured on
    the calibration batches through the graph as binarized so far (or the number given)."""
    from .compensation import ChannelStats
    from .graph.passes import binarize
    names = set([binary] if isinstance(binary, str) else binary)
    binarize(g, names)                                   # checks the names and ops first
    if threshold != "mean":
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not np.isfinite(threshold):
            raise ValueError(f"binary_threshold: expected 'mean' or a finite number, got {threshold!r}")
        return binarize(g, names, float(threshold))
    for node in [n for n in g.nodes if n.name in names]:
        stats = ChannelStats([node.inputs[0]])
        for feeds in iterate_batches(calibration, g.inputs, progress=progress):
            g.run(feeds, on_tensor=stats.observe)
        g = binarize(g, [node.name], {node.name: stats.mean(node.inputs[0]).astype(np.float32)})
    return g


def float_neighbourhood(g: Graph, exclude=(), per_token=False) -> set:
    """The add / mul nodes (of two tensors) with no int8 neighbour: every input is a graph input,
    a float node's output or another such add's, and every reader is a float node, another such
    add or the graph's output. Quantizing them gains nothing and costs a quantize / dequantize
    round trip and the error of a per-tensor grid (an attention mask added to float scores is the
    classic case). Next to a per-token linear layer (``per_token``: its policy, see
    ``per_token_linear``), whose input and output are float32, reshapes and activations are
    candidates too (a transformer's head split, its GELU). The largest such set: start from every
    candidate and drop, until nothing changes, each one that touches an int8 node."""
    token_linears = {n.name for n in g.nodes if per_token_linear(g, n, per_token)}
    float_nodes = {n.name for n in g.nodes if n.name in exclude or not _has_int8_step(g, n)} | token_linears

    def next_to_token_linear(n) -> bool:
        near = [g.producer(i) for i in n.inputs] + g.consumers(n.output)
        return any(m is not None and m.name in token_linears for m in near)

    candidates = {n.name for n in g.nodes if n.name not in float_nodes
                  and (n.op in ("add", "mul")
                       or (n.op in _LUT_OPS + ("reshape", "flatten") and next_to_token_linear(n)))}
    ok = float_nodes | candidates
    while True:
        drop = {name for name in candidates
                if not all(g.producer(i) is None or g.producer(i).name in ok for i in g.node(name).inputs)
                or not all(c.name in ok for c in g.consumers(g.node(name).output))}
        if not drop:
            return candidates
        candidates -= drop
        ok -= drop


ATTENTION_MODES = ("float", "int8")


def _check_attention(attention) -> None:
    if attention not in ATTENTION_MODES:
        raise ValueError(f"attention: expected one of {ATTENTION_MODES}, got {attention!r}")


def attention_roles(g: Graph, exclude=()) -> dict:
    """The attention blocks that ``attention="int8"`` lowers: bmm -> softmax over the last axis
    (scale and mask fused, graph.passes.fuse_masked_softmax) -> bmm reading the probabilities as
    its left operand, each tensor read only by the next node, no node excluded. {node name: role}:
    ("scores", alpha) for Q K^T (a dynamic_bmm step), ("softmax",) (no step of its own) and
    ("pv", softmax node, scale) for P V (a softmax_bmm step). Attention's 1/sqrt(d) folds into the
    dynamic_bmm's alpha when it is a power of two (then bit for bit the same scores); else it stays
    in the softmax_bmm, applied to the scores before the mask as the float graph does."""
    roles = {}
    for s in g.nodes:
        if s.op != "softmax" or s.name in exclude or s.output in g.outputs:
            continue
        rank = len(g.tensors[s.output].shape)
        qk, readers = g.producer(s.inputs[0]), g.consumers(s.output)
        if (s.attrs["axis"] % rank != rank - 1 or qk is None or qk.op != "bmm" or qk.name in exclude
                or qk.output in g.outputs or len(g.consumers(qk.output)) != 1 or len(readers) != 1):
            continue
        pv = readers[0]
        if pv.op != "bmm" or pv.name in exclude or pv.inputs[0] != s.output or pv.inputs[1] == s.output:
            continue
        scale = s.attrs.get("scale")
        alpha = 1.0
        if scale is not None and np.float32(scale) > 0 and np.frexp(np.float32(scale))[0] == 0.5:
            alpha, scale = float(scale), None        # a power of two: exact in the column scales
        roles[qk.name] = ("scores", alpha)
        roles[s.name] = ("softmax",)
        roles[pv.name] = ("pv", s, scale)
    return roles


def has_int8_form(op: str) -> bool:
    """Whether eb.quantize's lowering has an int8 step for graph op ``op`` (softmax: float32)."""
    return op != "softmax" and hasattr(_Lowering, f"_lower_{op}")


def per_token_linear(g: Graph, node, policy) -> bool:
    """Whether static quantization runs linear / matmul ``node`` with its input quantized per token
    (row) at run time and a float32 output (a dynamic_linear step): ``policy`` "auto" for inputs of
    rank >= 3 (token sequences [N, T, K]), True for every such layer, False for none. Only layers a
    dynamic_linear step can run (no fused activation but ReLU; 4-D inputs are NHWC-quantized
    convolution maps, never)."""
    if policy is False or node.op not in ("linear", "matmul"):
        return False
    rank = len(g.tensors[node.inputs[0]].shape)
    return rank != 4 and (policy is True or rank >= 3) and node.attrs.get("activation") in (None, "relu")


def _has_int8_step(g: Graph, node) -> bool:
    """Whether eb.quantize's lowering has an int8 step for ``node`` (softmax counts as float)."""
    if not has_int8_form(node.op):
        return False
    if node.op in ("linear", "matmul"):
        return len(g.tensors[node.inputs[0]].shape) != 4
    if node.op in ("add", "mul"):
        return len(node.inputs) == 2
    return True


class CalibratedQParams:
    """Quantization parameters chosen by eb.quantize: activations of one ``dtype`` from the
    calibrated ranges, symmetric int8 weights (per channel or per tensor) and int32 biases
    rounded from the float ones. The lowering asks a provider ``activation(tensor)`` and
    ``weights(node, w, bias, x_scale)``; an imported quantized model (onnx/import_quantized.py)
    answers them with the model's own values instead (``given = True``: they must be honored;
    ``activation`` may then return None and ``covers(node)`` says whether its weights are given)."""

    given = False

    def __init__(self, g: Graph, ranges: dict, dtype: np.dtype, per_channel: bool, symmetric: bool = False,
                 bias_stats=None, per_token=False, embeddings: str = "int8", attention="float"):
        self.attention = attention     # "int8": attention's products and softmax as int8 steps (attention_roles)
        self.g, self.ranges, self.dtype, self.per_channel = g, ranges, np.dtype(dtype), per_channel
        self.embeddings = embeddings   # "int8": embedding tables int8 per row (embedding_consts)
        self.symmetric = symmetric
        self.per_token = per_token     # which linear layers quantize their input per token: per_token_linear
        self.bias_stats = bias_stats   # compensation.ChannelStats of layer inputs: bias correction
        self.weight_grid = WeightGrid()  # bits per weight per node (eb.quantize(weight_bits=))

    def weight_bits(self, node) -> int:
        return self.weight_grid.bits_for(node)

    def blockwise(self, node, w: np.ndarray):
        """(codes, scales, bits, block size) of linear weights w [O, K] at 2-4 bits when the block
        size divides K; else None (the layer runs on the int8 kernels)."""
        bits, block = self.weight_bits(node), self.weight_grid.block_size
        if bits > 4 or w.shape[1] % block or self.weight_grid.levels is not None:
            return None
        from .reference.blockwise import quantize_blockwise
        return (*quantize_blockwise(w, block, bits), bits, block)

    def activation(self, name: str):
        """(scale float32, zero point as a scalar of the tensor's dtype) of a graph tensor."""
        if name not in self.ranges:
            raise ValueError(f"tensor {name!r} was never observed during calibration (was the iterable empty?)")
        lo, hi = self.ranges[name]
        try:
            return choose_qparams(np.float32(lo), np.float32(hi), self.dtype, symmetric=self.symmetric)
        except ValueError as e:
            producer = self.g.producer(name)
            where = f"output of node {producer.name!r}" if producer is not None else "graph input"
            raise ValueError(f"tensor {name!r} ({where}) cannot be quantized: {e}; "
                             "exclude the node, or calibrate with representative data") from None

    granularity = "row"   # dynamic_linear inputs: quantized per row at run time
    outliers = True       # dynamic_linear layers run their outlier weight columns in float32

    def embedding_consts(self, table: np.ndarray) -> dict:
        """An embedding step's constants: the float32 table, or (embeddings="int8") the table
        symmetric int8 per row with its float32 row scales. A table under 64 KiB stays float32
        (token types, a lookup of the mask: nothing to save, and their exact values kept)."""
        if self.embeddings == "float" or table.nbytes < SMALL_TABLE_BYTES:
            return {"table": table}
        try:
            q, scale = quantize_weight_symmetric(table, per_channel=True)
        except ValueError:  # a row too small for an int8 scale (subnormal): the table stays float32
            return {"table": table}
        return {"table": q, "row_scale": scale}

    def _int8_weights(self, w: np.ndarray, bits: int = 8):
        """(int8 weights [O, ...] (rows = output channels), float32 scales [O]): symmetric, per
        channel or per tensor, on the ``bits``-bit grid (or eb.quantize's level count)."""
        wq, ws = quantize_weight_symmetric(w, per_channel=self.per_channel, bits=bits, levels=self.weight_grid.levels)
        return wq, np.broadcast_to(ws, (w.shape[0],)).astype(np.float32)

    def dynamic_weights(self, node, w: np.ndarray):
        """A dynamic_linear layer's (int8 weights [O, K], scales [O], outlier columns): the columns
        ``outlier_columns`` picks run in float32 ({"outlier_cols", "outlier_w"}, or {} for none)
        and are 0 in the int8 weights."""
        cols = outlier_columns(w) if self.outliers else np.zeros(0, np.int64)
        bits = self.weight_bits(node)
        if not cols.size:
            return (*self._int8_weights(w, bits), {})
        rest = w.copy()
        rest[:, cols] = 0.0
        wq, ws = self._int8_weights(rest, bits)
        return wq, ws, {"outlier_cols": cols.astype(np.int32), "outlier_w": np.ascontiguousarray(w[:, cols], np.float32)}

    def weights(self, node, w: np.ndarray, bias, x_scale) -> dict:
        """int8 weights (rows = output channels), float32 scales [O] and the int32 bias. With bias
        correction, the bias first loses the mean output error the weight rounding causes on the
        calibration data (compensation.rounding_error): only layers that run in int8 get it."""
        wq, ws = self._int8_weights(w, self.weight_bits(node))
        if self.bias_stats is not None and node.inputs[0] in self.bias_stats.names:
            from .compensation import rounding_error
            error = rounding_error(node, w, wq, ws, self.bias_stats.mean(node.inputs[0]))
            bias = ((0.0 if bias is None else bias.astype(np.float64)) - error).astype(np.float32)
        return {"w": wq, "w_scale": ws, "bias": quantize_bias(node, bias, x_scale, ws, w.shape[0])}


OUTLIER_RATIO = 4.0     # a weight this many times its row's next largest runs in float32


def outlier_columns(w: np.ndarray) -> np.ndarray:
    """The input columns of a linear layer's weights w [O, K] that a dynamic_linear step runs in
    float32 (ascending): each row's largest |weight| where it is more than OUTLIER_RATIO times the
    row's next largest. Trained transformers have such weights where a "massive activation" neuron
    writes into the residual stream (all-MiniLM-L6-v2: 7.9, 21x its row's next, in layer 0's FFN
    down-projection); per-channel int8 would leave the rest of that row a few codes, and the neuron's
    own large input would set its token's scale. At most max(1, K // 64) columns, largest first."""
    a = np.abs(np.asarray(w, np.float64).reshape(w.shape[0], -1))
    if a.shape[1] < 2:
        return np.zeros(0, np.int64)
    top2 = np.partition(a, a.shape[1] - 2, axis=1)[:, -2:]
    ratio = top2[:, 1] / np.maximum(top2[:, 0], np.finfo(np.float32).tiny)
    rows = np.flatnonzero(ratio > OUTLIER_RATIO)
    if not rows.size:
        return np.zeros(0, np.int64)
    cols = {}
    for r in rows[np.argsort(-ratio[rows], kind="stable")]:
        c = int(np.argmax(a[r]))
        cols.setdefault(c, ratio[r])
    return np.sort(np.array(list(cols)[:max(1, a.shape[1] // 64)], np.int64))


def quantize_bias(node, bias, x_scale, w_scale: np.ndarray, channels: int) -> np.ndarray:
    """int32 bias = rne(b / (s_x * s_w[c])) (zeros without a bias); ValueError on int32 overflow."""
    bias_scale = (np.float32(x_scale) * w_scale).astype(np.float32)
    b = np.zeros(channels, np.float32) if bias is None else bias
    q = np.rint(b.astype(np.float64) / bias_scale.astype(np.float64))
    if np.any(np.abs(q) > _INT32.max):
        c = int(np.flatnonzero(np.abs(q) > _INT32.max)[0])
        raise ValueError(f"{node.name}: bias[{c}] = {float(b[c]):g} overflows int32 at scale "
                         f"{float(bias_scale[c]):g} (input scale x weight scale); the input range or "
                         "the weights of this channel are too small: exclude the node or recalibrate")
    return q.astype(np.int32)


def lower_to_model(graph: Graph, params, *, exclude=(), requant: str = "float",
                   dynamic: bool = False) -> QuantizedModel:
    """The QuantizedModel of a graph prepared for quantization (graph/passes.py) whose
    quantization ``params`` are known: a ``CalibratedQParams`` (eb.quantize) or the parameters an
    imported model carries (onnx/import_quantized.py). Nodes named in ``exclude`` stay float32.
    ``dynamic=True``: linear / matmul layers become dynamic_linear steps with the weights
    ``params.dynamic_weights(node, w)`` gives (see ``_DynamicLowering``)."""
    lowering = _DynamicLowering if dynamic else _Lowering
    return QuantizedModel(lowering(graph, params, set(exclude), requant).plan())


class _FloatParams:
    """No tensor has quantization parameters: every node becomes a float32 step (eb.compile)."""

    given = False
    dtype = None

    def activation(self, name):
        return None


def compile_float(graph: Graph) -> QuantizedModel:
    """``eb.compile``: the float32 graph as a C++ plan, no calibration and no int8. Identities are
    removed, BatchNorm folded into its conv / linear and activations fused into the layer before
    them (as ``eb.quantize`` does first); then every node is a C++ float32 step (a form none of them
    takes calls back into the NumPy float executor). Outputs are within float32 rounding of
    ``graph.run`` (the folding and the C++ kernels round differently, not more). The result runs,
    saves, loads and profiles like any model: ``m(x)``, ``m.save(path)``, ``m.profile(x)``."""
    if not isinstance(graph, Graph):
        raise TypeError(f"graph: expected an eightbit Graph, got {type(graph).__name__}")
    prepared = prepare_for_quantization(graph)
    return QuantizedModel(_Lowering(prepared, _FloatParams(), {n.name for n in prepared.nodes}, "float").plan())


class _Lowering:
    """Walks the prepared graph once, emitting plan steps and tensor specs. ``params`` (a
    CalibratedQParams or an imported model's) gives every activation's and weight's quantization;
    a node with a tensor that has none (``activation`` returns None) runs as a float step."""

    def __init__(self, g: Graph, params, exclude: set, requant: str):
        # A binary node (graph.passes.binarize) has no float form: the accuracy tools' models,
        # which exclude every node but one, keep it binary (eb.quantize refuses it in exclude=).
        binary = {n.name for n in g.nodes if "binary_threshold" in n.attrs}
        self.g, self.params, self.exclude, self.requant = g, params, set(exclude) - binary, requant
        self.dtype = getattr(params, "dtype", None)   # the one activation dtype of eb.quantize, if any
        self.tensors: dict = {}
        self.steps: list = []
        self.quantized: dict = {}  # graph tensor name -> plan name of its quantized form
        self.floats: dict = {}     # graph tensor name -> plan name of its float32 form
        int8_attention = getattr(params, "attention", "float") == "int8"
        self.attention = attention_roles(g, exclude) if int8_attention else {}
        self.p_scale = getattr(params, "attention_p_scale", "fixed")   # measured: docs/numerics.md

    def plan(self) -> Plan:
        for name in self.g.inputs:
            self._add_float(name, name)
        for node in self.g.nodes:
            self._lower(node)
        for name in self.g.outputs:
            self._float_output(name)
        return Plan(self.tensors, self.steps, list(self.g.inputs), list(self.g.outputs))

    # ---- tensors ------------------------------------------------------------------------------

    def _shape(self, name: str, quantized: bool) -> tuple:
        shape = self.g.tensors[name].shape
        return (shape[0], shape[2], shape[3], shape[1]) if quantized and len(shape) == 4 else shape

    def _add_float(self, graph_name: str, plan_name: str) -> str:
        self.tensors[plan_name] = TensorSpec(plan_name, np.dtype(np.float32), self.g.tensors[graph_name].shape)
        self.floats[graph_name] = plan_name
        return plan_name

    def _add_quantized(self, graph_name: str, qparams=None) -> str:
        """The plan tensor holding graph_name quantized, with its calibrated qparams (or given ones).
        Graph outputs keep their name for the float32 result, so their quantized form is "name:q"."""
        plan_name = f"{graph_name}:q" if graph_name in self.g.outputs or graph_name in self.tensors else graph_name
        scale, zp = qparams if qparams is not None else self._qparams(graph_name)
        self.tensors[plan_name] = TensorSpec(plan_name, np.asarray(zp).dtype, self._shape(graph_name, True),
                                             float(scale), int(zp))
        self.quantized[graph_name] = plan_name
        return plan_name

    def _qparams(self, name: str):
        qp = self.params.activation(name)
        if qp is None:
            raise ValueError(f"tensor {name!r} has no quantization parameters")
        return qp

    def _quantizable(self, node) -> bool:
        """Every tensor the node reads and writes has quantization parameters, all of one dtype
        (always so after calibration; an imported model leaves tensors without Q/DQ float, and
        runs a node mixing uint8 and int8 in float, as ONNX Runtime does). A 4-D tensor holding
        the sequence dimension stays float32: the executor keeps 4-D quantized tensors NHWC, a
        layout for images."""
        if any(len(s) == 4 and sequence_of(s) is not None
               for s in (self.g.tensors[n].shape for n in (*node.inputs, node.output))):
            return False
        if not self.params.given:
            return True
        if not self.params.covers(node):
            return False
        if per_token_linear(self.g, node, getattr(self.params, "per_token", False)):
            return True     # float in and out, its input quantized at run time: no tensor needs parameters
        qps = [self.params.activation(n) for n in (*node.inputs, node.output)]
        return all(qp is not None for qp in qps) and len({np.asarray(qp[1]).dtype for qp in qps}) == 1

    def _keeps_qparams(self, node, spec) -> bool:
        """A step that copies bytes (max_pool, reshape) gives its output the input's quantization:
        with given parameters that must be what the output was given."""
        if not self.params.given:
            return True
        scale, zp = self.params.activation(node.output)
        return float(np.float32(scale)) == spec.scale and int(zp) == spec.zero_point

    def _q(self, name: str) -> str:
        """The quantized form of a graph tensor, adding a quantize step on first use."""
        if name not in self.quantized:
            src = self.floats[name]
            self.steps.append(Step("quantize", (src,), self._add_quantized(name), source=f"quantize {name}"))
        return self.quantized[name]

    def _f(self, name: str) -> str:
        """The float32 form of a graph tensor, adding a dequantize step on first use."""
        if name not in self.floats:
            src = self.quantized[name]
            self.steps.append(Step("dequantize", (src,), self._add_float(name, f"{name}:f"),
                                   source=f"dequantize {name}"))
        return self.floats[name]

    def _float_output(self, name: str) -> None:
        if self.floats.get(name) != name:
            if name in self.floats:
                self._q(name)  # a float step's result that the model quantizes (given qparams): Q -> DQ
            self.steps.append(Step("dequantize", (self.quantized[name],), self._add_float(name, name),
                                   source=f"output {name}"))

    # ---- nodes --------------------------------------------------------------------------------

    def _lower(self, node) -> None:
        if node.op == "embedding":      # no float form to fall back to: always its own step
            self._lower_embedding(node)
            return
        if node.name in self.attention:
            self._lower_attention(node, self.attention[node.name])
            return
        handler = getattr(self, f"_lower_{node.op}", None)
        if (node.name in self.exclude or handler is None
                or (node.op != "softmax" and not self._quantizable(node)) or not handler(node)):
            self._float_step(node)

    def _step(self, op: str, node, inputs, attrs=None, consts=None, qparams=None) -> None:
        out = self._add_quantized(node.output, qparams)
        self.steps.append(Step(op, tuple(inputs), out, attrs or {}, consts or {}, source=node.name))

    def _float_step(self, node) -> None:
        if "binary_threshold" in node.attrs:
            raise ValueError(f"{node.name}: a binary layer has no float32 step (is it in exclude=, or does it "
                             "read a tensor that cannot be quantized?)")
        inputs = tuple(self._f(i) for i in node.inputs)
        final = node.output in self.g.outputs and not (self.params.given and self.params.activation(node.output))
        out = self._add_float(node.output, node.output if final else f"{node.output}:f")
        attrs = {"op": node.op, "attrs": dict(node.attrs), "int8_form": has_int8_form(node.op)}
        self.steps.append(Step("float", inputs, out, attrs, dict(node.consts), source=node.name))

    def _weights(self, node, w: np.ndarray, bias) -> dict:
        """int8 weights (rows = output channels), their scales [O] and the int32 bias."""
        x_scale, _ = self._qparams(node.inputs[0])
        consts = self.params.weights(node, w, bias, x_scale)
        zero_rows = np.flatnonzero(~np.any(w.reshape(w.shape[0], -1), axis=1))
        if zero_rows.size:
            warnings.warn(f"{node.name}: output channel(s) {zero_rows[:8].tolist()} have all-zero weights "
                          "(their outputs are the bias alone)", stacklevel=4)
        return consts

    def _binary(self, node) -> None:
        """A binary node (graph.passes.binarize): weights alpha * sign(w), attrs binary_threshold."""
        from .model.steps.xnor import pack_sign_bytes
        w = node.consts["weight"]
        conv = node.op == "conv2d"
        alpha = np.ascontiguousarray(np.abs(w.reshape(w.shape[0], -1))[:, 0], np.float32)  # every |w| of a row
        bias = node.consts.get("bias")
        consts = {"w_signs": pack_sign_bytes(w.transpose(0, 2, 3, 1) if conv else w), "w_scale": alpha,
                  "bias": np.zeros(w.shape[0], np.float32) if bias is None else np.asarray(bias, np.float32),
                  "threshold": np.ascontiguousarray(np.broadcast_to(
                      np.asarray(node.attrs["binary_threshold"], np.float32).reshape(-1), (w.shape[1],)))}
        attrs = {"activation": node.attrs.get("activation")}
        if conv:
            a = node.attrs
            attrs.update(strides=tuple(a["stride"]), pads=tuple(a["pads"]), dilations=tuple(a["dilation"]),
                         pad_value=0.0)
        self._step("binary_conv" if conv else "binary_linear", node, [self._q(node.inputs[0])], attrs, consts)

    def _lower_conv2d(self, node) -> bool:
        if "binary_threshold" in node.attrs:
            self._binary(node)
            return True
        a = node.attrs
        consts = self._weights(node, node.consts["weight"], node.consts.get("bias"))
        attrs = {"strides": tuple(a["stride"]), "pads": tuple(a["pads"]), "dilations": tuple(a["dilation"]),
                 "group": a["groups"], "activation": a.get("activation")}
        self._step("conv", node, [self._q(node.inputs[0])], {**attrs, "requant": self.requant, **self._grid(node)}, consts)
        return True

    def _lower_linear(self, node, weight=None) -> bool:
        if len(self.g.tensors[node.inputs[0]].shape) == 4:
            return False  # quantized 4-D tensors are NHWC: the last axis is not the float graph's
        if "binary_threshold" in node.attrs:
            self._binary(node)
            return True
        weight = node.consts["weight"] if weight is None else weight
        if self._blockwise_linear(node, weight):
            return True
        if per_token_linear(self.g, node, getattr(self.params, "per_token", False)):
            self._dynamic_linear(node, self.params.dynamic_weights(node, weight))
            return True
        consts = self._weights(node, weight, node.consts.get("bias"))
        attrs = {"activation": node.attrs.get("activation"), "requant": self.requant, **self._grid(node)}
        self._step("linear", node, [self._q(node.inputs[0])], attrs, consts)
        return True

    def _grid(self, node) -> dict:
        """{"w_bits": b} for int8-kernel weights on a narrower grid (eb.quantize(weight_bits=))."""
        bits = self.params.weight_bits(node) if hasattr(self.params, "weight_bits") else 8
        return {} if bits == 8 else {"w_bits": int(bits)}

    def _blockwise_linear(self, node, w: np.ndarray) -> bool:
        """A blockwise_linear step (float32 in and out) when the params give the node block-quantized
        weights (``params.blockwise(node, w)``: codes, scales, bits, block size); else False."""
        blockwise = getattr(self.params, "blockwise", None)
        given = blockwise(node, w) if blockwise is not None and node.attrs.get("activation") in (None, "relu") else None
        if given is None:
            return False
        from .model.steps.blockwise import pack_codes
        codes, scales, bits, block = given
        bias = node.consts.get("bias")
        consts = {"w_codes": pack_codes(codes), "w_scales": scales,
                  "bias": np.zeros(w.shape[0], np.float32) if bias is None else np.array(bias, np.float32)}
        out = self._add_float(node.output, node.output if node.output in self.g.outputs else f"{node.output}:f")
        attrs = {"block_size": block, "bits": bits, "activation": node.attrs.get("activation")}
        self.steps.append(Step("blockwise_linear", (self._f(node.inputs[0]),), out, attrs, consts, source=node.name))
        return True

    def _dynamic_linear(self, node, weights) -> None:
        """A dynamic_linear step: float32 in and out, the input quantized per row (``granularity``
        of the params: "row" unless an imported model says "tensor") at run time. ``weights``:
        (int8 w, scales) or (int8 w, scales, outlier consts)."""
        wq, ws, *outliers = weights
        bias = node.consts.get("bias")
        consts = {"w": wq, "w_scale": ws,
                  "bias": np.zeros(wq.shape[0], np.float32) if bias is None else np.array(bias, np.float32),
                  **(outliers[0] if outliers else {})}
        out = self._add_float(node.output, node.output if node.output in self.g.outputs else f"{node.output}:f")
        attrs = {"activation": node.attrs.get("activation"), "granularity": getattr(self.params, "granularity", "row"),
                 **self._grid(node)}
        self.steps.append(Step("dynamic_linear", (self._f(node.inputs[0]),), out, attrs, consts, source=node.name))

    def _lower_matmul(self, node) -> bool:
        return self._lower_linear(node, np.ascontiguousarray(node.consts["b"].T))

    def _lower_add(self, node) -> bool:
        if len(node.inputs) != 2:
            return False
        # A fused ReLU / clip is in the calibrated output range: quantizing to it clamps.
        self._step(node.op, node, [self._q(i) for i in node.inputs])
        return True

    _lower_mul = _lower_add

    def _lower_max_pool2d(self, node) -> bool:
        x = self._q(node.inputs[0])
        spec = self.tensors[x]
        if not self._keeps_qparams(node, spec):
            return False
        a = node.attrs
        attrs = {"kernel": tuple(a["kernel_size"]), "strides": tuple(a["stride"]), "pads": tuple(a["pads"]),
                 "ceil_mode": int(a["ceil_mode"])}
        self._step("max_pool", node, [x], attrs, qparams=(spec.scale, spec.dtype.type(spec.zero_point)))
        return True

    def _lower_avg_pool2d(self, node) -> bool:
        a = node.attrs
        attrs = {"kernel": tuple(a["kernel_size"]), "strides": tuple(a["stride"]), "pads": tuple(a["pads"]),
                 "ceil_mode": int(a["ceil_mode"]), "count_include_pad": int(a["count_include_pad"])}
        self._step("avg_pool", node, [self._q(node.inputs[0])], attrs)
        return True

    def _lower_global_avg_pool2d(self, node) -> bool:
        self._step("global_avg_pool", node, [self._q(node.inputs[0])])
        return True

    def _lower_concat(self, node) -> bool:
        axis = node.attrs["axis"]
        if len(self.g.tensors[node.output].shape) == 4:
            axis = _NCHW_TO_NHWC_AXIS[axis]
        self._step("concat", node, [self._q(i) for i in node.inputs], {"axis": axis})
        return True

    def _lower_reshape(self, node) -> bool:
        x = self._q(node.inputs[0])
        spec = self.tensors[x]
        if not self._keeps_qparams(node, spec):
            return False
        shape = (None,) + tuple(self.g.tensors[node.output].shape[1:])
        self._step("reshape", node, [x], {"shape": shape}, qparams=(spec.scale, spec.dtype.type(spec.zero_point)))
        return True

    _lower_flatten = _lower_reshape

    def _lower_softmax(self, node) -> bool:
        out = self._add_float(node.output, node.output)
        attrs = {"axis": node.attrs["axis"], "scale": node.attrs.get("scale")}
        self.steps.append(Step("softmax", tuple(self._f(i) for i in node.inputs), out, attrs, source=node.name))
        return True

    def _lower_attention(self, node, role) -> None:
        """int8 attention (attention_roles): Q K^T a dynamic_bmm, softmax and P V one softmax_bmm."""
        from .reference.int8_attention import exp_table
        if role[0] == "softmax":
            return
        out = self._add_float(node.output, node.output if node.output in self.g.outputs else f"{node.output}:f")
        if role[0] == "scores":
            self.steps.append(Step("dynamic_bmm", tuple(self._f(i) for i in node.inputs), out, {"alpha": role[1]},
                                   source=node.name))
            return
        s, scale = role[1], role[2]
        ins = (self._f(s.inputs[0]), self._f(node.inputs[1])) + tuple(self._f(i) for i in s.inputs[1:])
        attrs = {"scale": None if scale is None else float(scale), "p_scale": self.p_scale}
        self.steps.append(Step("softmax_bmm", ins, out, attrs, {"exp_table": exp_table()}, source=node.name))

    def _lower_embedding(self, node) -> None:
        """Token ids -> rows of the table: float32, or int8 per row where the parameters say so
        (``embedding_consts``; eb.compile and imported models keep it float32)."""
        out = self._add_float(node.output, node.output if node.output in self.g.outputs else f"{node.output}:f")
        table = node.consts["weight"]
        consts = self.params.embedding_consts(table) if hasattr(self.params, "embedding_consts") else {"table": table}
        self.steps.append(Step("embedding", (self._f(node.inputs[0]),), out, {}, consts, source=node.name))

    def _lut(self, node) -> bool:
        x = self._q(node.inputs[0])
        xs = self.tensors[x]
        y_scale, y_zp = self._qparams(node.output)
        fn = lut_function(node)
        y_dtype = np.asarray(y_zp).dtype
        table = make_lookup_table(fn, np.float32(xs.scale), xs.dtype.type(xs.zero_point), y_scale, y_zp,
                                  xs.dtype, y_dtype)
        attrs = {"function": node.op, "attrs": dict(node.attrs)}   # the float op, for exporters
        self._step("lut", node, [x], attrs, {"table": table}, qparams=(y_scale, y_zp))
        return True


for _op in _LUT_OPS:
    setattr(_Lowering, f"_lower_{_op}", _Lowering._lut)


class _DynamicLowering(_Lowering):
    """Dynamic quantization: linear / matmul layers (fused ReLU or none) become dynamic_linear
    steps; every other node stays float32. ``params.dynamic_weights(node, w)`` gives the int8
    weights and their scales [O] (None: the node stays float); ``params.granularity`` how inputs
    are quantized at run time: "row" (eb.quantize) or "tensor" (ONNX Runtime's quantize_dynamic)."""

    def _lower(self, node) -> None:
        if node.op == "embedding":
            self._lower_embedding(node)
            return
        if node.name in self.attention:
            self._lower_attention(node, self.attention[node.name])
            return
        weights = None
        if (node.op in ("linear", "matmul") and node.name not in self.exclude
                and node.attrs.get("activation") in (None, "relu")):
            w = node.consts["weight"] if node.op == "linear" else np.ascontiguousarray(node.consts["b"].T)
            if self._blockwise_linear(node, w):
                return
            weights = self.params.dynamic_weights(node, w)
        if weights is None:
            self._float_step(node)
        else:
            self._dynamic_linear(node, weights)


def lut_function(node):
    """The node's own float32 computation as a function of a 256-value vector (the float
    executor's, so the table is the float model's function at each input code)."""
    g = Graph("lut")
    d = g.input("d", (1, 256))
    g.output(g.add_node(node.op, [d], node.attrs, node.consts, name="f"))
    return lambda values: g.run(np.asarray(values, np.float32).reshape(1, 256)).reshape(256)
