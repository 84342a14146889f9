"""The quantizers of quantization-aware training: ``ActQuant`` (one activation tensor: an observer
of its range, its scale and zero point, fake quantization) and ``WeightQuant`` (a layer's weights:
scale per channel or per tensor, codes on a symmetric grid of any width down to binary).

Scales and zero points follow the engine's rules (``eightbit.numerics.choose_qparams``,
``quantize_weight_symmetric`` at 8 bits), so ``convert`` hands the engine the very values the
forward pass used. Under ``torch.distributed`` every rank observes the global range of each batch
(an all-reduce of the batch's min and max), so all ranks hold identical quantization parameters.
"""
from __future__ import annotations

from . import _torch  # noqa: F401
import numpy as np
import torch
from torch import nn

from ..numerics import choose_qparams
from . import exact
from .config import ActivationQuant, WeightQuant
from .fake_quant import fake_quantize, straight_through

_TINY = float(np.finfo(np.float32).tiny)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


class ActQuant(nn.Module):
    """One activation tensor's quantization, the engine's quantize step: observes the tensor's
    range while training (until frozen), keeps its scale and zero point (buffers, so they are in
    ``state_dict`` and move with the model), and fake-quantizes it."""

    def __init__(self, spec: ActivationQuant):
        super().__init__()
        self.spec = spec
        self.qmin, self.qmax = spec.qrange
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0.0 if spec.symmetric else float(self.qmin)))
        self.register_buffer("observing", torch.tensor(True))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.int64))
        self.learned_scale = nn.Parameter(torch.tensor(1.0)) if spec.learnable else None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.spec.dtype)

    @property
    def qrange(self) -> tuple:
        return self.qmin, self.qmax

    @property
    def initialized(self) -> bool:
        return bool(self.max_val >= self.min_val)

    def qparams(self):
        """(scale: float32 0-dim tensor, zero point: int) as the forward pass uses them."""
        if self.learned_scale is not None and self.initialized and not bool(self.observing):
            return self.learned_scale.abs().clamp_min(_TINY), int(self.zero_point)
        return self.scale, int(self.zero_point)

    def numpy_qparams(self):
        """(float32 scale, zero point of the tensor's dtype): what ``convert`` gives the engine."""
        scale, zp = self.qparams()
        return np.float32(scale.detach().cpu()), self.dtype.type(zp)

    def observe(self, x) -> None:
        """Fold a batch's range into the running range, then set the scale and zero point."""
        x = x.detach()
        if x.numel():
            bounds = torch.stack(torch.aminmax(x.float())) * torch.tensor([-1.0, 1.0])
        else:
            bounds = torch.full((2,), float("-inf"))    # an empty batch still takes part in the reduce
        if _distributed():
            torch.distributed.all_reduce(bounds, op=torch.distributed.ReduceOp.MAX)
        lo, hi = -bounds[0], bounds[1]
        if bool(lo == float("inf")) and bool(hi == float("-inf")):
            return                                       # no value anywhere
        if not (torch.isfinite(lo) and torch.isfinite(hi)):
            raise ValueError("ActQuant: the observed tensor holds NaN or infinity; it cannot be quantized")
        if not self.initialized or self.spec.observer == "minmax":
            first = not self.initialized
            self.min_val.copy_(lo if first else torch.minimum(self.min_val, lo))
            self.max_val.copy_(hi if first else torch.maximum(self.max_val, hi))
        else:
            # the plain mean of the batches seen until 1 / momentum of them (then the moving
            # average): early ranges follow a model that is still changing fast
            m = max(self.spec.momentum, 1.0 / (int(self.steps) + 1))
            self.min_val.add_(m * (lo - self.min_val))
            self.max_val.add_(m * (hi - self.max_val))
        self.set_range(float(self.min_val), float(self.max_val))

    def set_range(self, lo: float, hi: float) -> None:
        """Scale and zero point for the range [lo, hi] (the engine's choose_qparams)."""
        scale, zp = choose_qparams(np.float32(lo), np.float32(hi), self.dtype, symmetric=self.spec.symmetric)
        self.scale.fill_(float(scale))
        self.zero_point.fill_(float(zp))
        if self.learned_scale is not None:
            with torch.no_grad():
                self.learned_scale.fill_(float(scale))

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or resume) following the data: the scale and zero point stay as they are
        (a learned scale goes on learning)."""
        self.observing.fill_(not frozen)

    def forward(self, x):
        if self.training and bool(self.observing):
            self.observe(x)
            self.steps += 1
            if self.learned_scale is not None:
                self.observing.fill_(False)     # LSQ: the first batch sets the scale, then it learns
        scale, zp = self.qparams()
        return fake_quantize(x, scale, zp, self.qmin, self.qmax)


class WeightQuantizer(nn.Module):
    """A layer's weight quantization: codes in [-qmax, qmax] (binary: {-1, +1}), zero point 0, a
    scale per output channel (dimension 0) or per tensor, recomputed from the weights on every
    forward pass (or trained: LSQ)."""

    def __init__(self, spec: WeightQuant, channels: int):
        super().__init__()
        self.spec = spec
        self.channels = channels
        n = channels if spec.per_channel else 1
        self.learned_scale = nn.Parameter(torch.ones(n)) if spec.learnable else None
        self.register_buffer("scale_set", torch.tensor(False))
        self.register_buffer("rounding", None)   # AdaRound: 0 / 1 per weight, added to floor(w / s)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a learned rounding (AdaRound) is a buffer only once set: take its shape from the state
        key = prefix + "rounding"
        self.rounding = torch.empty_like(state_dict[key]) if key in state_dict else None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_spec(self, spec: WeightQuant) -> None:
        """Change the grid while training (gradual quantization). A learned scale restarts from
        the new grid's rule; whether the scale is learned cannot change (the optimizer holds it)."""
        if not isinstance(spec, WeightQuant):
            raise TypeError(f"spec: expected a WeightQuant, got {type(spec).__name__}")
        if spec.learnable != self.spec.learnable or spec.per_channel != self.spec.per_channel:
            raise ValueError("set_spec: learnable and per_channel must stay as prepare_qat set them")
        self.spec = spec
        self.scale_set.fill_(False)
        self.rounding = None

    def _shape(self, w):
        return (-1,) + (1,) * (w.dim() - 1)

    def rule_scale(self, w):
        """The scale [channels] (float32) that ``spec.scale_rule`` gives for weights w."""
        w = w.detach().float()
        flat = w.reshape(w.shape[0], -1) if self.spec.per_channel else w.reshape(1, -1)
        a = flat.abs()
        qmax = torch.tensor(float(self.spec.qmax))
        rule = self.spec.scale_rule
        if rule == "mean":
            s = a.mean(dim=1)
            s = s if self.spec.binary else 2.0 * s / torch.sqrt(qmax)
        else:
            s = a.amax(dim=1) / qmax               # float32 max / float32 qmax: the engine's rule at 8 bits
            if rule == "mse":
                s = self._mse_scale(flat, s)
        s = torch.where(s > 0, s, torch.ones_like(s))
        if bool(((s < _TINY) & (s > 0)).any()):
            raise ValueError("weights too small to quantize: a channel's scale would be subnormal")
        return s.expand(self.channels).contiguous() if s.numel() == 1 else s

    def _mse_scale(self, flat, s_max, steps: int = 40):
        """Per row, the clipping (a fraction 0.3-1.0 of max|w|) with the least squared rounding error."""
        best_s, best_err = s_max.clone(), torch.full_like(s_max, float("inf"))
        q = float(self.spec.qmax)
        for f in torch.linspace(0.3, 1.0, steps):
            s = torch.where(s_max > 0, s_max * f, torch.ones_like(s_max))
            err = ((torch.clamp(torch.round(flat / s[:, None]), -q, q) * s[:, None] - flat) ** 2).sum(dim=1)
            better = err < best_err
            best_s, best_err = torch.where(better, s, best_s), torch.where(better, err, best_err)
        return best_s

    def scale(self, w):
        """The scale per output channel [channels] used now."""
        if self.learned_scale is None:
            return self.rule_scale(w)
        if not bool(self.scale_set):
            with torch.no_grad():
                s = self.rule_scale(w)
                self.learned_scale.copy_(s if self.spec.per_channel else s[:1])
            self.scale_set.fill_(True)
        s = self.learned_scale.abs().clamp_min(_TINY)
        return s if self.spec.per_channel else s.expand(self.channels)

    def codes(self, w, scale=None):
        """Integer codes (float32 tensor) of w on the grid: what the engine stores as int8."""
        s = (self.scale(w) if scale is None else scale).detach().reshape(self._shape(w))
        w = w.detach()
        if self.spec.binary:
            return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))
        if self.rounding is not None:
            return torch.clamp(torch.floor(w / s) + self.rounding, -self.spec.qmax, self.spec.qmax)
        return exact.quantize(w, s, 0, -self.spec.qmax, self.spec.qmax)

    def forward(self, w):
        """(fake-quantized weights with straight-through gradients, scale [channels]); their
        integer codes are ``codes(w, scale)``."""
        s = self.scale(w)
        shaped = s.reshape(self._shape(w))
        if self.spec.binary:
            codes = self.codes(w, s)
            return straight_through(w, codes * shaped.detach()) if self.learned_scale is None \
                else codes * shaped + (w - w.detach()), s
        if self.rounding is not None:
            return straight_through(w, self.codes(w, s) * shaped.detach()), s
        return fake_quantize(w, shaped, 0, -self.spec.qmax, self.spec.qmax), s
