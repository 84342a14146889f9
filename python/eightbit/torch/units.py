"""QAT modules, one per int8 step of the engine: each computes its op on fake-quantized values with
straight-through gradients and, when ``exact`` applies, puts on the values the engine's own integer
result (eightbit.torch.exact: the same codes bit for bit), keeping the fake-quantized gradient.

A unit's inputs are quantized tensors: the outputs of an ``ActQuant`` (the engine's quantize
step) or of other units. ``prepare_qat`` tells each unit where its inputs' scales and zero
points come from (``bind``); a unit's own output quantization is its ``output_quant``, except for
the ops that copy codes (max pool, reshape), whose output keeps the input's.

    QConv2d      conv (+ BatchNorm folded, + ReLU / ReLU6 / clip)   the engine's conv step
    QLinear      linear (+ activation); per token: dynamic_linear   linear / dynamic_linear
    QAdd, QMul   two quantized tensors                              add / mul (QLinearAdd / Mul)
    QCat         concatenation                                      concat
    QMaxPool2d, QReshape   code-preserving                          max_pool / reshape
    QAvgPool2d, QGlobalAvgPool2d                                    avg_pool / global_avg_pool
    QLut         relu, sigmoid, tanh, hardswish, gelu, ...          lut (a 256-entry table)
"""
from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

from . import _torch  # noqa: F401
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..numerics import activation_range, make_lookup_table, qlinear_add_b_first
from . import exact
from .fake_quant import fake_quantize_rows, replace_forward
from .quantizers import ActQuant, WeightQuantizer

def activation_function(kind: str, attrs: dict):
    """The torch function of an elementwise op (fx_ops kinds), or None when it has none here."""
    if kind == "clip":
        lo, hi = attrs.get("min"), attrs.get("max")
        return lambda x: torch.clamp(x, lo, hi)
    if kind == "leaky_relu":
        return lambda x: F.leaky_relu(x, attrs["negative_slope"])
    if kind == "gelu":
        return lambda x: F.gelu(x, approximate=attrs.get("approximate", "none"))
    if kind == "hardsigmoid":
        return lambda x: torch.clamp(attrs["alpha"] * x + attrs["beta"], 0.0, 1.0)
    return {"relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "hardswish": F.hardswish,
            "erf": torch.erf}.get(kind)


def apply_activation(y, activation):
    """A fused activation on float values: None, "relu" or ("clip", lo, hi) (ReLU6 is a clip)."""
    if activation is None:
        return y
    return F.relu(y) if activation == "relu" else torch.clamp(y, activation[1], activation[2])


class Unit(nn.Module):
    """Base of the QAT modules: where the inputs' quantization comes from, and when to be exact."""

    copies_codes = False          # max pool, reshape: the output keeps the input's quantization

    def __init__(self, exact_mode="eval"):
        super().__init__()
        self.exact_mode = exact_mode
        self.output_quant = None      # an ActQuant, for units with their own output quantization
        object.__setattr__(self, "_sources", ())

    def bind(self, sources) -> None:
        """The quantization sources (ActQuant or units) of the inputs, in order. Held outside
        the module tree: they are registered where they live."""
        object.__setattr__(self, "_sources", tuple(sources))

    @property
    def sources(self):
        return self._sources

    def exact_now(self) -> bool:
        return self.exact_mode is True or (self.exact_mode == "eval" and not self.training)

    # A computing unit defines ``fake(*xs)`` (the op on fake-quantized values: what gradients
    # follow, and what observers see) and ``exact(*xs)`` (the engine's result, dequantized).
    def exact_applies(self) -> bool:
        return True

    def forward(self, *xs):
        if not (self.exact_now() and self.exact_applies()):
            return self.fake(*xs)
        if not (self.training or torch.is_grad_enabled()) and (self.output_quant is None
                                                               or self.output_quant.initialized):
            return self.exact(*xs)              # nothing learns from this pass: the engine's values only
        return replace_forward(self.fake(*xs), self.exact(*xs))   # fake first: observers move first

    # the quantization of this unit's output
    def qparams(self):
        return self.sources[0].qparams() if self.copies_codes else self.output_quant.qparams()

    def numpy_qparams(self):
        return self.sources[0].numpy_qparams() if self.copies_codes else self.output_quant.numpy_qparams()

    @property
    def qrange(self):
        return self.sources[0].qrange if self.copies_codes else self.output_quant.qrange

    @property
    def dtype(self):
        return self.sources[0].dtype if self.copies_codes else self.output_quant.dtype

    def input_codes(self, i: int, x):
        """The codes of input i (x holds their dequantized values, so the division recovers them)."""
        scale, zp = self.sources[i].qparams()
        lo, hi = self.sources[i].qrange
        return exact.quantize(x.detach(), scale.detach(), zp, lo, hi), scale.detach(), zp

    def dequantized(self, codes):
        """Output codes as values (dequantized with the output's parameters)."""
        scale, zp = self.qparams()
        return exact.dequantize(codes, scale.detach(), zp)


class _WeightedUnit(Unit):
    """conv / linear: weights quantized by a WeightQuantizer, an int32 bias, requantization."""

    per_token = False

    def __init__(self, layer, activation, weight_spec, act_spec, exact_mode, quantize_output=True):
        super().__init__(exact_mode)
        self.layer = layer
        self.activation = activation
        self.weight_quant = WeightQuantizer(weight_spec, layer.weight.shape[0])
        self.output_quant = ActQuant(act_spec) if quantize_output else None
        self.binary_inputs = weight_spec.binary_inputs
        if self.binary_inputs:  # an XNOR layer: WeightQuant.binary_inputs
            if getattr(layer, "groups", 1) != 1:
                raise ValueError("binary_inputs: a grouped convolution has no binary form")
            self.threshold = nn.Parameter(torch.zeros(layer.weight.shape[1]))
            self.register_buffer("threshold_initialized", torch.tensor(False))

    def binarized(self, x, channel_axis: int):
        """-1 where x < threshold (per channel on ``channel_axis``), else +1, with the straight-
        through gradient of clamp(x - threshold, -1, 1) to x and to the threshold. The first
        training batch sets the thresholds to its channel means."""
        if self.training and not bool(self.threshold_initialized):
            with torch.no_grad():
                dims = [d for d in range(x.dim()) if d != channel_axis % x.dim()]
                self.threshold.copy_(x.detach().float().mean(dim=dims))
                self.threshold_initialized.fill_(True)
        shape = [1] * x.dim()
        shape[channel_axis] = -1
        u = x - self.threshold.reshape(shape)
        signs = torch.where(x < self.threshold.detach().reshape(shape).to(x.dtype), -1.0, 1.0).to(x.dtype)
        return replace_forward(torch.clamp(u, -1.0, 1.0), signs)

    def binary_output(self, dot, w_scale, b, channel_shape):
        """The engine's binary step after the +-1 dot products (float64 integers): float32(dot) *
        scale, + bias, quantized to the output clamped to the activation's range, dequantized."""
        y = dot.to(torch.float32) * w_scale.to(torch.float32).reshape(channel_shape)
        y = y + (b.to(torch.float32).reshape(channel_shape) if b is not None else torch.zeros((), dtype=torch.float32))
        y_scale, y_zp = self.output_quant.qparams()
        lo, hi = activation_range(self.activation, np.float32(y_scale.detach()), self.dtype.type(y_zp), self.dtype)
        return self.dequantized(exact.quantize(y, y_scale.detach(), y_zp, lo, hi))

    def input_signs(self, x, channel_shape):
        """The engine's signs of input 0: its codes dequantized, compared with the thresholds (float64)."""
        xq, x_scale, x_zp = self.input_codes(0, x)
        real = exact.dequantize(xq, x_scale, x_zp)
        t = self.threshold.detach().to(torch.float32).reshape(channel_shape)
        return torch.where(real < t, -1.0, 1.0).to(torch.float64)

    def float_weights(self):
        """(weights, bias) in float, as the layer computes with them (BatchNorm folded in QConv2d)."""
        return self.layer.weight, self.layer.bias

    def quantized_weights(self):
        """(codes, scale [O], float bias) of the weights the forward pass uses now."""
        w, b = self.float_weights()
        scale = self.weight_quant.scale(w).detach()
        return self.weight_quant.codes(w, scale), scale, (None if b is None else b.detach())

    def bias_codes(self, b, x_scale, w_scale):
        """int32 bias = rne(b / float32(s_x * s_w)) in float64 (eightbit.quantizer.quantize_bias)."""
        bias_scale = (x_scale * w_scale).to(torch.float32)
        if b is None:
            return torch.zeros_like(bias_scale, dtype=torch.float64)
        return torch.round(b.detach().double() / bias_scale.double())

    def requantize(self, acc, w_scale, channel_shape):
        """Output codes of an int32 accumulator: the float multiplier, clamp-then-round, the fused
        activation's integer bounds."""
        x_scale, _ = self.sources[0].qparams()
        y_scale, y_zp = self.output_quant.qparams()
        m = exact.float_multiplier(x_scale.detach(), w_scale, y_scale.detach()).reshape(channel_shape)
        lo, hi = activation_range(self.activation, np.float32(y_scale.detach()), self.dtype.type(y_zp), self.dtype)
        return exact.requantize(acc, m, y_zp, self.output_quant.qmin, self.output_quant.qmax, lo, hi)


class QConv2d(_WeightedUnit):
    """Conv2d, its BatchNorm folded in (Jacob et al. 2018: while training, the weights are scaled
    by gamma / sqrt(running var + eps) before fake quantization, the output is scaled back and
    normalised with the batch's statistics, which the running statistics follow; in eval mode and
    once frozen, conv and BatchNorm are one conv with folded weights and bias, as the engine runs
    it), then a fused ReLU / ReLU6 / clip."""

    def __init__(self, conv, bn, activation, weight_spec, act_spec, exact_mode):
        super().__init__(conv, activation, weight_spec, act_spec, exact_mode)
        self.bn = bn
        self.register_buffer("bn_frozen", torch.tensor(bn is None))

    def freeze_bn(self, frozen: bool = True) -> None:
        if self.bn is not None:
            self.bn_frozen.fill_(frozen)

    def _bn_factor(self):
        bn = self.bn
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
        return gamma / std

    def float_weights(self):
        w, b = self.layer.weight, self.layer.bias
        if self.bn is None:
            return w, b
        f = self._bn_factor()
        beta = self.bn.bias if self.bn.bias is not None else torch.zeros_like(f)
        b0 = b if b is not None else torch.zeros_like(f)
        return w * f.reshape(-1, 1, 1, 1), beta + (b0 - self.bn.running_mean) * f

    def _conv(self, x, w, b=None):
        c = self.layer
        if c.padding_mode != "zeros":
            raise ValueError(f"QConv2d: padding_mode={c.padding_mode!r} has no int8 form (only 'zeros')")
        return F.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)

    def exact_applies(self) -> bool:
        # BatchNorm still normalising with batch statistics: nothing the engine could run
        return self.bn is None or not self.training or bool(self.bn_frozen)

    def fake(self, x):
        if self.binary_inputs:
            x = self.binarized(x, 1)
        if not self.exact_applies():
            f = self._bn_factor()
            w_fq, _ = self.weight_quant(self.layer.weight * f.reshape(-1, 1, 1, 1))
            y = self._conv(x, w_fq) / f.reshape(1, -1, 1, 1)
            if self.layer.bias is not None:
                y = y + self.layer.bias.reshape(1, -1, 1, 1)
            y = self.bn(y)                      # batch statistics; updates the running ones
        else:
            w, b = self.float_weights()
            w_fq, _ = self.weight_quant(w)
            y = self._conv(x, w_fq, b)
        return self.output_quant(apply_activation(y, self.activation))

    def exact(self, x):
        codes, w_scale, b = self.quantized_weights()
        c = self.layer
        if self.binary_inputs:              # the engine's binary_conv: zero padding counts 0
            top, left, bottom, right = conv_pads(c)
            s = F.pad(self.input_signs(x, (1, -1, 1, 1)), (left, right, top, bottom))
            dot = F.conv2d(s, codes.to(torch.float64), None, c.stride, 0, c.dilation)
            return self.binary_output(dot, w_scale, b, (1, -1, 1, 1))
        xq, x_scale, x_zp = self.input_codes(0, x)
        acc = exact.integer_conv2d(xq, x_zp, codes, self.bias_codes(b, x_scale, w_scale), c.stride, conv_pads(c),
                                   c.dilation, c.groups)
        return self.dequantized(self.requantize(acc, w_scale, (1, -1, 1, 1)))


def conv_pads(conv) -> tuple:
    """(top, left, bottom, right) of a Conv2d; "same" as PyTorch pads it (the odd pixel at the end)."""
    if conv.padding == "valid":
        return (0, 0, 0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        return (total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2)
    ph, pw = conv.padding
    return (ph, pw, ph, pw)


class QLinear(_WeightedUnit):
    """Linear (+ ReLU / ReLU6 / clip). ``per_token``: the input is float and quantized per token
    (row) at run time, the output float: the engine's dynamic_linear step (transformers)."""

    def __init__(self, linear, activation, weight_spec, act_spec, exact_mode, per_token=False):
        super().__init__(linear, activation, weight_spec, act_spec, exact_mode, quantize_output=not per_token)
        self.per_token = per_token

    def fake(self, x):
        w, b = self.float_weights()
        w_fq, _ = self.weight_quant(w)
        if self.per_token:
            return apply_activation(F.linear(fake_quantize_rows(x), w_fq, b), self.activation)
        if self.binary_inputs:
            x = self.binarized(x, -1)
        return self.output_quant(apply_activation(F.linear(x, w_fq, b), self.activation))

    def exact(self, x):
        codes, w_scale, b = self.quantized_weights()
        if self.per_token:                      # float32 out, as the engine's dynamic_linear step
            return exact.dynamic_linear(x.detach(), codes, w_scale, b, self.activation)
        if self.binary_inputs:                  # the engine's binary_linear
            dot = F.linear(self.input_signs(x, (-1,)), codes.to(torch.float64))
            return self.binary_output(dot, w_scale, b, (-1,))
        xq, x_scale, x_zp = self.input_codes(0, x)
        acc = exact.integer_linear(xq, x_zp, codes, self.bias_codes(b, x_scale, w_scale))
        return self.dequantized(self.requantize(acc, w_scale, (-1,)))


class QAdd(Unit):
    """a + b of two quantized tensors (+ ReLU, which the output's range holds: asymmetric
    activations only), the engine's QLinearAdd."""

    def __init__(self, act_spec, exact_mode, relu=False):
        super().__init__(exact_mode)
        self.relu = relu
        self.output_quant = ActQuant(act_spec)

    def fake(self, a, b):
        y = a + b
        return self.output_quant(F.relu(y) if self.relu else y)

    def exact(self, a, b):
        (qa, sa, za), (qb, sb, zb) = self.input_codes(0, a), self.input_codes(1, b)
        sy, zy = self.qparams()
        b_first = qlinear_add_b_first(_plan_shape(a), _plan_shape(b))
        codes = exact.qlinear_add(qa, sa, za, qb, sb, zb, sy.detach(), zy, *self.qrange, b_first)
        return self.dequantized(codes)


def _plan_shape(t) -> tuple:
    """The shape the engine's plan gives a tensor: 4-D maps are NHWC."""
    s = tuple(t.shape)
    return (s[0], s[2], s[3], s[1]) if len(s) == 4 else s


class QMul(Unit):
    """a * b of two quantized tensors: the engine's QLinearMul."""

    def __init__(self, act_spec, exact_mode):
        super().__init__(exact_mode)
        self.output_quant = ActQuant(act_spec)

    def fake(self, a, b):
        return self.output_quant(a * b)

    def exact(self, a, b):
        (qa, sa, za), (qb, sb, zb) = self.input_codes(0, a), self.input_codes(1, b)
        sy, zy = self.qparams()
        return self.dequantized(exact.qlinear_mul(qa, sa, za, qb, sb, zb, sy.detach(), zy, *self.qrange))


class QCat(Unit):
    """Concatenation: each input requantized to the output's parameters through the table
    QuantizeLinear(dequantized code); the inputs hold exactly those dequantized values, so the
    fake quantization of the concatenated values is already the engine's result."""

    def __init__(self, dim, act_spec, exact_mode):
        super().__init__(exact_mode)
        self.dim = dim
        self.output_quant = ActQuant(act_spec)

    def forward(self, *xs):       # the exact result already (see above)
        return self.output_quant(torch.cat(xs, self.dim))


class QMaxPool2d(Unit):
    """Max pooling copies codes (dequantization is monotone): the float max pool of the
    dequantized values is the engine's result."""

    copies_codes = True

    def __init__(self, kernel_size, stride, padding, ceil_mode):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode)


class QDropout(Unit):
    """Dropout of a quantized tensor: active while training, the identity (codes copied) in eval
    mode and in the engine."""

    copies_codes = True

    def __init__(self, p):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)


class QReshape(Unit):
    """flatten / view / reshape: codes copied, per sample (the batch dimension kept)."""

    copies_codes = True

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)       # without the batch dimension

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.shape)


class QAvgPool2d(Unit):
    """Average pooling, the engine's QLinearAveragePool."""

    def __init__(self, kernel_size, stride, padding, ceil_mode, count_include_pad, act_spec, exact_mode):
        super().__init__(exact_mode)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.output_quant = ActQuant(act_spec)

    def fake(self, x):
        return self.output_quant(F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                              self.count_include_pad))

    def exact(self, x):
        q, sx, zx = self.input_codes(0, x)
        sy, zy = self.qparams()
        ph, pw = self.padding
        codes = exact.avg_pool2d(q, sx, zx, sy.detach(), zy, *self.qrange, self.kernel_size, self.stride,
                                 (ph, pw, ph, pw), self.ceil_mode, self.count_include_pad)
        return self.dequantized(codes)


class QGlobalAvgPool2d(Unit):
    """Mean over H and W (kept as 1 x 1, or dropped: ``keepdim=False``): the engine's
    QLinearGlobalAveragePool (then a reshape)."""

    def __init__(self, act_spec, exact_mode, keepdim=True):
        super().__init__(exact_mode)
        self.keepdim = keepdim
        self.output_quant = ActQuant(act_spec)

    def forward(self, x):
        y = super().forward(x)
        return y if self.keepdim else y.flatten(1)

    def fake(self, x):
        return self.output_quant(x.mean(dim=(2, 3), keepdim=True))

    def exact(self, x):
        q, sx, zx = self.input_codes(0, x)
        sy, zy = self.qparams()
        return self.dequantized(exact.global_avg_pool(q, sx, zx, sy.detach(), zy, *self.qrange))


class QLut(Unit):
    """An elementwise function of a quantized tensor (relu, relu6, clip, leaky_relu, sigmoid, tanh,
    hardsigmoid, hardswish, gelu): the engine's lookup table of the function at the 256 input
    codes (built by eightbit itself, from the float graph's function, as the lowering does)."""

    def __init__(self, op, attrs, act_spec, exact_mode):
        super().__init__(exact_mode)
        self.op, self.attrs = op, dict(attrs)
        self.output_quant = ActQuant(act_spec)

    def fake(self, x):
        return self.output_quant(activation_function(self.op, self.attrs)(x))

    def exact(self, x):
        q, sx, zx = self.input_codes(0, x)
        sy, zy = self.qparams()
        src = self.sources[0]
        table = _lookup_table(self.op, tuple(sorted(self.attrs.items())), float(sx), zx, src.dtype.str,
                              float(sy), zy, self.dtype.str)
        return self.dequantized(exact.lookup(q, torch.from_numpy(table.astype(np.float32)), src.qrange[0]))


@lru_cache(maxsize=4096)
def _lookup_table(op, attrs, x_scale, x_zp, x_dtype, y_scale, y_zp, y_dtype) -> np.ndarray:
    from ..quantizer import lut_function
    fn = lut_function(SimpleNamespace(op=op, attrs=dict(attrs), consts={}))
    xd, yd = np.dtype(x_dtype), np.dtype(y_dtype)
    return make_lookup_table(fn, np.float32(x_scale), xd.type(x_zp), np.float32(y_scale), yd.type(y_zp), xd, yd)
