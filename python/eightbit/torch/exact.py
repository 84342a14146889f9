"""eightbit's int8 numerics in PyTorch, bit for bit as ``eightbit.reference`` (docs/numerics.md).

The forward pass of quantization-aware training: a model that trains with these functions
produces exactly the int8 codes the C++ engine later produces. Conventions:

* codes are float32 tensors holding integers (they compose with autograd code);
* scales are float32 tensors, 0-d or shaped to broadcast (per channel: [C, 1, 1], [1, C, 1, 1]);
* zero points are ints or float tensors holding integers; ``qmin, qmax`` ints
  (uint8: 0, 255; int8: -128, 127);
* integer accumulators are float64 tensors holding int32 values.

Every float step is one IEEE float32 operation (correctly rounded, round half to even) in the
order the specification writes it; float64 is used only where it is provably exact (integer
sums below 2^53, products of two float32). Divisors are always tensors on the dividend's device:
CUDA turns a division by a CPU scalar into a reciprocal multiply, which is not the quotient.
"""
from __future__ import annotations

from . import _torch  # noqa: F401

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..numerics import window

__all__ = [
    "clamp_round", "quantize", "dequantize", "float_multiplier", "integer_conv2d", "integer_linear",
    "requantize", "fma32", "qlinear_add", "qlinear_mul", "global_avg_pool", "avg_pool2d", "lookup",
    "dynamic_quantize_rows", "dynamic_linear",
]

_F32, _F64 = torch.float32, torch.float64
_FLOAT32_EXACT = float(1 << 24)     # every integer of magnitude <= 2^24 is a float32
_NARROW_EXACT = 256.0               # integers <= 2^8 are exact even as bf16 / TF32 GEMM inputs
_TWO31, _TWO32 = 1 << 31, 1 << 32


def _f32(v, like: torch.Tensor) -> torch.Tensor:
    """v as a float32 tensor on like's device (keeps a tensor's shape)."""
    return torch.as_tensor(v, dtype=_F32, device=like.device)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pads4(padding) -> tuple[int, int, int, int]:
    """int, (ph, pw) symmetric, or ONNX-style (top, left, bottom, right)."""
    if isinstance(padding, int):
        return (padding,) * 4
    p = [int(v) for v in padding]
    if len(p) == 2:
        return p[0], p[1], p[0], p[1]
    if len(p) == 4:
        return p[0], p[1], p[2], p[3]
    raise ValueError(f"padding must be an int, (ph, pw) or (top, left, bottom, right), got {padding!r}")


# ---------------------------------------------------------------- quantize / dequantize

def clamp_round(v: torch.Tensor, zero_point, qmin: int, qmax: int) -> torch.Tensor:
    """Clamp-then-round, the float -> code step of every op:

        lo = qmin - zp; hi = qmax - zp;  v = v > lo ? v : lo (NaN -> lo);  v = v < hi ? v : hi
        q  = rne(v) + zp

    lo, hi, rne(v) and zp are small integers, so every float32 step is exact."""
    if not isinstance(zero_point, torch.Tensor) or zero_point.numel() == 1:
        # one zero point: the same map in place on a copy (NaN and -inf -> lo, +inf -> hi)
        zp = float(zero_point)
        lo, hi = float(qmin) - zp, float(qmax) - zp
        v = torch.nan_to_num(v, nan=lo, posinf=hi, neginf=lo)
        return v.clamp_(lo, hi).round_().add_(zp)          # round_: half to even
    zp = _f32(zero_point, v)
    lo, hi = qmin - zp, qmax - zp
    v = torch.where(v > lo, v, lo)
    v = torch.where(v < hi, v, hi)
    return torch.round(v) + zp          # torch.round: half to even


def quantize(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int) -> torch.Tensor:
    """QuantizeLinear: clamp_round(x / scale, zp), the correctly rounded float32 quotient (not
    x * (1 / scale), which differs on about a third of all inputs)."""
    return clamp_round(x / _f32(scale, x), zero_point, qmin, qmax)


def dequantize(q: torch.Tensor, scale, zero_point) -> torch.Tensor:
    """DequantizeLinear: float32(q - zp) * scale (q - zp is exact)."""
    return (q - _f32(zero_point, q)) * _f32(scale, q)


def float_multiplier(x_scale, w_scale, y_scale) -> torch.Tensor:
    """float32(float32(x_scale * w_scale) / y_scale), two roundings as ONNX Runtime (one rounding
    of the exact quotient differs on some scales); w_scale scalar or per channel."""
    w = torch.as_tensor(w_scale, dtype=_F32)
    return (_f32(x_scale, w) * w) / _f32(y_scale, w)


# ---------------------------------------------------------------- exact integer accumulators

def _wrap_int32(v: torch.Tensor) -> torch.Tensor:
    """Exact integers (float64, |v| < 2^53) -> the int32 two's complement wrap, as float64."""
    i = v.to(torch.int64)
    return ((i + _TWO31) % _TWO32 - _TWO31).to(_F64)


def _add_bias_wrap(acc: torch.Tensor, bias_q, shape) -> torch.Tensor:
    """wrap_int32(acc + bias) in float64 (exact: both below 2^53); wrap(wrap(a) + b) = wrap(a + b)."""
    acc = acc.to(_F64)
    if bias_q is not None:
        acc = acc + torch.as_tensor(bias_q, dtype=_F64, device=acc.device).reshape(shape)
    if acc.numel() == 0 or float(acc.abs().max()) < _TWO31:
        return acc                      # inside int32 already (the usual case): nothing wraps
    return _wrap_int32(acc)


def _conv_gemm(xs: torch.Tensor, w: torch.Tensor, stride, dilation, groups: int) -> torch.Tensor:
    """conv2d (no padding) as unfold + matmul: a plain GEMM, exact on these integers whatever the
    summation order. cuDNN may pick Winograd or FFT algorithms, which round."""
    n, _, h, wd = xs.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    oh, ow = (h - (kh - 1) * dh - 1) // sh + 1, (wd - (kw - 1) * dw - 1) // sw + 1
    cols = F.unfold(xs, (kh, kw), dilation=dilation, stride=stride)      # [N, C*kh*kw, L], c slowest
    cols = cols.reshape(n, groups, cg * kh * kw, oh * ow)
    out = torch.matmul(w.reshape(groups, o // groups, cg * kh * kw), cols)  # [N, g, O/g, L]
    return out.reshape(n, o, oh, ow)


def _conv(xs: torch.Tensor, w: torch.Tensor, stride, dilation, groups: int) -> torch.Tensor:
    """oneDNN's direct convolution and ATen's im2col GEMM on the CPU are exact; elsewhere GEMM."""
    if xs.device.type == "cpu":
        return F.conv2d(xs, w, None, stride, 0, dilation, groups)
    return _conv_gemm(xs, w, stride, dilation, groups)


def _float32_chunk(xs: torch.Tensor, w: torch.Tensor, per_channel: int, channels: int) -> int:
    """How many input channels (of ``per_channel`` products each) one float32 pass may sum exactly,
    or 0 when float32 is never exact here.

    Every partial sum is an integer of magnitude <= channels * per_channel * max|xs| * max|w|:
    below 2^24 any order of float32 adds (or fmas) is exact. Inputs of at most 2^8 also stay exact
    where a backend rounds float32 GEMM inputs to bf16 / TF32; larger ones go to float64 (exact
    up to 2^53)."""
    if xs.numel() == 0 or w.numel() == 0:
        return channels
    mx, mw = float(xs.abs().max()), float(w.abs().max())
    if mx > _NARROW_EXACT or mw > _NARROW_EXACT:
        return 0
    return max(1, min(channels, int((_FLOAT32_EXACT - 1) // max(1.0, per_channel * mx * mw))))


def integer_conv2d(xq: torch.Tensor, x_zp, wq: torch.Tensor, bias_q=None, stride=1, padding=0, dilation=1,
                   groups: int = 1) -> torch.Tensor:
    """ConvInteger / QLinearConv's int32 accumulator (NCHW), as float64 integers:

        acc = wrap_int32(conv(pad0(xq - x_zp), wq) + bias_q)

    Padded taps are 0 (they hold x_zp). ``padding``: int, (ph, pw) or ONNX (top, left, bottom,
    right). The convolution runs in float32 over as many input channels at a time as keep every
    partial sum provably exact (all of them for most layers), the chunks summed in float64;
    float64 throughout for values beyond 2^8."""
    top, left, bottom, right = _pads4(padding)
    stride, dilation = _pair(stride), _pair(dilation)
    xs = F.pad(xq - _f32(x_zp, xq), (left, right, top, bottom))
    o, cg, kh, kw = wq.shape
    chunk = _float32_chunk(xs, wq, kh * kw, cg)
    if chunk == 0:
        return _add_bias_wrap(_conv(xs.to(_F64), wq.to(_F64), stride, dilation, groups), bias_q, (-1, 1, 1))
    acc = None
    for j in range(0, cg, chunk):
        idx = torch.cat([torch.arange(g * cg + j, g * cg + min(cg, j + chunk)) for g in range(groups)])
        part = _conv(xs if chunk >= cg else xs[:, idx.to(xs.device)], wq[:, j:j + chunk].to(_F32),
                     stride, dilation, groups).to(_F64)
        acc = part if acc is None else acc + part
    return _add_bias_wrap(acc, bias_q, (-1, 1, 1))


def integer_linear(xq: torch.Tensor, x_zp, wq: torch.Tensor, bias_q=None) -> torch.Tensor:
    """MatMulInteger's accumulator for x [..., K] @ wq[N, K].T, as float64 integers:

        acc = wrap_int32((xq - x_zp) @ wq.T + bias_q)

    x_zp: one value, or shaped to broadcast against xq (one per row: [M, 1]). float32 GEMMs over
    chunks of K that keep every partial sum exact, summed in float64 (as integer_conv2d)."""
    xs = xq - _f32(x_zp, xq)
    k = wq.shape[-1]
    chunk = _float32_chunk(xs, wq, 1, k)
    if chunk == 0:
        return _add_bias_wrap(torch.matmul(xs.to(_F64), wq.to(_F64).T), bias_q, (-1,))
    acc = None
    for j in range(0, k, chunk):
        part = torch.matmul(xs[..., j:j + chunk], wq[:, j:j + chunk].to(_F32).T).to(_F64)
        acc = part if acc is None else acc + part
    return _add_bias_wrap(acc, bias_q, (-1,))


def requantize(acc: torch.Tensor, multiplier, zero_point, qmin: int, qmax: int, lo: int | None = None,
               hi: int | None = None) -> torch.Tensor:
    """The `float` requantization: clamp_round(float32(acc) * multiplier, zp), then the fused
    activation's integer bounds [lo, hi] (eightbit.numerics.activation_range).

    acc holds int32 values (float64); converting it to float32 rounds to nearest even, as the
    int32 -> float32 conversion does. ``multiplier`` is already shaped to broadcast."""
    v = acc.to(_F32) * _f32(multiplier, acc)
    q = clamp_round(v, zero_point, qmin, qmax)
    if lo is not None or hi is not None:
        q = q.clamp(lo, hi)
    return q


# ---------------------------------------------------------------- elementwise ops

def fma32(a, b, c) -> torch.Tensor:
    """float32(a * b + c) with one rounding, elementwise, broadcasting (reference/_float32.py):

        p = float64(a) * float64(b)          # exact
        s = p + c;  err = TwoSum error        # s + err == p + c
        s = round-to-odd(s, err)              # inexact and even: step one ulp toward err
        fma32 = float32(s)                    # correctly rounded, 53 >= 2 * 24 + 2"""
    like = next((t for t in (a, b, c) if isinstance(t, torch.Tensor)), torch.empty(()))
    a, b, c = (_f32(t, like).to(_F64) for t in (a, b, c))
    p = a * b
    s = p + c
    bb = s - p
    err = (p - (s - bb)) + (c - bb)
    even = (s.contiguous().view(torch.int64) & 1) == 0
    step = torch.nextafter(s, torch.copysign(torch.full_like(s, math.inf), err))
    s = torch.where((err != 0) & even & torch.isfinite(s), step, s)
    return s.to(_F32)


def qlinear_add(qa: torch.Tensor, a_scale, a_zp, qb: torch.Tensor, b_scale, b_zp, c_scale, c_zp, qmin: int,
                qmax: int, b_first: bool) -> torch.Tensor:
    """QLinearAdd as ONNX Runtime's AVX2 kernel (reference/qlinear_add.py):

        r_a = a_scale / c_scale;  r_b = b_scale / c_scale
        (P, Q) = (b, a) if b_first else (a, b)     # eightbit.numerics.qlinear_add_b_first(shapes)
        fixed = c_zp - fma(r_P, zp_P, r_Q * zp_Q)
        c = sat(rne(fma(P, r_P, fma(Q, r_Q, fixed))))"""
    c_s = _f32(c_scale, qa)
    a = (qa, _f32(a_scale, qa) / c_s, _f32(a_zp, qa))
    b = (qb, _f32(b_scale, qa) / c_s, _f32(b_zp, qa))
    (p, r_p, z_p), (q, r_q, z_q) = (b, a) if b_first else (a, b)
    fixed = _f32(c_zp, qa) - fma32(r_p, z_p, r_q * z_q)
    return clamp_round(fma32(p, r_p, fma32(q, r_q, fixed)), 0, qmin, qmax)


def qlinear_mul(qa: torch.Tensor, a_scale, a_zp, qb: torch.Tensor, b_scale, b_zp, c_scale, c_zp, qmin: int,
                qmax: int) -> torch.Tensor:
    """QLinearMul as MLAS's SSE2 kernel (reference/qlinear_mul.py):

        ratio = float32(a_scale * b_scale) / c_scale
        c = sat(rne(float32(float32(p) * ratio) + c_zp)),  p = (a - a_zp) * (b - b_zp) (exact)

    The zero point is added before rounding."""
    ratio = (_f32(a_scale, qa) * _f32(b_scale, qa)) / _f32(c_scale, qa)
    p = (qa - _f32(a_zp, qa)) * (qb - _f32(b_zp, qa))           # |p| <= 255^2: exact
    return clamp_round(p * ratio + _f32(c_zp, qa), 0, qmin, qmax)


def lookup(q: torch.Tensor, table, qmin: int) -> torch.Tensor:
    """table[byte(q)]: a 256-entry table of eightbit.numerics.make_lookup_table is indexed by the
    raw byte, q mod 256 (for int8, -128 is entry 128, not 0). ``qmin`` (0 or -128) names the
    input dtype; the index is the same rule for both."""
    if qmin not in (0, -128):
        raise ValueError(f"qmin must be 0 (uint8) or -128 (int8), got {qmin!r}")
    if not isinstance(table, torch.Tensor):
        table = torch.from_numpy(np.asarray(table, dtype=np.float32).copy())
    t = table.to(dtype=_F32, device=q.device)
    if t.shape != (256,):
        raise ValueError(f"table must have 256 entries, got shape {tuple(t.shape)}")
    return t[q.to(torch.int64) & 255]


# ---------------------------------------------------------------- pooling

def global_avg_pool(q: torch.Tensor, x_scale, x_zp, y_scale, y_zp, qmin: int, qmax: int) -> torch.Tensor:
    """QLinearGlobalAveragePool, NCHW -> [N, C, 1, 1]:

        acc   = wrap_int32(sum(x) - x_zp * S)                 # exact integers, S = H * W
        scale = float32(x_scale / float32(y_scale * float32(S)))
        y     = clamp_round(float32(acc) * scale, y_zp)"""
    s = math.prod(q.shape[2:])
    if not 0 < s < 1 << 24:
        raise ValueError(f"the image must have 1 to 2^24 - 1 elements per channel, got {s}")
    zp = torch.as_tensor(x_zp, dtype=_F64, device=q.device)
    acc = _wrap_int32(q.to(_F64).sum(dim=tuple(range(2, q.dim())), keepdim=True) - zp * s)
    scale = _f32(x_scale, q) / (_f32(y_scale, q) * _f32(s, q))
    return requantize(acc, scale, y_zp, qmin, qmax)


def _taps(xp: torch.Tensor, kernel, out, stride):
    """The kernel taps of every window, row-major: slices [N, C, oh, ow] of the padded xp."""
    (kh, kw), (oh, ow), (sh, sw) = kernel, out, stride
    for i in range(kh):
        for j in range(kw):
            yield xp[:, :, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw]


def avg_pool2d(q: torch.Tensor, x_scale, x_zp, y_scale, y_zp, qmin: int, qmax: int, kernel, stride=None,
               pads=None, ceil_mode=False, count_include_pad=False) -> torch.Tensor:
    """QLinearAveragePool (NCHW; ONNX geometry of eightbit.numerics.window: ``stride`` None is 1,
    ``pads`` [top, left, bottom, right]). A kernel covering the unpadded image is global_avg_pool;
    otherwise

        d   = float32(x_scale * (x - x_zp))
        sum = float32 sum of the window's taps, row-major, from 0 (padded taps add 0)
        y   = sat(rne(float32(float32(sum / count) / y_scale) + y_zp))

    count = kernel size with count_include_pad (also past the end padding in ceil_mode), else the
    in-bounds taps (none: 0 / 0 = NaN -> qmin)."""
    kernel = list(_pair(kernel))
    strides = None if stride is None else list(_pair(stride))
    begin, end, out, strides, _ = window.resolve(list(q.shape[2:]), kernel, pads=pads, strides=strides,
                                                 ceil_mode=int(bool(ceil_mode)))
    if list(q.shape[2:]) == kernel and not any(begin) and not any(end):
        return global_avg_pool(q, x_scale, x_zp, y_scale, y_zp, qmin, qmax)
    # pad the end far enough for ceil_mode windows that run past the end padding
    end = [max(e, (o - 1) * s + k - n - b) for e, o, s, k, n, b in zip(end, out, strides, kernel, q.shape[2:], begin)]
    pad = (begin[1], end[1], begin[0], end[0])
    d = F.pad(_f32(x_scale, q) * (q - _f32(x_zp, q)), pad)
    total = torch.zeros(q.shape[:2] + tuple(out), dtype=_F32, device=q.device)
    for tap in _taps(d, kernel, out, strides):
        total = total + tap
    if count_include_pad:
        count = _f32(kernel[0] * kernel[1], q)
    else:
        inside = F.pad(torch.ones((1, 1) + tuple(q.shape[2:]), dtype=_F32, device=q.device), pad)
        count = sum(_taps(inside, kernel, out, strides))          # small integers: exact
    v = (total / count) / _f32(y_scale, q) + _f32(y_zp, q)
    return clamp_round(v, 0, qmin, qmax)


# ---------------------------------------------------------------- dynamic quantization

def dynamic_quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DynamicQuantizeLinear (uint8, ONNX Runtime's formula) of each row of x [M, K]:

        mn = min(min(x), 0);  mx = max(max(x), 0)
        scale = 1 if mx == mn else (mx - mn) / 255
        zp = rne(max(0, min(255, 0 - mn / scale)))     # NaN -> 255 (std::min / std::max order)
        q = clamp_round(x / scale, zp, 0, 255)

    Returns (codes [M, K], scale [M] float32, zero point [M] float32). ValueError on NaN / inf."""
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D [M, K], got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x must be finite: dynamic quantization of NaN or infinity is undefined")
    zero = torch.zeros(x.shape[0], dtype=_F32, device=x.device)
    mn = torch.minimum(x.amin(dim=1), zero) if x.shape[1] else zero
    mx = torch.maximum(x.amax(dim=1), zero) if x.shape[1] else zero
    qmax = _f32(255.0, x)
    scale = torch.where(mx == mn, _f32(1.0, x), (mx - mn) / qmax)
    z = zero - mn / scale
    z = torch.where(z < qmax, z, qmax)
    zp = torch.round(torch.where(0 < z, z, zero))
    return clamp_round(x / scale[:, None], zp[:, None], 0, 255), scale, zp


def dynamic_linear(x: torch.Tensor, wq: torch.Tensor, w_scale, bias=None, activation=None) -> torch.Tensor:
    """eb.QuantizedLinear (granularity "row", no outlier columns), x [..., K] -> [..., N]:

        q, s_a, z_a = dynamic_quantize_rows(x)
        y = float32(acc) * float32(s_a[m] * s_w[n]) + bias[n]      # acc = (q - z_a) @ wq.T, int32
        y = y > 0 ? y : +0.0                                      # activation "relu"
    """
    if activation not in (None, "relu"):
        raise ValueError(f"activation must be None or 'relu', got {activation!r}")
    n, k = wq.shape
    rows = x.reshape(math.prod(x.shape[:-1]), k)
    q, s_a, z_a = dynamic_quantize_rows(rows)
    acc = integer_linear(q, z_a[:, None], wq)
    y = acc.to(_F32) * (s_a[:, None] * _f32(w_scale, x).reshape(1, -1))
    if bias is not None:
        y = y + _f32(bias, x)
    if activation == "relu":
        y = torch.where(y > 0, y, _f32(0.0, x))
    return y.reshape(x.shape[:-1] + (n,))
