"""``convert``: a model from ``prepare_qat`` -> an ``eb.QuantizedModel`` with exactly the
quantization it was trained with.

The prepared torch.fx graph becomes an eightbit float Graph (units as the ops they stand for, with
their weights as trained: codes x scale, BatchNorm folded; float ops as themselves), and the trained
parameters become the given quantization of the Graph's tensors and layers: every ActQuant's and
unit's scale and zero point, every layer's weight scales and int32 bias. The Graph is then lowered
by ``quantizer.lower_to_model`` with those parameters, the path an imported quantized ONNX model
takes (onnx/import_quantized.py), so the engine runs the codes the fake-quant forward computed.
"""
from __future__ import annotations

import numpy as np

from . import _torch  # noqa: F401
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..graph import Graph
from ..graph.ir import SeqLen
from ..graph.sequence import unify
from ..model import QuantizedModel
from ..onnx.import_quantized import GivenQParams, fuse_unquantized_activations, requantize_weights
from ..quantizer import lower_to_model
from .fx_ops import ACTIVATIONS, op_of
from .quantizers import ActQuant
from .units import (QAdd, QAvgPool2d, QCat, QConv2d, QDropout, QGlobalAvgPool2d, QLinear, QLut, QMaxPool2d,
                    QMul, QReshape, Unit)

_INT32 = np.iinfo(np.int32)


class TrainedQParams(GivenQParams):
    """The given-parameters provider of a QAT model: GivenQParams, plus the per-token policy the
    model trained with and the weights of its per-token (dynamic_linear) layers."""

    def __init__(self, tensor_qparams: dict, node_qparams: dict, per_token):
        super().__init__(tensor_qparams, node_qparams)
        self.per_token = per_token

    def dynamic_weights(self, node, w):
        info = self.node_qparams.get(node.name)
        return None if info is None else requantize_weights(node, w, info)


def convert(model, *, sequence=None) -> QuantizedModel:
    """The int8 model of a QAT model (``prepare_qat``'s result, possibly inside
    DistributedDataParallel): the engine computes, bit for bit, the codes that the model's forward
    pass computes in eval mode on every quantized tensor (docs/qat.md).

    ``sequence=(lo, hi)``: dimension 1 of every input is a sequence whose length may be anything
    from lo to hi (the engine's free sequence dimension): the model is traced at lengths hi and
    hi - 1 and the two graphs unified (ValueError naming what depends on the length otherwise).
    Without it the model runs at the example inputs' shapes."""
    gm = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if not isinstance(gm, fx.GraphModule) or not hasattr(gm, "eb_config"):
        raise TypeError("model: expected a model returned by eightbit.torch.prepare_qat")
    with torch.no_grad():
        if sequence is None:
            shapes = [shape for _, shape, _ in gm.eb_inputs]
            builder = _GraphBuilder(gm, _shapes_at(gm, shapes), shapes)
            graph = builder.build()
        else:
            builder, graph = _free_sequence(gm, sequence)
    qparams = {k: v for k, v in builder.tensor_qparams.items() if k in graph.tensors}
    prepared = fuse_unquantized_activations(graph, qparams)
    params = TrainedQParams(qparams, builder.node_qparams, gm.eb_config.activation.per_token)
    return lower_to_model(prepared, params)


def _free_sequence(gm, sequence):
    """(builder, graph) with a free sequence dimension: graphs built at lengths hi and hi - 1
    from shapes propagated through the model at each, unified (graph/sequence.py)."""
    if (not isinstance(sequence, (tuple, list)) or len(sequence) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in sequence)
            or not 1 <= sequence[0] <= sequence[1] or sequence[1] < 2):
        raise ValueError(f"sequence: expected (lo, hi) ints with 1 <= lo <= hi and hi >= 2, got {sequence!r}")
    if any(len(shape) < 2 for _, shape, _ in gm.eb_inputs):
        raise ValueError("sequence: every input needs a dimension 1 (the sequence)")
    lo, hi = sequence
    built = []
    for length in (hi, hi - 1):
        inputs = [(shape[0], length) + tuple(shape[2:]) for _, shape, _ in gm.eb_inputs]
        builder = _GraphBuilder(gm, _shapes_at(gm, inputs), inputs)
        built.append((builder, builder.build()))
    try:
        return built[0][0], unify(built[0][1], built[1][1], SeqLen(lo, hi))
    except ValueError as e:
        raise ValueError(f"sequence={sequence!r}: {e}") from None


def _shapes_at(gm, input_shapes) -> dict:
    """{node name: output shape} of the prepared model run (eval mode) on inputs of these shapes
    (propagated again at each convert: node names are the graph's own, which pickling renews)."""
    feeds = [torch.zeros(shape, dtype=getattr(torch, dtype)) for shape, (_, _, dtype) in zip(input_shapes, gm.eb_inputs)]
    modes = {m: m.training for m in gm.modules()}
    gm.eval()
    try:
        ShapeProp(gm).propagate(*feeds)
    except Exception as e:   # torch's own error, from whichever op cannot take this length
        at = f"length {input_shapes[0][1]}" if input_shapes and len(input_shapes[0]) > 1 else "its inputs' shapes"
        raise ValueError(f"sequence: the model does not run at {at} ({type(e).__name__}: {e})") from None
    finally:
        for m, mode in modes.items():
            m.training = mode
    shapes = {}
    for n in gm.graph.nodes:
        meta = n.meta.get("tensor_meta")
        if meta is not None and hasattr(meta, "shape"):
            shapes[n.name] = tuple(meta.shape)
    return shapes


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy()


class _GraphBuilder:
    """The eightbit Graph of a prepared model whose nodes have the output shapes ``shapes`` (by
    node name) for inputs of shapes ``input_shapes`` (the batch dimension made free)."""

    def __init__(self, gm, shapes: dict, input_shapes):
        self.gm, self.shapes = gm, shapes
        self.input_shapes = {name: tuple(shape) for (name, _, _), shape in zip(gm.eb_inputs, input_shapes)}
        self.modules = dict(gm.named_modules())
        self.g = Graph(type(gm).__name__)
        self.env: dict = {}
        self.tensor_qparams: dict = {}
        self.node_qparams: dict = {}

    def build(self) -> Graph:
        dtypes = {name: dtype for name, _, dtype in self.gm.eb_inputs}
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                self.env[n] = self.g.input(n.name, (None,) + self.input_shapes[n.name][1:],
                                           "int64" if dtypes[n.name].startswith(("int", "long")) else "float32")
            elif n.op == "get_attr":
                self.env[n] = _np(_attr(self.gm, n.target))
            elif n.op == "output":
                outs = n.args[0] if isinstance(n.args[0], (tuple, list)) else (n.args[0],)
                for o in outs:
                    self.g.output(self.env[o])
            elif n.op == "call_module" and isinstance(self.modules[n.target], ActQuant):
                self.env[n] = self.env[n.args[0]]
                self._given(self.env[n], self.modules[n.target])
            elif n.op == "call_module" and isinstance(self.modules[n.target], Unit):
                self.env[n] = self._unit(n, self.modules[n.target])
            elif n.name in self.shapes:
                self.env[n] = self._float(n)
            # else: a Python value (x.shape, a size): reshapes read their output shapes instead
        return self.g

    def _given(self, tensor, quant) -> None:
        self.tensor_qparams[tensor.name] = _trained_qparams(quant, tensor.name)

    def _x(self, n, i=0):
        return self.env[n.args[i]]

    # ---- units ----------------------------------------------------------------------------

    def _unit(self, n, unit):
        g, name = self.g, n.name
        if isinstance(unit, (QConv2d, QLinear)):
            out = self._weighted(n, unit)
        elif isinstance(unit, QAdd):
            out = g.add(self._x(n, 0), self._x(n, 1), name=f"{name}_pre" if unit.relu else name)
            out = g.relu(out, name=name) if unit.relu else out
        elif isinstance(unit, QMul):
            out = g.mul(self._x(n, 0), self._x(n, 1), name=name)
        elif isinstance(unit, QCat):
            out = g.concat([self.env[a] for a in n.args], unit.dim, name=name)
        elif isinstance(unit, QMaxPool2d):
            out = g.max_pool2d(self._x(n), unit.kernel_size, unit.stride, unit.padding, unit.ceil_mode, name=name)
        elif isinstance(unit, QAvgPool2d):
            out = g.avg_pool2d(self._x(n), unit.kernel_size, unit.stride, unit.padding, unit.ceil_mode,
                               unit.count_include_pad, name=name)
        elif isinstance(unit, QGlobalAvgPool2d):
            out = g.global_avg_pool2d(self._x(n), name=name if unit.keepdim else f"{name}_pool")
            if not unit.keepdim:
                self.tensor_qparams[out.name] = unit.numpy_qparams()
                out = g.reshape(out, (out.shape[1],), name=name)
        elif isinstance(unit, QDropout):
            out = self._x(n)
        elif isinstance(unit, QReshape):
            x = self._x(n)
            shape = tuple(self.shapes[n.name][1:])
            out = x if tuple(x.shape[1:]) == shape else g.reshape(x, shape, name=name)
        elif isinstance(unit, QLut):
            out = getattr(g, unit.op)(self._x(n), **unit.attrs, name=name)
        else:  # pragma: no cover - every unit type is listed above
            raise TypeError(f"convert: no eightbit form for {type(unit).__name__}")
        if unit.output_quant is not None:
            self.tensor_qparams[out.name] = _trained_qparams(unit.output_quant, out.name)
        elif unit.copies_codes:
            self.tensor_qparams[out.name] = unit.numpy_qparams()
        return out

    def _weighted(self, n, unit):
        """conv2d / linear with the trained weights (codes x scale, float32) and parameters."""
        g, act = self.g, unit.activation
        name = n.name if act is None else f"{n.name}_pre"     # the activation's output is n's tensor
        codes, w_scale, bias = unit.quantized_weights()
        shape = (-1,) + (1,) * (codes.dim() - 1)
        w = _np((codes * w_scale.reshape(shape)).float())
        b = None if bias is None else _np(bias.float())
        x = self._x(n)
        if isinstance(unit, QConv2d):
            c = unit.layer
            y = g.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups, name=name)
        else:
            y = g.linear(x, w, b, name=name)
        info = {"w_scale": _np(w_scale).astype(np.float32), "w_zero_point": np.zeros(1, np.int8), "bias": None}
        if unit.binary_inputs:   # an XNOR layer: the lowering's binary_conv / binary_linear (passes.binarize's form)
            g.node(name).attrs["binary_threshold"] = tuple(float(v) for v in _np(unit.threshold.detach().float()))
        elif not unit.per_token:
            x_scale, _ = unit.sources[0].qparams()
            q = _np(unit.bias_codes(bias, x_scale.detach(), w_scale))
            if np.any(np.abs(q) > _INT32.max):
                raise ValueError(f"{name}: the int32 bias overflows at the trained scales (input scale x "
                                 "weight scale too small for the bias); keep the layer float32 in QATConfig.layers")
            info["bias"] = q.astype(np.int32)
        self.node_qparams[name] = info
        if act is None:
            return y
        if act == "relu":
            return g.relu(y, name=n.name)
        return g.clip(y, act[1], act[2], name=n.name)

    # ---- float ops ------------------------------------------------------------------------

    def _float(self, n):
        op = op_of(n, self.modules)
        g, name, k = self.g, n.name, op.kind
        xs = [self.env[i] for i in op.inputs]
        out_shape = self.shapes.get(n.name)
        m = op.module
        if k in ("identity", "dropout"):
            return xs[0]
        if k in ACTIVATIONS:
            return getattr(g, k)(xs[0], **op.attrs, name=name)
        if k == "conv2d":
            if m.padding_mode != "zeros":
                raise ValueError(f"convert: node {n.name!r}: Conv2d padding_mode={m.padding_mode!r} has no "
                                 "eightbit form (only 'zeros')")
            return g.conv2d(xs[0], _np(m.weight), None if m.bias is None else _np(m.bias), m.stride, m.padding,
                            m.dilation, m.groups, name=name)
        if k == "linear":
            return g.linear(xs[0], _np(m.weight), None if m.bias is None else _np(m.bias), name=name)
        if k == "batch_norm2d":
            return g.batch_norm2d(xs[0], _np(m.running_mean), _np(m.running_var),
                                  None if m.weight is None else _np(m.weight), None if m.bias is None else _np(m.bias),
                                  m.eps, name=name)
        if k == "layer_norm":
            w = m.weight if m is not None else op.consts.get("weight")
            b = m.bias if m is not None else op.consts.get("bias")
            w, b = (self.env[v] if isinstance(v, fx.Node) else v for v in (w, b))
            w, b = (None if v is None else (v if isinstance(v, np.ndarray) else _np(v)) for v in (w, b))
            return g.layer_norm(xs[0], op.attrs["normalized_shape"], w, b, op.attrs["eps"], name=name)
        if k == "softmax":
            return g.softmax(xs[0], op.attrs["dim"], name=name)
        if k in ("flatten", "reshape") and out_shape is not None:
            return g.reshape(xs[0], tuple(out_shape[1:]), name=name)
        if k == "transpose":
            rank = len(xs[0].shape)
            perm = op.attrs.get("perm")
            if perm is None:
                a, b = (d % rank for d in op.attrs["swap"])
                perm = list(range(rank))
                perm[a], perm[b] = perm[b], perm[a]
            return g.transpose(xs[0], tuple(perm), name=name)
        if k == "mean":
            dims = op.attrs["dim"]
            dims = (dims,) if isinstance(dims, int) else tuple(dims)
            rank = len(xs[0].shape)
            return g.reduce_mean(xs[0], tuple(sorted(d % rank for d in dims)), bool(op.attrs["keepdim"]), name=name)
        if k in ("add", "mul", "sub", "div"):
            return self._float_binary(op, xs, name)
        if k == "matmul" and len(xs) == 2:
            if isinstance(xs[1], np.ndarray):
                return g.matmul(xs[0], xs[1], name=name)
            return g.bmm(xs[0], xs[1], name=name)
        if k == "max_pool2d":
            a = op.attrs
            return g.max_pool2d(xs[0], a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"], name=name)
        if k == "avg_pool2d":
            a = op.attrs
            return g.avg_pool2d(xs[0], a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                                a["count_include_pad"], name=name)
        if k == "global_avg_pool2d":
            return g.global_avg_pool2d(xs[0], name=name)
        if k == "embedding":
            return g.embedding(xs[0], _np(m.weight), name=name)
        if k == "getitem":
            index = op.attrs["index"]
            if (isinstance(index, tuple) and len(index) == 2 and index[0] == slice(None)
                    and isinstance(index[1], int)):
                return g.select(xs[0], 1, index[1], name=name)
        if k == "cat":
            return g.concat(xs, op.attrs["dim"] % len(xs[0].shape), name=name)
        target = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", n.target)
        raise ValueError(f"convert: node {n.name!r} ({n.op} {target}) has no eightbit form; eightbit.torch "
                         "converts conv / linear / pooling / elementwise / shape ops, layer norm, softmax and matmul")

    def _float_binary(self, op, xs, name):
        g = self.g
        other = op.consts.get("other")
        if len(xs) == 2:
            a, b = xs
            if isinstance(b, np.ndarray):
                other, xs = b, [a]
        if len(xs) == 2:
            if op.kind == "sub":
                b = g.mul(b, np.float32(-1.0), name=f"{name}_neg")
                return g.add(a, b, name=name)
            return getattr(g, op.kind)(a, b, name=name)
        c = np.asarray(other.detach().cpu().numpy() if isinstance(other, torch.Tensor) else other, np.float32)
        if op.kind == "sub":
            return g.add(xs[0], -c, name=name)
        if op.kind == "div":
            return g.mul(xs[0], np.float32(1.0) / c, name=name)
        return getattr(g, op.kind)(xs[0], c, name=name)


def _trained_qparams(quant, name: str):
    """An ActQuant's (scale, zero point); ValueError when it never saw data (its range is unknown)."""
    if not quant.initialized:
        raise ValueError(f"convert: the quantization of tensor {name!r} never observed data; run the model "
                         "in train mode on some batches (training or calibration) before converting")
    return quant.numpy_qparams()


def _attr(root, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
