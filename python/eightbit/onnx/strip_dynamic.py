"""A model quantized by onnxruntime.quantization.quantize_dynamic -> float ONNX model + its weights'
quantization.

quantize_dynamic writes each MatMul / Gemm as

    x -> DynamicQuantizeLinear -> (x_q, x_scale, x_zp)
    MatMulInteger(x_q, W_int8 [K, N], x_zp, W_zp?) -> Cast(float) -> Mul(x_scale * W_scale) -> Add(bias)?

which ONNX Runtime runs (fused into DynamicQuantizeMatMul or not: the same bits) as
``float32(acc) * float32(x_scale * w_scale[n]) + bias[n]`` with x quantized over the whole tensor.
Each such group becomes ``MatMul(x, (W_int8 - W_zp) * W_scale)`` (+ the Add), whose final output
tensor keeps its name; ``weights[that tensor]`` records ``w_scale`` and ``w_zero_point`` so the
lowering can re-quantize the float weights to the model's integers exactly.
"""
from __future__ import annotations

import numpy as np

from .errors import OnnxImportError, guarded


def _where(node) -> str:
    return f"node {node.name!r} ({node.op_type})"


def strip_dynamic(model):
    """(float onnx.ModelProto, {output tensor name: {"w_scale", "w_zero_point"}})."""
    from onnx import helper, numpy_helper

    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def only_consumer(tensor, op_type, node):
        users = consumers.get(tensor, [])
        if len(users) != 1 or users[0].op_type != op_type:
            raise OnnxImportError(f"{_where(node)}: expected its output to feed one {op_type}, as "
                                  "quantize_dynamic writes it")
        return users[0]

    removed, new_nodes, new_inits, weights = set(), {}, [], {}

    def rewrite_group(mm):
        """Rewrite the quantize_dynamic group of MatMulInteger `mm`."""
        dq = producer.get(mm.input[0])
        if dq is None or dq.op_type != "DynamicQuantizeLinear" or list(mm.input[2:3]) != [dq.output[2]] \
                or mm.input[1] not in consts:
            raise OnnxImportError(f"{_where(mm)}: expected MatMulInteger(DynamicQuantizeLinear(x), constant "
                                  "weights, its zero point) as quantize_dynamic writes it")
        w = consts[mm.input[1]]
        w_zp = consts.get(mm.input[3], np.zeros((), w.dtype)) if len(mm.input) > 3 and mm.input[3] else \
            np.zeros((), w.dtype)
        cast = only_consumer(mm.output[0], "Cast", mm)
        mul = only_consumer(cast.output[0], "Mul", cast)
        scale_name = next(i for i in mul.input if i != cast.output[0])
        scale_mul = producer.get(scale_name)
        if scale_mul is None or scale_mul.op_type != "Mul" or dq.output[1] not in scale_mul.input:
            raise OnnxImportError(f"{_where(mul)}: expected the product of the input scale and the weight scale")
        w_scale_name = next(i for i in scale_mul.input if i != dq.output[1])
        if w_scale_name not in consts or w.ndim != 2:
            raise OnnxImportError(f"{_where(mm)}: needs 2-D constant weights and constant weight scales")
        w_scale = np.asarray(consts[w_scale_name])
        n_out = w.shape[1]
        if w.dtype not in (np.int8, np.uint8) or w_zp.dtype != w.dtype:
            raise OnnxImportError(f"{_where(mm)}: weights and their zero point must be int8 or uint8 (the same), got "
                                  f"{w.dtype} and {w_zp.dtype}")
        if w_scale.dtype != np.float32 or w_scale.size not in (1, n_out) or w_zp.size not in (1, n_out) \
                or not np.all(np.isfinite(w_scale) & (w_scale > 0)):
            raise OnnxImportError(f"{_where(mm)}: weight scales must be 1 or {n_out} positive finite float32 values "
                                  f"and the zero point 1 or {n_out} values, got {w_scale.dtype} {list(w_scale.shape)} "
                                  f"and {list(w_zp.shape)}")
        w_scale = w_scale.reshape(-1) if w_scale.size > 1 else w_scale.reshape(())
        w_zp = w_zp.reshape(-1) if w_zp.size > 1 else w_zp.reshape(())
        out, group = mul.output[0], [mm, cast, mul]
        users = consumers.get(out, [])
        add = users[0] if len(users) == 1 and users[0].op_type == "Add" and \
            any(i in consts for i in users[0].input if i != out) else None
        w_float = ((w.astype(np.int32) - w_zp.astype(np.int32)) * w_scale).astype(np.float32)
        w_name = f"{mm.input[1]}/float"
        new_inits.append(numpy_helper.from_array(w_float, w_name))
        mm_out = out if add is None else f"{out}/matmul"
        nodes = [helper.make_node("MatMul", [dq.input[0], w_name], [mm_out], name=mm.name)]
        if add is not None:
            bias = next(i for i in add.input if i != out)
            nodes.append(helper.make_node("Add", [mm_out, bias], [add.output[0]], name=add.name))
            group.append(add)
            out = add.output[0]
        weights[out] = {"w_scale": w_scale, "w_zero_point": np.asarray(w_zp)}
        new_nodes[id(group[-1])] = nodes
        removed.update(id(n) for n in group[:-1])
        if scale_mul is not None and all(id(u) in removed or u is mul for u in consumers.get(scale_name, [])):
            removed.add(id(scale_mul))

    for mm in g.node:
        if mm.op_type == "MatMulInteger":
            guarded(_where(mm), rewrite_group, mm)
    for dq in (n for n in g.node if n.op_type == "DynamicQuantizeLinear"):
        if any(id(u) not in removed for o in dq.output for u in consumers.get(o, [])):
            raise OnnxImportError(f"{_where(dq)}: its outputs feed something other than a quantize_dynamic "
                                  "MatMulInteger group")
        removed.add(id(dq))
    nodes = []
    for n in g.node:
        if id(n) in new_nodes:
            nodes += new_nodes[id(n)]
        elif id(n) not in removed:
            nodes.append(n)
    graph = helper.make_graph(nodes, g.name, list(g.input), list(g.output), list(g.initializer) + new_inits)
    float_model = helper.make_model(graph, opset_imports=[o for o in model.opset_import if o.domain in ("", "ai.onnx")])
    float_model.ir_version = model.ir_version
    return float_model, weights
