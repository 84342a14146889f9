"""float: a float graph node left float32 inside a quantized plan (excluded, or no int8 step for it).

=====  ============================================================================================
float  attrs "op" and "attrs", consts as in the graph IR (graph/ir.py), and "int8_form" (set by
       the quantizer: the node's op has an int8 step, so it runs float32 by choice; informative,
       QuantizedModel.float_nodes); float32 inputs and output
       in the float graph's layout. Validated, run and shape-checked as a one-node float Graph
       (model/float_graph.py); the lowering maps the node to one of the C++ executor's float32
       steps (float_ops.cpp), or to a ``host`` step (the Python float executor, called back)
=====  ============================================================================================
"""
from __future__ import annotations

import numpy as np

from ..float_graph import float_node_graph
from ..plan_types import FLOAT
from .common import softmax_record
from .kind import StepKind


def _check(step, ins, out):
    """A float step must be a valid float graph node producing its declared output shape."""
    if not isinstance(step.attrs.get("op"), str) or not isinstance(step.attrs.get("attrs"), dict):
        raise ValueError("a float step needs attrs 'op' (str) and 'attrs' (dict)")
    if any(spec.dtype != FLOAT for spec in ins):
        raise ValueError("a float step reads float32 tensors")
    try:
        g = float_node_graph(step, ins)
    except Exception as e:  # the graph builder's own message: which attribute or shape is wrong
        raise ValueError(f"not a valid float node: {type(e).__name__}: {e}") from None
    if tuple(g.tensors[g.outputs[0]].shape) != tuple(out.shape):
        raise ValueError(f"computes shape {g.tensors[g.outputs[0]].shape}, but declares {out.shape}")


def _run(m, step, xs, ins, out, w):
    """A float graph node, run by the float graph executor."""
    return float_node_graph(step, ins).run({f"in{i}": x for i, x in enumerate(xs)})


# ---- lowering -----------------------------------------------------------------------------------

_BIG = float(np.finfo(np.float32).max)

# float elementwise nodes -> (fn, a, b) of the executor's float activations
_FLOAT_UNARY = {
    "relu": lambda at: ("clip", 0.0, _BIG),
    "relu6": lambda at: ("clip", 0.0, 6.0),
    "clip": lambda at: ("clip", -_BIG if at["min"] is None else float(at["min"]),
                        _BIG if at["max"] is None else float(at["max"])),
    "leaky_relu": lambda at: ("leaky_relu", float(at["negative_slope"]), 0.0),
    "sigmoid": lambda at: ("sigmoid", 0.0, 0.0),
    "tanh": lambda at: ("tanh", 0.0, 0.0),
    "hardswish": lambda at: ("hardswish", 0.0, 0.0),
    "gelu": lambda at: ("gelu_tanh" if at["approximate"] == "tanh" else "gelu", 0.0, 0.0),
    "hardsigmoid": lambda at: ("hardsigmoid", float(at["alpha"]), float(at["beta"])),
    "erf": lambda at: ("erf", 0.0, 0.0),
}


def _clamp(activation) -> tuple:
    """A float layer's fused activation as the clamp [lo, hi] of its output."""
    if activation is None:
        return -_BIG, _BIG
    if activation == "relu":
        return 0.0, _BIG
    return float(activation[1]), float(activation[2])  # ("clip", lo, hi)


def _lower(step, ins, out) -> dict:
    """A float graph node as one of the executor's float32 steps, or a host step (the Python
    float executor) for a form none of them takes."""
    node_op, at, c = step.attrs["op"], step.attrs["attrs"], step.consts
    rank = len(ins[0].shape) if ins else 0
    if node_op == "conv2d" and rank == 4:
        lo, hi = _clamp(at.get("activation"))
        return {"kind": "float_conv", "strides": list(at["stride"]), "pads": list(at["pads"]),
                "dilations": list(at["dilation"]), "group": int(at["groups"]), "lo": lo, "hi": hi}
    if node_op in ("linear", "matmul") and rank >= 2:
        lo, hi = _clamp(at.get("activation"))
        return {"kind": "float_linear", "weight": "weight" if node_op == "linear" else "b",
                "transposed": node_op == "matmul", "lo": lo, "hi": hi}
    if node_op in _FLOAT_UNARY:
        fn, a, b = _FLOAT_UNARY[node_op](at)
        return {"kind": "float_unary", "fn": fn, "a": a, "b": b}
    if node_op in ("flatten", "reshape", "identity", "dropout"):
        return {"kind": "reshape"}  # a float tensor in the graph's layout: the same bytes
    if node_op == "batch_norm2d":  # the float executor's formula (graph/float_exec.py)
        scale = c["weight"].astype(np.float64) / np.sqrt(c["var"].astype(np.float64) + at["eps"])
        shift = c["bias"] - c["mean"].astype(np.float64) * scale
        return {"kind": "float_affine", "scale": scale.astype(np.float32), "shift": shift.astype(np.float32)}
    if node_op in ("add", "mul", "div"):
        # the graph's apply_activation: np.maximum(y, 0) keeps +inf, so relu's clamp is [0, inf)
        act = at.get("activation")
        lo, hi = (-np.inf, np.inf) if act is None else (0.0, np.inf) if act == "relu" else (act[1], act[2])
        b = c.get("b")
        record = {"kind": "float_binary", "fn": node_op, "lo": float(lo), "hi": float(hi),
                  "b": None if b is None else np.ascontiguousarray(b, np.float32)}
        if at.get("b_seq_axis") is not None:  # b: a table whose first S entries along that axis are used
            record["b_seq_axis"] = int(at["b_seq_axis"])
        return record
    if node_op == "bmm":
        return {"kind": "float_bmm"}
    if node_op in ("max_pool2d", "avg_pool2d") and rank == 4:
        return {"kind": "float_pool", "average": node_op == "avg_pool2d",
                "count_include_pad": bool(at.get("count_include_pad", True)), "kernel": list(at["kernel_size"]),
                "strides": list(at["stride"]), "pads": list(at["pads"])}
    if node_op == "global_avg_pool2d" and rank == 4:
        return {"kind": "float_pool", "average": True, "count_include_pad": True, "kernel": list(ins[0].shape[2:]),
                "strides": [1, 1], "pads": [0, 0, 0, 0]}
    if node_op == "concat":
        return {"kind": "float_concat", "axis": int(at["axis"])}
    if node_op == "transpose":
        return {"kind": "float_transpose", "perm": [int(p) for p in at["perm"]]}
    if node_op == "pad":
        return {"kind": "float_pad", "pads": [int(p) for p in at["pads"]], "mode": at["mode"],
                "value": float(at["value"])}
    if node_op == "layer_norm":
        return {"kind": "float_layer_norm", "axes": len(at["normalized_shape"]), "eps": float(at["eps"]),
                "weight": c.get("weight"), "bias": c.get("bias")}
    if node_op == "additive_mask":
        return {"kind": "additive_mask", "fill": float(at["fill"])}
    if node_op == "padded_positions":
        return {"kind": "padded_positions", "pad": int(at["pad"])}
    if node_op == "select":
        return {"kind": "float_select", "axis": int(at["axis"]), "index": int(at["index"])}
    if node_op == "reduce":
        return {"kind": "float_reduce", "mode": at["mode"], "axes": [int(a) for a in at["axes"]],
                "keepdims": bool(at["keepdims"])}
    if node_op == "softmax":  # the softmax step's double formula, as a quantized model's softmax
        return softmax_record(at["axis"], len(out.shape), at.get("scale"))
    return {"kind": "host"}


# ---- ONNX export --------------------------------------------------------------------------------

def reads_float_weights(step) -> bool:
    """A float Conv / Gemm / MatMul: ONNX Runtime quantizes its float weights when its input comes
    from a per-tensor DequantizeLinear (the dequantize step's exporter avoids that)."""
    return step.op == "float" and step.attrs.get("op") in ("conv2d", "linear", "matmul")


def _export(ex, step, label):
    from ...onnx.export_float import emit_float_node

    ins = [ex.spec(n) for n in step.inputs]
    emit_float_node(ex.b, step.attrs["op"], label, list(step.inputs), step.output, step.attrs["attrs"],
                    step.consts, [len(s.shape) for s in ins])


FLOAT_NODE = StepKind("float", None, "float", check=_check, shape=lambda step, ins: None, run=_run, lower=_lower,
                      export=_export, export_ops=lambda step, lut: {step.attrs.get("op")})
