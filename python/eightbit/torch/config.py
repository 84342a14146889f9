"""What quantization-aware training quantizes, and how: ``QATConfig`` with a ``WeightQuant`` and an
``ActivationQuant`` for the whole model, per-layer overrides, and when observers and BatchNorm
statistics freeze. Plain dataclasses: no torch import, so configs can be built and checked anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

OBSERVERS = ("minmax", "moving_average")
WEIGHT_SCALES = ("max", "mse", "mean")


@dataclass(frozen=True)
class WeightQuant:
    """Symmetric weights (zero point 0: the engine's int8 weights) on an integer grid.

    ``bits`` 2..8 gives the codes [-(2^(bits-1) - 1), 2^(bits-1) - 1] (8: [-127, 127], 4: [-7, 7],
    2: [-1, 1], ternary); ``bits=1`` is binary: codes -1 and +1 (the sign, 0 -> +1). ``levels`` (an
    odd number from 3 to 255, or 2 for binary) sets the grid by its number of values instead.
    ``per_channel``: one scale per output channel (else one per tensor). ``scale``: how the scale
    follows the weights: "max" (max|w| / qmax, the engine's rule at 8 bits), "mse" (the clipping
    that minimises the squared rounding error, better below 8 bits) or "mean" (mean|w|: the L2-
    optimal scale of binary weights, their default). ``learnable=True``: the scale is a trained
    parameter (LSQ, Esser et al. 2020), initialised by ``scale``'s rule.

    ``binary_inputs=True`` (binary weights only) makes the layer an XNOR layer: its input is
    binarised too, -1 where x < threshold else +1, with one trained threshold per input channel
    (initialised to each channel's mean on the first training batch; straight-through gradient
    inside |x - threshold| <= 1). ``convert`` turns it into the engine's binary_conv /
    binary_linear step (XOR + popcount)."""

    bits: int = 8
    levels: int | None = None
    per_channel: bool = True
    scale: str | None = None        # None: "mean" for binary weights, else "max"
    learnable: bool = False
    binary_inputs: bool = False

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise ValueError(f"bits: expected an int from 1 (binary) to 8, got {self.bits!r}")
        if self.levels is not None and (isinstance(self.levels, bool) or not isinstance(self.levels, int)
                                        or not (self.levels == 2 or (3 <= self.levels <= 255 and self.levels % 2))):
            raise ValueError(f"levels: expected 2 (binary) or an odd int from 3 to 255 (a symmetric grid "
                             f"with 0), got {self.levels!r}")
        if self.scale is not None and self.scale not in WEIGHT_SCALES:
            raise ValueError(f"scale: expected one of {WEIGHT_SCALES}, got {self.scale!r}")
        if self.binary_inputs is not False and (self.binary_inputs is not True or not self.binary):
            raise ValueError("binary_inputs: True only with binary weights (bits=1 or levels=2)")

    @property
    def binary(self) -> bool:
        return self.levels == 2 if self.levels is not None else self.bits == 1

    @property
    def qmax(self) -> int:
        """The largest code: codes run over [-qmax, qmax] (binary: {-1, +1})."""
        if self.binary:
            return 1
        if self.levels is not None:
            return (self.levels - 1) // 2
        return 2 ** (self.bits - 1) - 1

    @property
    def scale_rule(self) -> str:
        return self.scale or ("mean" if self.binary else "max")


@dataclass(frozen=True)
class ActivationQuant:
    """8-bit activations, one scale and zero point per tensor (the engine's), from observed ranges.

    ``dtype`` "uint8" or "int8"; ``symmetric=True``: int8 with zero point 0. ``observer``:
    "moving_average" (ranges follow the data: min / max of each batch averaged with
    ``momentum``) or "minmax" (the running extremes). ``learnable=True``: after the first batch
    sets it, the scale is a trained parameter (LSQ). ``per_token``: linear layers over token
    sequences (input rank >= 3) quantize their input per token at run time, as the engine's
    dynamic_linear step does: "auto" (those layers), True (every linear layer), False (none)."""

    dtype: str = "uint8"
    symmetric: bool = False
    observer: str = "moving_average"
    momentum: float = 0.01
    learnable: bool = False
    per_token: bool | str = "auto"

    def __post_init__(self):
        if self.dtype not in ("uint8", "int8"):
            raise ValueError(f"dtype: expected 'uint8' or 'int8', got {self.dtype!r}")
        if self.symmetric and self.dtype != "int8":
            raise ValueError("symmetric: symmetric activations are int8 with zero point 0; use dtype='int8'")
        if self.observer not in OBSERVERS:
            raise ValueError(f"observer: expected one of {OBSERVERS}, got {self.observer!r}")
        if not 0.0 < float(self.momentum) <= 1.0:
            raise ValueError(f"momentum: expected a number in (0, 1], got {self.momentum!r}")
        if self.per_token not in ("auto", True, False):
            raise ValueError(f"per_token: expected 'auto', True or False, got {self.per_token!r}")

    @property
    def qrange(self) -> tuple[int, int]:
        return (0, 255) if self.dtype == "uint8" else (-128, 127)


@dataclass(frozen=True)
class QATConfig:
    """The whole model's quantization. ``layers`` maps a module name (as in
    ``model.named_modules()``) to a ``WeightQuant`` for that layer, or to None to keep it float32
    (its weights unquantized, its output float: the engine runs it as a float step).
    ``freeze_observers_after`` / ``freeze_bn_after``: training steps (forward passes in training
    mode) after which activation ranges / BatchNorm statistics stop moving (None: never).
    ``exact``: when the forward pass computes the engine's own integer arithmetic for each
    quantized op (the same codes bit for bit) instead of plain fake quantization: "eval" (in
    ``model.eval()`` only; training then runs at fake-quantization speed), True (also in training)
    or False (never)."""

    weight: WeightQuant = field(default_factory=WeightQuant)
    activation: ActivationQuant = field(default_factory=ActivationQuant)
    layers: dict = field(default_factory=dict)
    freeze_observers_after: int | None = None
    freeze_bn_after: int | None = None
    exact: bool | str = "eval"

    def __post_init__(self):
        if not isinstance(self.weight, WeightQuant):
            raise TypeError(f"weight: expected a WeightQuant, got {type(self.weight).__name__}")
        if not isinstance(self.activation, ActivationQuant):
            raise TypeError(f"activation: expected an ActivationQuant, got {type(self.activation).__name__}")
        if not isinstance(self.layers, dict):
            raise TypeError(f"layers: expected a dict of module name -> WeightQuant or None, got {self.layers!r}")
        for name, spec in self.layers.items():
            if spec is not None and not isinstance(spec, WeightQuant):
                raise TypeError(f"layers[{name!r}]: expected a WeightQuant or None, got {spec!r}")
        for key in ("freeze_observers_after", "freeze_bn_after"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"{key}: expected None or a number of steps >= 0, got {v!r}")
        if self.exact not in ("eval", True, False):
            raise ValueError(f"exact: expected 'eval', True or False, got {self.exact!r}")

    def weight_for(self, module_name: str):
        """The layer's WeightQuant, or None when it stays float32."""
        return self.layers.get(module_name, self.weight)

    def with_weight(self, **changes) -> "QATConfig":
        return replace(self, weight=replace(self.weight, **changes))
