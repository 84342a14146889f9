"""AdaRound (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization", ICML
2020): post-training quantization that learns, layer by layer on calibration data, whether each
weight rounds up or down, instead of rounding it to the nearest code.

Rounding to nearest minimises each weight's own error, not the error of the layer's output: at
4 bits and below the rounding errors of a layer add up in its outputs, and choosing up or down per
weight to cancel them recovers much of the accuracy low-bit post-training quantization loses.

For each conv / linear unit of a ``prepare_qat`` model, in forward order, with its weight scale s
fixed (the scale its ``WeightQuantizer`` computes: ``scale`` rule or learned scale), AdaRound
learns a variable V per weight and the soft weights

    w~ = s * clamp(floor(w / s) + h(V), -qmax, qmax),   h(V) = clamp(sigmoid(V) (zeta - gamma) + gamma, 0, 1)

(a rectified sigmoid, zeta = 1.1, gamma = -0.1; V starts where h(V) = frac(w / s), i.e. at the
weights themselves), minimising

    channels * mean (f(x_q; w~) - f(x; w))^2  +  lam * sum (1 - |2 h(V) - 1|^beta)

f: the unit with its fused activation, before output quantization. The reconstruction is
asymmetric (the paper's eq. 25): the target is the float model's output f(x; w) on the float
model's input x, the learned layer reads x_q, its input in the quantized model with every earlier
layer already rounded (the engine's exact values), so each layer also corrects the errors of the
layers before it. The regulariser (off for the first ``warmup`` fraction of the iterations, then
with beta annealed linearly from 20 to 2) drives every h(V) to 0 or 1; at the end the rounding is
hard: ``weight_quant.rounding = (h(V) >= 0.5)``, so that the codes are
clamp(floor(w / s) + rounding, -qmax, qmax), one step at most from nearest rounding. A layer whose
learned rounding reconstructs the calibration outputs worse than nearest rounding keeps nearest.

Activation ranges: observers that have seen no data are calibrated first, on the same calibration
samples with nearest-rounded weights, by their extremes (min / max over all samples, the
post-training rule of ``eb.quantize``, whatever observer the config trains with); observers that
are already set (a QAT-trained or caller-calibrated model) are kept.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from . import _torch  # noqa: F401
import numpy as np
import torch
from torch import fx, nn

from ..model import QuantizedModel
from .convert import convert
from .prepare import layers as weighted_layers
from .prepare import prepare_qat
from .quantizers import ActQuant, WeightQuantizer
from .units import Unit

ZETA, GAMMA = 1.1, -0.1         # the rectified sigmoid's stretch (the paper's values)
_EVAL_CHUNK = 256               # samples per no-grad forward pass while measuring


@dataclass(frozen=True)
class LayerResult:
    """One layer's AdaRound outcome on the calibration samples: the mean squared error of its
    output (fused activation included, before output quantization) against the float model's,
    with nearest and with learned rounding; ``changed``: codes that differ from nearest rounding,
    of ``weights``; ``used``: whether the learned rounding was kept (False: it did no better
    than nearest, which the layer keeps)."""

    name: str
    nearest: float
    adaround: float
    changed: int
    weights: int
    used: bool


def adaround(model, calibration, *, iterations: int = 500, lam: float = 0.01, beta=(20.0, 2.0),
             lr: float = 3e-2, batch_size: int = 32, warmup: float = 0.2, max_samples: int = 1024,
             layers=None, seed: int = 0, progress=None):
    """Learn the rounding of every conv / linear layer's weights of ``model`` (a ``prepare_qat``
    model, possibly inside DistributedDataParallel) on ``calibration``; returns the model in eval
    mode, ready for ``convert``. See the module docstring for the method.

    ``calibration``: a tensor or array of samples (the first dimension; split into batches of
    ``batch_size``), or an iterable of batches: tensors, or tuples / lists whose first elements
    are the model's inputs (a DataLoader's (x, y)). At most ``max_samples`` samples are used
    (the layer inputs and outputs of that many samples are held in memory, one layer at a time).
    Activation ranges that have seen no data are calibrated on them first (``calibrate_observers``).
    ``iterations`` Adam steps per layer (learning rate ``lr``) on random minibatches of
    ``batch_size`` samples; ``lam``: the weight of the rounding regulariser, whose exponent
    anneals from ``beta[0]`` to ``beta[1]`` after the first ``warmup`` fraction of the steps.
    The paper takes 10k-20k steps at lr 1e-3; the defaults (500 at 3e-2) settle every rounding
    of a small model in seconds, and more steps at a lower rate suit large layers.
    ``layers``: names of the layers to round (None: all, as ``eightbit.torch.layers`` lists
    them; binary layers have no rounding and are skipped); the others keep nearest rounding.
    ``seed``: the minibatch sampling's. ``progress``: called with each layer's ``LayerResult``.
    The results are also kept as ``model.eb_adaround`` {layer name: LayerResult}."""
    gm = _prepared(model)
    _check_settings(iterations, lam, beta, lr, batch_size, warmup, max_samples)
    chosen = _chosen_layers(gm, layers)
    samples = _samples(gm, calibration, batch_size, max_samples)
    gm.eval()
    params = [p for p in gm.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)        # only the rounding variables learn; the weights stay as they are
    try:
        _calibrate(gm, samples)
        generator = torch.Generator().manual_seed(seed)
        results = {}
        for name, unit in chosen:
            unit.weight_quant.rounding = None
            results[name] = _round_layer(gm, name, unit, samples, generator, iterations=iterations, lam=lam,
                                         beta=beta, lr=lr, batch_size=batch_size, warmup=warmup)
            if progress is not None:
                progress(results[name])
    finally:
        for p in params:
            p.requires_grad_(True)
    gm.eb_adaround = results
    return model.eval()


def adaround_quantize(model: nn.Module, example_inputs, calibration, config=None, **kwargs) -> QuantizedModel:
    """A float torch model -> an int8 ``eb.QuantizedModel`` with AdaRound weights, in one call:
    ``prepare_qat(model, example_inputs, config)``, activation ranges calibrated and rounding
    learned on ``calibration`` (``adaround``, which takes ``kwargs``), then ``convert``. ``config``
    (a QATConfig) sets the weight grid: AdaRound matters below 8 bits (WeightQuant(bits=4))."""
    qat = prepare_qat(model, example_inputs, config)
    return convert(adaround(qat, calibration, **kwargs))


def calibrate_observers(model, calibration, *, batch_size: int = 32, max_samples: int = 1024) -> int:
    """Post-training calibration of a ``prepare_qat`` model's activation ranges (``calibration``
    as ``adaround`` takes it): every range that has seen no data is set to the extremes (min /
    max) of its tensor over all samples, whatever observer the config trains with (eb.quantize's
    default rule); ranges already set stay. The weights are rounded as they are now (nearest,
    before AdaRound). Leaves the model in eval mode; returns the number of ranges set."""
    gm = _prepared(model)
    _check_count("batch_size", batch_size, 1)
    _check_count("max_samples", max_samples, 1)
    samples = _samples(gm, calibration, batch_size, max_samples)
    gm.eval()
    return _calibrate(gm, samples)


# ---- arguments ----------------------------------------------------------------------------------

def _prepared(model) -> fx.GraphModule:
    """The prepared GraphModule (DistributedDataParallel unwrapped): rounding needs its units."""
    gm = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if not isinstance(gm, fx.GraphModule) or not hasattr(gm, "eb_config"):
        raise TypeError(f"model: expected a model returned by eightbit.torch.prepare_qat, got {type(model).__name__}")
    return gm


def _check_settings(iterations, lam, beta, lr, batch_size, warmup, max_samples) -> None:
    _check_count("iterations", iterations, 0)
    _check_count("batch_size", batch_size, 1)
    _check_count("max_samples", max_samples, 1)
    if not float(lam) >= 0.0:
        raise ValueError(f"lam: expected a number >= 0, got {lam!r}")
    if not float(lr) > 0.0:
        raise ValueError(f"lr: expected a number > 0, got {lr!r}")
    if not 0.0 <= float(warmup) < 1.0:
        raise ValueError(f"warmup: expected a fraction in [0, 1), got {warmup!r}")
    if not (isinstance(beta, (tuple, list)) and len(beta) == 2 and all(float(b) > 0 for b in beta)):
        raise ValueError(f"beta: expected (start, end), two exponents > 0, got {beta!r}")


def _check_count(key: str, v, minimum: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{key}: expected an int >= {minimum}, got {v!r}")


def _chosen_layers(gm, names) -> list:
    """[(name, unit)] of the layers to round, in forward order (binary layers have no rounding)."""
    found = weighted_layers(gm)
    if names is not None:
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"layers: expected a list of layer names, got {names!r}")
        unknown = sorted(set(names) - {n for n, _ in found})
        if unknown:
            raise ValueError(f"layers: no conv / linear layer named {unknown}; the model's are "
                             f"{[n for n, _ in found]}")
        found = [(n, u) for n, u in found if n in set(names)]
    return [(n, u) for n, u in found if not u.weight_quant.spec.binary]


def _samples(gm, calibration, batch_size: int, max_samples: int) -> list:
    """The calibration data as a list of batches (tuples of the model's input tensors), at most
    ``max_samples`` samples in all; read once, so a one-shot iterator works."""
    if isinstance(calibration, (torch.Tensor, np.ndarray)):
        if calibration.ndim == 0:
            raise ValueError("calibration: expected samples along the first dimension, got a scalar")
        calibration = list(torch.as_tensor(calibration)[:max_samples].split(batch_size))
    elif isinstance(calibration, (str, bytes, dict)) or not hasattr(calibration, "__iter__"):
        raise TypeError(f"calibration: expected a tensor of samples or an iterable of batches, "
                        f"got {type(calibration).__name__}")
    batches, count = [], 0
    device = next(iter(gm.buffers())).device       # prepare_qat registers buffers (eb_step.steps)
    for i, batch in enumerate(calibration):
        inputs = _batch_inputs(batch, len(gm.eb_inputs), i, device)
        n = min(len(inputs[0]), max_samples - count)
        if n > 0:
            batches.append(tuple(t[:n] for t in inputs))
            count += n
        if count >= max_samples:
            break
    if not batches:
        raise ValueError("calibration: no samples (an empty tensor or an iterable without batches)")
    return batches


def _batch_inputs(batch, n_inputs: int, index: int, device) -> tuple:
    """The model's input tensors of one batch, on the model's device (extra items, such as a
    DataLoader's labels, are dropped)."""
    items = tuple(batch[:n_inputs]) if isinstance(batch, (tuple, list)) else (batch,)
    if len(items) < n_inputs:
        raise ValueError(f"calibration: batch {index} has {len(items)} tensor(s); the model takes {n_inputs} inputs")
    tensors = []
    for t in items:
        if not isinstance(t, (torch.Tensor, np.ndarray)):
            raise TypeError(f"calibration: batch {index} holds a {type(t).__name__}, not a tensor")
        t = torch.as_tensor(t)
        tensors.append((t.float() if t.is_floating_point() else t).to(device))   # float64 arrays -> float32
    return tuple(tensors)


# ---- activation ranges ----------------------------------------------------------------------------

def _calibrate(gm, samples) -> int:
    """calibrate_observers on batches already read: the ranges that have seen no data."""
    fresh = [m for m in gm.modules() if isinstance(m, ActQuant) and not m.initialized]
    handles = [m.register_forward_pre_hook(_observe_extremes) for m in fresh]
    try:
        with torch.no_grad():
            for inputs in samples:
                gm(*inputs)
    finally:
        for h in handles:
            h.remove()
    return len(fresh)


def _observe_extremes(quant: ActQuant, args) -> None:
    """Forward pre-hook: widen the range to the batch's extremes (``observe`` of the running
    extremes and the batch's, from a cleared range: the minmax rule under any observer setting)."""
    x = args[0].detach().float()
    if quant.initialized:
        x = torch.cat([torch.stack([quant.min_val, quant.max_val]), x.reshape(-1)])
        quant.min_val.fill_(float("inf"))
        quant.max_val.fill_(float("-inf"))
    quant.observe(x)


# ---- running parts of the model unquantized -------------------------------------------------------

@contextlib.contextmanager
def _unquantized(module: nn.Module, weights=None):
    """Inside, ``module`` computes without quantization: activations pass unquantized (every
    ActQuant, including units' output quantization), units do no exact integer arithmetic, and
    each weight quantizer returns ``weights(w)`` (None: the float weights w) and no scale, which
    nothing reads without exact arithmetic (so no scale is computed on every step). A per-token
    linear layer still quantizes its input rows (that quantization is not a module)."""
    replace = weights or _same
    patched, modes = [], {}
    for m in module.modules():
        if isinstance(m, (ActQuant, WeightQuantizer)):
            m.forward = _same if isinstance(m, ActQuant) else (lambda w: (replace(w), None))
            patched.append(m)
        elif isinstance(m, Unit):
            modes[m] = m.exact_mode
            m.exact_mode = False
    try:
        yield module
    finally:
        for m in patched:
            del m.forward               # the class's forward again
        for m, mode in modes.items():
            m.exact_mode = mode


def _same(x):
    return x


class _Stop(Exception):
    """Ends a forward pass once the layer of interest has been seen."""


def _capture(model, unit, samples, output: bool) -> torch.Tensor:
    """The unit's input (or output) on every calibration sample, as the model computes it now,
    concatenated over batches; each forward pass stops at the unit."""
    seen = []

    def keep(m, args, out=None):
        seen.append((out if output else args[0]).detach())
        raise _Stop

    handle = unit.register_forward_hook(keep) if output else unit.register_forward_pre_hook(keep)
    try:
        with torch.no_grad():
            for inputs in samples:
                with contextlib.suppress(_Stop):
                    model(*inputs)
    finally:
        handle.remove()
    if len(seen) != len(samples):
        raise ValueError("model: a conv / linear layer was not reached on every calibration batch")
    return torch.cat(seen)


# ---- the rounding of one layer ------------------------------------------------------------------

class _Rounding(nn.Module):
    """A layer's rounding variables V and its soft and hard rounded weights, at a fixed scale."""

    def __init__(self, w, scale, qmax: int):
        super().__init__()
        s = scale.detach().reshape((-1,) + (1,) * (w.dim() - 1))
        ratio = w.detach() / s                          # the division WeightQuantizer.codes does
        self.register_buffer("floor", torch.floor(ratio))
        self.register_buffer("s", s)
        self.qmax = float(qmax)
        rest = (ratio - self.floor).clamp(0.0, 1.0)    # h(V) = frac(w / s) at the start
        self.v = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0))

    def h(self):
        return torch.clamp(torch.sigmoid(self.v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    def weights(self, rounding):
        return self.s * torch.clamp(self.floor + rounding, -self.qmax, self.qmax)

    def soft(self, w=None):
        return self.weights(self.h())

    def hard(self):
        """The 0 / 1 rounding (h(V) >= 0.5) to add to floor(w / s)."""
        return (self.h() >= 0.5).to(self.floor.dtype).detach()

    def regularizer(self, beta: float):
        """sum(1 - |2 h(V) - 1|^beta): zero once every h(V) is 0 or 1."""
        return (1.0 - (2.0 * self.h() - 1.0).abs().pow(beta)).sum()


def _round_layer(gm, name, unit, samples, generator, **settings) -> LayerResult:
    """Learn one layer's rounding and set it (or keep nearest when that reconstructs better)."""
    with _unquantized(gm):
        target = _capture(gm, unit, samples, output=True)
    x = _capture(gm, unit, samples, output=False)
    quantizer = unit.weight_quant
    w = unit.float_weights()[0].detach()
    scale = quantizer.scale(w).detach()
    rounding = _Rounding(w, scale, quantizer.spec.qmax)
    _learn(unit, x, target, rounding, generator, channels=quantizer.channels, **settings)
    nearest = quantizer.codes(w, scale)
    hard = rounding.hard()
    errors = [_error(unit, x, target, _fixed(v)) for v in (nearest * rounding.s, rounding.weights(hard))]
    used = errors[1] < errors[0]
    if used:
        quantizer.rounding = hard
    changed = int((quantizer.codes(w, scale) != nearest).sum())
    return LayerResult(name, errors[0], errors[1], changed, w.numel(), used)


def _fixed(weights):
    """A weight replacement that ignores the float weights: given rounded weights."""
    return lambda w: weights


def _learn(unit, x, target, rounding, generator, *, channels, iterations, lam, beta, lr, batch_size, warmup):
    """Adam on V: the output reconstruction error plus, after the warm-up, the annealed regulariser."""
    optimizer = torch.optim.Adam(rounding.parameters(), lr=lr)
    start = int(warmup * iterations)
    with _unquantized(unit, rounding.soft), torch.enable_grad():
        for step in range(iterations):
            idx = torch.randperm(len(x), generator=generator)[:batch_size]
            loss = channels * (unit(x[idx]) - target[idx]).pow(2).mean()
            if step >= start and lam > 0:
                t = (step - start) / max(1, iterations - start - 1)
                loss = loss + lam * rounding.regularizer(beta[0] + t * (beta[1] - beta[0]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _error(unit, x, target, weights) -> float:
    """Mean squared error of the unit's output (before output quantization) with the given weights."""
    total = 0.0
    with _unquantized(unit, weights), torch.no_grad():
        for xs, ts in zip(x.split(_EVAL_CHUNK), target.split(_EVAL_CHUNK)):
            total += float((unit(xs) - ts).pow(2).sum())
    return total / target.numel()

