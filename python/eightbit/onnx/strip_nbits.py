"""A model with block-quantized 4-bit weights -> float ONNX model + the blocks' codes and scales.
Two forms: ONNX Runtime's com.microsoft MatMulNBits (``matmul_nbits_quantizer``), and the opset-21
QDQ form, a blocked DequantizeLinear of int4 weights [K, N] (``block_size`` along axis 0, scales
[K / block, N], no zero point or zeros; uint4 with zero points of 8) feeding MatMul as its B.

    MatMulNBits(A [.., K], B uint8 [N, K / block, block / 2], scales [N, K / block] or flat,
                zero_points?, g_idx?, bias?)  attrs K, N, bits = 4, block_size

B holds each column's codes u in [0, 15], two a byte (the first k in the low nibble), and the weight
is (u - zero_point) * scale with zero point 8 unless given. Each node becomes MatMul(A, W) (+ Add of
its bias) with W [K, N] the dequantized weights; ``blocks[that output]`` keeps the codes
q = u - 8 (int8 in [-8, 7]), the scales and the block size, which the lowering gives the
blockwise_linear step unchanged. Only symmetric weights (no zero point, or every zero point 8) and
no g_idx are taken; K must be a multiple of the block size. eightbit runs its own numerics
(docs/numerics.md: rows quantized to symmetric int8, per-block float sums), not ONNX Runtime's,
whose results depend on its accuracy_level.
"""
from __future__ import annotations

import numpy as np

from .errors import OnnxImportError

_BLOCK_SIZES = (16, 32, 64, 128, 256)


def _attr(node, name, default=None):
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _where(node) -> str:
    return f"node {node.name!r} (MatMulNBits)"


def _zero_points_are_eight(zp: np.ndarray, n: int, blocks: int) -> bool:
    """MatMulNBits zero points: uint8 nibbles [N, ceil(blocks / 2)] or one value per block."""
    if zp.dtype == np.uint8 and zp.size == n * ((blocks + 1) // 2):
        nib = np.stack([zp & 0x0F, zp >> 4], axis=-1).reshape(n, -1)[:, :blocks]
        return bool(np.all(nib == 8))
    return bool(zp.size == n * blocks and np.all(np.asarray(zp, np.float64) == 8))


def strip_nbits(model):
    """(float onnx.ModelProto, {output tensor name: (codes int8 [N, K], scales float32 [N, K / B], B)})."""
    from onnx import helper, numpy_helper

    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    new_nodes, new_inits, blocks = [], [], {}
    for node in g.node:
        if node.op_type != "MatMulNBits":
            new_nodes.append(node)
            continue
        k, n, bits, block = (_attr(node, a) for a in ("K", "N", "bits", "block_size"))
        if bits != 4:
            raise OnnxImportError(f"{_where(node)}: bits={bits}; eightbit imports 4-bit MatMulNBits")
        if block not in _BLOCK_SIZES or not k or k % block:
            raise OnnxImportError(f"{_where(node)}: block_size {block} must be a power of two in [16, 256] "
                                  f"dividing K = {k}")
        ins = list(node.input) + [""] * (6 - len(node.input))
        if ins[1] not in consts or ins[2] not in consts:
            raise OnnxImportError(f"{_where(node)}: B and scales must be constant initializers")
        nb = k // block
        b = np.asarray(consts[ins[1]])
        if b.dtype != np.uint8 or b.size != n * nb * block // 2:
            raise OnnxImportError(f"{_where(node)}: B must be uint8 [N, K / block_size, block_size / 2]")
        scales = np.asarray(consts[ins[2]], np.float32).reshape(-1)
        if scales.size != n * nb or not np.all(np.isfinite(scales)):
            raise OnnxImportError(f"{_where(node)}: scales must be N * K / block_size finite values")
        if ins[3] and not (ins[3] in consts and _zero_points_are_eight(np.asarray(consts[ins[3]]), n, nb)):
            raise OnnxImportError(f"{_where(node)}: asymmetric weights (zero points other than 8) are not "
                                  "supported; quantize with is_symmetric=True")
        if ins[4]:
            raise OnnxImportError(f"{_where(node)}: g_idx (act-order) is not supported")
        b = b.reshape(n, k // 2)
        codes = (np.stack([b & 0x0F, b >> 4], axis=-1).reshape(n, k).astype(np.int16) - 8).astype(np.int8)
        scales = scales.reshape(n, nb)
        w = (codes.astype(np.float32) * np.repeat(scales, block, axis=1)).T      # [K, N]
        w_name = f"{node.output[0]}.nbits_weight"
        new_inits.append(numpy_helper.from_array(np.ascontiguousarray(w, np.float32), w_name))
        out = node.output[0]
        if ins[5]:  # the Add may or may not be fused into the layer: both names know the weights
            mm_out = f"{out}.nbits_matmul"
            new_nodes.append(helper.make_node("MatMul", [ins[0], w_name], [mm_out], name=f"{node.name}.matmul"))
            new_nodes.append(helper.make_node("Add", [mm_out, ins[5]], [out], name=f"{node.name}.bias"))
            blocks[mm_out] = (codes, scales, block)
        else:
            new_nodes.append(helper.make_node("MatMul", [ins[0], w_name], [out], name=node.name))
        blocks[out] = (codes, scales, block)
    new_nodes = _blocked_dequantize(new_nodes, consts, new_inits, blocks)
    if not blocks:
        return model, {}
    out = helper.make_model(helper.make_graph(new_nodes, g.name, list(g.input), list(g.output),
                                              list(g.initializer) + new_inits, value_info=list(g.value_info)),
                            opset_imports=[o for o in model.opset_import if o.domain in ("", "ai.onnx")])
    return out, blocks


def _blocked_dequantize(nodes, consts, new_inits, blocks):
    """Each blocked DequantizeLinear of int4 weights read only as MatMul's B -> a float initializer,
    its codes and scales recorded under the MatMul's output."""
    from onnx import numpy_helper
    readers: dict = {}
    for n in nodes:
        for i, name in enumerate(n.input):
            readers.setdefault(name, []).append((n, i))
    kept = []
    for node in nodes:
        block = _attr(node, "block_size", 0) if node.op_type == "DequantizeLinear" else 0
        if not block:
            kept.append(node)
            continue
        where = f"node {node.name!r} (DequantizeLinear, block_size {block})"
        ins = list(node.input) + [""] * (3 - len(node.input))
        users = readers.get(node.output[0], [])
        if ins[0] not in consts or ins[1] not in consts or not users or \
                any(u.op_type != "MatMul" or i != 1 for u, i in users):
            raise OnnxImportError(f"{where}: blocked weights are imported as constant int4 weights read only "
                                  "as MatMul's second input")
        q = np.asarray(consts[ins[0]])
        zp = np.asarray(consts[ins[2]]) if ins[2] else None
        if q.ndim != 2 or _attr(node, "axis", 1) not in (0, -2):
            raise OnnxImportError(f"{where}: expected 2-D weights [K, N] blocked along axis 0")
        k, n = q.shape
        if q.dtype.name == "int4" and (zp is None or not np.any(zp.astype(np.int8))):
            codes = q.astype(np.int8)
        elif q.dtype.name == "uint4" and zp is not None and np.all(zp.astype(np.int16) == 8):
            codes = (q.astype(np.int16) - 8).astype(np.int8)
        else:
            raise OnnxImportError(f"{where}: expected symmetric int4 weights (int4 without zero point, or "
                                  f"uint4 with zero points of 8), got {q.dtype}")
        if block not in _BLOCK_SIZES or k % block:
            raise OnnxImportError(f"{where}: block_size must be a power of two in [16, 256] dividing K = {k}")
        scales = np.asarray(consts[ins[1]], np.float32)
        if scales.shape != (k // block, n) or not np.all(np.isfinite(scales)):
            raise OnnxImportError(f"{where}: scales must be [{k // block}, {n}] finite values")
        w = codes.astype(np.float32) * np.repeat(scales, block, axis=0)           # [K, N]
        new_inits.append(numpy_helper.from_array(np.ascontiguousarray(w), node.output[0]))
        for user, _ in users:
            blocks[user.output[0]] = (np.ascontiguousarray(codes.T), np.ascontiguousarray(scales.T), block)
    return kept