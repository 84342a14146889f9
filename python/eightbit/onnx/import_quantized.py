"""Models quantized by other tools (QDQ and QOperator formats, as onnxruntime.quantization writes
them; per-tensor or per-channel weights; uint8 or int8 activations) -> an eightbit QuantizedModel
with the model's own quantization, so its outputs equal ONNX Runtime's.

One lowering path serves calibrated and imported models alike:

1. ``qoperator_to_qdq``: QLinearConv, QGemm, QLinearMatMul, QLinearAdd, ... become the
   DequantizeLinear -> float op -> QuantizeLinear groups they stand for (an ONNX rewrite).
2. ``strip_qdq``: the QDQ model becomes a float model (weights dequantized into float
   initializers) plus ``tensor_qparams`` (each Q -> DQ pair: the tensor's scale and zero point)
   and ``node_qparams`` (each Conv / Gemm / MatMul: weight scales, zero points, exact int32 bias).
3. The float importer (import_float.py) builds the eightbit Graph; identities are removed and a
   ReLU / Clip is fused into its producer only where nothing quantizes the value between them.
4. ``quantizer.lower_to_model`` with a ``GivenQParams`` provider: every tensor with Q/DQ is quantized
   with the model's scale and zero point; weights are re-quantized with the model's scales (which
   must give back the model's integers exactly) and the model's int32 bias is used verbatim. A node
   touching a tensor without Q/DQ, or mixing uint8 and int8, runs as a float step between
   dequantize and quantize steps, as ONNX Runtime runs such a group (DQ -> float op -> Q).
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..graph import Graph
from ..graph.ir import FUSABLE_OPS
from ..graph.passes import activation_of, remove_identities
from ..model import QuantizedModel
from .errors import OnnxImportError

QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
    "MatMulInteger", "ConvInteger", "QGemm", "QLinearAdd", "QLinearMul", "QLinearAveragePool",
    "QLinearGlobalAveragePool", "QLinearConcat", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearSoftmax",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "QEmbedLayerNormalization", "MatMulNBits",
})
_WEIGHT_OPS = ("conv2d", "linear", "matmul")
_INT8 = np.iinfo(np.int8)


def is_quantized(model) -> bool:
    """True when the ONNX model holds quantization operators (QDQ, QOperator or dynamic)."""
    return any(n.op_type in QUANTIZED_OPS for n in model.graph.node)


class GivenQParams:
    """The quantization an imported model carries, as the lowering asks for it (see
    quantizer.CalibratedQParams for the other provider)."""

    given = True
    per_channel = True

    def __init__(self, tensor_qparams: dict, node_qparams: dict):
        self.tensor_qparams, self.node_qparams = tensor_qparams, node_qparams

    def activation(self, name: str):
        """(scale float32, zero point uint8 / int8 scalar), or None: the tensor stays float."""
        return self.tensor_qparams.get(name)

    def covers(self, node) -> bool:
        """A node with weights runs quantized only if the model quantized its weights."""
        return node.op not in _WEIGHT_OPS or node.name in self.node_qparams

    def weights(self, node, w: np.ndarray, bias, x_scale) -> dict:
        """The model's weights re-quantized with its own scales (they must give back its
        integers exactly), its scales per output channel, and its int32 bias verbatim."""
        info = self.node_qparams[node.name]
        o = w.shape[0]
        q, ws = requantize_weights(node, w, info)
        b = info["bias"]
        if b is None:
            from ..quantizer import quantize_bias

            b = quantize_bias(node, bias, x_scale, ws, o)
        elif b.shape != (o,):
            raise OnnxImportError(f"node {node.name!r}: int32 bias has shape {b.shape}, expected ({o},)")
        return {"w": q, "w_scale": ws, "bias": np.ascontiguousarray(b, np.int32)}


def requantize_weights(node, w: np.ndarray, info: dict):
    """(int8 weights, float32 scales [O]): the node's float weights re-quantized with the model's
    own scales (``info["w_scale"]``: one, or one per output channel), which must give back the
    model's integers exactly and fit int8 once its zero point is taken out."""
    o = w.shape[0]
    ws, zp = np.asarray(info["w_scale"], np.float32).reshape(-1), np.asarray(info["w_zero_point"]).reshape(-1)
    if ws.size not in (1, o):
        raise OnnxImportError(f"node {node.name!r}: {ws.size} weight scales for {o} output channels "
                              "(per-channel scales must run along the output channels)")
    ws = np.broadcast_to(ws, (o,)).astype(np.float32)
    s = ws.reshape((o,) + (1,) * (w.ndim - 1))
    q = np.rint(w / s)
    if not np.array_equal((q * s).astype(np.float32), w):
        raise OnnxImportError(f"node {node.name!r}: its weights are not integers times the model's weight scales "
                              "(a weight scale does not belong to this node's output channels)")
    if q.min(initial=0) < _INT8.min or q.max(initial=0) > _INT8.max:
        zp_note = f" (weight zero point {int(zp.ravel()[0])})" if np.any(zp != 0) else ""
        raise OnnxImportError(f"node {node.name!r}: weights minus their zero point span [{int(q.min())}, {int(q.max())}]"
                              f"{zp_note}, which does not fit int8; only weights whose (w - zero point) fits int8 "
                              "can run (re-quantize the model with symmetric int8 weights)")
    return q.astype(np.int8), ws


def fuse_unquantized_activations(g: Graph, tensor_qparams: dict) -> Graph:
    """relu / relu6 / clip into the conv2d / linear / matmul / add producing its input, only when
    that input has no quantization of its own (a quantized input keeps the activation as its own
    step, a table lookup, exactly as DQ -> Relu -> Q)."""
    uses: dict = {}
    for n in g.nodes:
        for i in set(n.inputs):
            uses[i] = uses.get(i, 0) + 1
    nodes, index = [], {}
    for node in g.nodes:
        src = node.inputs[0] if node.inputs else None
        act = activation_of(node)
        at = index.get(src)
        if (act is not None and at is not None and uses.get(src) == 1 and src not in g.outputs
                and src not in tensor_qparams and nodes[at].op in FUSABLE_OPS
                and nodes[at].attrs.get("activation") is None):
            fused = nodes[at].copy()
            fused.attrs["activation"] = act
            fused.outputs = list(node.outputs)
            nodes[at] = fused
            index[node.output] = at
            continue
        index[node.output] = len(nodes)
        nodes.append(node.copy())
    return Graph.from_nodes(g.input_specs(), nodes, g.outputs, g.name)


def _without_unused_domains(model):
    """onnxruntime.quantization declares opsets of domains no node uses (com.microsoft.nchwc, ...):
    a copy that declares only the domains its nodes use."""
    used = {n.domain for n in model.graph.node} | {"", "ai.onnx"}
    if all(o.domain in used for o in model.opset_import):
        return model
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.opset_import[:]
    out.opset_import.extend(o for o in model.opset_import if o.domain in used)
    return out


def import_quantized(model) -> QuantizedModel:
    """A QuantizedModel running ``model`` (a path, bytes or onnx.ModelProto; QDQ or QOperator)
    with its own numerics."""
    from ..quantizer import lower_to_model
    from .import_float import import_float
    from .load import load_model
    from .qoperator_to_qdq import qoperator_to_qdq
    from .strip_qdq import strip_qdq

    model = load_model(_without_unused_domains(load_model(model, check=False)))

    ops = {n.op_type for n in model.graph.node}
    unsupported = sorted(ops & {"ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention"})
    if unsupported:
        raise OnnxImportError(f"dynamically quantized ops {', '.join(unsupported)} are not supported: import "
                              "the float model and use eb.quantize(..., dynamic=True)")
    if ops & {"DynamicQuantizeLinear", "MatMulInteger"}:
        return _import_dynamic(model)
    if "MatMulNBits" in ops or _has_blocked_dequantize(model):
        return _import_nbits(model, ops)
    stripped = strip_qdq(qoperator_to_qdq(model))
    graph = import_float(stripped.model, keep_tensors=stripped.tensor_qparams)
    qparams = {k: v for k, v in stripped.tensor_qparams.items() if k in graph.tensors}
    with _lowering_errors():
        prepared = fuse_unquantized_activations(remove_identities(graph), qparams)
        params = GivenQParams(qparams, stripped.node_qparams)
        return lower_to_model(prepared, params)


@contextlib.contextmanager
def _lowering_errors():
    """The lowering's own checks (a bias that overflows int32, scales that give no valid plan...)
    raise ValueError naming the node or step: for an imported model they are import errors."""
    try:
        yield
    except OnnxImportError:
        raise
    except ValueError as e:
        raise OnnxImportError(f"the model's quantization cannot be run: {e}") from e


class GivenDynamicWeights:
    """The weight quantization of a quantize_dynamic model, as ``quantizer.lower_to_model(...,
    dynamic=True)`` asks for it: inputs quantized per tensor at run time, the model's weight scales (the float weights
    re-quantized with them must give back its integers exactly)."""

    granularity = "tensor"
    given = False        # no activation is quantized ahead of time: float steps stay plain

    def __init__(self, weights: dict):
        self.weights_by_output = weights

    def dynamic_weights(self, node, w: np.ndarray):
        info = self.weights_by_output.get(node.output)
        if info is None:
            return None                  # a float MatMul of the model: stays float
        return requantize_weights(node, w, info)


def _import_dynamic(model) -> QuantizedModel:
    """A quantize_dynamic model: its MatMulInteger groups become dynamic_linear steps quantizing
    their input per tensor (ORT's numerics, bit for bit); everything else stays float32."""
    from ..quantizer import lower_to_model
    from .import_float import import_float
    from .strip_dynamic import strip_dynamic

    float_model, weights = strip_dynamic(model)
    graph = import_float(float_model, keep_tensors=set(weights))
    with _lowering_errors():
        graph = remove_identities(graph)
        return lower_to_model(graph, GivenDynamicWeights(weights), dynamic=True)


class GivenBlockWeights:
    """The block-quantized weights of MatMulNBits nodes (strip_nbits), as the lowering asks for them:
    each such MatMul a blockwise_linear step with the model's codes and scales; every other node
    float32."""

    granularity = "row"
    given = False

    def __init__(self, blocks: dict):
        self.blocks = blocks

    def blockwise(self, node, w: np.ndarray):
        info = self.blocks.get(node.output)
        if info is None:
            return None
        codes, scales, block = info
        if codes.shape != w.shape:
            return None                 # not the node the weights came from
        return codes, scales, 4, block

    def dynamic_weights(self, node, w: np.ndarray):
        return None


def _has_blocked_dequantize(model) -> bool:
    from onnx import helper
    return any(n.op_type == "DequantizeLinear" and any(a.name == "block_size" and helper.get_attribute_value(a)
                                                       for a in n.attribute) for n in model.graph.node)


def _import_nbits(model, ops) -> QuantizedModel:
    """A model with block-quantized 4-bit weights (MatMulNBits, or blocked DequantizeLinear into
    MatMul) and otherwise float: each such MatMul becomes a blockwise_linear step."""
    from ..quantizer import lower_to_model
    from .import_float import import_float
    from .strip_nbits import strip_nbits

    float_model, blocks = strip_nbits(model)
    others = {n.op_type for n in float_model.graph.node} & set(QUANTIZED_OPS)
    if others:
        raise OnnxImportError(f"block-quantized weights with other quantized ops ({', '.join(sorted(others))}) "
                              "are not supported")
    graph = import_float(float_model, keep_tensors=set(blocks))
    with _lowering_errors():
        return lower_to_model(remove_identities(graph), GivenBlockWeights(blocks), dynamic=True)