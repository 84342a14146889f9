"""Lowering a Plan to the C++ plan executor (``eightbit._core.PlanExecutor``): one call into C++ per
inference, the GIL released for the whole graph, packed weights owned by the executor, NHWC
between steps and one arena planned by liveness.

Every parameter that follows a numerics rule is computed here exactly as ``eightbit.ops`` computes
it per call (float / fixed-point multipliers, the fused activation's clamp bounds, QLinearAdd's
operand order, QLinearConcat's requantization tables), so the executor only executes and its
results are bit-identical to ``run_plan(plan, feeds, eightbit.ops)`` and to eightbit.reference.
softmax is a float island: the executor computes it in double and rounds once (within a few
float32 ulp of execute.py's NumPy formula). ``float`` steps run as C++ float32 steps (float_ops.cpp,
accurate to float32 rounding against graph/float_exec.py); a form none of them takes calls back
into Python (the float graph executor) with the GIL taken for that step only.
"""
from __future__ import annotations

import numpy as np

from .. import _core
from ..cnn_ops import _requantize_table
from ..numerics.fixed_point import quantize_multiplier
from ..numerics.qparams import float_multiplier
from ..ops import _activation_range
from ..reference.qlinear_add import _ort_input0_broadcast
from .execute import float_node_graph
from .plan import Plan, Step, TensorSpec


def _scale_zp(spec: TensorSpec):
    """(scale, zero point) as the ops receive them: float32 and a 0-d array of the tensor's dtype."""
    return np.float32(spec.scale), np.asarray(spec.dtype.type(spec.zero_point))


def _shape(spec: TensorSpec) -> list:
    if any(d is None for d in spec.shape[1:]):
        raise NotImplementedError(f"tensor {spec.name!r}: only the batch dimension may be free, got {spec.shape}")
    return [-1 if d is None else int(d) for d in spec.shape]


def _conv(ex, step: Step, x: int, y: int, label: str, x_spec: TensorSpec, y_spec: TensorSpec) -> None:
    c, a = step.consts, step.attrs
    w = np.ascontiguousarray(c["w"])
    if step.op == "linear":
        w = w.reshape(w.shape[0], w.shape[1], 1, 1)
    x_s, _ = _scale_zp(x_spec)
    y_s, y_zp = _scale_zp(y_spec)
    w_s = np.asarray(c["w_scale"], np.float32).reshape(-1)
    qmin, qmax = _activation_range(a.get("activation"), y_s, y_zp)
    mult = m0 = shift = None
    requant = a.get("requant", "float")
    if requant == "float":
        mult = np.ascontiguousarray(float_multiplier(x_s, w_s, y_s), np.float32)
    elif requant == "fixed":
        real = np.float64(x_s) * w_s.astype(np.float64) / np.float64(y_s)
        m0, shift = (np.ascontiguousarray(v, np.int32).reshape(-1) for v in quantize_multiplier(real))
    else:
        raise ValueError(f"{label}: requant must be 'float' or 'fixed', got {requant!r}")
    ex.add_conv(x, y, label, w, tuple(a.get("strides", (1, 1))), tuple(a.get("pads", (0, 0, 0, 0))),
                tuple(a.get("dilations", (1, 1))), int(a.get("group", 1)), mult, m0, shift,
                np.ascontiguousarray(c["bias"], np.int32), qmin, qmax)


def _add_order(a: TensorSpec, b: TensorSpec) -> tuple:
    """ONNX Runtime's QLinearAdd operand order for batch <= 1 and batch > 1: the rule only compares
    extents with 1, so these two batch sizes stand for all."""
    def with_batch(spec, n):
        return (n,) + tuple(spec.shape[1:])
    return tuple(bool(_ort_input0_broadcast(with_batch(a, n), with_batch(b, n))) for n in (1, 2))


def _concat_tables(ins, out: TensorSpec) -> list:
    """Per input: QLinearConcat's requantization table, or None where it is the identity."""
    dt = out.dtype
    o_s, o_zp = float(np.float32(out.scale)), int(out.zero_point)
    return [_requantize_table(dt.str, float(np.float32(s.scale)), int(s.zero_point), o_s, o_zp) for s in ins]


def _pool_args(a: dict) -> tuple:
    return tuple(a["kernel"]), tuple(a["strides"]), tuple(a["pads"])


_BIG = float(np.finfo(np.float32).max)

# float elementwise nodes -> (kind, a, b) of the executor's float activations
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


def _float_layer(ex, step: Step, x: int, y: int, label: str, ins: list) -> bool:
    """A float conv2d / linear / matmul node as a C++ float32 layer; False when it does not fit
    one (a conv2d on a tensor that is not 4-D stays a host step)."""
    node, c = step.attrs["attrs"], step.consts
    lo, hi = _clamp(node.get("activation"))
    if step.attrs["op"] == "conv2d":
        if len(ins[0].shape) != 4:
            return False
        ex.add_float_conv(x, y, label, c["weight"], c.get("bias"), tuple(node["stride"]), tuple(node["pads"]),
                          tuple(node["dilation"]), int(node["groups"]), lo, hi)
        return True
    if len(ins[0].shape) < 2:
        return False
    w = c["weight"] if step.attrs["op"] == "linear" else np.ascontiguousarray(c["b"].T)
    ex.add_float_linear(x, y, label, w, c.get("bias"), lo, hi)
    return True


def _float_other(ex, step: Step, xs: list, y: int, label: str, ins: list, out: TensorSpec) -> bool:
    """Batch norm, add / mul / div (with a fused activation), bmm, pools, concat, transpose, pad,
    layer norm and softmax left float32, as C++ float steps; False for a form they do not take
    (which then calls the Python float executor)."""
    node_op, at, c = step.attrs["op"], step.attrs["attrs"], step.consts
    if node_op == "batch_norm2d":  # the float executor's formula (graph/float_exec.py)
        scale = c["weight"].astype(np.float64) / np.sqrt(c["var"].astype(np.float64) + at["eps"])
        shift = c["bias"] - c["mean"].astype(np.float64) * scale
        ex.add_float_affine(xs[0], y, label, scale.astype(np.float32), shift.astype(np.float32))
        return True
    if node_op in ("add", "mul", "div"):
        # the graph's apply_activation: np.maximum(y, 0) keeps +inf, so relu's clamp is [0, inf)
        act = at.get("activation")
        lo, hi = (-np.inf, np.inf) if act is None else (0.0, np.inf) if act == "relu" else (act[1], act[2])
        ex.add_float_binary(xs, y, label, node_op, c.get("b"), float(lo), float(hi))
        return True
    if node_op == "bmm":
        ex.add_float_bmm(xs[0], xs[1], y, label)
        return True
    if node_op in ("max_pool2d", "avg_pool2d") and len(ins[0].shape) == 4:
        ex.add_float_pool(xs[0], y, label, node_op == "avg_pool2d", bool(at.get("count_include_pad", True)),
                          tuple(at["kernel_size"]), tuple(at["stride"]), tuple(at["pads"]))
        return True
    if node_op == "global_avg_pool2d" and len(ins[0].shape) == 4:
        ex.add_float_pool(xs[0], y, label, True, True, tuple(ins[0].shape[2:]), (1, 1), (0, 0, 0, 0))
        return True
    if node_op == "concat":
        ex.add_float_concat(xs, y, label, int(at["axis"]))
        return True
    if node_op == "transpose":
        ex.add_float_transpose(xs[0], y, label, [int(p) for p in at["perm"]])
        return True
    if node_op == "pad":
        ex.add_float_pad(xs[0], y, label, [int(p) for p in at["pads"]], at["mode"], float(at["value"]))
        return True
    if node_op == "layer_norm":
        ex.add_float_layer_norm(xs[0], y, label, len(at["normalized_shape"]), float(at["eps"]), c.get("weight"),
                                c.get("bias"))
        return True
    if node_op == "softmax":  # the softmax step's double formula, as a quantized model's softmax
        ex.add_softmax(xs[0], y, label, int(at["axis"]) % len(out.shape))
        return True
    return False


def _host_fn(step: Step, ins: list, out: TensorSpec):
    graph = float_node_graph(step, ins)  # built once, run on every call

    def run(xs):
        return np.asarray(graph.run({f"in{i}": x for i, x in enumerate(xs)}), np.float32)
    return run


def _add_step(ex, ids: dict, plan: Plan, i: int, step: Step) -> None:
    label = f"step {i} ({step.op}, from {step.source or '?'})"
    ins = [plan.tensors[n] for n in step.inputs]
    out = plan.tensors[step.output]
    xs = [ids[n] for n in step.inputs]
    y = ids[step.output]
    a = step.attrs
    op = step.op
    if op in ("conv", "max_pool", "avg_pool", "global_avg_pool") and len(ins[0].shape) != 4:
        raise NotImplementedError(f"{label}: only 2-D (NHWC) windows run in the C++ executor")
    if op in ("quantize", "dequantize", "global_avg_pool", "reshape"):
        getattr(ex, f"add_{op}")(xs[0], y, label)
    elif op in ("conv", "linear"):
        _conv(ex, step, xs[0], y, label, ins[0], out)
    elif op in ("add", "mul"):
        le1, gt1 = _add_order(ins[0], ins[1]) if op == "add" else (False, False)
        ex.add_binary(xs[0], xs[1], y, label, op == "mul", le1, gt1)
    elif op == "max_pool":
        ex.add_max_pool(xs[0], y, label, *_pool_args(a), tuple(a.get("dilations", (1, 1))),
                        bool(a.get("ceil_mode", 0)))
    elif op == "avg_pool":
        ex.add_avg_pool(xs[0], y, label, *_pool_args(a), bool(a.get("ceil_mode", 0)),
                        bool(a.get("count_include_pad", 1)))
    elif op == "concat":
        ex.add_concat(xs, y, label, int(a["axis"]) % len(out.shape), _concat_tables(ins, out))
    elif op == "lut":
        ex.add_lut(xs[0], y, label, np.ascontiguousarray(step.consts["table"]))
    elif op == "softmax":
        ex.add_softmax(xs[0], y, label, int(a["axis"]) % len(out.shape))
    elif op == "dynamic_linear":
        c = step.consts
        ex.add_dynamic_linear(xs[0], y, label, np.ascontiguousarray(c["w"]), np.asarray(c["w_scale"], np.float32),
                              np.ascontiguousarray(c["bias"], np.float32), a.get("activation") == "relu",
                              a.get("granularity", "row") == "tensor")
    elif op == "float" and a["op"] in ("conv2d", "linear", "matmul") and _float_layer(ex, step, xs[0], y, label, ins):
        pass
    elif op == "float" and a["op"] in _FLOAT_UNARY:
        ex.add_float_unary(xs[0], y, label, *_FLOAT_UNARY[a["op"]](a["attrs"]))
    elif op == "float" and a["op"] in ("flatten", "reshape", "identity", "dropout"):
        ex.add_reshape(xs[0], y, label)  # a float tensor in the graph's layout: the same bytes
    elif op == "float" and _float_other(ex, step, xs, y, label, ins, out):
        pass
    elif op == "float":
        ex.add_host(xs, y, label, _host_fn(step, ins, out))
    else:
        raise NotImplementedError(f"{label}: the C++ executor has no {op!r} step")


def build_executor(plan: Plan) -> "_core.PlanExecutor":
    """The C++ executor of a validated plan. Raises ValueError for a plan whose shapes or
    parameters do not fit together, NotImplementedError for a step the executor cannot run."""
    ex = _core.PlanExecutor()
    ids = {}
    for name, spec in plan.tensors.items():
        q = spec.quantized
        ids[name] = ex.add_tensor(name, spec.dtype.name, _shape(spec), float(np.float32(spec.scale)) if q else 1.0,
                                  int(spec.zero_point) if q else 0)
    for i, step in enumerate(plan.steps):
        _add_step(ex, ids, plan, i, step)
    ex.finalize([ids[n] for n in plan.inputs], [ids[n] for n in plan.outputs])
    return ex
