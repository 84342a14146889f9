"""What each node of a torch.fx graph computes, in eightbit's vocabulary: ``op_of(node, modules)``
names the op (conv2d, linear, relu, add, max_pool2d, layer_norm, ...), its tensor inputs and its
attributes, whatever spelling the model used (``nn.ReLU()``, ``F.relu``, ``torch.relu``,
``x.relu()``, ``x + y``, ``torch.add``, ``+=``).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

from . import _torch  # noqa: F401
import torch
import torch.nn.functional as F
from torch import fx, nn


@dataclass
class Op:
    kind: str                         # eightbit's name of the op, or "unknown"
    inputs: list                      # the tensor inputs (fx nodes), in order
    attrs: dict = field(default_factory=dict)
    module: object = None             # the nn.Module of a call_module node
    consts: dict = field(default_factory=dict)   # constant operands (tensors, numbers)


# elementwise functions: kind -> attrs from (args after x, kwargs)
_UNARY_FUNCS = {
    F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
    torch.tanh: "tanh", F.tanh: "tanh", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid",
    F.gelu: "gelu", F.leaky_relu: "leaky_relu", F.hardtanh: "clip", torch.clamp: "clip", torch.clip: "clip",
    torch.erf: "erf", F.dropout: "dropout", torch.flatten: "flatten", F.softmax: "softmax", torch.softmax: "softmax",
}
_UNARY_METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "clamp": "clip", "clip": "clip",
                  "flatten": "flatten", "view": "reshape", "reshape": "reshape", "contiguous": "identity",
                  "softmax": "softmax", "permute": "transpose", "transpose": "transpose", "mean": "mean",
                  "unsqueeze": "reshape", "squeeze": "reshape", "erf": "erf"}
_BINARY = {operator.add: "add", operator.iadd: "add", torch.add: "add", operator.mul: "mul", operator.imul: "mul",
           torch.mul: "mul", operator.sub: "sub", torch.sub: "sub", operator.truediv: "div", torch.div: "div",
           operator.matmul: "matmul", torch.matmul: "matmul", torch.bmm: "matmul"}
_BINARY_METHODS = {"add": "add", "add_": "add", "mul": "mul", "mul_": "mul", "sub": "sub", "div": "div",
                   "matmul": "matmul", "bmm": "matmul"}
_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Hardswish: "hardswish",
            nn.Hardsigmoid: "hardsigmoid", nn.GELU: "gelu", nn.LeakyReLU: "leaky_relu", nn.Hardtanh: "clip",
            nn.Dropout: "dropout", nn.Identity: "identity", nn.Flatten: "flatten", nn.Conv2d: "conv2d",
            nn.Linear: "linear", nn.BatchNorm2d: "batch_norm2d", nn.MaxPool2d: "max_pool2d",
            nn.AvgPool2d: "avg_pool2d", nn.LayerNorm: "layer_norm", nn.Softmax: "softmax", nn.Embedding: "embedding",
            nn.AdaptiveAvgPool2d: "adaptive_avg_pool2d"}
ACTIVATIONS = ("relu", "relu6", "clip", "leaky_relu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "gelu", "erf")


def _arg(node, i, name, default=None):
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def op_of(node: fx.Node, modules: dict) -> Op:
    """The eightbit op a call_module / call_function / call_method node computes."""
    if node.op == "call_module":
        return _module_op(node, modules[node.target])
    if node.op == "call_function" and node.target in _BINARY:
        return _binary(_BINARY[node.target], node, node.args[0], _arg(node, 1, "other"))
    if node.op == "call_method" and node.target in _BINARY_METHODS:
        return _binary(_BINARY_METHODS[node.target], node, node.args[0], _arg(node, 1, "other"))
    if node.op == "call_function" and node.target in _UNARY_FUNCS:
        return _function_op(_UNARY_FUNCS[node.target], node)
    if node.op == "call_method" and node.target in _UNARY_METHODS:
        return _function_op(_UNARY_METHODS[node.target], node)
    if node.op == "call_function" and node.target in (torch.cat, torch.concat):
        return Op("cat", list(node.args[0]), {"dim": _arg(node, 1, "dim", 0)})
    if node.op == "call_function" and node.target is F.max_pool2d:
        k = _arg(node, 1, "kernel_size")
        return Op("max_pool2d", [node.args[0]], _pool(k, _arg(node, 2, "stride"), _arg(node, 3, "padding", 0),
                                                      _arg(node, 4, "dilation", 1), _arg(node, 5, "ceil_mode", False)))
    if node.op == "call_function" and node.target is F.avg_pool2d:
        attrs = _pool(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"), _arg(node, 3, "padding", 0), 1,
                      _arg(node, 4, "ceil_mode", False))
        attrs["count_include_pad"] = _arg(node, 5, "count_include_pad", True)
        return Op("avg_pool2d", [node.args[0]], attrs)
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        return _adaptive(node.args[0], _arg(node, 1, "output_size"))
    if node.op == "call_function" and node.target in (F.layer_norm,):
        return Op("layer_norm", [node.args[0]], {"normalized_shape": tuple(_arg(node, 1, "normalized_shape")),
                                                 "eps": _arg(node, 4, "eps", 1e-5)},
                  consts={"weight": _arg(node, 2, "weight"), "bias": _arg(node, 3, "bias")})
    if node.op == "call_function" and node.target in (torch.transpose, torch.permute):
        return _function_op("transpose", node)
    if node.op == "call_function" and node.target in (torch.reshape, torch.unsqueeze, torch.squeeze):
        return Op("reshape", [node.args[0]])
    if node.op == "call_function" and node.target is torch.mean:
        return _function_op("mean", node)
    if node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[0], fx.Node) \
            and "tensor_meta" in node.args[0].meta:
        return Op("getitem", [node.args[0]], {"index": node.args[1]})
    return Op("unknown", [a for a in node.all_input_nodes])


def _pool(kernel, stride, padding, dilation, ceil_mode) -> dict:
    kernel = _pair(kernel)
    return {"kernel_size": kernel, "stride": kernel if stride in (None, [], ()) else _pair(stride),
            "padding": _pair(padding), "dilation": _pair(dilation), "ceil_mode": bool(ceil_mode)}


def _adaptive(x, size) -> Op:
    if _pair(size) == (1, 1):
        return Op("global_avg_pool2d", [x])
    return Op("unknown", [x])


def _module_op(node, m) -> Op:
    kind = next((k for cls, k in _MODULES.items() if type(m) is cls), "unknown")
    x = [node.args[0]] if node.args else []
    attrs = {}
    if kind == "clip":
        attrs = {"min": m.min_val, "max": m.max_val}
    elif kind == "leaky_relu":
        attrs = {"negative_slope": m.negative_slope}
    elif kind == "gelu":
        attrs = {"approximate": m.approximate}
    elif kind == "flatten":
        attrs = {"start_dim": m.start_dim, "end_dim": m.end_dim}
    elif kind in ("max_pool2d", "avg_pool2d"):
        attrs = _pool(m.kernel_size, m.stride, m.padding, getattr(m, "dilation", 1), m.ceil_mode)
        if kind == "avg_pool2d":
            attrs["count_include_pad"] = m.count_include_pad
            if m.divisor_override is not None:
                kind = "unknown"
    elif kind == "adaptive_avg_pool2d":
        return _adaptive(node.args[0], m.output_size)
    elif kind == "softmax":
        attrs = {"dim": m.dim}
    elif kind == "layer_norm":
        attrs = {"normalized_shape": tuple(m.normalized_shape), "eps": m.eps}
    elif kind == "hardsigmoid":
        attrs = {"alpha": 1.0 / 6, "beta": 0.5}
    elif kind == "dropout":
        attrs = {"p": m.p}
    elif kind == "relu6":
        kind, attrs = "clip", {"min": 0.0, "max": 6.0}
    return Op(kind, x, attrs, module=m)


def _function_op(kind, node) -> Op:
    x = node.args[0]
    rest = {k: v for k, v in node.kwargs.items() if k != "inplace"}
    if kind == "clip":
        lo = _arg(node, 1, "min", None if node.target in (torch.clamp, torch.clip, "clamp", "clip") else -1.0)
        hi = _arg(node, 2, "max", None if node.target in (torch.clamp, torch.clip, "clamp", "clip") else 1.0)
        if node.target is F.hardtanh:
            lo, hi = _arg(node, 1, "min_val", -1.0), _arg(node, 2, "max_val", 1.0)
        return Op("clip", [x], {"min": lo, "max": hi})
    if kind == "relu6":
        return Op("clip", [x], {"min": 0.0, "max": 6.0})
    if kind == "leaky_relu":
        return Op(kind, [x], {"negative_slope": _arg(node, 1, "negative_slope", 0.01)})
    if kind == "gelu":
        return Op(kind, [x], {"approximate": rest.get("approximate", "none")})
    if kind == "hardsigmoid":
        return Op(kind, [x], {"alpha": 1.0 / 6, "beta": 0.5})
    if kind == "flatten":
        return Op(kind, [x], {"start_dim": _arg(node, 1, "start_dim", 0), "end_dim": _arg(node, 2, "end_dim", -1)})
    if kind == "softmax":
        return Op(kind, [x], {"dim": _arg(node, 1, "dim")})
    if kind == "dropout":
        return Op(kind, [x], {"p": _arg(node, 1, "p", 0.5)})
    if kind == "transpose":
        if node.target in ("transpose", torch.transpose):
            return Op(kind, [x], {"swap": (_arg(node, 1, "dim0"), _arg(node, 2, "dim1"))})
        dims = node.args[1:] if node.target == "permute" else (_arg(node, 1, "dims"),)
        dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else tuple(dims)
        return Op(kind, [x], {"perm": dims})
    if kind == "mean":
        return Op(kind, [x], {"dim": _arg(node, 1, "dim"), "keepdim": _arg(node, 2, "keepdim", False)})
    return Op(kind, [x])


def _binary(kind, node, a, b) -> Op:
    if isinstance(a, fx.Node) and isinstance(b, fx.Node):
        return Op(kind, [a, b])
    if kind in ("add", "mul") and not isinstance(a, fx.Node):
        a, b = b, a
    if not isinstance(a, fx.Node):
        return Op("unknown", [n for n in (a, b) if isinstance(n, fx.Node)])
    return Op(kind, [a], consts={"other": b})
