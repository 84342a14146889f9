"""Fake quantization with straight-through gradients.

``fake_quantize`` rounds onto the quantization grid in the forward pass (the engine's
QuantizeLinear, bit for bit: a float32 division, clamp-then-round) and returns the dequantized
value; backward it is the straight-through estimator (gradient 1 inside the grid's range, 0 where
the value clipped) and, for a trained scale, LSQ's gradient (Esser et al., "Learned Step Size
Quantization", 2020). ``replace_forward(a, b)`` is b in the forward pass and a's gradient in the
backward pass: how a unit puts the engine's exact result on the values while the gradient follows
the plain fake-quantized float computation.
"""
from __future__ import annotations

from . import _torch  # noqa: F401
import torch

from . import exact


class _FakeQuantize(torch.autograd.Function):
    # Works in offset space, codes minus the zero point: clamp-then-round of x / scale to
    # [qmin - zp, qmax - zp] (exact.clamp_round without its + zp), times the scale: the same
    # values as dequantize(quantize(x)) in fewer passes over the tensor.
    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax, grad_factor):
        lo, hi = float(qmin - zero_point), float(qmax - zero_point)
        v = x / scale
        q = torch.nan_to_num(v, nan=lo, posinf=hi, neginf=lo).clamp_(lo, hi)
        inside = q == v                          # neither clipped nor NaN
        q.round_()                               # half to even
        if ctx.needs_input_grad[1]:
            ctx.save_for_backward(v, q, inside)  # LSQ's scale gradient
        else:
            ctx.save_for_backward(inside)
        ctx.lo, ctx.hi, ctx.grad_factor, ctx.scale_shape = lo, hi, grad_factor, scale.shape
        return q * scale

    @staticmethod
    def backward(ctx, grad):
        if not ctx.needs_input_grad[1]:
            (inside,) = ctx.saved_tensors
            return grad * inside, None, None, None, None, None
        v, q, inside = ctx.saved_tensors
        # d(s * q) / ds: q - x / s inside the grid, the clipped bound outside.
        d = torch.where(inside, q - v, torch.where(v < ctx.lo, ctx.lo, ctx.hi))
        return grad * inside, _sum_to(grad * d * ctx.grad_factor, ctx.scale_shape), None, None, None, None


def _sum_to(t, shape):
    """Sum a broadcast result back to an operand's shape (a scale per tensor or per channel)."""
    if t.shape == shape:
        return t
    lead = t.dim() - len(shape)
    t = t.sum(dim=tuple(range(lead))) if lead else t
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and t.shape[i] != 1)
    return (t.sum(dim=dims, keepdim=True) if dims else t).reshape(shape)


def fake_quantize(x, scale, zero_point: int, qmin: int, qmax: int):
    """QuantizeLinear then DequantizeLinear, bit for bit the engine's, with STE / LSQ gradients.
    ``scale``: float32, 0-dim or shaped to broadcast against x (per channel); it gets a gradient
    when it requires one (LSQ, scaled by 1 / sqrt(elements per scale x qmax))."""
    per_scale = max(1, x.numel() // max(1, scale.numel()))
    grad_factor = 1.0 / (per_scale * max(abs(qmax), abs(qmin), 1)) ** 0.5
    return _FakeQuantize.apply(x, scale, zero_point, qmin, qmax, grad_factor)


class _ReplaceForward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        return b.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def replace_forward(a, b):
    """b's values (exactly), a's gradient."""
    return _ReplaceForward.apply(a, b.detach())


def straight_through(a, b):
    """b's values with the identity gradient to a (a rounding that the gradient ignores)."""
    return replace_forward(a, b)


def fake_quantize_rows(x):
    """Each row (last dimension) quantized as the engine's dynamic_linear step does at run time
    (DynamicQuantizeLinear per row, uint8) and dequantized; the gradient passes straight through
    (a row's range always holds the row, so nothing clips)."""
    rows = x.detach().reshape(-1, x.shape[-1])
    q, s, z = exact.dynamic_quantize_rows(rows)
    deq = exact.dequantize(q, s[:, None], z[:, None]).reshape(x.shape)
    return straight_through(x, deq)
