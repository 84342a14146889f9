"""QOperator -> QDQ: a pure ONNX rewrite of the quantized operators onnxruntime.quantization writes
in QOperator format into the DequantizeLinear -> float op -> QuantizeLinear groups they stand for.

    QLinearConv(x, xs, xz, w, ws, wz, ys, yz, B)   DQ(x), DQ(w), DQ(B; scale xs*ws) -> Conv -> Q(ys, yz)
    QLinearMatMul(a, as, az, b, bs, bz, ys, yz)    DQ(a), DQ(b) -> MatMul -> Q
    QGemm(A, as, az, B, bs, bz, C, ys, yz)         DQ(A), DQ(B), DQ(C) -> Gemm -> Q (no Q without ys)
    com.microsoft QLinearAdd / QLinearMul          DQ(a), DQ(b) -> Add / Mul -> Q
    QLinearAveragePool / QLinearGlobalAveragePool  DQ -> AveragePool / GlobalAveragePool -> Q
    QLinearConcat(ys, yz, x1, s1, z1, ...)         DQ(x_i) -> Concat -> Q
    QLinearLeakyRelu / QLinearSigmoid              DQ -> LeakyRelu / Sigmoid -> Q
    MaxPool, Flatten, Reshape, ... on a quantized  DQ -> op -> Q with the input's scale and zero point
    tensor (they move bytes)

The float op keeps the QOperator node's name and the Q's output keeps its output name, so names
that tools and users see survive; new tensors are named ``<tensor>_dq`` / ``<node>_float``.
QDQ models pass through unchanged (the rewrite only touches the operators above).
"""
from __future__ import annotations

import numpy as np

from .errors import OnnxImportError, guarded
from .names import fresh_name

MS_DOMAIN = "com.microsoft"

# ops that only move or select bytes: on a quantized tensor their output keeps its quantization
PASSTHROUGH_OPS = ("MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity",
                   "Slice", "Split", "Gather", "Resize", "DepthToSpace", "SpaceToDepth", "Pad")

# QOperator op -> (float op, [(input index of x, of its scale, of its zero point)], (y scale, y zp))
_SIMPLE = {
    "QLinearAdd": ("Add", [(0, 1, 2), (3, 4, 5)], (6, 7)),
    "QLinearMul": ("Mul", [(0, 1, 2), (3, 4, 5)], (6, 7)),
    "QLinearAveragePool": ("AveragePool", [(0, 1, 2)], (3, 4)),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", [(0, 1, 2)], (3, 4)),
    "QLinearLeakyRelu": ("LeakyRelu", [(0, 1, 2)], (3, 4)),
    "QLinearSigmoid": ("Sigmoid", [(0, 1, 2)], (3, 4)),
    "QLinearMatMul": ("MatMul", [(0, 1, 2), (3, 4, 5)], (6, 7)),
}


def _arg(node, i: int) -> str:
    return node.input[i] if i < len(node.input) else ""


class _Rewriter:
    def __init__(self, model):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.model = model
        self.inits = {t.name: t for t in model.graph.initializer}
        self.nodes: list = []
        self.new_inits: list = []
        self.qparams: dict = {}   # quantized activation tensor -> (scale name, zero point name)
        self.dq_of: dict = {}     # quantized tensor -> name of its DequantizeLinear output
        self.names = {n for node in model.graph.node for n in (*node.input, *node.output)} | set(self.inits)
        self.names |= {i.name for i in model.graph.input}

    def fresh(self, name: str) -> str:
        return fresh_name(name, self.names)

    def dq(self, x: str, scale: str, zp: str, axis=None) -> str:
        """The float form of quantized tensor x (one DequantizeLinear per tensor)."""
        key = (x, scale, zp, axis)
        if key not in self.dq_of:
            out = self.fresh(f"{x}_dq")
            attrs = {} if axis is None else {"axis": axis}
            inputs = [x, scale] + ([zp] if zp else [])
            self.nodes.append(self.helper.make_node("DequantizeLinear", inputs, [out], name=self.fresh(f"{x}_DequantizeLinear"), **attrs))
            self.dq_of[key] = out
        return self.dq_of[key]

    def q(self, x: str, scale: str, zp: str, out: str) -> None:
        inputs = [x, scale] + ([zp] if zp else [])
        self.nodes.append(self.helper.make_node("QuantizeLinear", inputs, [out], name=self.fresh(f"{out}_QuantizeLinear")))
        self.qparams[out] = (scale, zp)

    def float_node(self, node, op: str, inputs: list, domain: str = "", attrs=()) -> str:
        """The float op standing for `node`, with `attrs` (AttributeProtos, copied as they are)."""
        out = self.fresh(f"{node.output[0]}_float")
        self.nodes.append(_with_attrs(self.helper.make_node(op, inputs, [out], name=node.name or self.fresh(op),
                                                            domain=domain), attrs))
        return out

    def const(self, name: str, value: np.ndarray) -> str:
        name = self.fresh(name)
        self.new_inits.append(self.numpy_helper.from_array(value, name))
        return name

    def init_value(self, name: str, where: str) -> np.ndarray:
        if name not in self.inits:
            raise OnnxImportError(f"{where}: {name!r} must be an initializer (a constant), it is computed at run time")
        return self.numpy_helper.to_array(self.inits[name])

    def weight_axis(self, node, w: str, scale: str, axis: int):
        """axis attribute of a weight's DequantizeLinear: None for a per-tensor scale."""
        s = self.init_value(scale, f"node {node.name!r} ({node.op_type})")
        return None if s.size == 1 and s.ndim <= 1 else axis

    # ---- one rewrite per QOperator op ---------------------------------------------------------

    def conv(self, node) -> None:
        x = self.dq(*[_arg(node, i) for i in (0, 1, 2)])
        w = self.dq(_arg(node, 3), _arg(node, 4), _arg(node, 5), self.weight_axis(node, _arg(node, 3), _arg(node, 4), 0))
        inputs = [x, w]
        if _arg(node, 8):
            inputs.append(self.bias(node, _arg(node, 8), _arg(node, 1), _arg(node, 4)))
        y = self.float_node(node, "Conv", inputs, attrs=node.attribute)
        self.q(y, _arg(node, 6), _arg(node, 7), node.output[0])

    def bias(self, node, b: str, x_scale: str, w_scale: str) -> str:
        """DequantizeLinear of an int32 bias at scale x_scale * w_scale (float32, as the op uses it)."""
        where = f"node {node.name!r} ({node.op_type})"
        xs = self.init_value(x_scale, where).astype(np.float32)
        ws = self.init_value(w_scale, where).astype(np.float32).reshape(-1)
        if xs.size != 1 or ws.size == 0:
            raise OnnxImportError(f"{where}: the input scale must be a scalar and the weight scale hold 1 value or one "
                                  f"per output channel, got shapes {list(xs.shape)} and {list(ws.shape)}")
        xs = xs.reshape(())
        scale = (xs * ws).astype(np.float32)
        scale_name = self.const(f"{b}_scale", scale if scale.size > 1 else scale.reshape(()))
        zp_name = self.const(f"{b}_zero_point", np.zeros(scale.shape if scale.size > 1 else (), np.int32))
        return self.dq(b, scale_name, zp_name, 0 if scale.size > 1 else None)

    def gemm(self, node) -> None:
        attrs = {a.name: a for a in node.attribute}
        for key in ("transA", "transB"):
            if key in attrs and attrs[key].type != attrs[key].INT:
                raise OnnxImportError(f"node {node.name!r} ({node.op_type}): attribute {key} must be an int")
        trans_b = attrs["transB"].i if "transB" in attrs else 0
        a = self.dq(*[_arg(node, i) for i in (0, 1, 2)])
        b = self.dq(_arg(node, 3), _arg(node, 4), _arg(node, 5),
                    self.weight_axis(node, _arg(node, 3), _arg(node, 4), 0 if trans_b else 1))
        inputs = [a, b]
        if _arg(node, 6):
            inputs.append(self.bias(node, _arg(node, 6), _arg(node, 1), _arg(node, 4)))
        gemm_attrs = [attrs[k] for k in ("alpha", "transA", "transB") if k in attrs]
        if _arg(node, 7):
            y = self.float_node(node, "Gemm", inputs, attrs=gemm_attrs)
            self.q(y, _arg(node, 7), _arg(node, 8), node.output[0])
        else:  # float output
            self.nodes.append(_with_attrs(self.helper.make_node("Gemm", inputs, [node.output[0]], name=node.name),
                                          gemm_attrs))

    def simple(self, node) -> None:
        op, xs, (ys, yz) = _SIMPLE[node.op_type]
        inputs = [self.dq(*[_arg(node, i) for i in t]) for t in xs]
        attrs = [a for a in node.attribute if a.name != "channels_last"]
        if any(a.name == "channels_last" and (a.type != a.INT or a.i) for a in node.attribute):
            raise OnnxImportError(f"node {node.name!r} ({node.op_type}): channels_last=1 is not supported")
        y = self.float_node(node, op, inputs, attrs=attrs)
        self.q(y, _arg(node, ys), _arg(node, yz), node.output[0])

    def concat(self, node) -> None:
        rest = list(node.input[2:])
        if len(rest) % 3:
            raise OnnxImportError(f"node {node.name!r} (QLinearConcat): expected (x, scale, zero point) triples after "
                             f"the output's scale and zero point, got {len(node.input)} inputs")
        inputs = [self.dq(*rest[i:i + 3]) for i in range(0, len(rest), 3)]
        y = self.float_node(node, "Concat", inputs, attrs=node.attribute)
        self.q(y, node.input[0], node.input[1], node.output[0])

    def passthrough(self, node) -> None:
        """An op that moves bytes, on a quantized tensor: DQ -> op -> Q with the input's parameters."""
        x = node.input[0]
        scale, zp = self.qparams[x]
        inputs = [self.dq(x, scale, zp)] + list(node.input[1:])
        if len(node.output) != 1:
            raise OnnxImportError(f"node {node.name!r} ({node.op_type}) on quantized tensor {x!r}: only one output is supported")
        y = self.float_node(node, node.op_type, inputs, domain=node.domain, attrs=node.attribute)
        self.q(y, scale, zp, node.output[0])

    def run(self):
        for node in self.model.graph.node:
            guarded(f"node {node.name!r} ({node.op_type})", self.rewrite, node)
        return self.nodes, self.new_inits

    def rewrite(self, node) -> None:
        """One node of the model, rewritten into self.nodes."""
        op = node.op_type
        if node.domain not in ("", "ai.onnx", MS_DOMAIN):
            self.nodes.append(node)
        elif op == "QLinearConv":
            self.conv(node)
        elif op == "QGemm":
            self.gemm(node)
        elif op in _SIMPLE:
            self.simple(node)
        elif op == "QLinearConcat":
            self.concat(node)
        elif op == "QuantizeLinear":
            self.nodes.append(node)
            self.qparams[node.output[0]] = (_arg(node, 1), _arg(node, 2))
        elif op == "DequantizeLinear":
            self.nodes.append(node)
        elif node.input and node.input[0] in self.qparams:
            if op not in PASSTHROUGH_OPS:
                raise OnnxImportError(f"node {node.name!r} ({op}) reads quantized tensor {node.input[0]!r}, "
                                 f"but only {', '.join(PASSTHROUGH_OPS)} may (they keep its quantization)")
            self.passthrough(node)
        else:
            bad = [i for i in node.input if i in self.qparams]
            if bad:
                raise OnnxImportError(f"node {node.name!r} ({op}) reads quantized tensor {bad[0]!r} as a float input")
            self.nodes.append(node)


def _with_attrs(node, attrs):
    node.attribute.extend(attrs)
    return node


def qoperator_to_qdq(model):
    """A copy of ``model`` (onnx.ModelProto) with its QOperator nodes rewritten as QDQ groups."""
    import onnx

    nodes, inits = _Rewriter(model).run()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(inits)
    return out
