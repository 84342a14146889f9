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

from ..graph.ir import SeqLen
from . import steps as step_kinds
from .plan import Plan, Step, TensorSpec


# the C++ executor's code of the sequence dimension in a shape (the batch's is -1)
SEQUENCE_CODE = -2


def lowered_shape(spec: TensorSpec) -> list:
    """The shape as the executor reads it: -1 for the batch, SEQUENCE_CODE for the sequence."""
    if any(d is None for d in spec.shape[1:]):
        raise NotImplementedError(f"tensor {spec.name!r}: only the batch dimension may be free, got {spec.shape}")
    return [-1 if d is None else SEQUENCE_CODE if isinstance(d, SeqLen) else int(d) for d in spec.shape]


# the executor's kinds that take the sequence dimension (csrc/model/build.cpp takes_sequence)
SEQUENCE_KINDS = ("quantize", "dequantize", "conv", "dynamic_linear", "binary", "lut", "reshape", "softmax", "float_linear",
                  "float_bmm", "float_layer_norm", "float_unary", "float_binary", "float_transpose", "float_concat",
                  "float_select", "float_reduce", "embedding", "additive_mask", "padded_positions", "dynamic_bmm",
                  "softmax_bmm")


def lower_step(plan: Plan, step: Step) -> dict:
    """The executor's record of one step of a validated plan: its kind's ``lower``."""
    kind = step_kinds.get(step.op)
    if kind is None:
        raise NotImplementedError(f"the C++ executor has no {step.op!r} step")
    specs = [plan.tensors[n] for n in (*step.inputs, step.output)]
    record = kind.lower(step, specs[:-1], specs[-1])
    with_seq = [t for t in specs if any(isinstance(d, SeqLen) for d in t.shape)]
    if with_seq and record["kind"] not in SEQUENCE_KINDS:
        raise NotImplementedError(f"the C++ executor's {record['kind']!r} step does not take the sequence dimension")
    if any(t.quantized and len(t.shape) == 4 for t in with_seq):
        raise NotImplementedError("a 4-D quantized tensor (NHWC in the executor) with the sequence dimension")
    return record
    return record


def lower(plan: Plan) -> Plan:
    """The plan with every step's ``lowered`` record filled in (a new Plan; constants shared).
    Raises NotImplementedError for a plan the C++ executor cannot run (a free dimension other
    than the batch, a window that is not 2-D)."""
    for spec in plan.tensors.values():
        lowered_shape(spec)
    steps = []
    for i, s in enumerate(plan.steps):
        try:
            lowered = lower_step(plan, s)
        except (NotImplementedError, ValueError) as e:
            raise type(e)(f"step {i} ({s.op}, from {s.source or '?'}): {e}") from None
        steps.append(Step(s.op, s.inputs, s.output, s.attrs, s.consts, s.source, lowered))
    return Plan(plan.tensors, steps, plan.inputs, plan.outputs)
