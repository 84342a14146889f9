"""Float32 graph nodes as ONNX nodes: ``graph_to_onnx`` (a whole eightbit float Graph) and
``emit_float_node`` (one node; the quantized exporter uses it for float plan steps, so a float
island and the float model export the same way).

Each graph op maps to the ONNX op PyTorch's exporter would write: conv2d -> Conv, linear ->
Gemm(transB=1) on 2-D inputs (else MatMul with W.T + Add), matmul and bmm -> MatMul, batch_norm2d ->
BatchNormalization, add/mul -> Add/Mul (a constant operand as an initializer), div -> Div, relu / sigmoid /
tanh / hardswish / leaky_relu -> their op, relu6 / clip -> Clip, gelu -> Gelu (opset 20),
softmax -> Softmax, concat -> Concat, pools -> MaxPool / AveragePool / GlobalAveragePool,
flatten(1) -> Flatten, other flatten / reshape -> Reshape (dim 0 copied: the batch),
dropout / identity -> Identity, transpose -> Transpose, hardsigmoid -> HardSigmoid, layer_norm ->
LayerNormalization (opset 17), pad -> Pad (circular: mode "wrap", opset 19), lrn -> LRN, reduce -> ReduceSum / ReduceMean / ReduceL2 /
ReduceMax (axes an input from opset 13 for ReduceSum, 18 for the others). A fused ``activation`` attribute (a prepared graph) becomes a
Relu / Clip after the node.
"""
from __future__ import annotations

import numpy as np

from ..graph.ir import SeqLen

from .names import fresh_name

DEFAULT_OPSET = 17
GELU_OPSET = 20          # Gelu entered the default domain in opset 20
MAX_IR_VERSION = 10      # what ONNX Runtime 1.17+ and most tools read


class OnnxBuilder:
    """Collects nodes and initializers under unique, readable names."""

    def __init__(self, opset: int):
        from onnx import helper, numpy_helper

        self._helper, self._numpy_helper = helper, numpy_helper
        self.opset = opset
        self.nodes, self.inits, self.value_info = [], [], []
        self._names: set = set()        # tensor names in use (initializers and node outputs)
        self._node_names: set = set()
        self.domains: set = set()

    def fresh(self, name: str) -> str:
        """``name``, or ``name_2``, ``name_3``... if it is taken; reserves the result."""
        return fresh_name(name, self._names)

    def reserve(self, name: str) -> str:
        self._names.add(name)
        return name

    def const(self, name: str, value, dtype=None) -> str:
        arr = np.array(value, dtype, order="C")  # 0-d stays 0-d (ascontiguousarray makes it 1-d)
        name = self.fresh(name)
        self.inits.append(self._numpy_helper.from_array(arr, name))
        return name

    def node(self, op_type: str, inputs, outputs, name: str, domain: str = "", **attrs) -> None:
        node_name = fresh_name(name, self._node_names)
        for o in outputs:
            self._names.add(o)
        if domain:
            self.domains.add(domain)
        self.nodes.append(self._helper.make_node(op_type, list(inputs), list(outputs), name=node_name,
                                                 domain=domain or None, **attrs))

    def rows_back_shape(self, x: str, last: int, name: str) -> str:
        """The shape of `x` with its last dimension made `last`, computed at run time (the batch
        and the sequence may both be free): Concat(Shape(x)[:-1], [last])."""
        shape, head = self.fresh(f"{name}.in_shape"), self.fresh(f"{name}.in_shape_head")
        self.node("Shape", [x], [shape], f"{name}.shape")
        self.node("Slice", [shape, self.const(f"{name}.zero", [0], np.int64), self.const(f"{name}.minus_one", [-1], np.int64)],
                  [head], f"{name}.shape_head")
        out = self.fresh(f"{name}.out_shape")
        self.node("Concat", [head, self.const(f"{name}.last", [last], np.int64)], [out], f"{name}.out_shape", axis=0)
        return out

    def model(self, graph_name: str, inputs, outputs, producer: str):
        """The ModelProto: ``inputs`` / ``outputs`` are ValueInfoProtos."""
        import onnx

        helper = self._helper
        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, initializer=self.inits,
                                  value_info=self.value_info)
        opsets = [helper.make_opsetid("", self.opset)]
        opsets += [helper.make_opsetid(d, 1) for d in sorted(self.domains)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name=producer)
        model.ir_version = min(onnx.IR_VERSION, MAX_IR_VERSION)
        return model


def float_value_info(name: str, shape, dtype: str = "float32"):
    """A float32 (or int64) graph input / output; a free (None) dimension is the symbolic "N"."""
    from onnx import TensorProto, helper

    elem = TensorProto.INT64 if dtype == "int64" else TensorProto.FLOAT
    return helper.make_tensor_value_info(name, elem, onnx_dims(shape))


def onnx_dims(shape) -> list:
    """A shape's ONNX dims: the free batch is the symbolic "N", the sequence "sequence"."""
    return ["N" if d is None else "sequence" if isinstance(d, SeqLen) else d for d in shape]


# ops whose ONNX form needs a later opset than the default: (the first opset that has it, what it is)
MIN_OPSETS = {
    "gelu": (GELU_OPSET, "a gelu, which ONNX defines"),
    "int4_blocked_dequantize": (21, "block-quantized low-bit weights (blockwise_linear), exported as int4 "
                                    "DequantizeLinear with block_size, which ONNX defines"),
}


def check_opset(opset, ops, what: str) -> int:
    """The opset to write: ``opset`` if given (>= 13: per-axis QuantizeLinear), else 17, or the
    first opset that has every op of ``ops`` named in MIN_OPSETS (gelu: 20, int4 blocked weights:
    21); an explicit opset below that raises."""
    needs = [MIN_OPSETS[op] for op in sorted(set(ops) & set(MIN_OPSETS))]
    if opset is None:
        return max([DEFAULT_OPSET] + [first for first, _ in needs])
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not 13 <= opset <= 21:
        raise ValueError(f"opset: expected an int in 13..21, got {opset!r}")
    for first, why in needs:
        if opset < first:
            raise ValueError(f"opset: {what} has {why} from opset {first}; got opset={opset}")
    return int(opset)


def emit_float_node(b: OnnxBuilder, op: str, name: str, inputs: list, output: str, attrs: dict, consts: dict,
                    in_ranks: list, linear_as: str = "gemm", in_dtypes: list | None = None) -> None:
    """One float32 graph node (graph/ir.py's op table) as ONNX node(s) writing ``output``."""
    a, x = attrs, list(inputs)
    act = a.get("activation")
    out = output if act is None else b.fresh(f"{output}.pre_act")

    def c(k):
        return b.const(f"{name}.{k}", consts[k], np.float32)

    bias = [c("bias")] if op in ("conv2d", "linear") and "bias" in consts else []
    if op == "conv2d":
        w = consts["weight"]
        b.node("Conv", [x[0], c("weight")] + bias, [out], name, kernel_shape=list(w.shape[2:]),
               strides=list(a["stride"]), pads=list(a["pads"]), dilations=list(a["dilation"]), group=a["groups"])
    elif op == "linear":
        if linear_as == "gemm" and in_ranks[0] == 2:
            b.node("Gemm", [x[0], c("weight")] + bias, [out], name, transB=1)
        else:
            wt = b.const(f"{name}.weight_t", np.asarray(consts["weight"]).T, np.float32)
            if bias:
                mm = b.fresh(f"{output}.matmul")
                b.node("MatMul", [x[0], wt], [mm], name)
                b.node("Add", [mm, bias[0]], [out], f"{name}.bias_add")
            else:
                b.node("MatMul", [x[0], wt], [out], name)
    elif op == "matmul":
        b.node("MatMul", [x[0], c("b")], [out], name)
    elif op == "bmm":
        b.node("MatMul", [x[0], x[1]], [out], name)
    elif op == "div":
        b.node("Div", [x[0], x[1]], [out], name)
    elif op == "batch_norm2d":
        b.node("BatchNormalization", [x[0], c("weight"), c("bias"), c("mean"), c("var")], [out], name,
               epsilon=float(a["eps"]))
    elif op in ("add", "mul"):
        operand = x[1] if len(x) > 1 else c("b")
        if a.get("b_seq_axis") is not None:  # the first S entries of the table: Slice by x's length
            k, rank_b = a["b_seq_axis"], consts["b"].ndim
            axis = in_ranks[0] - rank_b + k        # x's sequence axis (b aligns right)
            length, cut = b.fresh(f"{name}.length"), b.fresh(f"{name}.b_prefix")
            shape = b.fresh(f"{name}.x_shape")
            b.node("Shape", [x[0]], [shape], f"{name}.x_shape")
            b.node("Slice", [shape, b.const(f"{name}.axis_start", [axis], np.int64),
                             b.const(f"{name}.axis_end", [axis + 1], np.int64)], [length], f"{name}.length")
            b.node("Slice", [operand, b.const(f"{name}.zero", [0], np.int64), length,
                             b.const(f"{name}.b_axis", [k], np.int64)], [cut], f"{name}.b_prefix")
            operand = cut
        b.node(op.capitalize(), [x[0], operand], [out], name)
    elif op in ("relu", "sigmoid", "tanh", "hardswish", "erf", "identity", "dropout"):
        b.node({"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hardswish": "HardSwish", "erf": "Erf"}.get(
            op, "Identity"), [x[0]], [out], name)
    elif op in ("relu6", "clip"):
        lo, hi = (0.0, 6.0) if op == "relu6" else (a["min"], a["max"])
        b.node("Clip", [x[0], "" if lo is None else b.const(f"{name}.min", lo, np.float32),
                        "" if hi is None else b.const(f"{name}.max", hi, np.float32)], [out], name)
    elif op == "leaky_relu":
        b.node("LeakyRelu", [x[0]], [out], name, alpha=float(a["negative_slope"]))
    elif op == "gelu":
        if b.opset < GELU_OPSET:
            raise ValueError(f"{name}: Gelu needs opset >= {GELU_OPSET}, got opset={b.opset}")
        b.node("Gelu", [x[0]], [out], name, approximate=a["approximate"])
    elif op == "softmax":
        scores = x[0]
        if a.get("scale") is not None:
            scores = b.fresh(f"{name}.scaled")
            b.node("Mul", [x[0], b.const(f"{name}.scale", np.float32(a["scale"]))], [scores], f"{name}.scale")
        if len(x) == 2:
            masked = b.fresh(f"{name}.masked")
            b.node("Add", [scores, x[1]], [masked], f"{name}.mask_add")
            scores = masked
        b.node("Softmax", [scores], [out], name, axis=a["axis"])
    elif op == "concat":
        b.node("Concat", x, [out], name, axis=a["axis"])
    elif op in ("max_pool2d", "avg_pool2d"):
        kw = dict(kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]), pads=list(a["pads"]),
                  ceil_mode=int(a["ceil_mode"]))
        if op == "avg_pool2d":
            kw["count_include_pad"] = int(a["count_include_pad"])
        b.node("MaxPool" if op == "max_pool2d" else "AveragePool", [x[0]], [out], name, **kw)
    elif op == "global_avg_pool2d":
        b.node("GlobalAveragePool", [x[0]], [out], name)
    elif op == "flatten" and a["start_dim"] == 1:
        b.node("Flatten", [x[0]], [out], name, axis=1)
    elif op in ("flatten", "reshape"):
        shape = [0] * a["start_dim"] + [-1] if op == "flatten" else [0] + list(a["shape"])
        if sum(isinstance(d, SeqLen) for d in shape) > 1:
            raise NotImplementedError(f"{name}: a reshape to a shape holding the sequence twice has no ONNX form here")
        shape = [-1 if isinstance(d, SeqLen) else d for d in shape]  # the one dimension ONNX infers
        b.node("Reshape", [x[0], b.const(f"{name}.shape", shape, np.int64)], [out], name)
    elif op == "transpose":
        b.node("Transpose", [x[0]], [out], name, perm=list(a["perm"]))
    elif op == "hardsigmoid":
        b.node("HardSigmoid", [x[0]], [out], name, alpha=float(a["alpha"]), beta=float(a["beta"]))
    elif op == "lrn":
        b.node("LRN", [x[0]], [out], name, size=int(a["size"]), alpha=float(a["alpha"]), beta=float(a["beta"]),
               bias=float(a["bias"]))
    elif op == "layer_norm":
        ns = tuple(a["normalized_shape"])
        scale = c("weight") if "weight" in consts else b.const(f"{name}.weight", np.ones(ns, np.float32))
        b.node("LayerNormalization", [x[0], scale] + ([c("bias")] if "bias" in consts else []), [out], name,
               axis=-len(ns), epsilon=float(a["eps"]))
    elif op == "pad":
        mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[a["mode"]]
        if mode == "wrap" and b.opset < 19:
            raise ValueError(f"{name}: circular padding (Pad mode 'wrap') needs opset >= 19, got opset={b.opset}")
        ins = [x[0], b.const(f"{name}.pads", list(a["pads"]), np.int64)]
        if mode == "constant":
            ins.append(b.const(f"{name}.value", a["value"], np.float32))
        b.node("Pad", ins, [out], name, mode=mode)
    elif op == "embedding":           # ids: an int64 graph input, or float32 positions
        ids = x[0]
        if in_dtypes is not None and in_dtypes[0] != "int64":
            ids = b.fresh(f"{output}.ids")
            b.node("Cast", [x[0]], [ids], f"{name}.cast", to=7)                  # TensorProto.INT64
        b.node("Gather", [c("weight"), ids], [out], name, axis=0)
    elif op == "padded_positions":    # in float32: Cast, Equal, Not, CumSum, Mul, Add
        ids = b.fresh(f"{output}.ids")
        b.node("Cast", [x[0]], [ids], f"{name}.cast", to=1)                   # TensorProto.FLOAT
        pad = b.const(f"{name}.pad", float(a["pad"]), np.float32)
        is_pad, not_pad, real, count, kept = (b.fresh(f"{output}.{k}")
                                              for k in ("is_pad", "not_pad", "real", "count", "kept"))
        b.node("Equal", [ids, pad], [is_pad], f"{name}.equal")
        b.node("Not", [is_pad], [not_pad], f"{name}.not")
        b.node("Cast", [not_pad], [real], f"{name}.real", to=1)
        b.node("CumSum", [real, b.const(f"{name}.axis", 1, np.int64)], [count], f"{name}.cumsum")
        b.node("Mul", [count, real], [kept], f"{name}.mul")
        b.node("Add", [kept, pad], [out], name)
    elif op == "additive_mask":       # the mask may be int64 (graph input) or float32 (a plan tensor)
        keep = b.fresh(f"{output}.keep")
        b.node("Cast", [x[0]], [keep], f"{name}.cast", to=1)                  # TensorProto.FLOAT
        padded = b.fresh(f"{output}.padded")
        b.node("Equal", [keep, b.const(f"{name}.zero", 0.0, np.float32)], [padded], f"{name}.equal")
        flat = b.fresh(f"{output}.flat")
        b.node("Where", [padded, b.const(f"{name}.fill", a["fill"], np.float32),
                         b.const(f"{name}.keep_value", 0.0, np.float32)], [flat], f"{name}.where")
        b.node("Unsqueeze", [flat, b.const(f"{name}.axes", [1, 2], np.int64)], [out], name)
    elif op == "reduce":
        onnx_op = {"sum": "ReduceSum", "mean": "ReduceMean", "l2": "ReduceL2", "max": "ReduceMax"}[a["mode"]]
        axes, keep = [int(v) for v in a["axes"]], int(a["keepdims"])
        # axes became an input in opset 13 for ReduceSum, in opset 18 for the others
        if b.opset >= (13 if onnx_op == "ReduceSum" else 18):
            b.node(onnx_op, [x[0], b.const(f"{name}.axes", axes, np.int64)], [out], name, keepdims=keep)
        else:
            b.node(onnx_op, [x[0]], [out], name, axes=axes, keepdims=keep)
    elif op == "select":
        b.node("Gather", [x[0], b.const(f"{name}.index", a["index"], np.int64)], [out], name, axis=a["axis"])
    else:
        raise NotImplementedError(f"{name}: no ONNX export for op {op!r}")
    if act == "relu":
        b.node("Relu", [out], [output], f"{name}.act")
    elif act is not None:
        b.node("Clip", [out, b.const(f"{name}.act_min", act[1], np.float32),
                        b.const(f"{name}.act_max", act[2], np.float32)], [output], f"{name}.act")


def graph_to_onnx(g, *, linear_as: str = "gemm", opset: int | None = None):
    """The float model of an eightbit Graph as an ONNX ModelProto (constants as initializers).

    linear_as: "gemm" (Gemm transB=1 on 2-D inputs, as torch exports nn.Linear) or "matmul"
    (MatMul with W.T, then Add bias: what ORT's quantize_dynamic can quantize). ``opset``: 17 by
    default, 20 when the graph has a gelu. A free batch dimension is "N"."""
    from ..graph import Graph

    if not isinstance(g, Graph):
        raise TypeError(f"g: expected an eightbit Graph, got {type(g).__name__}")
    if linear_as not in ("gemm", "matmul"):
        raise ValueError(f"linear_as: expected 'gemm' or 'matmul', got {linear_as!r}")
    b = OnnxBuilder(check_opset(opset, {n.op for n in g.nodes}, "the graph"))
    for name in g.inputs:
        b.reserve(name)
    for n in g.nodes:
        b.reserve(n.output)
    for n in g.nodes:
        emit_float_node(b, n.op, n.name, list(n.inputs), n.output, n.attrs, n.consts,
                        [len(g.tensors[i].shape) for i in n.inputs], linear_as, [g.tensors[i].dtype for i in n.inputs])
    return b.model(g.name, [float_value_info(i, g.tensors[i].shape, g.tensors[i].dtype) for i in g.inputs],
                   [float_value_info(o, g.tensors[o].shape) for o in g.outputs], "eightbit")
