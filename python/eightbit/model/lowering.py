"""Lowering: every step of a Plan resolved into the record the C++ executor runs (``Step.lowered``,
stored in the ``.eb`` file and read by ``csrc/model/build.cpp``, which hands it to its kind's create
function in ``csrc/runtime/steps/``; docs/format.md lists the kinds). Each step kind's ``lower``
(the step registry, model/steps/) makes its step's record.

Every parameter that follows a numerics rule is computed there, once, with the functions of
``eightbit.numerics`` / ``eightbit.ops``, exactly as ``eightbit.ops`` computes it per call (float /
fixed-point multipliers, the fused activation's clamp bounds, QLinearAdd's operand order,
QLinearConcat's requantization tables), so C++ only checks, packs and executes, and its results
are bit-identical to ``run_plan(plan, feeds, eightbit.ops)`` and to eightbit.reference. softmax
is a float island: the executor computes it in double and rounds once (within a few float32 ulp
of the reference's NumPy formula). ``float`` steps become C++ float32 steps (float_ops.cpp,
accurate to float32 rounding against graph/float_exec.py); a form none of them takes is a
``host`` step, which only the Python package runs (the float graph executor, called back with the
GIL taken for that step only); the C library refuses such a model.
"""
from __future__ import annotations

from . import steps as step_kinds
from .plan import Plan, Step, TensorSpec


def _shape(spec: TensorSpec) -> list:
    if any(d is None for d in spec.shape[1:]):
        raise NotImplementedError(f"tensor {spec.name!r}: only the batch dimension may be free, got {spec.shape}")
    return [-1 if d is None else int(d) for d in spec.shape]


def lower_step(plan: Plan, step: Step) -> dict:
    """The executor's record of one step of a validated plan: its kind's ``lower``."""
    kind = step_kinds.get(step.op)
    if kind is None:
        raise NotImplementedError(f"the C++ executor has no {step.op!r} step")
    return kind.lower(step, [plan.tensors[n] for n in step.inputs], plan.tensors[step.output])


def lower(plan: Plan) -> Plan:
    """The plan with every step's ``lowered`` record filled in (a new Plan; constants shared).
    Raises NotImplementedError for a plan the C++ executor cannot run (a free dimension other
    than the batch, a window that is not 2-D)."""
    for spec in plan.tensors.values():
        _shape(spec)
    steps = []
    for i, s in enumerate(plan.steps):
        try:
            lowered = lower_step(plan, s)
        except (NotImplementedError, ValueError) as e:
            raise type(e)(f"step {i} ({s.op}, from {s.source or '?'}): {e}") from None
        steps.append(Step(s.op, s.inputs, s.output, s.attrs, s.consts, s.source, lowered))
    return Plan(plan.tensors, steps, plan.inputs, plan.outputs)
