"""blockwise_linear: a linear layer with block-quantized low-bit weights (eightbit.lowbit).

================  ================================================================================
blockwise_linear  float32 x [N, ..., K] -> float32 [N, ..., O]: rows quantized to symmetric int8
                  at run time; ``w_codes`` uint8 [O, K / 2] (two codes a byte, ONNX's int4 packing:
                  the first in the low nibble, two's complement, each in [-8, 7]), ``w_scales``
                  float32 [O, K / block_size], ``bias`` float32 [O]. attrs: block_size (a power of
                  two in [16, 256] dividing K), bits (2-4: the grid the codes were made on),
                  activation (None or "relu"). reference.blockwise_linear
================  ================================================================================

ONNX export (opset 21, the standard form of int4 weights; eb.to_onnx picks opset 21 for a model
with these steps and refuses a lower one):

    W = DequantizeLinear(int4 [K, O], float32 scales [K / block_size, O], axis=0, block_size)
    y = MatMul(x, W) -> Add(bias) (left out when every bias is 0) -> Relu (activation "relu")

MatMul wants its B as [K, N], so the blocks run along axis 0; x of rank > 2 keeps its leading
dimensions (MatMul broadcasts). Codes on the 2- and 3-bit grids are int4 codes too (``bits`` is
not written: an import gives bits 4, same codes and scales). The run-time quantization of x's rows
to int8 is eightbit's execution choice (as MatMulNBits' accuracy_level is ONNX Runtime's) and is
not exported: ONNX Runtime multiplies the float x, so its result differs from eightbit's by that
rounding, at most half a step (row max |x| / 254) per element of x.
"""
from __future__ import annotations

import numpy as np

from ...reference.blockwise import BLOCK_SIZES, pack_nibbles, unpack_nibbles
from .kind import StepKind

CONSTS = ("w_codes", "w_scales", "bias")


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """int8 codes [O, K] in [-8, 7] -> the step's w_codes."""
    return pack_nibbles(codes)


def codes_of_nibbles(w_codes: np.ndarray) -> np.ndarray:
    """The step's w_codes -> int8 codes [O, K] (pack_codes' inverse)."""
    return unpack_nibbles(w_codes, 2 * w_codes.shape[1])


def _codes(step) -> np.ndarray:
    return codes_of_nibbles(np.asarray(step.consts["w_codes"]))


def _check(step, ins, out):
    c, a = step.consts, step.attrs
    codes, scales, bias = (np.asarray(c[k]) for k in CONSTS)
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[0] == 0:
        raise ValueError(f"w_codes must be a 2-D uint8 array [O, K / 2], got {codes.dtype} {codes.shape}")
    o, k = codes.shape[0], 2 * codes.shape[1]
    block = a.get("block_size")
    if block not in BLOCK_SIZES or k % block:
        raise ValueError(f"block_size must be one of {BLOCK_SIZES} and divide K = {k}, got {block!r}")
    if a.get("bits") not in (2, 3, 4):
        raise ValueError("bits must be 2, 3 or 4")
    if scales.dtype != np.float32 or scales.shape != (o, k // block) or not np.all(np.isfinite(scales)):
        raise ValueError(f"w_scales must be [{o}, {k // block}] finite float32 values")
    if bias.dtype != np.float32 or bias.shape != (o,) or not np.all(np.isfinite(bias)):
        raise ValueError(f"bias must be {o} finite float32 values")
    if a.get("activation") not in (None, "relu"):
        raise ValueError("activation must be None or 'relu'")


def _shape(step, ins):
    x, k = ins[0].shape, 2 * step.consts["w_codes"].shape[1]
    if len(x) < 2 or x[-1] != k:
        raise ValueError(f"input {x} does not match the weights' K = {k}")
    return tuple(x[:-1]) + (step.consts["w_codes"].shape[0],)


def _run(m, step, xs, ins, out, w):
    c, a = step.consts, step.attrs
    return m.blockwise_linear(xs[0], w, c["w_scales"], a["block_size"], c["bias"], a.get("activation"))


def _pack(ops, step):
    from ...lowbit import Int4Weights
    return Int4Weights(_codes(step), np.asarray(step.consts["w_scales"]), step.attrs["block_size"],
                       step.attrs.get("bits", 4))


def _lower(step, ins, out):
    return {"kind": "blockwise_linear", "block_size": int(step.attrs["block_size"]),
            "relu": step.attrs.get("activation") == "relu"}


def int4_tensor(name: str, codes_kn: np.ndarray):
    """An ONNX int4 TensorProto of int8 codes [K, N] in [-8, 7]: raw bytes in ONNX's int4 packing
    (row-major, two elements a byte, the first in the low nibble), as pack_nibbles writes them."""
    from onnx import TensorProto, helper
    flat = pack_nibbles(np.ascontiguousarray(codes_kn).reshape(1, -1))    # K * N is even: K is a block multiple
    return helper.make_tensor(name, TensorProto.INT4, list(codes_kn.shape), flat.tobytes(), raw=True)


def _export(ex, step, label):
    """int4 weights [K, O] -> blocked DequantizeLinear -> MatMul(x, W) -> Add bias -> Relu (docstring)."""
    b, c, y = ex.b, step.consts, step.output
    block = int(step.attrs["block_size"])
    w_name = b.fresh(f"{label}.weight_int4")
    b.inits.append(int4_tensor(w_name, _codes(step).T))
    scales = b.const(f"{label}.weight_scale", np.asarray(c["w_scales"], np.float32).T)
    w = ex.tmp(f"{label}.weight")
    b.node("DequantizeLinear", [w_name, scales], [w], f"{label}.weight_dq", axis=0, block_size=block)
    bias = np.asarray(c["bias"], np.float32)
    has_bias, relu = bool(np.any(bias != 0)), step.attrs.get("activation") == "relu"
    out = y if not (has_bias or relu) else ex.tmp(f"{y}.matmul")
    b.node("MatMul", [step.inputs[0], w], [out], label)
    if has_bias:
        biased = ex.tmp(f"{y}.biased") if relu else y
        b.node("Add", [out, b.const(f"{label}.bias", bias)], [biased], f"{label}.bias_add")
        out = biased
    if relu:
        b.node("Relu", [out], [y], f"{label}.relu")


BLOCKWISE_LINEAR = StepKind("blockwise_linear", 1, "float", consts=CONSTS, check=_check, shape=_shape, run=_run,
                            weights=_codes, pack=_pack, lower=_lower, export=_export,
                            export_ops=lambda step, lut: {"int4_blocked_dequantize"})
