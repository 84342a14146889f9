"""Optimizers for quantization-aware training: learned scales in their own parameter group.

A QAT model has two kinds of trained parameters: the float model's weights, and (with
``learnable=True``, LSQ) the quantization scales (``WeightQuantizer.learned_scale``,
``ActQuant.learned_scale``). Scales want their own learning rate (they live on a different
scale from the weights and LSQ's gradients are already normalised) and no weight decay (decay
would pull every step size towards zero, i.e. towards clipping everything). ``param_groups``
builds these two groups for any ``torch.optim`` optimizer; ``QuantParamOptimizer`` builds the
optimizer too and adds what QAT does on a schedule of optimizer steps: freezing observers and
BatchNorm statistics, and running ``eightbit.torch.schedules`` callbacks.
"""
from __future__ import annotations

from . import _torch  # noqa: F401
import torch
from torch import nn

from .quantizers import ActQuant, WeightQuantizer
from .schedules import Callbacks, FreezeSchedule, QATCallback

__all__ = ["scale_parameters", "param_groups", "QuantParamOptimizer"]


def scale_parameters(model: nn.Module) -> list:
    """The learned quantization scales of a prepared model (LSQ), in module order, each once."""
    found = {}
    for m in model.modules():
        if isinstance(m, (WeightQuantizer, ActQuant)) and m.learned_scale is not None:
            found.setdefault(id(m.learned_scale), m.learned_scale)
    return list(found.values())


def param_groups(model: nn.Module, lr: float | None = None, scale_lr: float | None = None,
                 weight_decay: float | None = None) -> list:
    """Parameter groups for any ``torch.optim`` optimizer: ``{"name": "weights"}`` (every other
    parameter, at ``lr`` and ``weight_decay``) and, when the model learns scales,
    ``{"name": "scales"}`` at ``scale_lr`` with no weight decay. ``None`` leaves a value to the
    optimizer's default (``scale_lr=None``: the weights' learning rate), so
    ``torch.optim.AdamW(param_groups(model, 1e-3, 1e-4))`` keeps AdamW's decay on the weights.

        opt = torch.optim.SGD(param_groups(model, lr=0.01, scale_lr=1e-4), momentum=0.9)
    """
    scales = scale_parameters(model)
    ids = {id(p) for p in scales}
    weights = [p for p in model.parameters() if id(p) not in ids]
    groups = [_group("weights", weights, lr=lr, weight_decay=weight_decay)]
    if scales:
        groups.append(_group("scales", scales, lr=lr if scale_lr is None else scale_lr, weight_decay=0.0))
    return groups


def _group(name: str, params: list, **options) -> dict:
    return {"name": name, "params": params, **{k: v for k, v in options.items() if v is not None}}


class QuantParamOptimizer(torch.optim.Optimizer):
    """Any ``torch.optim`` optimizer over ``param_groups(model, lr, scale_lr, weight_decay)``, whose
    ``step()`` also counts optimizer steps and, at the configured steps, freezes the activation
    observers (``freeze_observers_at``: they have then seen that many batches) and BatchNorm
    statistics (``freeze_bn_at``), then runs ``callbacks`` (``on_step(model, step)`` before
    training step ``step``: once here with 0, then after every ``step()``; epochs are the
    loop's to announce: ``opt.callbacks.on_epoch(model, epoch)``).

        opt = QuantParamOptimizer(model, torch.optim.Adam, lr=1e-3, scale_lr=1e-4,
                                  freeze_observers_at=500, freeze_bn_at=800, betas=(0.9, 0.99))

    ``optimizer``: an optimizer class (built here; extra keyword arguments go to it) or an
    optimizer already built (e.g. over ``param_groups(model, ...)``; then give no lr options).
    It is a ``torch.optim.Optimizer`` sharing the wrapped one's ``param_groups`` and ``state``,
    so learning-rate schedulers take it directly (they scale both groups' rates alike).
    ``state_dict`` is the wrapped optimizer's plus ``"quant_steps"``; the frozen flags
    themselves are buffers of the model, saved with its ``state_dict``. Steps count calls to
    ``step()``, not forward passes (``QATConfig.freeze_*_after`` counts those)."""

    def __init__(self, model: nn.Module, optimizer=torch.optim.SGD, *, lr: float | None = None,
                 scale_lr: float | None = None, weight_decay: float | None = None,
                 freeze_observers_at: int | None = None, freeze_bn_at: int | None = None,
                 callbacks=(), **optimizer_kwargs):
        if isinstance(optimizer, torch.optim.Optimizer):
            given = {k: v for k, v in dict(lr=lr, scale_lr=scale_lr, weight_decay=weight_decay,
                                           **optimizer_kwargs).items() if v is not None}
            if given:
                raise TypeError(f"QuantParamOptimizer: {sorted(given)} configure an optimizer built here; "
                                "the given optimizer is already built")
            self.optimizer = optimizer
        elif isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
            self.optimizer = optimizer(param_groups(model, lr, scale_lr, weight_decay), **optimizer_kwargs)
        else:
            raise TypeError(f"optimizer: expected a torch.optim.Optimizer class or instance, got {optimizer!r}")
        super().__init__(self.optimizer.param_groups, self.optimizer.defaults)
        self._share()
        self.model = model
        self.steps = 0
        self.callbacks = Callbacks([FreezeSchedule(observers_at=freeze_observers_at, bn_at=freeze_bn_at),
                                    *([callbacks] if isinstance(callbacks, QATCallback) else callbacks)])
        self.callbacks.on_step(model, 0)

    def _share(self) -> None:
        """One set of groups and state: the wrapped optimizer's (load_state_dict replaces them)."""
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state
        self.defaults = self.optimizer.defaults

    def step(self, closure=None):
        loss = self.optimizer.step(closure)
        self.steps += 1
        self.callbacks.on_step(self.model, self.steps)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {**self.optimizer.state_dict(), "quant_steps": self.steps}

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        steps = int(state_dict.pop("quant_steps", 0))
        self.optimizer.load_state_dict(state_dict)
        self.steps = steps
        self._share()

    def __getstate__(self) -> dict:
        return self.__dict__.copy()        # the wrapped optimizer and the model, not just the groups

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"QuantParamOptimizer(steps={self.steps}, {self.optimizer!r})"
