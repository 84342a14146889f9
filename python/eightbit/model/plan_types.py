"""The plain data of a plan: tensor specs and steps (``plan.py`` puts them together and validates
them; the step kinds in ``steps/`` interpret them). A module of its own so that the plan, the step
registry and the executors all import it without importing each other."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

QUANT_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))
FLOAT = np.dtype(np.float32)


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the plan. ``shape`` has None for the batch dimension; quantized tensors
    carry their per-tensor ``scale`` (float32 > 0) and ``zero_point`` (in ``dtype``'s range)."""

    name: str
    dtype: np.dtype
    shape: tuple
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.dtype in QUANT_DTYPES


@dataclass
class Step:
    op: str                # a step kind of the registry (model/steps/)
    inputs: tuple
    output: str
    attrs: dict = field(default_factory=dict)
    consts: dict = field(default_factory=dict)
    source: str = ""  # the float graph node this step implements (summaries, errors)
    # The C++ executor's record of this step, every numerics rule resolved (model/lowering.py);
    # None until lowered.
    lowered: dict | None = None
