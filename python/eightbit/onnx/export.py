"""``to_onnx``: a quantized eightbit model as an ONNX model that ONNX Runtime runs with eightbit's
results (``qm.run`` with float requantization, the default).

The exported model takes and returns the plan's float32 inputs and outputs under the same names,
in their own layout (NCHW for 4-D); the plan's NHWC is internal to eightbit, so every quantized
tensor of the ONNX graph is NCHW. The free batch dimension is the symbolic "N". Tensor and node
names come from the plan (a quantized plan tensor ``T`` is the uint8 / int8 ONNX tensor ``T``,
its qparams the initializers ``T.scale`` / ``T.zero_point``). Two formats:

* ``"qdq"``: float ops between DequantizeLinear and QuantizeLinear, which ONNX Runtime fuses into
  its integer kernels when it builds the session (graph optimizations at the default level).
* ``"qoperator"``: the integer ops themselves (QLinearConv, com.microsoft QLinearAdd, ...).

Each step kind writes its own nodes (``StepKind.export`` in eightbit/model/steps/, through the
helpers of ``_PlanExporter``). Step -> ONNX (x, y: the quantized input / output; DQ / Q:
DequantizeLinear / QuantizeLinear):

==================  =================================================  ============================
step                qdq                                                qoperator
==================  =================================================  ============================
quantize            Q                                                  (same)
dequantize          DQ                                                 (same)
conv                DQ(x), DQ(int8 w, per-channel axis 0 or            QLinearConv
                    per-tensor), DQ(int32 bias) -> Conv -> Q
linear              DQ(x), DQ(w), DQ(bias) -> Gemm(transB=1) -> Q      com.microsoft QGemm
                    (x not 2-D: Reshape to rows [M, K] and back)       (same Reshapes)
add, mul            DQ, DQ -> Add / Mul -> Q                           com.microsoft QLinearAdd /
                                                                       QLinearMul
max_pool            DQ -> MaxPool -> Q                                 MaxPool on the 8-bit tensor
avg_pool            DQ -> AveragePool -> Q                             com.microsoft QLinearAveragePool
global_avg_pool     DQ -> GlobalAveragePool -> Q                       com.microsoft
                                                                       QLinearGlobalAveragePool
concat              DQ... -> Concat -> Q                               com.microsoft QLinearConcat
reshape             Reshape on the 8-bit tensor                        (same)
lut                 DQ -> the float op -> Q (``lut="op"``), or the     sigmoid / leaky_relu:
                    table itself: Gather(table, Cast(x, int32))        QLinearSigmoid /
                    (``lut="table"``, exact)                           QLinearLeakyRelu; else as qdq
softmax             Softmax (float)                                    (same)
dynamic_linear      per-row DynamicQuantizeLinear in float ops,        (same)
                    MatMulInteger, zero-point correction, scale, bias
binary_conv,        DQ -> Less (threshold) -> Where (-1, +1) -> Conv   (same)
binary_linear       / MatMul (+-1 weights; one padding: Pad 1.0)
                    -> Mul (w_scale) -> Add (bias) -> Q (-> Clip)
blockwise_linear    DQ(int4 w [K, O], scales [K / B, O], axis 0,       (same)
                    block_size B) -> MatMul -> Add bias -> Relu
                    (opset 21; x's row quantization not exported)
float               the float op(s), as ``graph_to_onnx`` writes them  (same)
==================  =================================================  ============================

Why, and what ONNX Runtime 1.32 gives (CPU, this repository's tests/onnx/test_export.py):

* The plan's linear is QLinearConv with a 1x1 kernel; ORT's QGemm requantizes the same way
  (measured: 0 of 30 000 unsaturated outputs differ), and ORT fuses DQ -> Gemm -> Q into QGemm
  for int8 activations too, which it does not do for a Conv on x86.
* A fused activation whose clamp is free (ReLU with the output zero point at the dtype's minimum,
  a clip whose quantized bounds are the dtype's range) is a Relu between Conv and Q (ORT removes
  it, then fuses) or nothing. Any other clamp is an integer Clip(q, Q(lo), Q(hi)) after the Q:
  exactly eightbit's clamp of the requantized value.
* dynamic_linear quantizes each row separately, which DynamicQuantizeLinear (one scale per
  tensor) cannot express: the exporter writes its formula with Reduce / Div / Round ops and
  subtracts the row zero points (times the weights' column sums) after MatMulInteger, whose
  per-row a_zero_point ORT does not implement. Bit-exact.
* lut steps: ORT evaluates the float op with its own functions. Measured on 5120 codes: relu,
  relu6, clip, leaky_relu and hardsigmoid exact (piecewise linear); sigmoid, hardswish, gelu 0 codes differ;
  tanh 17 codes (0.3%) one quantization step apart. clip / leaky_relu / gelu steps whose
  parameters the plan does not record are exported as the table (exact).
* binary_conv / binary_linear: exact (the +-1 sums are integers below 2^24, exact in float32 in
  any order; scale and bias a multiply then an add, as eightbit), with ORT's graph optimizations
  off or on (tests/onnx/test_export_binary.py).
* blockwise_linear: eightbit quantizes x's rows to int8 at run time (its execution choice, as
  MatMulNBits' accuracy_level is ORT's); ORT multiplies the float x (or, in its default session,
  fuses DQ -> MatMul into MatMulNBits with accuracy level 4: x quantized per block). Not
  bit-exact: within the rows' rounding, half a step (row max |x| / 254) per element of x; about
  1 % of max |y| measured (model/steps/blockwise.py, tests/onnx/test_export_blockwise.py).
* Float steps run float32 in ORT too, which sums in its own order (float32 ulps apart; a
  downstream quantization may land one step off). A float Conv / Gemm fed by a per-tensor DQ is
  quantized by ORT's WeightBiasQuantization; the exporter dequantizes such inputs per axis (same
  values) so the island stays float. softmax: within a few float32 ulp.

Bit-exactness with graph optimizations at ORT's default (ORT_ENABLE_ALL): every integer step in
the qoperator format; in the qdq format every integer step for uint8 activations (ORT fuses all
DQ -> op -> Q groups) and the linear steps for int8 (on x86 ORT leaves int8-activation Conv /
Add / pools unfused, computed in float between DQ and Q). Without graph optimizations the
qoperator format is unchanged and qdq computes in float between DQ and Q. That float path
rounds differently only when a value lies within float32 error of a rounding boundary: measured,
0 outputs differ on the test CNN (2000 images) and the digits models; the tests allow one step.
Measured on an AVX-512 VNNI CPU; without VNNI, ORT's u8s8 kernels may saturate int16 pair sums
(ORT documents reduce_range for this), which eightbit's exact kernels do not.
"""
from __future__ import annotations

import numpy as np

from ..model import steps as step_kinds
from ..model.plan import Plan, TensorSpec
from ..model.steps.common import nchw as _nchw
from .export_float import OnnxBuilder, check_opset, float_value_info, graph_to_onnx, onnx_dims

FORMATS = ("qdq", "qoperator")


def to_onnx(model, path=None, *, format: str = "qdq", opset: int | None = None, lut: str = "op"):
    """Export ``model`` to ONNX; write it to ``path`` if given; return the ModelProto.

    ``model``: a QuantizedModel (or its Plan), or a float ``eb.Graph`` (exported by
    ``graph_to_onnx``; ``format`` and ``lut`` do not apply). ``format``: "qdq" or "qoperator"
    (see the module docstring). ``opset``: 17 by default, 20 when a gelu is present,
    21 with block-quantized (int4) layers.
    ``lut``: "op" (the float function between DQ and Q) or "table" (a Gather of the exact table).
    """
    from ..graph import Graph
    from ..model import QuantizedModel

    if isinstance(model, Graph):
        m = graph_to_onnx(model, opset=opset)
    else:
        if isinstance(model, QuantizedModel):
            plan = model.plan
        elif isinstance(model, Plan):
            plan = model.validate()
        else:
            raise TypeError(f"model: expected an eightbit QuantizedModel or Graph, got {type(model).__name__}")
        if format not in FORMATS:
            raise ValueError(f"format: expected one of {FORMATS}, got {format!r}")
        if lut not in ("op", "table"):
            raise ValueError(f"lut: expected 'op' or 'table', got {lut!r}")
        m = _PlanExporter(plan, format, opset, lut).model()
    if path is not None:
        import onnx

        onnx.save(m, str(path))
    return m


def _check_exportable(plan: Plan) -> None:
    for i, step in enumerate(plan.steps):
        check = step_kinds.REGISTRY[step.op].export_check
        reason = check(step) if check is not None else None
        if reason is not None:
            raise ValueError(f"model: step {i} ({step.op}, from {step.source or '?'}) {reason}")


class _PlanExporter:
    """Writes a validated plan as ONNX: each step's kind emits its nodes (``StepKind.export``,
    model/steps/) through the helpers below."""

    def __init__(self, plan: Plan, fmt: str, opset, lut: str):
        _check_exportable(plan)
        # the float ops whose ONNX forms the steps write set the minimum opset (e.g. Gelu: 20)
        ops = set()
        for s in plan.steps:
            export_ops = step_kinds.REGISTRY[s.op].export_ops
            if export_ops is not None:
                ops |= export_ops(s, lut)
        self.plan, self.fmt, self.lut = plan, fmt, lut
        self.b = OnnxBuilder(check_opset(opset, ops, "the model"))
        self._qparams: dict = {}
        self._readers: dict = {}
        for st in plan.steps:
            for n in st.inputs:
                self._readers.setdefault(n, []).append(st)
        for name in plan.tensors:
            self.b.reserve(name)

    # ---- tensors ------------------------------------------------------------------------------

    def spec(self, name: str) -> TensorSpec:
        return self.plan.tensors[name]

    def qp(self, name: str) -> tuple:
        """The (scale, zero point) initializers of a quantized plan tensor, shared by its users."""
        if name not in self._qparams:
            s = self.spec(name)
            self._qparams[name] = (self.b.const(f"{name}.scale", np.float32(s.scale)),
                                   self.b.const(f"{name}.zero_point", s.dtype.type(s.zero_point)))
        return self._qparams[name]

    def dq(self, x: str, label: str, qparams_of: str | None = None) -> str:
        """A DequantizeLinear of the 8-bit ONNX tensor ``x`` for one consumer (ORT fuses a DQ into
        its consumer's kernel), with the qparams of plan tensor ``qparams_of`` (default: x)."""
        out = self.b.fresh(f"{x}.dq")
        self.b.node("DequantizeLinear", [x, *self.qp(qparams_of or x)], [out], f"{label}.dq_{x}")
        return out

    def q(self, src: str, name: str, label: str) -> None:
        self.b.node("QuantizeLinear", [src, *self.qp(name)], [name], f"{label}.q")

    def tmp(self, name: str) -> str:
        return self.b.fresh(name)

    def int_const(self, name: str, values, dtype) -> str:
        return self.b.const(name, np.asarray(values, dtype))

    def readers(self, name: str) -> list:
        """The steps that read plan tensor ``name``."""
        return self._readers.get(name, [])

    def unary_qdq(self, step, label, op_type, domain="", **attrs):
        """DQ -> op -> Q, with the output's qparams."""
        x, y = step.inputs[0], step.output
        f = self.tmp(f"{y}.f32")
        self.b.node(op_type, [self.dq(x, label)], [f], label, domain=domain, **attrs)
        self.q(f, y, label)

    # ---- the model ----------------------------------------------------------------------------

    def model(self):
        for i, step in enumerate(self.plan.steps):
            label = (step.source or f"step{i}").replace(" ", "_")
            step_kinds.REGISTRY[step.op].export(self, step, label)
        self._value_info()
        p = self.plan
        return self.b.model("eightbit_" + self.fmt, [float_value_info(n, p.tensors[n].shape) for n in p.inputs],
                            [float_value_info(n, p.tensors[n].shape) for n in p.outputs],
                            "eightbit")

    def _value_info(self) -> None:
        """Declared types and NCHW shapes of the plan's intermediate tensors (for readers and for
        the checker's shape inference, which then verifies the layout mapping)."""
        from onnx import helper

        ends = set(self.plan.inputs) | set(self.plan.outputs)
        for name, spec in self.plan.tensors.items():
            if name in ends:
                continue
            elem = helper.np_dtype_to_tensor_dtype(spec.dtype)
            shape = onnx_dims(_nchw(spec))
            self.b.value_info.append(helper.make_tensor_value_info(name, elem, shape))
