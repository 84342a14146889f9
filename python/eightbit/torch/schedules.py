"""Gradual quantization: callbacks that change a QAT model's quantization while it trains.

A callback is told where training is: ``on_step(model, step)`` before training step ``step``
(0, 1, 2, ...) and ``on_epoch(model, epoch)`` before epoch ``epoch``. Call them from the training
loop (a ``Callbacks`` list runs several), or hand them to ``QuantParamOptimizer(callbacks=...)``,
which calls ``on_step`` before the first step and after each ``step()``.

The grid schedules set layers' weight grids (``WeightQuantizer.set_spec``) as a function of the
step alone, and only where the grid differs from the current one, so they can be called at any
step, skip steps, or resume from a checkpoint; ``set_spec`` restarts a learned scale and drops a
fixed rounding, which is why nothing is set twice. Their *target* for a layer is the grid the
model was prepared with (``QATConfig.weight_for(name)``), or ``bits`` when given:

    BitWidthSchedule({0: 8, 100: 6, 200: 4})     precision lowered over training, all layers at once
    LayerwiseSchedule("first_last", every=100)   one layer at a time from 8 bits to its target
    StepRefinement(every=100)                    a coarse grid (3 levels) refined up to the target
    FreezeSchedule(observers_at=, bn_at=)        observers / BatchNorm statistics frozen at a step

Every grid keeps the engine's form (symmetric codes in [-qmax, qmax], see ``WeightQuant``), so
``convert`` gives, at any point of a schedule, the int8 model that equals the QAT model.
"""
from __future__ import annotations

from dataclasses import replace

from . import _torch  # noqa: F401
from torch import nn

from .config import WeightQuant
from .prepare import freeze_bn, freeze_observers, layers

__all__ = ["QATCallback", "Callbacks", "FreezeSchedule", "BitWidthSchedule", "LayerwiseSchedule",
           "StepRefinement", "sensitivity_scores", "onnx_module_name", "with_bits"]


class QATCallback:
    """Base of the callbacks: both hooks do nothing; override the ones you need. The model is
    the prepared model (or a DistributedDataParallel wrapping it)."""

    def on_step(self, model: nn.Module, step: int) -> None:
        """Before training step ``step`` (0-based)."""

    def on_epoch(self, model: nn.Module, epoch: int) -> None:
        """Before epoch ``epoch`` (0-based)."""


class Callbacks(QATCallback):
    """Runs several callbacks, in order."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, QATCallback):
                raise TypeError(f"callbacks: expected QATCallback objects, got {type(cb).__name__}")

    def on_step(self, model, step):
        for cb in self.callbacks:
            cb.on_step(model, step)

    def on_epoch(self, model, epoch):
        for cb in self.callbacks:
            cb.on_epoch(model, epoch)


def _check_step(name: str, v, allow_none: bool = False):
    if v is None and allow_none:
        return v
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{name}: expected a step >= 0{' or None' if allow_none else ''}, got {v!r}")
    return v


class FreezeSchedule(QATCallback):
    """Freezes the activation observers at step ``observers_at`` (they have seen that many
    training batches) and BatchNorm statistics at ``bn_at`` (None: never). Each freezes once,
    at the first call at or past its step, so unfreezing by hand later sticks."""

    def __init__(self, observers_at: int | None = None, bn_at: int | None = None):
        steps = {freeze_observers: _check_step("observers_at", observers_at, True),
                 freeze_bn: _check_step("bn_at", bn_at, True)}
        self.pending = {freeze: at for freeze, at in steps.items() if at is not None}

    def on_step(self, model, step):
        for freeze, at in list(self.pending.items()):
            if step >= at:
                freeze(model)
                del self.pending[freeze]


def with_bits(spec: WeightQuant, bits: int) -> WeightQuant:
    """``spec`` on the ``bits``-bit grid (``levels`` cleared: it would override ``bits``)."""
    return replace(spec, bits=bits, levels=None)


def _check_names(names, layer_names) -> None:
    unknown = set(names) - set(layer_names)
    if unknown:
        raise ValueError(f"{sorted(unknown)}: not conv / linear layers of the model (those are {layer_names})")


def _target(model, name: str, bits: int | None) -> WeightQuant:
    """The grid a layer ends on: the one it was prepared with, or that grid at ``bits``."""
    gm = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    spec = gm.eb_config.weight_for(name)
    return spec if bits is None else with_bits(spec, bits)


class _GridSchedule(QATCallback):
    """Sets the weight grid of its layers (all conv / linear layers, or those named) to
    ``spec_at(name, target, step)`` (None: leave it), where it differs from the current grid."""

    def __init__(self, layers=None, bits: int | None = None):
        self.layer_names = None if layers is None else list(layers)
        self.bits = None if bits is None else WeightQuant(bits=bits).bits   # validated

    def units(self, model) -> list:
        """[(name, unit)] of the scheduled layers, in forward order."""
        found = layers(model)
        if self.layer_names is None:
            return found
        _check_names(self.layer_names, [n for n, _ in found])
        return [(n, u) for n, u in found if n in self.layer_names]

    def spec_at(self, name: str, target: WeightQuant, step: int):
        raise NotImplementedError

    def on_step(self, model, step):
        for name, unit in self.units(model):
            spec = self.spec_at(name, _target(model, name, self.bits), step)
            if spec is not None and spec != unit.weight_quant.spec:
                unit.weight_quant.set_spec(spec)


class BitWidthSchedule(_GridSchedule):
    """Lowers (or raises) the weight precision of all layers, or of ``layers`` (names), at the
    given steps: ``{0: 8, 100: 6, 200: 4}`` trains steps 0-99 at 8 bits, 100-199 at 6, then 4.
    Before the first milestone the layers keep their grid. The rest of each layer's grid (scale
    rule, per channel, learned) stays as prepared."""

    def __init__(self, milestones: dict, layers=None):
        super().__init__(layers)
        if not isinstance(milestones, dict) or not milestones:
            raise ValueError(f"milestones: expected a dict {{step: bits}}, got {milestones!r}")
        self.milestones = sorted((_check_step("milestones", s), WeightQuant(bits=b).bits)
                                 for s, b in milestones.items())

    def bits_at(self, step: int):
        """The bits the schedule gives at ``step`` (None before the first milestone)."""
        current = None
        for at, bits in self.milestones:
            if step >= at:
                current = bits
        return current

    def spec_at(self, name, target, step):
        bits = self.bits_at(step)
        return None if bits is None else with_bits(target, bits)


class LayerwiseSchedule(_GridSchedule):
    """Quantizes layer by layer: every scheduled layer trains at 8 bits (``start_bits``; the
    engine's own precision, as close to unquantized weights as the int8 model gets) until its
    turn, then at its target grid. The i-th layer of ``order`` gets its turn at step
    ``start + i * every``.

    ``order``:
      * ``"first_last"``: the first layers last; the layers are lowered from the output backwards
        (the first layers, which see raw inputs, are usually the most sensitive);
      * ``"first_first"``: in forward order;
      * a list of layer names: that order (only those layers are scheduled);
      * a dict {layer name: sensitivity score}: the least sensitive first (ties: first layers
        last); only those layers are scheduled. ``sensitivity_scores(report, model)`` makes one
        from ``eb.sensitivity``'s report, and a report itself is accepted here too.

    Layers not scheduled keep their grid throughout."""

    ORDERS = ("first_last", "first_first")

    def __init__(self, order="first_last", *, every: int, start: int = 0, bits: int | None = None,
                 start_bits: int = 8):
        super().__init__(bits=bits)
        if isinstance(order, str) and order not in self.ORDERS:
            raise ValueError(f"order: expected one of {self.ORDERS}, a list of layer names or a dict "
                             f"{{name: score}}, got {order!r}")
        if not isinstance(order, (str, list, tuple, dict)) and not hasattr(order, "nodes"):
            raise TypeError(f"order: expected a str, a list, a dict or an eb.sensitivity report, got {order!r}")
        self.order = order
        self.every = _check_step("every", every)
        self.start = _check_step("start", start)
        self.start_bits = WeightQuant(bits=start_bits).bits
        self._turn = {}

    def ranking(self, model) -> list:
        """The scheduled layers' names in the order they are lowered."""
        forward = [n for n, _ in layers(model)]
        order = sensitivity_scores(self.order, model) if hasattr(self.order, "nodes") else self.order
        if isinstance(order, str):
            return forward if order == "first_first" else forward[::-1]
        _check_names(order, forward)
        if isinstance(order, dict):
            return sorted((n for n in forward[::-1] if n in order), key=order.__getitem__)
        return list(order)

    def on_step(self, model, step):
        self._turn = {name: i for i, name in enumerate(self.ranking(model))}
        super().on_step(model, step)

    def spec_at(self, name, target, step):
        if name not in self._turn:
            return None
        if step >= self.start + self._turn[name] * self.every:
            return target
        return with_bits(target, self.start_bits)


class StepRefinement(_GridSchedule):
    """Starts on a coarse grid and refines it: ``start_levels`` values (3: ternary, the
    coarsest step) until step ``start`` (default: ``every``), then at ``start``,
    ``start + every``, ``start + 2 * every``, ... the number of levels goes from L to 2L + 1
    (3 -> 7 -> 15 -> 31 ...: the step halves, one more bit) until it reaches the target grid,
    which the layer then keeps (a binary target, or one no finer than ``start_levels``, from
    the start). The coarse grids use ``scale`` as their scale rule ("mse" by default: with
    max|w| as the step of 3 levels, almost every weight rounds to 0; None: the target's rule)."""

    def __init__(self, *, every: int, start: int | None = None, start_levels: int = 3,
                 bits: int | None = None, layers=None, scale: str | None = "mse"):
        super().__init__(layers, bits)
        self.every = _check_step("every", every)
        if self.every == 0:
            raise ValueError("every: expected a number of steps >= 1")
        self.start = self.every if start is None else _check_step("start", start)
        if WeightQuant(levels=start_levels, scale=scale).binary:      # validated: odd, or 2
            raise ValueError("start_levels: expected an odd number >= 3 (a grid with 0)")
        self.start_levels = start_levels
        self.scale = scale

    def refinements(self, step: int) -> int:
        """How many refinements happened before training step ``step``."""
        return 0 if step < self.start else (step - self.start) // self.every + 1

    def spec_at(self, name, target, step):
        target_levels = 2 * target.qmax + 1
        levels = self.start_levels
        for _ in range(self.refinements(step)):
            if levels >= target_levels:
                break
            levels = 2 * levels + 1
        if target.binary or levels >= target_levels:
            return target
        return replace(target, levels=levels, scale=self.scale or target.scale)


def sensitivity_scores(report, model: nn.Module, key: str = "relative_drop") -> dict:
    """{layer name: score} of the model's conv / linear layers from an ``eb.sensitivity`` report
    (``key``: a row's "relative_drop" or "drop"), for ``LayerwiseSchedule``.

    ``eb.sensitivity`` ranks the nodes of an eightbit Graph of the *float* model, each quantized
    alone to int8: a proxy for how much lower precision will cost each layer. Its node names
    are mapped to module names in two forms: a layer's own module name (Graphs whose nodes are
    named after modules) and the scope names of ``torch.onnx.export`` (the TorchScript exporter,
    ``dynamo=False``: "/layer1/conv1/Conv" is ``layer1.conv1``, "/stem/stem.0/Conv" is
    ``stem.0``). Other exporters (the torch.export-based one) need not name nodes after module
    scopes; for their Graphs build the dict by hand. Nodes that are no layer (activations,
    pools) are left out.

        g = eb.from_onnx(path)                   # torch.onnx.export(model, x, path, dynamo=False)
        report = eb.sensitivity(g, [calib_x], (x, labels))
        schedule = LayerwiseSchedule(sensitivity_scores(report, qat_model), every=200)
    """
    names = {n for n, _ in layers(model)}
    scores = {}
    for row in report.nodes:
        name = row.node if row.node in names else onnx_module_name(row.node)
        if name in names and name not in scores:
            scores[name] = float(getattr(row, key))
    return scores


def onnx_module_name(node_name: str) -> str:
    """The module path in a TorchScript ONNX export's node name: "/a/b/Conv" -> "a.b"; a scope
    that repeats its parent's path ("/stem/stem.0/Conv") takes its place -> "stem.0"."""
    parts = node_name.strip("/").split("/")[:-1]
    path = []
    for part in parts:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path)
