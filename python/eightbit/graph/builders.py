"""Node builders: ``Graph.conv2d(...)`` and friends, named and argued as in torch.nn.functional.

Each builder checks and normalizes its arguments (ints become pairs, padding="same" becomes
explicit pads, weights become read-only float32 copies), then calls ``Graph.add_node``, which
infers and checks shapes (shapes.py). Errors are ValueError / TypeError whose message starts
with the node name and op, then names the argument: ``"conv2d_1 (conv2d): padding must be >= 0,
got (-1, -1)"``. Weights use PyTorch layouts: conv2d OIHW, linear [out, in]; matmul takes a
[K, N] constant (``x @ b``), bmm two tensors.
"""
from __future__ import annotations

import math

import numpy as np

from .ir import SeqLen, Tensor


# ---- argument checks shared with graph.py -----------------------------------------------------

def check_name(name, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what} must be a non-empty str, got {name!r}")


def const_array(value, where: str, arg: str, share_readonly: bool = False) -> np.ndarray:
    """A read-only float32 C-contiguous copy of `value`; rejects Tensors, non-numeric dtypes and
    NaN / infinity. With `share_readonly` (add_node: consts of another node), an array that is
    already read-only, float32, contiguous and owns its data is shared instead of copied."""
    if share_readonly and isinstance(value, np.ndarray) and value.dtype == np.float32 \
            and value.flags.c_contiguous and not value.flags.writeable and value.base is None:
        return value
    if isinstance(value, Tensor):
        raise TypeError(f"{where}: {arg} must be a constant NumPy array, got Tensor {value.name!r}")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: {arg} must be a numeric NumPy array, got {type(value).__name__}") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{where}: {arg} must be a real numeric array, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):
        arr = np.array(arr, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: {arg} must be finite (in float32), found NaN or infinity")
    arr.setflags(write=False)
    return arr


def check_activation(act, where: str):
    """None, "relu" or ("clip", lo, hi) with finite lo <= hi (returned with float bounds)."""
    if act is None or act == "relu":
        return act
    if isinstance(act, (tuple, list)) and len(act) == 3 and act[0] == "clip":
        lo, hi = _float(act[1], where, "activation lower bound"), _float(act[2], where, "activation upper bound")
        if lo > hi:
            raise ValueError(f"{where}: activation clip bounds must satisfy lo <= hi, got ({lo}, {hi})")
        return ("clip", lo, hi)
    raise ValueError(f"{where}: activation must be None, 'relu' or ('clip', lo, hi), got {act!r}")


def _int(value, where: str, arg: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {arg} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {arg} must be >= {minimum}, got {value}")
    return int(value)


def _pair(value, where: str, arg: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2 or \
            any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in value):
        raise TypeError(f"{where}: {arg} must be an int or a pair of ints, got {value!r}")
    if min(value) < minimum:
        raise ValueError(f"{where}: {arg} must be >= {minimum}, got {tuple(int(v) for v in value)}")
    return int(value[0]), int(value[1])


def _float(value, where: str, arg: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: {arg} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: {arg} must be finite, got {value}")
    return float(value)


def _bool(value, where: str, arg: str) -> bool:
    if value not in (True, False):
        raise TypeError(f"{where}: {arg} must be a bool, got {value!r}")
    return bool(value)


def _axis(axis, rank: int, where: str, arg: str = "axis") -> int:
    axis = _int(axis, where, arg, -rank)
    if axis >= rank:
        raise ValueError(f"{where}: {arg}={axis} is out of range for rank {rank}")
    return axis % rank


def _conv_pads(padding, kernel, dilation, stride, where: str) -> tuple[int, int, int, int]:
    """(top, left, bottom, right). "same" as in PyTorch: stride 1 only, total d * (k - 1) split
    with the odd pixel at the end (bottom / right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{where}: padding='same' needs stride 1 (as in PyTorch), got stride={stride}")
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            return (total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2)
        raise ValueError(f"{where}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    ph, pw = _pair(padding, where, "padding", 0)
    return (ph, pw, ph, pw)


class Builders:
    """Mixin of ``Graph``: one method per op; each returns the output Tensor."""

    # -- helpers --

    def _start(self, op: str, name):
        name = self._pick_name(op, name)
        return name, f"{name} ({op})"

    def _two_tensors(self, op: str, a, b, name, hint: str):
        """A node of two tensor operands (no constants): TypeError with ``hint`` otherwise."""
        name, where = self._start(op, name)
        for arg, t in (("a", a), ("b", b)):
            if not isinstance(t, (Tensor, str)):
                raise TypeError(f"{where}: {arg} must be a Tensor ({hint}), got {type(t).__name__}")
        return self.add_node(op, [self._tensor(a, where, "a"), self._tensor(b, where, "b")], {}, name=name)

    def _unary(self, op: str, x, attrs, name):
        name, where = self._start(op, name)
        return self.add_node(op, [self._tensor(x, where, "x")], attrs, name=name)

    # -- layers with weights --

    def conv2d(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, name=None):
        """2-D convolution, NCHW, weight OIHW [out, in/groups, kh, kw] (F.conv2d)."""
        name, where = self._start("conv2d", name)
        x = self._tensor(x, where, "x")
        w = const_array(weight, where, "weight")
        if w.ndim != 4:
            raise ValueError(f"{where}: weight must have rank 4 [out, in/groups, kh, kw], got shape {list(w.shape)}")
        stride = _pair(stride, where, "stride", 1)
        dilation = _pair(dilation, where, "dilation", 1)
        groups = _int(groups, where, "groups", 1)
        pads = _conv_pads(padding, w.shape[2:], dilation, stride, where)
        consts = {"weight": w}
        if bias is not None:
            consts["bias"] = const_array(bias, where, "bias")
        attrs = {"stride": stride, "pads": pads, "dilation": dilation, "groups": groups, "activation": None}
        return self.add_node("conv2d", [x], attrs, consts, name=name)

    def linear(self, x, weight, bias=None, *, name=None):
        """``x @ weight.T + bias`` with weight [out_features, in_features] (F.linear)."""
        name, where = self._start("linear", name)
        x = self._tensor(x, where, "x")
        consts = {"weight": const_array(weight, where, "weight")}
        if bias is not None:
            consts["bias"] = const_array(bias, where, "bias")
        return self.add_node("linear", [x], {"activation": None}, consts, name=name)

    def matmul(self, x, b, *, name=None):
        """``x @ b`` with b a constant [K, N] array (torch.matmul with a constant right side)."""
        name, where = self._start("matmul", name)
        x = self._tensor(x, where, "x")
        if isinstance(b, Tensor):
            raise TypeError(f"{where}: b must be a constant [K, N] array; for the product of two tensors "
                            "use g.bmm(a, b)")
        return self.add_node("matmul", [x], {"activation": None}, {"b": const_array(b, where, "b")}, name=name)

    def bmm(self, a, b, *, name=None):
        """``a @ b`` of two tensors (torch.matmul): a [N, ..., M, K] and b [N, ..., K, P] of the same
        rank >= 3 give [N, ..., M, P]; the leading dimensions broadcast as NumPy's (the batch stays
        dimension 0). Attention's ``q @ k.transpose(-2, -1)`` and ``p @ v``."""
        return self._two_tensors("bmm", a, b, name, "for a constant right operand use g.matmul(x, b)")

    def batch_norm2d(self, x, mean, var, weight=None, bias=None, eps=1e-5, *, name=None):
        """Inference BatchNorm over axis 1: ``(x - mean) / sqrt(var + eps) * weight + bias``
        (F.batch_norm, training=False); weight defaults to ones, bias to zeros."""
        name, where = self._start("batch_norm2d", name)
        x = self._tensor(x, where, "x")
        mean = const_array(mean, where, "mean")
        var = const_array(var, where, "var")
        if (var < 0).any():
            raise ValueError(f"{where}: var must be >= 0, got a minimum of {float(var.min())}")
        eps = _float(eps, where, "eps")
        if eps <= 0:
            raise ValueError(f"{where}: eps must be > 0, got {eps}")
        c = mean.shape
        weight = const_array(np.ones(c, np.float32) if weight is None else weight, where, "weight")
        bias = const_array(np.zeros(c, np.float32) if bias is None else bias, where, "bias")
        consts = {"mean": mean, "var": var, "weight": weight, "bias": bias}
        return self.add_node("batch_norm2d", [x], {"eps": eps}, consts, name=name)

    def layer_norm(self, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, name=None):
        """Normalize over the last dimensions ``normalized_shape`` (F.layer_norm):
        ``(x - mean) / sqrt(var + eps) * weight + bias``, biased variance; weight and bias, of
        shape normalized_shape, are optional. The batch dimension is never normalized over."""
        name, where = self._start("layer_norm", name)
        x = self._tensor(x, where, "x")
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (normalized_shape,)
        if not isinstance(normalized_shape, (tuple, list)):
            raise TypeError(f"{where}: normalized_shape must be an int or a tuple of ints, got {normalized_shape!r}")
        ns = tuple(_int(d, where, "normalized_shape entry", 1) for d in normalized_shape)
        eps = _float(eps, where, "eps")
        if eps <= 0:
            raise ValueError(f"{where}: eps must be > 0, got {eps}")
        consts = {}
        if weight is not None:
            consts["weight"] = const_array(weight, where, "weight")
        if bias is not None:
            consts["bias"] = const_array(bias, where, "bias")
        return self.add_node("layer_norm", [x], {"normalized_shape": ns, "eps": eps}, consts, name=name)

    # -- activations --

    def relu(self, x, *, name=None):
        return self._unary("relu", x, {}, name)

    def relu6(self, x, *, name=None):
        """``min(max(x, 0), 6)``."""
        return self._unary("relu6", x, {}, name)

    def clip(self, x, min=None, max=None, *, name=None):
        """``min(max(x, min), max)``; a bound of None is absent (torch.clamp). Needs min <= max."""
        name, where = self._start("clip", name)
        lo = None if min is None else _float(min, where, "min")
        hi = None if max is None else _float(max, where, "max")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"{where}: min must be <= max, got min={lo}, max={hi}")
        return self.add_node("clip", [self._tensor(x, where, "x")], {"min": lo, "max": hi}, name=name)

    def leaky_relu(self, x, negative_slope=0.01, *, name=None):
        name, where = self._start("leaky_relu", name)
        slope = _float(negative_slope, where, "negative_slope")
        return self.add_node("leaky_relu", [self._tensor(x, where, "x")], {"negative_slope": slope}, name=name)

    def sigmoid(self, x, *, name=None):
        return self._unary("sigmoid", x, {}, name)

    def tanh(self, x, *, name=None):
        return self._unary("tanh", x, {}, name)

    def erf(self, x, *, name=None):
        """The error function (torch.erf); what exact GELU is made of in ONNX exports."""
        return self._unary("erf", x, {}, name)

    def hardswish(self, x, *, name=None):
        """``x * relu6(x + 3) / 6``."""
        return self._unary("hardswish", x, {}, name)

    def hardsigmoid(self, x, alpha=1.0 / 6, beta=0.5, *, name=None):
        """``clip(alpha * x + beta, 0, 1)``; the defaults are F.hardsigmoid (``relu6(x + 3) / 6``),
        other values ONNX HardSigmoid's (whose defaults are alpha=0.2, beta=0.5)."""
        name, where = self._start("hardsigmoid", name)
        attrs = {"alpha": _float(alpha, where, "alpha"), "beta": _float(beta, where, "beta")}
        return self.add_node("hardsigmoid", [self._tensor(x, where, "x")], attrs, name=name)

    def lrn(self, x, size, alpha=1e-4, beta=0.75, bias=1.0, *, name=None):
        """Local response normalization across channels (ONNX LRN, F.local_response_norm):
        ``x / (bias + alpha / size * sum(x^2 over a window of size channels)) ** beta``, the
        window running from channel c - (size - 1) // 2 to c + size // 2. x is N x C x D1 x ...;
        it has no int8 step (eb.quantize keeps it float32)."""
        name, where = self._start("lrn", name)
        attrs = {"size": _int(size, where, "size", 1), "alpha": _float(alpha, where, "alpha"),
                 "beta": _float(beta, where, "beta"), "bias": _float(bias, where, "bias")}
        return self.add_node("lrn", [self._tensor(x, where, "x")], attrs, name=name)

    def gelu(self, x, approximate="none", *, name=None):
        """``x * Phi(x)`` (exact, with erf) or its tanh approximation (F.gelu)."""
        name, where = self._start("gelu", name)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"{where}: approximate must be 'none' or 'tanh', got {approximate!r}")
        return self.add_node("gelu", [self._tensor(x, where, "x")], {"approximate": approximate}, name=name)

    def softmax(self, x, axis, *, mask=None, scale=None, name=None):
        """softmax(x * scale + mask) along ``axis``; ``mask`` (a tensor broadcasting to x) and
        ``scale`` optional (attention's scores: eb.quantize and eb.compile fuse them this way)."""
        name, where = self._start("softmax", name)
        x = self._tensor(x, where, "x")
        inputs = [x] if mask is None else [x, self._tensor(mask, where, "mask")]
        attrs = {"axis": _axis(axis, x.ndim, where), "scale": None if scale is None else _float(scale, where, "scale")}
        return self.add_node("softmax", inputs, attrs, name=name)

    def dropout(self, x, p=0.5, *, name=None):
        """Identity (inference); kept in the graph until ``remove_identities``."""
        name, where = self._start("dropout", name)
        p = _float(p, where, "p")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{where}: p must be in [0, 1], got {p}")
        return self.add_node("dropout", [self._tensor(x, where, "x")], {"p": p}, name=name)

    def identity(self, x, *, name=None):
        return self._unary("identity", x, {}, name)

    # -- elementwise binary --

    def _binary(self, op: str, a, b, name):
        name, where = self._start(op, name)
        if not isinstance(a, Tensor):
            if not isinstance(b, Tensor):
                raise TypeError(f"{where}: at least one of a, b must be a Tensor")
            a, b = b, a                                    # add and mul commute
        a = self._tensor(a, where, "a")
        attrs = {"activation": None} if op == "add" else {}
        if isinstance(b, Tensor):
            return self.add_node(op, [a, self._tensor(b, where, "b")], attrs, name=name)
        return self.add_node(op, [a], attrs, {"b": const_array(b, where, "b")}, name=name)

    def add(self, a, b, *, name=None):
        """``a + b``: two tensors, or a tensor and a constant array (NumPy broadcasting)."""
        return self._binary("add", a, b, name)

    def mul(self, a, b, *, name=None):
        """``a * b``: two tensors, or a tensor and a constant array (NumPy broadcasting)."""
        return self._binary("mul", a, b, name)

    def div(self, a, b, *, name=None):
        """``a / b`` of two tensors of the same rank (NumPy broadcasting; IEEE division: x / 0 is
        +-inf or NaN). For a constant divisor use ``g.mul(a, 1 / c)``."""
        return self._two_tensors("div", a, b, name, "for a constant divisor use g.mul(a, 1 / c)")

    def concat(self, ts, axis, *, name=None):
        """Concatenate tensors along ``axis`` (not the batch axis 0) (torch.cat)."""
        name, where = self._start("concat", name)
        if isinstance(ts, Tensor) or not isinstance(ts, (list, tuple)) or not ts:
            raise TypeError(f"{where}: ts must be a non-empty list of Tensors, got {ts!r}")
        ts = [self._tensor(t, where, f"ts[{i}]") for i, t in enumerate(ts)]
        return self.add_node("concat", ts, {"axis": _axis(axis, ts[0].ndim, where)}, name=name)

    # -- pooling --

    def _pool_attrs(self, where, kernel_size, stride, padding, ceil_mode):
        kernel = _pair(kernel_size, where, "kernel_size", 1)
        stride = kernel if stride is None else _pair(stride, where, "stride", 1)
        pad = _pair(padding, where, "padding", 0)
        if any(2 * p > k for p, k in zip(pad, kernel)):
            raise ValueError(f"{where}: padding={pad} must be at most half of kernel_size={kernel} "
                             "(as in PyTorch)")
        return {"kernel_size": kernel, "stride": stride, "pads": pad + pad,
                "ceil_mode": _bool(ceil_mode, where, "ceil_mode")}

    def max_pool2d(self, x, kernel_size, stride=None, padding=0, ceil_mode=False, *, name=None):
        """Max over windows (F.max_pool2d); stride defaults to kernel_size; padding never wins."""
        name, where = self._start("max_pool2d", name)
        x = self._tensor(x, where, "x")
        attrs = self._pool_attrs(where, kernel_size, stride, padding, ceil_mode)
        return self.add_node("max_pool2d", [x], attrs, name=name)

    def avg_pool2d(self, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                   *, name=None):
        """Mean over windows (F.avg_pool2d): with count_include_pad the divisor counts the zero
        padding (but not the part of a ceil_mode window beyond it), else only the input taps."""
        name, where = self._start("avg_pool2d", name)
        x = self._tensor(x, where, "x")
        attrs = self._pool_attrs(where, kernel_size, stride, padding, ceil_mode)
        attrs["count_include_pad"] = _bool(count_include_pad, where, "count_include_pad")
        return self.add_node("avg_pool2d", [x], attrs, name=name)

    def global_avg_pool2d(self, x, *, name=None):
        """Mean over H and W: [N, C, H, W] -> [N, C, 1, 1] (F.adaptive_avg_pool2d(x, 1))."""
        return self._unary("global_avg_pool2d", x, {}, name)

    # -- shape ops --

    def flatten(self, x, start_dim=1, *, name=None):
        """Merge dimensions start_dim.. (>= 1: the batch stays) into one (torch.flatten)."""
        name, where = self._start("flatten", name)
        x = self._tensor(x, where, "x")
        start = _axis(start_dim, x.ndim, where, "start_dim")
        if start == 0:
            raise ValueError(f"{where}: start_dim={start_dim} would merge the batch dimension; use >= 1")
        return self.add_node("flatten", [x], {"start_dim": start}, name=name)

    def transpose(self, x, perm, *, name=None):
        """Permute the axes (torch.permute / ONNX Transpose); the batch axis stays first:
        ``perm[0]`` must be 0 (negative entries count from the end)."""
        name, where = self._start("transpose", name)
        x = self._tensor(x, where, "x")
        if not isinstance(perm, (tuple, list)):
            raise TypeError(f"{where}: perm must be a tuple of ints, got {perm!r}")
        perm = tuple(_axis(p, x.ndim, where, "perm entry") for p in perm)
        return self.add_node("transpose", [x], {"perm": perm}, name=name)

    def pad(self, x, pad, mode="constant", value=0.0, *, name=None):
        """Pad the last dimensions (F.pad): ``pad = (left, right)`` for the last axis, then
        ``(top, bottom)`` for the one before, and so on; mode "constant" (with ``value``),
        "reflect", "replicate" or "circular". The batch axis cannot be padded."""
        name, where = self._start("pad", name)
        x = self._tensor(x, where, "x")
        if not isinstance(pad, (tuple, list)) or len(pad) % 2:
            raise TypeError(f"{where}: pad must be a tuple of an even number of ints, got {pad!r}")
        pad = [_int(p, where, "pad entry", 0) for p in pad]
        if len(pad) // 2 > x.ndim - 1:
            raise ValueError(f"{where}: pad={tuple(pad)} pads {len(pad) // 2} axes, but x {list(x.shape)} "
                             f"has only {x.ndim - 1} besides the batch")
        pads = [0] * (2 * x.ndim)
        for k in range(len(pad) // 2):
            axis = x.ndim - 1 - k
            pads[axis], pads[x.ndim + axis] = pad[2 * k], pad[2 * k + 1]
        attrs = {"pads": tuple(pads), "mode": mode, "value": _float(value, where, "value")}
        return self.add_node("pad", [x], attrs, name=name)

    def reshape(self, x, shape, *, name=None):
        """Reshape each sample: the output is ``(batch,) + shape``; one entry may be -1.

        ``shape`` excludes the batch dimension (as Keras' Reshape), so a free batch stays free:
        ``g.reshape(x, (16, 4, 4))`` maps [N, 256] to [N, 16, 4, 4]. A leading None names the
        batch explicitly: ``(None, 16, 4, 4)`` means the same.
        """
        name, where = self._start("reshape", name)
        x = self._tensor(x, where, "x")
        if not isinstance(shape, (tuple, list)):
            raise TypeError(f"{where}: shape must be a tuple of ints (without the batch dimension), got {shape!r}")
        if len(shape) and shape[0] is None:
            shape = tuple(shape[1:])
        dims = [d if isinstance(d, SeqLen) else _int(d, where, "shape entry", -1) for d in shape]
        if dims.count(-1) > 1 or 0 in dims:
            raise ValueError(f"{where}: shape={tuple(shape)} may hold one -1 and no 0")
        if -1 in dims and any(isinstance(d, SeqLen) for d in (*dims, *x.shape)):
            raise ValueError(f"{where}: with a sequence dimension, give every entry of shape (no -1)")
        if -1 in dims:
            size = math.prod(x.shape[1:])
            known = -math.prod(dims)
            if size % known:
                raise ValueError(f"{where}: shape={tuple(shape)} cannot hold the {size} values per sample "
                                 f"of x {list(x.shape)}")
            dims[dims.index(-1)] = size // known
        return self.add_node("reshape", [x], {"shape": tuple(dims)}, name=name)

    # -- token inputs (BERT-style encoders) --

    def embedding(self, ids, weight, *, name=None):
        """Rows of the table ``weight`` [V, D] by the integer ids of ``ids`` [N, ...] (usually an
        int64 graph input): [N, ..., D], as torch.nn.Embedding / ONNX Gather of a table. An id
        that is not an integer in [0, V) raises ValueError when the graph runs."""
        name, where = self._start("embedding", name)
        ids = self._tensor(ids, where, "ids")
        table = const_array(weight, where, "weight")
        if table.ndim != 2 or table.shape[0] == 0:
            raise ValueError(f"{where}: weight must be a [V, D] table with V >= 1, got shape {list(table.shape)}")
        return self.add_node("embedding", [ids], {}, {"weight": table}, name=name)

    def additive_mask(self, mask, fill=float(np.finfo(np.float32).min), *, name=None):
        """The additive attention mask of a keep mask ``mask`` [N, T] (1: attend, 0: padding):
        [N, 1, 1, T] float32, 0 where kept and ``fill`` where padded (default the float32 minimum,
        as Hugging Face encoders; -inf and -10000.0 are other common values). Any value other
        than 0 or 1 in the mask raises ValueError when the graph runs."""
        name, where = self._start("additive_mask", name)
        mask = self._tensor(mask, where, "mask")
        if isinstance(fill, bool) or not isinstance(fill, (int, float, np.integer, np.floating)) or math.isnan(fill):
            raise ValueError(f"{where}: fill must be a number (not NaN), got {fill!r}")
        return self.add_node("additive_mask", [mask], {"fill": float(fill)}, name=name)

    def padded_positions(self, ids, pad, *, name=None):
        """RoBERTa's position ids of ``ids`` [N, T] (``create_position_ids_from_input_ids``):
        ``pad`` where the id is the padding id, else ``pad`` + the number of non-padding ids up to
        and including that token; float32 holding integers, for an ``embedding``."""
        name, where = self._start("padded_positions", name)
        ids = self._tensor(ids, where, "ids")
        return self.add_node("padded_positions", [ids], {"pad": _int(pad, where, "pad", 0)}, name=name)

    def reduce(self, x, mode, axes, keepdims=False, *, name=None):
        """Reduce ``x`` over ``axes`` (an int or increasing, contiguous ints >= 1; never the batch):
        mode "sum", "mean", "l2" (the Euclidean norm) or "max"; ``keepdims`` keeps them as size 1.
        Float64 accumulation, one rounding to float32 (graph/float_exec.py)."""
        name, where = self._start("reduce", name)
        x = self._tensor(x, where, "x")
        if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
            axes = (axes,)
        if not isinstance(axes, (tuple, list)):
            raise TypeError(f"{where}: axes must be an int or a tuple of ints, got {axes!r}")
        axes = tuple(_int(a, where, "axes entry", 0) for a in axes)
        if not isinstance(keepdims, (bool, np.bool_)):
            raise TypeError(f"{where}: keepdims must be a bool, got {keepdims!r}")
        return self.add_node("reduce", [x], {"mode": mode, "axes": axes, "keepdims": bool(keepdims)}, name=name)

    def reduce_sum(self, x, axes, keepdims=False, *, name=None):
        return self.reduce(x, "sum", axes, keepdims, name=name)

    def reduce_mean(self, x, axes, keepdims=False, *, name=None):
        return self.reduce(x, "mean", axes, keepdims, name=name)

    def reduce_l2(self, x, axes, keepdims=False, *, name=None):
        return self.reduce(x, "l2", axes, keepdims, name=name)

    def select(self, x, axis, index, *, name=None):
        """``x[.., index, ..]`` along ``axis`` (>= 1), that axis dropped (e.g. the first token
        of [N, T, D] -> [N, D], as BERT's pooler reads it)."""
        name, where = self._start("select", name)
        x = self._tensor(x, where, "x")
        axis = _int(axis, where, "axis", 1)
        return self.add_node("select", [x], {"axis": axis, "index": _int(index, where, "index", 0)}, name=name)
