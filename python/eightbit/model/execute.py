"""Run a Plan step by step with an op module: ``eightbit.reference`` (the NumPy specification: what
"bit-exact" means for a whole model) or ``eightbit.ops`` (the C++ kernels, one call per step, with
the conv / linear weights packed once). Both modules have the same functions and signatures, so
one interpreter serves both; its arithmetic is entirely the module's.
"""
from __future__ import annotations

import numpy as np

from .plan import FLOAT, Plan, Step, TensorSpec, float_node_graph

NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)


def _qp(spec: TensorSpec):
    """(scale, zero_point) as the ops expect them: float32 and a scalar of the tensor's dtype."""
    return np.float32(spec.scale), spec.dtype.type(spec.zero_point)


def _to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(NCHW_TO_NHWC)) if x.ndim == 4 else x


def _to_nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(NHWC_TO_NCHW)) if x.ndim == 4 else x


def _quantize(m, step, xs, ins, out, w):
    scale, zp = _qp(out)
    return m.quantize_linear(_to_nhwc(xs[0]), scale, zp)


def _dequantize(m, step, xs, ins, out, w):
    scale, zp = _qp(ins[0])
    return _to_nchw(m.dequantize_linear(xs[0], scale, zp))


def _conv_call(m, step, x, x_spec, out, weights):
    xs, xzp = _qp(x_spec)
    ys, yzp = _qp(out)
    c = step.consts
    a = step.attrs
    o = c["w"].shape[0]
    return m.qlinear_conv(x, xs, xzp, weights, c["w_scale"], np.zeros(o, np.int8), ys, yzp, c["bias"],
                          strides=a.get("strides", (1, 1)), pads=a.get("pads", (0, 0, 0, 0)),
                          dilations=a.get("dilations", (1, 1)), group=a.get("group", 1),
                          activation=a.get("activation"), layout="NHWC", requant=a.get("requant", "float"))


def _conv(m, step, xs, ins, out, w):
    return _conv_call(m, step, xs[0], ins[0], out, w)


def _linear(m, step, xs, ins, out, w):
    x = xs[0]                                  # [N, ..., K]: rows of a 1x1 convolution
    y = _conv_call(m, step, x.reshape(-1, 1, 1, x.shape[-1]), ins[0], out, w)
    return y.reshape(x.shape[:-1] + (-1,))


def _dynamic_linear(m, step, xs, ins, out, w):
    c, x = step.consts, xs[0]
    y = m.quantized_linear(x.reshape(-1, x.shape[-1]), w, c["w_scale"], c["bias"], step.attrs.get("activation"),
                           step.attrs.get("granularity", "row"))
    return y.reshape(x.shape[:-1] + (-1,))


def _binary(m, step, xs, ins, out, w):
    fn = m.qlinear_add if step.op == "add" else m.qlinear_mul
    return fn(xs[0], *_qp(ins[0]), xs[1], *_qp(ins[1]), *_qp(out))


def _max_pool(m, step, xs, ins, out, w):
    a = step.attrs
    return m.max_pool(xs[0], kernel_shape=a["kernel"], strides=a["strides"], pads=a["pads"],
                      dilations=a.get("dilations", (1, 1)), ceil_mode=int(a.get("ceil_mode", 0)), layout="NHWC")


def _avg_pool(m, step, xs, ins, out, w):
    a = step.attrs
    return m.qlinear_average_pool(xs[0], *_qp(ins[0]), *_qp(out), kernel_shape=a["kernel"], strides=a["strides"],
                                  pads=a["pads"], ceil_mode=int(a.get("ceil_mode", 0)),
                                  count_include_pad=int(a.get("count_include_pad", 1)), layout="NHWC")


def _global_avg_pool(m, step, xs, ins, out, w):
    return m.qlinear_global_average_pool(xs[0], *_qp(ins[0]), *_qp(out), layout="NHWC")


def _concat(m, step, xs, ins, out, w):
    parts = [(x, *_qp(spec)) for x, spec in zip(xs, ins)]
    return m.qlinear_concat(*_qp(out), parts, axis=step.attrs["axis"])


def _lut(m, step, xs, ins, out, w):
    return m.lookup_table(xs[0], step.consts["table"])


def _reshape(m, step, xs, ins, out, w):
    x = _to_nchw(xs[0]) if ins[0].quantized else xs[0]
    shape = tuple(-1 if d is None else d for d in step.attrs["shape"])
    y = x.reshape((x.shape[0],) + shape[1:])
    return _to_nhwc(y) if out.quantized else y


def _softmax(m, step, xs, ins, out, w):
    x = xs[0].astype(np.float32, copy=False)
    e = np.exp(x - x.max(axis=step.attrs["axis"], keepdims=True))
    return (e / e.sum(axis=step.attrs["axis"], keepdims=True)).astype(np.float32)


def _float(m, step, xs, ins, out, w):
    """A float graph node, run by the float graph executor."""
    return float_node_graph(step, ins).run({f"in{i}": x for i, x in enumerate(xs)})


STEP_FUNCS = {
    "quantize": _quantize, "dequantize": _dequantize, "conv": _conv, "linear": _linear, "add": _binary,
    "mul": _binary, "max_pool": _max_pool, "avg_pool": _avg_pool, "global_avg_pool": _global_avg_pool,
    "concat": _concat, "lut": _lut, "reshape": _reshape, "softmax": _softmax, "float": _float,
    "dynamic_linear": _dynamic_linear,
}


def step_weights(step: Step) -> np.ndarray:
    """The weights argument of a conv / linear / dynamic_linear step's op: OIHW int8 (a linear's
    [O, K] as [O, K, 1, 1]); a dynamic_linear's [O, K] as they are."""
    w = step.consts["w"]
    return w.reshape(w.shape[0], w.shape[1], 1, 1) if step.op == "linear" else w


def check_feeds(plan: Plan, feeds: dict) -> dict:
    """The plan inputs as float32 arrays of the declared rank and fixed dimensions."""
    values = {}
    for name in plan.inputs:
        if name not in feeds:
            raise ValueError(f"missing input {name!r}; the model takes {plan.inputs}")
        x = np.asarray(feeds[name])
        if x.dtype != FLOAT:
            if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
                raise TypeError(f"input {name!r}: expected float32 data, got {x.dtype}")
            x = x.astype(np.float32)
        shape = plan.tensors[name].shape
        if x.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape, x.shape)):
            want = tuple("N" if d is None else d for d in shape)
            raise ValueError(f"input {name!r}: expected shape {want}, got {x.shape}")
        values[name] = x
    extra = set(feeds) - set(plan.inputs)
    if extra:
        raise ValueError(f"unknown input(s) {sorted(extra)}; the model takes {plan.inputs}")
    return values


def run_plan(plan: Plan, feeds: dict, module, weights: dict | None = None, return_all: bool = False) -> dict:
    """Execute every step with ``module``; ``weights`` maps a step index to the weights object its
    conv / linear call takes (packed weights for eightbit.ops; the raw int8 array by default).
    Returns {output name: float32 array}, or with ``return_all`` every plan tensor as the plan
    holds it (quantized ones as integers, 4-D ones NHWC)."""
    values = check_feeds(plan, feeds)
    last_use = {}
    for i, step in enumerate(plan.steps):
        for name in step.inputs:
            last_use[name] = i
    for i, step in enumerate(plan.steps):
        ins = [plan.tensors[n] for n in step.inputs]
        w = None
        if step.op in ("conv", "linear", "dynamic_linear"):
            w = weights[i] if weights is not None and i in weights else step_weights(step)
        values[step.output] = STEP_FUNCS[step.op](module, step, [values[n] for n in step.inputs], ins,
                                                  plan.tensors[step.output], w)
        for name in step.inputs:
            if last_use[name] == i and name not in plan.outputs and not return_all:
                del values[name]
    return values if return_all else {name: values[name] for name in plan.outputs}
