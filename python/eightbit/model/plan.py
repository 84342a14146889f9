"""The quantized execution plan: what ``eb.quantize`` produces, what executors run and what the
``.eb`` file stores.

A plan is plain data: tensor specs (dtype, shape, quantization parameters) and a list of steps in
execution order, each naming its input and output tensors, with plain-Python attributes and NumPy
constants. Inside the plan, 4-D activations are NHWC (the kernels' layout); the plan's inputs and
outputs are float32 in the float graph's own layout (NCHW), and the ``quantize`` / ``dequantize``
steps at the boundary convert.

Steps (``Step.op``), on per-tensor quantized uint8/int8 tensors unless stated, are the kinds of
the step registry, ``eightbit.model.steps``: one module per family (quantize.py: quantize /
dequantize; conv.py: conv / linear; binary.py: add / mul; pool.py: max_pool / avg_pool /
global_avg_pool; concat.py; lut.py; reshape.py; softmax.py; dynamic_linear.py; float_node.py:
float), each defining a ``StepKind`` with the step's schema (inputs, constants, attributes; the
module's docstring describes them), shape rule, reference interpretation, lowering and ONNX
export. ``Plan.validate`` runs the checks every step shares, then the kind's own; it names no step.

Float32 tensors inside the plan are in the float graph's layout. Dimension 0 of every tensor is
the batch (None in specs): executors size their memory per sample. A plan made from a graph with
a free sequence dimension holds its ``SeqLen`` (graph/sequence.py) in shapes and in float steps'
attributes; ``at_length(s)`` is the plan at one length, what the NumPy executors run and what
``validate`` checks at the range's ends and middle (its checks are identities of degree <= 2 in
S: the attention scores are [N, H, S, S]).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph.ir import SeqLen
from ..graph.sequence import concrete, concrete_parts
from . import plan_shapes
from . import steps as step_kinds
from .plan_types import FLOAT, QUANT_DTYPES, Step, TensorSpec
from .stored_weights import stored_bytes

__all__ = ["FLOAT", "QUANT_DTYPES", "Plan", "Step", "TensorSpec"]


@dataclass
class Plan:
    tensors: dict          # name -> TensorSpec
    steps: list            # Step, in execution order
    inputs: list           # names of the float32 graph inputs
    outputs: list          # names of the float32 graph outputs

    def sequence(self):
        """The plan's SeqLen, or None; ValueError if its tensors hold several or one stands
        where no input shows it (a run reads its length from the inputs)."""
        seqs = {d for spec in self.tensors.values() for d in spec.shape[1:] if isinstance(d, SeqLen)}
        if any(isinstance(spec.shape[0] if spec.shape else None, SeqLen) for spec in self.tensors.values()):
            raise ValueError("the batch dimension cannot be the sequence")
        if len(seqs) > 1:
            raise ValueError(f"the plan holds several sequence ranges {sorted(map(repr, seqs))}")
        seq = next(iter(seqs), None)
        if seq is not None and not any(seq in self.tensors[n].shape for n in self.inputs if n in self.tensors):
            raise ValueError("the plan's tensors hold a sequence dimension that no input has")
        return seq

    def at_length(self, s: int) -> "Plan":
        """The plan with its sequence dimension fixed at `s` (self when it has none)."""
        seq = self.sequence()
        if seq is None:
            return self
        if not seq.lo <= s <= seq.hi:
            raise ValueError(f"sequence length {s} is outside the model's range {seq.lo} to {seq.hi}")
        tensors = {n: TensorSpec(t.name, t.dtype, concrete(t.shape, s), t.scale, t.zero_point)
                   for n, t in self.tensors.items()}
        steps = []
        for st in self.steps:
            attrs, consts = concrete(st.attrs, s), dict(st.consts)
            if st.op == "float":  # a float graph node's parts: its attrs and consts
                attrs["attrs"], consts = concrete_parts(st.attrs["attrs"], st.consts, s)
            steps.append(Step(st.op, st.inputs, st.output, attrs, consts, st.source))
        return Plan(tensors, steps, list(self.inputs), list(self.outputs))

    def validate(self) -> "Plan":
        """Check that every step reads defined tensors of the right kind and carries its
        constants; raise ValueError naming the step otherwise. Returns self."""
        seq = self.sequence()
        if seq is not None:
            for s in sorted({seq.lo, (seq.lo + seq.hi) // 2, seq.hi}):
                try:
                    self.at_length(s).validate()
                except ValueError as e:
                    raise ValueError(f"at sequence length {s}: {e}") from None
            return self
        for spec in self.tensors.values():
            plan_shapes.check_size(spec)
        defined = set()
        for name in self.inputs:
            spec = self._spec(name, "plan input")
            if spec.dtype != FLOAT:
                raise ValueError(f"plan input {name!r} must be float32, got {spec.dtype}")
            defined.add(name)
        for i, step in enumerate(self.steps):
            where = f"step {i} ({step.op}, from {step.source or '?'})"
            kind = step_kinds.get(step.op)
            if kind is None:
                raise ValueError(f"{where}: unknown op {step.op!r}")
            if kind.arity is not None and len(step.inputs) != kind.arity:
                raise ValueError(f"{where}: expected {kind.arity} input(s), got {len(step.inputs)}")
            for name in step.inputs:
                if name not in defined:
                    raise ValueError(f"{where}: input {name!r} is not computed before this step")
            missing = [c for c in kind.consts if c not in step.consts]
            if missing:
                raise ValueError(f"{where}: missing constant(s) {missing}")
            out = self._spec(step.output, where)
            ins = [self.tensors[n] for n in step.inputs]
            try:
                if kind.check is not None:  # constants' dtypes and shapes, attributes (a file may hold anything)
                    kind.check(step, ins, out)
                want = kind.shape(step, ins)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            if want is not None and tuple(want) != tuple(out.shape):
                raise ValueError(f"{where}: computes shape {want}, but output {step.output!r} declares {out.shape}")
            first = ins[0] if ins else None
            if kind.copies and first.quantized and (
                    (out.scale, out.zero_point) != (first.scale, first.zero_point)):
                raise ValueError(f"{where}: copies bytes, so its output must keep the input's scale and zero point")
            expected = {"quant": out.quantized, "float": out.dtype == FLOAT,
                        "same": first is not None and out.dtype == first.dtype}[kind.output]
            if not expected:
                raise ValueError(f"{where}: output {step.output!r} has the wrong dtype {out.dtype}")
            if out.quantized and (out.scale is None or not out.scale > 0 or out.zero_point is None):
                raise ValueError(f"{where}: output {step.output!r} lacks a positive scale / zero point")
            if step.output in defined:
                raise ValueError(f"{where}: output {step.output!r} is written twice")
            defined.add(step.output)
        for name in self.outputs:
            if name not in defined or self.tensors[name].dtype != FLOAT:
                raise ValueError(f"plan output {name!r} must be a float32 tensor computed by a step")
        return self

    def _spec(self, name: str, where: str) -> TensorSpec:
        if name not in self.tensors:
            raise ValueError(f"{where}: tensor {name!r} has no spec")
        return self.tensors[name]

    def const_bytes(self) -> int:
        """Bytes of all constants as a saved model holds them (codes on a narrow grid count their
        bits: stored_weights.stored_consts)."""
        return sum(stored_bytes(s) for s in self.steps)

