"""add / mul: com.microsoft QLinearAdd / QLinearMul of two quantized tensors (NumPy broadcasting;
4-D operands are NHWC in the plan).

=========  ===============================================================================
add, mul   QLinearAdd / QLinearMul, each operand and the output with its own scale and zero
           point. The lowering records ONNX Runtime's QLinearAdd operand order (``b_first``)
=========  ===============================================================================
"""
from __future__ import annotations

from ...graph.ir import SeqLen
from ...graph.sequence import concrete
from ...numerics.broadcast import qlinear_add_b_first
from ..plan_shapes import broadcast
from .common import MS, qp
from .kind import StepKind


def _shape(step, ins):
    return broadcast(ins[0].shape, ins[1].shape)


def _run(m, step, xs, ins, out, w):
    fn = m.qlinear_add if step.op == "add" else m.qlinear_mul
    return fn(xs[0], *qp(ins[0]), xs[1], *qp(ins[1]), *qp(out))


def _add_order(a, b) -> list:
    """ONNX Runtime's QLinearAdd operand order for batch <= 1 and batch > 1: the rule only compares
    extents with 1, so these two batch sizes stand for all."""
    def with_batch(spec, n, s):
        return (n,) + concrete(tuple(spec.shape[1:]), s)
    seq = next((d for d in (*a.shape, *b.shape) if isinstance(d, SeqLen)), None)
    # a sequence dimension: the order must be the same at length 1 (if allowed) and above
    lengths = (1,) if seq is None else sorted({min(seq.lo, 2), min(seq.hi, 2)})
    order = {tuple(int(bool(qlinear_add_b_first(with_batch(a, n, s), with_batch(b, n, s)))) for n in (1, 2))
             for s in lengths}
    if len(order) > 1:
        raise NotImplementedError("ONNX Runtime's QLinearAdd operand order changes with the sequence length")
    return list(order.pop())


def _lower(step, ins, out):
    add = step.op == "add"
    return {"kind": "binary", "mul": not add, "b_first": _add_order(ins[0], ins[1]) if add else [0, 0]}


def _transpose(ex, name, perm, label):
    out = ex.tmp(f"{name}.nhwc")
    ex.b.node("Transpose", [name], [out], f"{label}.to_nhwc_{name}", perm=list(perm))
    return out


def _export(ex, step, label):
    a, b = step.inputs
    y = step.output
    ins = [a, b]
    mixed = len(ex.spec(y).shape) == 4 and any(len(ex.spec(n).shape) != 4 for n in ins)
    if mixed:
        # the plan broadcasts in NHWC: do the same, between transposes of the 4-D operands
        ins = [_transpose(ex, n, (0, 2, 3, 1), label) if len(ex.spec(n).shape) == 4 else n for n in ins]
    out = ex.tmp(f"{y}.nhwc") if mixed else y
    if ex.fmt == "qoperator":
        op = "QLinearAdd" if step.op == "add" else "QLinearMul"
        ex.b.node(op, [ins[0], *ex.qp(a), ins[1], *ex.qp(b), *ex.qp(y)], [out], label, domain=MS)
    else:
        fa = ex.dq(ins[0], label, a)
        fb = ex.dq(ins[1], label, b)
        f = ex.tmp(f"{y}.f32")
        ex.b.node("Add" if step.op == "add" else "Mul", [fa, fb], [f], label)
        ex.b.node("QuantizeLinear", [f, *ex.qp(y)], [out], f"{label}.q")
    if mixed:
        ex.b.node("Transpose", [out], [y], f"{label}.to_nchw", perm=[0, 3, 1, 2])


ADD = StepKind("add", 2, "quant", shape=_shape, run=_run, lower=_lower, export=_export)
MUL = StepKind("mul", 2, "quant", shape=_shape, run=_run, lower=_lower, export=_export)
