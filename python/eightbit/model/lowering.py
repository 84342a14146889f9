"""Lowering: every step of a Plan resolved into the record the C++ executor runs (``Step.lowered``,
stored in the ``.eb`` file and read by ``csrc/model/build.cpp``; docs/format.md lists the kinds).

Every parameter that follows a numerics rule is computed here, once, exactly as ``eightbit.ops``
computes it per call (float / fixed-point multipliers, the fused activation's clamp bounds,
QLinearAdd's operand order, QLinearConcat's requantization tables), so C++ only checks, packs and
executes, and its results are bit-identical to ``run_plan(plan, feeds, eightbit.ops)`` and to
eightbit.reference. softmax is a float island: the executor computes it in double and rounds once
(within a few float32 ulp of execute.py's NumPy formula). ``float`` steps become C++ float32 steps
(float_ops.cpp, accurate to float32 rounding against graph/float_exec.py); a form none of them
takes is a ``host`` step, which only the Python package runs (the float graph executor, called
back with the GIL taken for that step only); the C library refuses such a model.
"""
from __future__ import annotations

import numpy as np

from ..numerics.broadcast import qlinear_add_b_first
from ..numerics.clamp import activation_range
from ..numerics.requant import requant_multipliers
from ..numerics.tables import requantize_table
from .plan import Plan, Step, TensorSpec


def _scale_zp(spec: TensorSpec):
    """(scale, zero point) as the ops receive them: float32 and a 0-d array of the tensor's dtype."""
    return np.float32(spec.scale), np.asarray(spec.dtype.type(spec.zero_point))


def _shape(spec: TensorSpec) -> list:
    if any(d is None for d in spec.shape[1:]):
        raise NotImplementedError(f"tensor {spec.name!r}: only the batch dimension may be free, got {spec.shape}")
    return [-1 if d is None else int(d) for d in spec.shape]



def _conv(step: Step, x: TensorSpec, y: TensorSpec) -> dict:
    a = step.attrs
    x_s, _ = _scale_zp(x)
    y_s, y_zp = _scale_zp(y)
    w_s = np.asarray(step.consts["w_scale"], np.float32).reshape(-1)
    qmin, qmax = activation_range(a.get("activation"), y_s, y_zp, y.dtype)
    rec = {"kind": "conv", "strides": list(a.get("strides", (1, 1))), "pads": list(a.get("pads", (0, 0, 0, 0))),
           "dilations": list(a.get("dilations", (1, 1))), "group": int(a.get("group", 1)),
           "qmin": int(qmin), "qmax": int(qmax)}
    requant = a.get("requant", "float")
    if requant == "float":
        rec["multiplier"] = np.ascontiguousarray(requant_multipliers(x_s, w_s, y_s, "float"), np.float32)
    elif requant == "fixed":
        m0_shift = requant_multipliers(x_s, w_s, y_s, "fixed")
        rec["m0"], rec["shift"] = (np.ascontiguousarray(v, np.int32).reshape(-1) for v in m0_shift)
    else:
        raise ValueError(f"requant must be 'float' or 'fixed', got {requant!r}")
    return rec


def _add_order(a: TensorSpec, b: TensorSpec) -> list:
    """ONNX Runtime's QLinearAdd operand order for batch <= 1 and batch > 1: the rule only compares
    extents with 1, so these two batch sizes stand for all."""
    def with_batch(spec, n):
        return (n,) + tuple(spec.shape[1:])
    return [int(bool(qlinear_add_b_first(with_batch(a, n), with_batch(b, n)))) for n in (1, 2)]


def _concat_tables(ins, out: TensorSpec) -> list:
    """Per input: QLinearConcat's requantization table, or None where it is the identity."""
    return [requantize_table(*_scale_zp(s), *_scale_zp(out), out.dtype) for s in ins]


def _window(a: dict) -> dict:
    return {"kernel": list(a["kernel"]), "strides": list(a["strides"]), "pads": list(a["pads"]),
            "ceil_mode": bool(a.get("ceil_mode", 0))}


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


def _float_step(step: Step, ins: list, out: TensorSpec) -> dict:
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
        return {"kind": "float_binary", "fn": node_op, "lo": float(lo), "hi": float(hi),
                "b": None if b is None else np.ascontiguousarray(b, np.float32)}
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
    if node_op == "softmax":  # the softmax step's double formula, as a quantized model's softmax
        return {"kind": "softmax", "axis": int(at["axis"]) % len(out.shape)}
    return {"kind": "host"}


def lower_step(plan: Plan, step: Step) -> dict:
    """The executor's record of one step of a validated plan."""
    ins = [plan.tensors[n] for n in step.inputs]
    out = plan.tensors[step.output]
    op, a = step.op, step.attrs
    if op in ("conv", "max_pool", "avg_pool", "global_avg_pool") and len(ins[0].shape) != 4:
        raise NotImplementedError(f"{op}: only 2-D (NHWC) windows run in the C++ executor")
    if op in ("quantize", "dequantize", "global_avg_pool", "reshape", "lut"):
        return {"kind": op}
    if op in ("conv", "linear"):
        return _conv(step, ins[0], out)
    if op in ("add", "mul"):
        return {"kind": "binary", "mul": op == "mul",
                "b_first": _add_order(ins[0], ins[1]) if op == "add" else [0, 0]}
    if op == "max_pool":
        return {"kind": "max_pool", **_window(a), "dilations": list(a.get("dilations", (1, 1)))}
    if op == "avg_pool":
        return {"kind": "avg_pool", **_window(a), "count_include_pad": bool(a.get("count_include_pad", 1))}
    if op == "concat":
        return {"kind": "concat", "axis": int(a["axis"]) % len(out.shape), "tables": _concat_tables(ins, out)}
    if op == "softmax":
        return {"kind": "softmax", "axis": int(a["axis"]) % len(out.shape)}
    if op == "dynamic_linear":
        return {"kind": "dynamic_linear", "relu": a.get("activation") == "relu",
                "per_tensor": a.get("granularity", "row") == "tensor"}
    if op == "float":
        return _float_step(step, ins, out)
    raise NotImplementedError(f"the C++ executor has no {op!r} step")


def lower(plan: Plan) -> Plan:
    """The plan with every step's ``lowered`` record filled in (a new Plan; constants shared).
    Raises NotImplementedError for a plan the C++ executor cannot run (a free dimension other
    than the batch, a window that is not 2-D)."""
    for spec in plan.tensors.values():
        _shape(spec)
    steps = []
    for i, s in enumerate(plan.steps):
        try:
            lowered = lower_step(plan, s)
        except (NotImplementedError, ValueError) as e:
            raise type(e)(f"step {i} ({s.op}, from {s.source or '?'}): {e}") from None
        steps.append(Step(s.op, s.inputs, s.output, s.attrs, s.consts, s.source, lowered))
    return Plan(plan.tensors, steps, plan.inputs, plan.outputs)
