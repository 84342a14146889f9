"""QDQ model -> float ONNX model + the quantization it carried.

    DequantizeLinear(constant w_int, s, zp)     -> float initializer (w_int - zp) * s (float32), named
                                                   as the DQ's output; recorded per consuming node
    QuantizeLinear(t, s, zp) -> DequantizeLinear -> removed; consumers read t; tensor_qparams[t] = (s, zp)

``node_qparams[node name]`` holds, for each Conv / Gemm / MatMul whose weight (input 1) is a
DequantizeLinear of a constant: ``w_scale`` (float32 scalar or one per output channel),
``w_zero_point`` (same shape, the weight's dtype) and ``bias``: the exact int32 bias when input 2 is
a DequantizeLinear of an int32 constant, else None. ``tensor_qparams[tensor]`` is ``(scale float32,
zero point numpy scalar of uint8 / int8)``. When the DQ's output is a graph output, the float
tensor takes the DQ's output name (graph output names never change).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import OnnxImportError, guarded

_WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
_ACT_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))


@dataclass
class StrippedModel:
    model: object            # onnx.ModelProto, float
    tensor_qparams: dict     # tensor name -> (scale float32, zero point uint8/int8 scalar)
    node_qparams: dict       # node name -> {"w_scale", "w_zero_point", "bias"}


def _where(node) -> str:
    return f"node {node.name!r} ({node.op_type})"


class _Stripper:
    def __init__(self, model):
        from onnx import numpy_helper

        self.nh = numpy_helper
        self.model = model
        g = model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.nodes = []
        for n in g.node:        # Constant nodes become constants
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                if len(n.attribute) != 1 or n.attribute[0].name != "value":
                    self.nodes.append(n)
                    continue
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
            else:
                self.nodes.append(n)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = [o.name for o in g.output]

    def const(self, name: str, node, what: str) -> np.ndarray:
        if not name:
            raise OnnxImportError(f"{_where(node)}: missing {what}")
        if name not in self.consts:
            raise OnnxImportError(f"{_where(node)}: {what} {name!r} must be a constant (an initializer), "
                             "it is computed at run time")
        return self.consts[name]

    def qparams(self, node):
        """(scale float32 array, zero point array, axis) of a QuantizeLinear / DequantizeLinear."""
        if len(node.input) < 2:
            raise OnnxImportError(f"{_where(node)}: missing the scale input")
        scale = self.const(node.input[1], node, "scale")
        if scale.dtype != np.float32:
            raise OnnxImportError(f"{_where(node)}: scale must be float32, got {scale.dtype}")
        if not np.all(np.isfinite(scale) & (scale > 0)):
            raise OnnxImportError(f"{_where(node)}: scale must be finite and > 0, got {scale.ravel()[:4]}")
        if len(node.input) > 2 and node.input[2]:
            zp = self.const(node.input[2], node, "zero point")
            if zp.size != scale.size:
                raise OnnxImportError(f"{_where(node)}: zero point shape {zp.shape} differs from scale shape {scale.shape}")
            zp = zp.reshape(scale.shape)
        else:
            zp = np.zeros(scale.shape, np.uint8)
        attrs = {a.name: a for a in node.attribute}
        if "block_size" in attrs and attrs["block_size"].i:
            raise OnnxImportError(f"{_where(node)}: blocked quantization (block_size) is not supported")
        if "axis" in attrs and attrs["axis"].type != attrs["axis"].INT:
            raise OnnxImportError(f"{_where(node)}: attribute axis must be an int")
        axis = attrs["axis"].i if "axis" in attrs else 1
        return scale, zp, axis

    def weight(self, dq) -> np.ndarray:
        """float32 (w - zp) * s of a DequantizeLinear on a constant, broadcast along its axis."""
        w = self.const(dq.input[0], dq, "quantized constant")
        if w.dtype.kind not in "iu" or w.dtype.itemsize > 4:
            raise OnnxImportError(f"{_where(dq)}: dequantizes a constant of dtype {w.dtype}, expected 8, 16 or "
                                  "32-bit integers")
        scale, zp, axis = self.qparams(dq)
        if zp.dtype != w.dtype and (len(dq.input) > 2 and dq.input[2]):
            raise OnnxImportError(f"{_where(dq)}: zero point dtype {zp.dtype} differs from the constant's {w.dtype}")
        if scale.ndim == 1 and scale.size > 1:
            if not -w.ndim <= axis < w.ndim:
                raise OnnxImportError(f"{_where(dq)}: axis={axis} is out of range for a constant of shape "
                                      f"{list(w.shape)}")
            axis = axis % w.ndim
            if w.shape[axis] != scale.size:
                raise OnnxImportError(f"{_where(dq)}: {scale.size} scales along axis {axis} of a {w.shape} tensor")
            shape = [1] * w.ndim
            shape[axis] = scale.size
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        elif scale.size != 1:
            raise OnnxImportError(f"{_where(dq)}: scale must be a scalar or 1-D, got shape {scale.shape}")
        diff = w.astype(np.int64) - zp.astype(np.int64)
        return (diff.astype(np.float32) * scale.astype(np.float32)).astype(np.float32)

    def run(self) -> StrippedModel:
        rename = {}              # tensor name -> the name consumers read instead
        new_consts = {}          # float constants by the DQ output they replace
        tensor_qparams = {}
        remove = set()           # ids of nodes dropped
        out_renames = {}         # float tensor -> graph output name it takes

        for dq in self.nodes:
            if dq.op_type != "DequantizeLinear":
                continue
            src = dq.input[0] if dq.input else ""
            if src in self.consts:
                new_consts[dq.output[0]] = guarded(_where(dq), self.weight, dq)
                remove.add(id(dq))
                continue
            q = self.producer.get(src)
            if q is None or q.op_type != "QuantizeLinear":
                raise OnnxImportError(f"{_where(dq)}: dequantizes {src!r}, which is neither a constant nor the output "
                                 "of a QuantizeLinear (quantized graph inputs are not supported)")
            q_scale, q_zp, _ = guarded(_where(q), self.qparams, q)
            scale, zp, _ = guarded(_where(dq), self.qparams, dq)
            if q_scale.size != 1 or scale.size != 1:
                raise OnnxImportError(f"{_where(dq)}: activations must be quantized per tensor, got scale shape {scale.shape}")
            if (np.float32(q_scale.ravel()[0]) != np.float32(scale.ravel()[0]) or q_zp.dtype != zp.dtype
                    or int(q_zp.ravel()[0]) != int(zp.ravel()[0])):
                raise OnnxImportError(f"{_where(dq)}: its scale / zero point differ from those of {q.name!r} that quantized "
                                 f"{q.input[0]!r} (a requantization: not supported)")
            if zp.dtype not in _ACT_DTYPES:
                raise OnnxImportError(f"{_where(dq)}: activations must be uint8 or int8, got {zp.dtype}")
            t = q.input[0]
            qp = (np.float32(scale.ravel()[0]), zp.dtype.type(zp.ravel()[0]))
            if t in tensor_qparams and (tensor_qparams[t][0] != qp[0] or tensor_qparams[t][1] != qp[1]):
                raise OnnxImportError(f"tensor {t!r} is quantized twice with different parameters")
            tensor_qparams[t] = qp
            rename[dq.output[0]] = t
            remove.add(id(dq))
            if dq.output[0] in self.outputs:
                if t in out_renames and out_renames[t] != dq.output[0]:
                    raise OnnxImportError(f"tensor {t!r} reaches two graph outputs through QDQ")
                out_renames[t] = dq.output[0]
        for q in self.nodes:
            if q.op_type != "QuantizeLinear":
                continue
            users = self.consumers.get(q.output[0], [])
            if any(u.op_type != "DequantizeLinear" for u in users) or q.output[0] in self.outputs:
                raise OnnxImportError(f"{_where(q)}: its quantized output {q.output[0]!r} must feed only DequantizeLinear "
                                 "nodes (quantized graph outputs and integer ops are not supported)")
            t = q.input[0]
            float_users = [u for u in self.consumers.get(t, []) if u.op_type != "QuantizeLinear"]
            if float_users or (t in self.outputs):
                where = f"graph output" if t in self.outputs else f"node {float_users[0].name!r}"
                raise OnnxImportError(f"tensor {t!r} is quantized by {q.name!r} but {where} also reads it unquantized: "
                                 "not supported")
            remove.add(id(q))

        # Tensor names after the rewrite: consumers read through DQ renames, a float tensor that
        # reaches a graph output takes the output's name.
        def final(name):
            name = rename.get(name, name)
            return out_renames.get(name, name)

        node_qparams = {}
        kept = []
        for n in self.nodes:
            if id(n) in remove:
                continue
            if n.op_type in _WEIGHT_OPS and len(n.input) > 1 and n.input[1] in new_consts:
                node_qparams[n.name] = guarded(_where(n), self.node_weights, n)
            kept.append(n)
        return self.build(kept, new_consts, final, tensor_qparams, out_renames, node_qparams)

    def node_weights(self, n) -> dict:
        if not n.name:
            raise OnnxImportError(f"a {n.op_type} node with quantized weights has no name; name the nodes")
        dq_w = self.producer[n.input[1]]
        w_scale, w_zp, _ = self.qparams(dq_w)
        bias = None
        if len(n.input) > 2 and n.input[2]:
            dq_b = self.producer.get(n.input[2])
            if dq_b is not None and dq_b.op_type == "DequantizeLinear" and dq_b.input[0] in self.consts:
                b = self.consts[dq_b.input[0]]
                if b.dtype != np.int32:
                    raise OnnxImportError(f"{_where(dq_b)}: a quantized bias must be int32, got {b.dtype}")
                b_scale, b_zp, _ = self.qparams(dq_b)
                if np.any(b_zp != 0):
                    raise OnnxImportError(f"{_where(dq_b)}: a quantized bias must have zero point 0")
                bias = b.reshape(-1).astype(np.int32)
        return {"w_scale": w_scale.astype(np.float32), "w_zero_point": w_zp, "bias": bias}

    def build(self, kept, new_consts, final, tensor_qparams, out_renames, node_qparams) -> StrippedModel:
        import onnx
        from onnx import helper

        nodes = []
        used = set()
        for n in kept:
            m = onnx.NodeProto()
            m.CopyFrom(n)
            m.input[:] = [final(i) if i else i for i in n.input]
            m.output[:] = [final(o) for o in n.output]
            nodes.append(m)
            used.update(m.input)
        # float constants for DQ'd initializers, and the original float constants still read
        inits = [self.nh.from_array(v, k) for k, v in new_consts.items() if k in used]
        inits += [self.nh.from_array(v, k) for k, v in self.consts.items() if k in used and k not in new_consts]
        g = self.model.graph
        out_names = [o.name for o in g.output]
        qp = {out_renames.get(t, t): v for t, v in tensor_qparams.items()}
        graph = helper.make_graph(nodes, g.name, list(g.input), list(g.output), inits)
        inputs = {i.name for i in g.input}
        graph.value_info.extend(v for v in g.value_info if v.name in used and v.name not in inputs
                                and v.name not in out_names and v.name not in new_consts
                                and v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT)
        domains = {n.domain for n in nodes} | {"", "ai.onnx"}
        model = helper.make_model(graph, opset_imports=[o for o in self.model.opset_import if o.domain in domains])
        model.ir_version = self.model.ir_version
        return StrippedModel(model, qp, node_qparams)


def strip_qdq(model) -> StrippedModel:
    """Split a QDQ model (onnx.ModelProto) into a float model and its quantization parameters."""
    return _Stripper(model).run()
