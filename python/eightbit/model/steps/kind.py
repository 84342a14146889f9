"""``StepKind``: everything the Python side knows about one kind of plan step (``Step.op``), in one
object. The plan's validation, shape check, reference interpreter, lowering and ONNX exporter
loop over the registry (``steps/__init__.py``) and call these hooks; none of them names a step.

Hook signatures (``ins``: the input TensorSpecs, ``out``: the output's TensorSpec):

``shape(step, ins)``
    The output shape the step computes (None for the batch dimension), or None when it is
    checked by ``check`` instead. Raises ValueError (``Plan.validate`` adds "step i (...): ").
``check(step, ins, out)``
    Optional: constants' dtypes and shapes and attributes beyond their presence; raises
    ValueError without the step prefix. Runs before ``shape``.
``run(m, step, xs, ins, out, w)``
    The step's output array from its input arrays ``xs`` with the op module ``m``
    (``eightbit.reference`` or ``eightbit.ops``: same functions, same signatures), ``w`` the
    weights argument (``weights(step)``, or what ``pack`` made for ``eightbit.ops``), else None.
``weights(step)``, ``pack(ops, step)``
    Optional, for steps with weights: the raw weights argument ``run`` takes, and the packed
    form ``QuantizedModel.run_steps`` gives it (packed once).
``lower(step, ins, out)``
    The C++ executor's record (``Step.lowered``, docs/format.md), every numerics rule resolved
    with the functions of ``eightbit.numerics`` / ``eightbit.ops``. NotImplementedError for a
    form the executor cannot run.
``export(ex, step, label)``
    Emit the step's ONNX nodes through the exporter ``ex`` (onnx/export.py: ``ex.b`` the
    OnnxBuilder, ``ex.fmt`` "qdq" / "qoperator", ``ex.lut``, ``ex.spec``, ``ex.qp``, ``ex.dq``,
    ``ex.q``, ``ex.tmp``, ``ex.int_const``, ``ex.unary_qdq``, ``ex.readers``).
``export_check(step)``
    Optional: why the step cannot be exported (a phrase after "model: step i (...)"), or None.
``export_ops(step, lut)``
    Optional: the float graph ops whose ONNX form the step writes (they set the minimum opset).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

OUTPUT_KINDS = ("quant", "float", "same")


@dataclass(frozen=True)
class StepKind:
    op: str                   # Step.op
    arity: Optional[int]      # the number of inputs; None for any
    output: str               # the output's dtype: "quant" (uint8 / int8), "float" (float32), "same" as input 0
    shape: Callable
    run: Callable
    lower: Callable
    export: Callable
    consts: tuple = ()        # the constants the step must carry
    check: Optional[Callable] = None
    copies: bool = False      # the output is the input's bytes: it keeps the input's scale and zero point
    weights: Optional[Callable] = None
    pack: Optional[Callable] = None
    export_check: Optional[Callable] = None
    export_ops: Optional[Callable] = None

    def __post_init__(self):
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"step kind {self.op!r}: output must be one of {OUTPUT_KINDS}, got {self.output!r}")
