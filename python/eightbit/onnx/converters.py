"""One converter per ONNX op (step 4 of import_float.py): ``CONVERTERS[op_type](importer, node)``
adds the graph node(s) of one ONNX node. Converters read the node's attributes and constant
inputs through the Importer (import_float.py) and fail with ``node.fail(message)``, an
OnnxImportError naming the node. patterns.py reuses the Conv / AveragePool / Pad converters.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from . import fold

if TYPE_CHECKING:  # annotations only: import_float imports this module
    from .import_float import Importer, OnnxNode


def dtype_name(onnx, elem_type: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"unknown element type {elem_type}"


# ---- attribute helpers ----------------------------------------------------------------------------

def _ints(n: OnnxNode, key: str, default, length: int | None = None) -> tuple:
    v = n.attrs.get(key, default)
    v = tuple(int(x) for x in v)
    if length is not None and len(v) != length:
        n.fail(f"attribute {key} must hold {length} values, got {list(v)}")
    return v


def _axis(n: OnnxNode, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        n.fail(f"{what}={axis} is out of range for rank {rank}")
    return axis % rank


def _not_batch(n: OnnxNode, axis: int, what: str = "axis") -> None:
    if axis == 0:
        n.fail(f"{what} 0 is the batch dimension; eightbit keeps the batch dimension first and untouched")


def _scalar(n: OnnxNode, value, what: str) -> float:
    a = np.asarray(value)
    if a.size != 1:
        n.fail(f"{what} must be a scalar, got shape {list(a.shape)}")
    return float(a.reshape(()))


def window_pads(n: OnnxNode, in_hw, kernel, strides, dilations) -> tuple:
    """(top, left, bottom, right) from ``pads`` or ``auto_pad`` (SAME_UPPER puts the odd pixel at
    the end, SAME_LOWER at the beginning, as ONNX defines them)."""
    auto = n.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(in_hw, kernel, strides, dilations):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return (begin[0], begin[1], end[0], end[1])
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto != "NOTSET":
        n.fail(f"auto_pad={auto!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    pads = _ints(n, "pads", (0, 0, 0, 0), 4)
    if min(pads) < 0:
        n.fail(f"negative pads {pads} are not supported")
    return pads


def _spatial_rank_2(n: OnnxNode, rank: int, what: str = "x") -> None:
    if rank != 4:
        n.fail(f"only 2-D windows are supported: {what} must be 4-D NCHW, got rank {rank}")


# ---- converters: one per ONNX op -------------------------------------------------------------------

def convert_conv(imp: Importer, n: OnnxNode, x=None, extra_pads=(0, 0, 0, 0)) -> None:
    x = imp.tensor(n, 0) if x is None else x
    w = imp.need_const(n, 1, "weight")
    if w.ndim != 4 or len(x.shape) != 4:
        n.fail(f"only 2-D convolution is supported (a 4-D NCHW input and OIHW weight), got weight shape "
               f"{list(w.shape)} and input rank {len(x.shape)}")
    bias = imp.const(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
    if len(n.inputs) > 2 and n.inputs[2] and bias is None:
        n.fail("the bias (input 2) must be a constant")
    kernel = _ints(n, "kernel_shape", w.shape[2:], 2)
    if kernel != tuple(w.shape[2:]):
        n.fail(f"kernel_shape={kernel} does not match the weight's {tuple(w.shape[2:])}")
    strides, dil = _ints(n, "strides", (1, 1), 2), _ints(n, "dilations", (1, 1), 2)
    in_hw = [x.shape[2 + i] + extra_pads[i] + extra_pads[2 + i] for i in range(2)]
    pads = window_pads(n, in_hw, kernel, strides, dil)
    pads = tuple(p + e for p, e in zip(pads, extra_pads))
    attrs = {"stride": strides, "pads": pads, "dilation": dil, "groups": int(n.attrs.get("group", 1)),
             "activation": None}
    consts = {"weight": w} if bias is None else {"weight": w, "bias": bias}
    imp.emit(n, "conv2d", [x], attrs, consts)


def convert_gemm(imp: Importer, n: OnnxNode) -> None:
    a = imp.tensor(n, 0)
    b = imp.need_const(n, 1, "B").astype(np.float64)
    if n.attrs.get("transA", 0):
        n.fail("transA=1 is not supported (A is the batch of activations)")
    if len(a.shape) != 2 or b.ndim != 2:
        n.fail(f"A and B must be matrices, got ranks {len(a.shape)} and {b.ndim}")
    alpha, beta = float(n.attrs.get("alpha", 1.0)), float(n.attrs.get("beta", 1.0))
    weight = alpha * (b if n.attrs.get("transB", 0) else b.T)             # [N, K]
    consts = {"weight": weight}
    if len(n.inputs) > 2 and n.inputs[2]:
        c = imp.need_const(n, 2, "C").astype(np.float64)
        out = weight.shape[0]
        if c.size not in (1, out) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
            n.fail(f"C must broadcast as a bias of {out} values (shape [], [{out}] or [1, {out}]), got "
                   f"{list(c.shape)}")
        consts["bias"] = beta * np.broadcast_to(c.reshape(-1), (out,))
    imp.emit(n, "linear", [a], {"activation": None}, consts)


def convert_matmul(imp: Importer, n: OnnxNode) -> None:
    if imp.const(n.inputs[0]) is not None:
        n.fail("a constant left operand is not supported (only x @ constant or x @ y)")
    x = imp.tensor(n, 0)
    b = imp.const(n.inputs[1])
    if b is None:                                        # attention: q @ k^T, p @ v
        y = imp.tensor(n, 1)
        if len(x.shape) < 3 or len(x.shape) != len(y.shape):
            n.fail(f"the product of two computed tensors needs operands of the same rank >= 3 (dimension 0 "
                   f"of each is the batch), got shapes {list(x.shape)} and {list(y.shape)}")
        imp.emit(n, "bmm", [x, y], {})
        return
    if b.ndim != 2:
        n.fail(f"the constant right operand must be a [K, N] matrix, got shape {list(b.shape)}")
    imp.emit(n, "matmul", [x], {"activation": None}, {"b": b})


def _const_operand(n: OnnxNode, c: np.ndarray, rank: int) -> np.ndarray:
    """A constant operand broadcast against a tensor of rank `rank`: extra leading 1s dropped."""
    c = np.asarray(c)
    if c.dtype.kind not in "fiu":
        n.fail(f"the constant operand has dtype {c.dtype}, expected a number")
    while c.ndim > rank and c.shape[0] == 1:
        c = c.reshape(c.shape[1:])
    if c.ndim > rank:
        n.fail(f"the constant operand (shape {list(c.shape)}) has more dimensions than the tensor (rank {rank})")
    return c.astype(np.float64)


def convert_binary(imp: Importer, n: OnnxNode) -> None:
    op = n.op
    ca, cb = imp.const(n.inputs[0]), imp.const(n.inputs[1])
    if ca is None and cb is None:
        a, b = imp.tensor(n, 0), imp.tensor(n, 1)
        if op in ("Add", "Mul"):
            imp.emit(n, op.lower(), [a, b], {"activation": None} if op == "Add" else {})
        elif op == "Sub":
            neg = imp.emit(n, "mul", [b], {}, {"b": np.float32(-1)}, helper="neg")
            imp.emit(n, "add", [a, neg], {"activation": None})
        else:
            imp.emit(n, "div", [a, b], {})
        return
    if ca is not None and cb is not None:                      # folded before; kept for safety
        n.fail("both operands are constants")
    x_first = cb is not None
    x = imp.tensor(n, 0 if x_first else 1)
    c = _const_operand(n, cb if x_first else ca, len(x.shape))
    if op == "Add":
        imp.emit(n, "add", [x], {"activation": None}, {"b": c})
    elif op == "Mul":
        imp.emit(n, "mul", [x], {}, {"b": c})
    elif op == "Sub" and x_first:                                # x - c
        imp.emit(n, "add", [x], {"activation": None}, {"b": -c})
    elif op == "Sub":                                            # c - x
        neg = imp.emit(n, "mul", [x], {}, {"b": np.float32(-1)}, helper="neg")
        imp.emit(n, "add", [neg], {"activation": None}, {"b": c})
    elif x_first:                                                # x / c
        if np.any(c == 0):
            n.fail("division by a constant holding zeros")
        imp.emit(n, "mul", [x], {}, {"b": 1.0 / c})
    else:
        n.fail("a constant divided by a computed tensor is not supported")


def convert_sum(imp: Importer, n: OnnxNode) -> None:
    """Sum of n inputs (NumPy broadcasting) as a chain of binary adds, left to right as ONNX
    Runtime adds them: ``((x0 + x1) + x2) + ...``. Constant operands next to each other are
    added at import (float32); one input alone is an identity."""
    names = list(n.inputs)
    if not names or any(not i for i in names):
        n.fail("every input must be present")
    acc, acc_const = None, None                        # the running sum: a graph tensor or a constant
    last = len(names) - 1
    for k, name in enumerate(names):
        c = imp.const(name)
        if name in imp.symbolic:
            n.fail(f"input {k} ({name!r}) depends on the free batch dimension")
        helper = None if k == last else f"add{k}"
        if acc is None and acc_const is None:
            if c is not None:
                acc_const = np.asarray(c, np.float32)
            else:
                acc = imp.tensor(n, k)
            if k == last:                              # a single input
                if acc is None:
                    n.fail("the only input is a constant")
                imp.emit(n, "identity", [acc], {})
            continue
        if c is not None:
            if acc is None:
                acc_const = (acc_const + np.asarray(c, np.float32)).astype(np.float32)
                if k == last:
                    n.fail("every input is a constant (folded before; kept for safety)")
                continue
            acc = imp.emit(n, "add", [acc], {"activation": None},
                           {"b": _const_operand(n, np.asarray(c, np.float32), len(acc.shape))}, helper=helper)
            continue
        x = imp.tensor(n, k)
        if acc is None:                                # constant(s) so far + a tensor
            acc = imp.emit(n, "add", [x], {"activation": None},
                           {"b": _const_operand(n, acc_const, len(x.shape))}, helper=helper)
            acc_const = None
        else:
            acc = imp.emit(n, "add", [acc, x], {"activation": None}, helper=helper)


def convert_lrn(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    if len(x.shape) < 3:
        n.fail(f"the input must be N x C x D1 x ... (rank >= 3), got rank {len(x.shape)}")
    if "size" not in n.attrs:
        n.fail("attribute size is missing")
    size = int(n.attrs["size"])
    if size < 1:
        n.fail(f"size must be >= 1, got {size}")
    attrs = {"size": size, "alpha": float(n.attrs.get("alpha", 1e-4)), "beta": float(n.attrs.get("beta", 0.75)),
             "bias": float(n.attrs.get("bias", 1.0))}
    imp.emit(n, "lrn", [x], attrs)


_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hardswish", "Erf": "erf",
          "Identity": "identity"}


def convert_unary(imp: Importer, n: OnnxNode) -> None:
    imp.emit(n, _UNARY[n.op], [imp.tensor(n, 0)], {})


def convert_leaky_relu(imp: Importer, n: OnnxNode) -> None:
    imp.emit(n, "leaky_relu", [imp.tensor(n, 0)], {"negative_slope": float(n.attrs.get("alpha", 0.01))})


def convert_hardsigmoid(imp: Importer, n: OnnxNode) -> None:
    attrs = {"alpha": float(n.attrs.get("alpha", 0.2)), "beta": float(n.attrs.get("beta", 0.5))}
    imp.emit(n, "hardsigmoid", [imp.tensor(n, 0)], attrs)


def convert_gelu(imp: Importer, n: OnnxNode) -> None:
    approx = n.attrs.get("approximate", "none")
    if approx not in ("none", "tanh"):
        n.fail(f"approximate={approx!r} is not 'none' or 'tanh'")
    imp.emit(n, "gelu", [imp.tensor(n, 0)], {"approximate": approx})


def convert_clip(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    bounds = []
    for i, what in ((1, "min"), (2, "max")):
        if len(n.inputs) > i and n.inputs[i]:
            v = _scalar(n, imp.need_const(n, i, what), what)
            if math.isnan(v):
                n.fail(f"{what} is NaN (ONNX Runtime's result would depend on the instruction set)")
            bounds.append(None if math.isinf(v) else v)
        else:
            bounds.append(None)
    lo, hi = bounds
    if lo is not None and hi is not None and lo > hi:
        n.fail(f"min={lo} > max={hi}")
    imp.emit(n, "clip", [x], {"min": lo, "max": hi})


def convert_batch_norm(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    if n.attrs.get("training_mode", 0):
        n.fail("training_mode=1 is not supported (inference only)")
    imp.only_first_output(n)
    consts = {key: imp.need_const(n, i, key) for i, key in ((1, "weight"), (2, "bias"), (3, "mean"), (4, "var"))}
    if (consts["var"] < 0).any():
        n.fail("the variance holds negative values")
    eps = float(n.attrs.get("epsilon", 1e-5))
    imp.emit(n, "batch_norm2d", [x], {"eps": eps}, consts)


def convert_layer_norm(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    imp.only_first_output(n)
    rank = len(x.shape)
    axis = _axis(n, int(n.attrs.get("axis", -1)), rank)
    _not_batch(n, axis, "axis (LayerNormalization normalizes every dimension from axis on)")
    ns = tuple(x.shape[axis:])
    # scale and bias are broadcast to normalized_shape: a scalar must not become a huge constant
    imp.fold_budget.check([math.prod(ns) * 4] * (2 if len(n.inputs) > 2 and n.inputs[2] else 1), n.where,
                          "broadcasting its scale and bias would produce")
    consts = {"weight": np.broadcast_to(imp.need_const(n, 1, "scale"), ns)}
    if len(n.inputs) > 2 and n.inputs[2]:
        consts["bias"] = np.broadcast_to(imp.need_const(n, 2, "bias"), ns)
    attrs = {"normalized_shape": ns, "eps": float(n.attrs.get("epsilon", 1e-5))}
    imp.emit(n, "layer_norm", [x], attrs, consts)


def _pool_common(imp: Importer, n: OnnxNode, x, extra_pads=(0, 0, 0, 0)):
    _spatial_rank_2(n, len(x.shape))
    kernel = _ints(n, "kernel_shape", (), 2)
    strides = _ints(n, "strides", (1, 1), 2)
    if any(d != 1 for d in _ints(n, "dilations", (1, 1), 2)):
        n.fail("dilated pooling is not supported")
    in_hw = [x.shape[2 + i] + extra_pads[i] + extra_pads[2 + i] for i in range(2)]
    pads = window_pads(n, in_hw, kernel, strides, (1, 1))
    pads = tuple(p + e for p, e in zip(pads, extra_pads))
    return {"kernel_size": kernel, "stride": strides, "pads": pads,
            "ceil_mode": bool(n.attrs.get("ceil_mode", 0))}


def convert_max_pool(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    imp.only_first_output(n)
    if n.attrs.get("storage_order", 0):
        n.fail("storage_order=1 is not supported")
    imp.emit(n, "max_pool2d", [x], _pool_common(imp, n, x))


def convert_avg_pool(imp: Importer, n: OnnxNode, x=None, extra_pads=(0, 0, 0, 0)) -> None:
    x = imp.tensor(n, 0) if x is None else x
    attrs = _pool_common(imp, n, x, extra_pads)
    attrs["count_include_pad"] = bool(n.attrs.get("count_include_pad", 0))
    imp.emit(n, "avg_pool2d", [x], attrs)


def convert_global_avg_pool(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    _spatial_rank_2(n, len(x.shape))
    imp.emit(n, "global_avg_pool2d", [x], {})


def convert_global_max_pool(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    _spatial_rank_2(n, len(x.shape))
    hw = tuple(x.shape[2:])
    imp.emit(n, "max_pool2d", [x], {"kernel_size": hw, "stride": (1, 1), "pads": (0, 0, 0, 0), "ceil_mode": False})


def _reshape_to(imp: Importer, n: OnnxNode, x, per_sample, helper=None):
    return imp.emit(n, "reshape", [x], {"shape": tuple(int(d) for d in per_sample)}, helper=helper)


def convert_flatten(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    rank = len(x.shape)
    axis = n.attrs.get("axis", 1)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis <= rank:
        n.fail(f"axis={n.attrs.get('axis')} is out of range for rank {rank}")
    if axis == 1 and rank >= 2:
        imp.emit(n, "flatten", [x], {"start_dim": 1})
        return
    shape = x.shape
    if axis == 0 or math.prod(shape[1:axis]) != 1:
        n.fail(f"axis={axis} would merge the batch dimension into another (the output must be [batch, ...])")
    _reshape_to(imp, n, x, (math.prod(shape[axis:]),))


def _is_batch(d) -> bool:
    return d is fold.BATCH


def convert_reshape(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    value = imp.need_const(n, 1, "shape", batch_ok=True)      # may hold fold.BATCH
    target = [d if _is_batch(d) else int(d) for d in np.asarray(value).reshape(-1)]
    full = imp.shape(x.name)                 # a free batch is fold.BATCH
    allowzero = n.attrs.get("allowzero", 0)
    out = []
    for i, d in enumerate(target):
        if not _is_batch(d) and d == 0 and not allowzero:
            if i >= len(full):
                n.fail(f"shape {target}: the 0 at position {i} copies a dimension x {list(full)} does not have")
            d = full[i]
        elif not _is_batch(d) and d == 0:
            n.fail(f"shape {target} has a zero-size dimension")
        out.append(d)
    if not out:
        n.fail("reshaping to a scalar would drop the batch dimension")
    batch = full[0]
    per_sample = math.prod(full[1:])
    rest = out[1:]
    rule = (f"dimension 0 of the target must be the batch ({'free' if _is_batch(batch) else batch}), "
            "-1 or 0 (see the batch rule of eightbit.onnx.import_float)")
    if any(_is_batch(d) for d in rest):
        n.fail(f"shape {target} moves the batch dimension away from dimension 0; {rule}")
    if not _is_batch(out[0]) and out[0] == -1:
        if -1 in rest or math.prod(rest) != per_sample:
            n.fail(f"shape {target} changes the batch dimension ({per_sample} values per sample in x "
                   f"{list(full)}); {rule}")
    elif out[0] is not batch and out[0] != batch:
        n.fail(f"shape {target}: dimension 0 is {out[0]}; {rule}")
    if rest.count(-1) > 1:
        n.fail(f"shape {target} holds more than one -1")
    if -1 in rest:
        known = -math.prod(rest)
        if known == 0 or per_sample % known:
            n.fail(f"shape {target} cannot hold the {per_sample} values per sample of x {list(full)}")
        rest[rest.index(-1)] = per_sample // known
    if any(d <= 0 for d in rest):
        n.fail(f"shape {target} has a negative dimension")
    _reshape_to(imp, n, x, rest)


def _axes(imp: Importer, n: OnnxNode, attr_until: int):
    """Squeeze / Unsqueeze / Reduce* axes: an attribute before opset `attr_until`, input 1 from it on."""
    if imp.opset < attr_until:
        return list(n.attrs["axes"]) if "axes" in n.attrs else None
    if len(n.inputs) > 1 and n.inputs[1]:
        return [int(a) for a in np.asarray(imp.need_const(n, 1, "axes")).reshape(-1)]
    return None


def convert_squeeze(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    rank, shape = len(x.shape), x.shape
    axes = _axes(imp, n, 13)
    if axes is None:
        if shape[0] == 1:
            n.fail("squeezing every size-1 dimension would squeeze the batch (of size 1); give axes")
        axes = [i for i in range(1, rank) if shape[i] == 1]
    axes = sorted({_axis(n, a, rank) for a in axes})
    for a in axes:
        _not_batch(n, a)
        if shape[a] != 1:
            n.fail(f"axis {a} has size {shape[a]}, not 1")
    _reshape_to(imp, n, x, [d for i, d in enumerate(shape) if i and i not in axes])


def convert_unsqueeze(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    axes = _axes(imp, n, 13)
    if not axes:
        n.fail("axes are missing")
    rank = len(x.shape) + len(axes)
    axes = sorted({_axis(n, a, rank) for a in axes})
    if len(axes) != len(n.attrs.get("axes", axes)) and imp.opset < 13:
        n.fail("repeated axes")
    for a in axes:
        _not_batch(n, a)
    dims = iter(x.shape[1:])
    _reshape_to(imp, n, x, [1 if i in axes else next(dims) for i in range(1, rank)])


def convert_transpose(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    rank = len(x.shape)
    perm = _ints(n, "perm", tuple(reversed(range(rank))), rank)
    if perm[0] != 0:
        n.fail(f"perm={list(perm)} moves the batch dimension (perm[0] must be 0)")
    imp.emit(n, "transpose", [x], {"perm": perm})


def convert_concat(imp: Importer, n: OnnxNode) -> None:
    names = [i for i in n.inputs if i]
    consts = [i for i in names if i in imp.consts]
    if consts:
        n.fail(f"constant inputs {consts} are not supported (every input must be computed)")
    xs = [imp.graph.tensor(i) for i in names]
    axis = _axis(n, int(n.attrs["axis"]), len(xs[0].shape))
    _not_batch(n, axis)
    imp.emit(n, "concat", xs, {"axis": axis})


def convert_softmax(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    rank = len(x.shape)
    if imp.opset >= 13:
        axis = _axis(n, int(n.attrs.get("axis", -1)), rank)
        _not_batch(n, axis, "axis (a softmax over the batch would mix its samples)")
        imp.emit(n, "softmax", [x], {"axis": axis})
        return
    # opsets 11-12: softmax over x coerced to 2-D at `axis` (every dimension from axis on)
    axis = _axis(n, int(n.attrs.get("axis", 1)), rank)
    if axis and all(d == 1 for d in x.shape[axis + 1:]):
        imp.emit(n, "softmax", [x], {"axis": axis})
        return
    _not_batch(n, axis, "axis (opset < 13 softmax over all dimensions from axis)")
    flat = _reshape_to(imp, n, x, tuple(x.shape[1:axis]) + (math.prod(x.shape[axis:]),), helper="flatten")
    sm = imp.emit(n, "softmax", [flat], {"axis": axis}, helper="softmax")
    _reshape_to(imp, n, sm, x.shape[1:])


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def pad_amounts(imp: Importer, n: OnnxNode, rank: int):
    """(pads over all axes in ONNX order, mode, constant value) of a Pad node."""
    mode = n.attrs.get("mode", "constant")
    if mode not in _PAD_MODES:
        n.fail(f"mode={mode!r} is not supported")
    pads = [int(p) for p in np.asarray(imp.need_const(n, 1, "pads")).reshape(-1)]
    value = 0.0
    if len(n.inputs) > 2 and n.inputs[2]:
        value = _scalar(n, imp.need_const(n, 2, "constant_value"), "constant_value")
    axes = list(range(rank))
    if len(n.inputs) > 3 and n.inputs[3]:
        axes = [_axis(n, int(a), rank) for a in np.asarray(imp.need_const(n, 3, "axes")).reshape(-1)]
    if len(pads) != 2 * len(axes):
        n.fail(f"pads holds {len(pads)} values for {len(axes)} axes")
    full = [0] * (2 * rank)
    for k, a in enumerate(axes):
        full[a], full[rank + a] = pads[k], pads[len(axes) + k]
    if min(full) < 0:
        n.fail(f"negative pads (cropping) are not supported, got {pads}")
    if full[0] or full[rank]:
        n.fail(f"pads {pads} pad the batch dimension")
    return tuple(full), _PAD_MODES[mode], value


def convert_pad(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    pads, mode, value = pad_amounts(imp, n, len(x.shape))
    imp.emit(n, "pad", [x], {"pads": pads, "mode": mode, "value": value})


def convert_dropout(imp: Importer, n: OnnxNode) -> None:
    x = imp.tensor(n, 0)
    imp.only_first_output(n)
    p = float(n.attrs.get("ratio", 0.5))
    if len(n.inputs) > 1 and n.inputs[1]:
        p = _scalar(n, imp.need_const(n, 1, "ratio"), "ratio")
    if len(n.inputs) > 2 and n.inputs[2] and bool(_scalar(n, imp.need_const(n, 2, "training_mode"), "training_mode")):
        n.fail("training_mode=True is not supported (inference only)")
    imp.emit(n, "dropout", [x], {"p": p})


def convert_cast(imp: Importer, n: OnnxNode) -> None:
    to = n.attrs.get("to")
    if to != imp._onnx.TensorProto.FLOAT:
        n.fail(f"casting a computed tensor to {dtype_name(imp._onnx, to) if isinstance(to, int) else to!r} is not supported "
               "(eightbit graphs compute in float32)")
    imp.emit(n, "identity", [imp.tensor(n, 0)], {})


def convert_gather(imp: Importer, n: OnnxNode) -> None:
    """Rows of a constant table by integer ids (an embedding lookup), or one scalar index of a
    computed tensor along an axis (BERT's pooler reads token 0)."""
    table = imp.const(n.inputs[0])
    axis = int(n.attrs.get("axis", 0))
    if table is not None:
        if table.ndim != 2 or axis not in (0, -2):
            n.fail(f"a Gather of a constant needs a [V, D] table gathered along axis 0, got shape "
                   f"{list(table.shape)} and axis {axis}")
        fixed = imp.const(n.inputs[1])
        if fixed is not None:             # ids that do not depend on the inputs (attention_mask.convert_ids)
            fixed = np.asarray(fixed)
            if fixed.dtype.kind not in "iu" or np.any((fixed < 0) | (fixed >= table.shape[0])):
                n.fail(f"constant ids out of range [0, {table.shape[0]})")
            value = np.take(table, fixed, axis=0)
            imp.fold_budget.add([value], n.where)
            imp.consts[n.outputs[0]] = value
            return
        ids = imp.tensor(n, 1)
        producer = imp.graph.producer(ids.name)
        if ids.dtype != "int64" and (producer is None or producer.op != "padded_positions"):
            n.fail(f"the ids {ids.name!r} must be an integer graph input (token ids), not a computed float tensor")
        imp.emit(n, "embedding", [ids], {}, {"weight": table})
        return
    x = imp.tensor(n, 0)
    index = np.asarray(imp.need_const(n, 1, "indices"))
    axis = _axis(n, axis, len(x.shape))
    _not_batch(n, axis, "axis (gathering along the batch)")
    if index.ndim != 0 or index.dtype.kind not in "iu":
        n.fail(f"only a scalar integer index of a computed tensor is supported, got shape {list(index.shape)}")
    i = int(index)
    if not -x.shape[axis] <= i < x.shape[axis]:
        n.fail(f"index {i} is out of range for axis {axis} of size {x.shape[axis]}")
    imp.emit(n, "select", [x], {"axis": axis, "index": i % x.shape[axis]})


def convert_where(imp: Importer, n: OnnxNode) -> None:
    """Where(padding indicator, fill, scores): the masked fill of attention scores, as
    ``scores + additive_mask`` (see attention_mask.py for why that is the same after softmax)."""
    from .attention_mask import MIN_WHERE_FILL, additive_mask_for
    cond = n.inputs[0]
    if cond not in imp.mask_indicators:
        n.fail("only the masked fill of attention scores by an attention mask is supported (the condition "
               f"{cond!r} is not computed from an integer attention-mask input)")
    source, kind = imp.mask_indicators[cond]
    fill_at, scores_at = (1, 2) if kind == "padded" else (2, 1)
    fill = imp.const(n.inputs[fill_at])
    if fill is None or np.asarray(fill).size != 1:
        n.fail(f"the value where the mask pads (input {fill_at}) must be a scalar constant")
    fill = float(np.asarray(fill).reshape(()))
    if not fill <= MIN_WHERE_FILL:
        n.fail(f"the masked fill value {fill} is not <= {MIN_WHERE_FILL:g} (or -inf); only such fills are the "
               "same as an additive mask after the softmax")
    scores = imp.tensor(n, scores_at)
    mask = additive_mask_for(imp, n, source, fill)
    if len(scores.shape) != 4:
        n.fail(f"the masked scores must be [N, heads, T, T], got shape {list(scores.shape)}")
    imp.emit(n, "add", [scores, mask], {"activation": None})


_REDUCE_MODES = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceL2": "l2", "ReduceMax": "max"}


def convert_reduce(imp: Importer, n: OnnxNode) -> None:
    """ReduceSum / ReduceMean / ReduceL2 / ReduceMax over non-batch axes (sentence encoders'
    pooling). Axes are an input from opset 13 (ReduceSum) or 18 (the others), an attribute
    before; no axes reduce every axis (the batch too: refused) unless noop_with_empty_axes."""
    x = imp.tensor(n, 0)
    rank = len(x.shape)
    axes = _axes(imp, n, 13 if n.op == "ReduceSum" else 18)
    if not axes:
        if n.attrs.get("noop_with_empty_axes", 0):
            imp.emit(n, "identity", [x], {})
            return
        n.fail("no axes: the reduction would run over every axis, the batch included")
    axes = sorted({_axis(n, int(a), rank) for a in axes})
    _not_batch(n, axes[0], "axes (a reduction over the batch would mix its samples)")
    if axes != list(range(axes[0], axes[-1] + 1)):
        n.fail(f"axes {axes} are not contiguous; only adjacent axes are supported")
    attrs = {"mode": _REDUCE_MODES[n.op], "axes": tuple(axes), "keepdims": bool(n.attrs.get("keepdims", 1))}
    imp.emit(n, "reduce", [x], attrs)


def convert_expand(imp: Importer, n: OnnxNode) -> None:
    """Expand (NumPy broadcasting of x against a shape known at import, the batch as is): an
    identity when the shape does not change, else a mul by a constant of ones of the added
    extents (x * 1 is x exactly)."""
    x = imp.tensor(n, 0)
    target = list(np.asarray(imp.need_const(n, 1, "shape", batch_ok=True)).reshape(-1))
    full = imp.shape(x.name)                 # a free batch is fold.BATCH
    if len(target) > len(full):
        n.fail(f"shape {target} has more dimensions than x {list(full)}: the batch would move")
    target = [1] * (len(full) - len(target)) + target
    if not (_is_batch(target[0]) or target[0] == 1 or target[0] == full[0]):
        n.fail(f"shape {target} would expand the batch dimension (x {list(full)})")
    out = list(full[:1])
    for i in range(1, len(full)):
        d, t = full[i], target[i]
        if _is_batch(t):
            n.fail(f"shape {target} moves the batch dimension away from dimension 0")
        t = int(t)
        if t < 1:
            n.fail(f"shape {target} holds a dimension below 1")
        if t != 1 and d != 1 and t != d:
            n.fail(f"x {list(full)} does not broadcast to shape {target} (dimension {i})")
        out.append(d if t == 1 else t)
    if out[1:] == list(full[1:]):
        imp.emit(n, "identity", [x], {})
        return
    ones = [t if d == 1 else 1 for d, t in zip(full[1:], out[1:])]
    imp.fold_budget.check([math.prod(ones) * 4], n.where, "expanding would produce")
    imp.emit(n, "mul", [x], {}, {"b": np.ones(ones, np.float32)})


CONVERTERS = {
    "Conv": convert_conv, "Gemm": convert_gemm, "MatMul": convert_matmul,
    "Add": convert_binary, "Sub": convert_binary, "Mul": convert_binary, "Div": convert_binary,
    "Relu": convert_unary, "Sigmoid": convert_unary, "Tanh": convert_unary, "HardSwish": convert_unary,
    "Erf": convert_unary,
    "Identity": convert_unary, "LeakyRelu": convert_leaky_relu, "HardSigmoid": convert_hardsigmoid,
    "Gelu": convert_gelu, "Clip": convert_clip, "BatchNormalization": convert_batch_norm,
    "LayerNormalization": convert_layer_norm,
    "MaxPool": convert_max_pool, "AveragePool": convert_avg_pool, "GlobalAveragePool": convert_global_avg_pool,
    "GlobalMaxPool": convert_global_max_pool, "Flatten": convert_flatten, "Reshape": convert_reshape,
    "Squeeze": convert_squeeze, "Unsqueeze": convert_unsqueeze, "Transpose": convert_transpose,
    "Concat": convert_concat, "Softmax": convert_softmax, "Pad": convert_pad, "Dropout": convert_dropout,
    "Cast": convert_cast, "Sum": convert_sum, "LRN": convert_lrn,
    "Gather": convert_gather, "Where": convert_where,
    "ReduceSum": convert_reduce, "ReduceMean": convert_reduce, "ReduceL2": convert_reduce,
    "ReduceMax": convert_reduce, "Expand": convert_expand,
}
