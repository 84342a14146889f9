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

Step -> ONNX (x, y: the quantized input / output; DQ / Q: DequantizeLinear / QuantizeLinear):

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

from ..model.plan import Plan, Step, TensorSpec
from .export_float import OnnxBuilder, check_opset, emit_float_node, float_value_info, graph_to_onnx

FORMATS = ("qdq", "qoperator")
MS = "com.microsoft"
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}

# lut function -> ONNX op of the default domain, for functions without parameters
_LUT_FLOAT_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hardswish": "HardSwish", "erf": "Erf"}


def to_onnx(model, path=None, *, format: str = "qdq", opset: int | None = None, lut: str = "op"):
    """Export ``model`` to ONNX; write it to ``path`` if given; return the ModelProto.

    ``model``: a QuantizedModel (or its Plan), or a float ``eb.Graph`` (exported by
    ``graph_to_onnx``; ``format`` and ``lut`` do not apply). ``format``: "qdq" or "qoperator"
    (see the module docstring). ``opset``: 17 by default, 20 when a gelu is present.
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


def _nchw(spec: TensorSpec) -> tuple:
    """The ONNX (NCHW) shape of a plan tensor: quantized 4-D tensors are NHWC in the plan."""
    s = spec.shape
    return (s[0], s[3], s[1], s[2]) if spec.quantized and len(s) == 4 else tuple(s)


def _check_exportable(plan: Plan) -> None:
    for i, step in enumerate(plan.steps):
        if step.op in ("conv", "linear") and step.attrs.get("requant", "float") != "float":
            raise ValueError(f"model: step {i} ({step.op}, from {step.source or '?'}) uses fixed-point "
                             "requantization (requant='fixed'), which has no ONNX equivalent; quantize "
                             "with requant='float' to export")


def _lut_function(step: Step):
    """(ONNX op, attrs, extra inputs) of a lut step's float function, or None when the plan
    lacks its parameters (clip bounds, leaky_relu slope, gelu's approximation)."""
    fn = step.attrs.get("function")
    params = step.attrs.get("attrs")  # recorded by newer quantizers: the graph node's attrs
    if fn in _LUT_FLOAT_OPS:
        return _LUT_FLOAT_OPS[fn], {}, None
    if fn == "relu6":
        return "Clip", {}, (0.0, 6.0)
    if params is None:
        return None
    if fn == "clip":
        return "Clip", {}, (params.get("min"), params.get("max"))
    if fn == "leaky_relu":
        return "LeakyRelu", {"alpha": float(params["negative_slope"])}, None
    if fn == "gelu":
        return "Gelu", {"approximate": params.get("approximate", "none")}, None
    if fn == "hardsigmoid":
        return "HardSigmoid", {"alpha": float(params["alpha"]), "beta": float(params["beta"])}, None
    return None


class _PlanExporter:
    def __init__(self, plan: Plan, fmt: str, opset, lut: str):
        _check_exportable(plan)
        # a Gelu node is written for a float gelu step, or a gelu lut step exported as the op
        ops = {s.attrs.get("op") for s in plan.steps if s.op == "float"}
        if lut == "op":
            ops |= {"gelu" for s in plan.steps if s.op == "lut" and (_lut_function(s) or ("",))[0] == "Gelu"}
        self.plan, self.fmt, self.lut = plan, fmt, lut
        self.b = OnnxBuilder(check_opset(opset, ops, "the model"))
        self._qparams: dict = {}
        self._feeds_float_weights = {n for st in plan.steps if st.op == "float" and st.attrs.get("op") in
                                     ("conv2d", "linear", "matmul") for n in st.inputs}
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

    # ---- the model ----------------------------------------------------------------------------

    def model(self):
        for i, step in enumerate(self.plan.steps):
            label = (step.source or f"step{i}").replace(" ", "_")
            getattr(self, f"_{step.op}")(step, label)
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
            shape = ["N" if d is None else d for d in _nchw(spec)]
            self.b.value_info.append(helper.make_tensor_value_info(name, elem, shape))

    # ---- steps --------------------------------------------------------------------------------

    def _quantize(self, step, label):
        self.q(step.inputs[0], step.output, label)

    def _dequantize(self, step, label):
        x = step.inputs[0]
        if step.output in self._feeds_float_weights:
            # ORT (WeightBiasQuantization) quantizes the float weights of a Conv / Gemm whose input
            # comes from a per-tensor DequantizeLinear, which would turn a float island into int8.
            # The same qparams repeated along axis 1 give the same values and keep it float.
            spec = self.spec(x)
            c = _nchw(spec)[1]
            s = self.b.const(f"{x}.scale_per_channel", np.full(c, spec.scale, np.float32))
            z = self.b.const(f"{x}.zero_point_per_channel", np.full(c, spec.zero_point, spec.dtype))
            self.b.node("DequantizeLinear", [x, s, z], [step.output], label, axis=1)
        else:
            self.b.node("DequantizeLinear", [x, *self.qp(x)], [step.output], label)

    def _weights(self, step, label, x_spec):
        """Initializers of a conv / linear step: int8 OIHW weights, their scales and zero points
        (per-tensor when every channel has the same scale), int32 bias."""
        c = step.consts
        w = np.asarray(c["w"])
        ws = np.asarray(c["w_scale"], np.float32)
        per_tensor = bool(np.all(ws == ws[0]))
        w_scale = ws[:1].reshape(()) if per_tensor else ws
        wn = self.b.const(f"{label}.weight", w, np.int8)
        wsn = self.b.const(f"{label}.weight_scale", w_scale, np.float32)
        wzn = self.b.const(f"{label}.weight_zero_point", np.zeros(w_scale.shape, np.int8))
        bn = self.b.const(f"{label}.bias", c["bias"], np.int32)
        bias_scale = (np.float32(x_spec.scale) * ws).astype(np.float32)  # ONNX's bias convention
        return wn, wsn, wzn, bn, bias_scale, per_tensor

    def _conv_core(self, step, label, x, y, attrs):
        """x (quantized, NCHW, or rows [M, K] for a Gemm: attrs None) -> y (quantized), clamped to
        the activation's range."""
        from ..numerics.clamp import activation_range

        x_spec, y_spec = self.spec(step.inputs[0]), self.spec(step.output)
        wn, wsn, wzn, bn, bias_scale, per_tensor = self._weights(step, label, x_spec)
        lo, hi = activation_range(step.attrs.get("activation"), np.float32(y_spec.scale), y_spec.zero_point,
                                  y_spec.dtype)
        info = np.iinfo(y_spec.dtype)
        free = (lo, hi) == (info.min, info.max)
        pre = y if free else self.tmp(f"{y}.pre_act")
        gemm = attrs is None
        if self.fmt == "qoperator" and gemm:
            self.b.node("QGemm", [x, *self.qp(step.inputs[0]), wn, wsn, wzn, bn, *self.qp(step.output)], [pre],
                        label, domain=MS, transB=1)
        elif self.fmt == "qoperator":
            self.b.node("QLinearConv", [x, *self.qp(step.inputs[0]), wn, wsn, wzn, *self.qp(step.output), bn],
                        [pre], label, **attrs)
        else:
            axis = {} if per_tensor else {"axis": 0}
            wd = self.tmp(f"{label}.weight_dq")
            self.b.node("DequantizeLinear", [wn, wsn, wzn], [wd], f"{label}.weight_dq", **axis)
            bs = self.b.const(f"{label}.bias_scale", bias_scale[:1].reshape(()) if per_tensor else bias_scale)
            bz = self.b.const(f"{label}.bias_zero_point", np.zeros(() if per_tensor else bias_scale.shape, np.int32))
            bd = self.tmp(f"{label}.bias_dq")
            self.b.node("DequantizeLinear", [bn, bs, bz], [bd], f"{label}.bias_dq", **axis)
            f = self.tmp(f"{y}.f32")
            if gemm:
                self.b.node("Gemm", [self.dq(x, label, step.inputs[0]), wd, bd], [f], label, transB=1)
            else:
                self.b.node("Conv", [self.dq(x, label, step.inputs[0]), wd, bd], [f], label, **attrs)
            if free and step.attrs.get("activation") == "relu":
                # the canonical QDQ form: ORT removes a Relu before a Q whose zero point is the minimum
                r = self.tmp(f"{y}.relu")
                self.b.node("Relu", [f], [r], f"{label}.relu")
                f = r
            self.b.node("QuantizeLinear", [f, *self.qp(step.output)], [pre], f"{label}.q")
        if not free:
            # eightbit clamps the requantized value to [Q(lo), Q(hi)]: an integer Clip is exactly that
            self.b.node("Clip", [pre, self.int_const(f"{label}.act_min", lo, y_spec.dtype),
                                 self.int_const(f"{label}.act_max", hi, y_spec.dtype)], [y], f"{label}.act")

    def _conv(self, step, label):
        a = step.attrs
        w = np.asarray(step.consts["w"])
        attrs = dict(kernel_shape=list(w.shape[2:]), strides=list(a.get("strides", (1, 1))),
                     pads=list(a.get("pads", (0, 0, 0, 0))), dilations=list(a.get("dilations", (1, 1))),
                     group=int(a.get("group", 1)))
        self._conv_core(step, label, step.inputs[0], step.output, attrs)

    def _linear(self, step, label):
        # Gemm(transB=1) on rows [M, K]: ORT fuses DQ -> Gemm -> Q into QGemm, whose requantization
        # is QLinearConv's (the plan's linear is QLinearConv 1x1), for uint8 and int8 activations
        x, y = step.inputs[0], step.output
        rank = len(self.spec(x).shape)
        x2, y2 = x, y
        if rank != 2:
            x2, y2 = self.tmp(f"{x}.rows"), self.tmp(f"{y}.rows")
            k = int(self.spec(x).shape[-1])
            self.b.node("Reshape", [x, self.int_const(f"{label}.rows_shape", [-1, k], np.int64)], [x2],
                        f"{label}.to_rows")
        self._conv_core(step, label, x2, y2, None)
        if rank != 2:
            shape = [-1] + [int(d) for d in self.spec(y).shape[1:]]  # only the batch is free
            self.b.node("Reshape", [y2, self.int_const(f"{label}.out_shape", shape, np.int64)], [y],
                        f"{label}.from_rows")

    def _binary(self, step, label):
        a, b = step.inputs
        y = step.output
        ins = [a, b]
        mixed = len(self.spec(y).shape) == 4 and any(len(self.spec(n).shape) != 4 for n in ins)
        if mixed:
            # the plan broadcasts in NHWC: do the same, between transposes of the 4-D operands
            ins = [self._transpose(n, (0, 2, 3, 1), label) if len(self.spec(n).shape) == 4 else n for n in ins]
        out = self.tmp(f"{y}.nhwc") if mixed else y
        if self.fmt == "qoperator":
            op = "QLinearAdd" if step.op == "add" else "QLinearMul"
            self.b.node(op, [ins[0], *self.qp(a), ins[1], *self.qp(b), *self.qp(y)], [out], label, domain=MS)
        else:
            fa = self.dq(ins[0], label, a)
            fb = self.dq(ins[1], label, b)
            f = self.tmp(f"{y}.f32")
            self.b.node("Add" if step.op == "add" else "Mul", [fa, fb], [f], label)
            self.b.node("QuantizeLinear", [f, *self.qp(y)], [out], f"{label}.q")
        if mixed:
            self.b.node("Transpose", [out], [y], f"{label}.to_nchw", perm=[0, 3, 1, 2])

    _add = _mul = _binary

    def _transpose(self, name, perm, label):
        out = self.tmp(f"{name}.nhwc")
        self.b.node("Transpose", [name], [out], f"{label}.to_nhwc_{name}", perm=list(perm))
        return out

    def _unary_qdq(self, step, label, op_type, domain="", **attrs):
        """DQ -> op -> Q, with the output's qparams."""
        x, y = step.inputs[0], step.output
        f = self.tmp(f"{y}.f32")
        self.b.node(op_type, [self.dq(x, label)], [f], label, domain=domain, **attrs)
        self.q(f, y, label)

    def _max_pool(self, step, label):
        a = step.attrs
        attrs = dict(kernel_shape=list(a["kernel"]), strides=list(a["strides"]), pads=list(a["pads"]),
                     dilations=list(a.get("dilations", (1, 1))), ceil_mode=int(a.get("ceil_mode", 0)))
        if self.fmt == "qoperator":  # max commutes with the monotone dequantization: integer MaxPool
            self.b.node("MaxPool", [step.inputs[0]], [step.output], label, **attrs)
        else:
            self._unary_qdq(step, label, "MaxPool", **attrs)

    def _avg_pool(self, step, label):
        a = step.attrs
        attrs = dict(kernel_shape=list(a["kernel"]), strides=list(a["strides"]), pads=list(a["pads"]),
                     ceil_mode=int(a.get("ceil_mode", 0)), count_include_pad=int(a.get("count_include_pad", 1)))
        if self.fmt == "qoperator":
            x, y = step.inputs[0], step.output
            self.b.node("QLinearAveragePool", [x, *self.qp(x), *self.qp(y)], [y], label, domain=MS,
                        channels_last=0, **attrs)
        else:
            self._unary_qdq(step, label, "AveragePool", **attrs)

    def _global_avg_pool(self, step, label):
        if self.fmt == "qoperator":
            x, y = step.inputs[0], step.output
            self.b.node("QLinearGlobalAveragePool", [x, *self.qp(x), *self.qp(y)], [y], label, domain=MS,
                        channels_last=0)
        else:
            self._unary_qdq(step, label, "GlobalAveragePool")

    def _concat(self, step, label):
        y = step.output
        axis = int(step.attrs["axis"])
        if len(self.spec(y).shape) == 4:
            axis = _NHWC_TO_NCHW_AXIS[axis]
        if self.fmt == "qoperator":
            ins = [v for x in step.inputs for v in (x, *self.qp(x))]
            self.b.node("QLinearConcat", [*self.qp(y), *ins], [y], label, domain=MS, axis=axis)
        else:
            f = self.tmp(f"{y}.f32")
            self.b.node("Concat", [self.dq(x, label) for x in step.inputs], [f], label, axis=axis)
            self.q(f, y, label)

    def _reshape(self, step, label):
        # the plan's reshape is the float graph's (NCHW order), which is ONNX's Reshape here;
        # dim 0 (the batch) is copied
        shape = [0] + [-1 if d is None else int(d) for d in step.attrs["shape"][1:]]
        self.b.node("Reshape", [step.inputs[0], self.int_const(f"{label}.shape", shape, np.int64)],
                    [step.output], label)

    def _softmax(self, step, label):
        self.b.node("Softmax", [step.inputs[0]], [step.output], label, axis=int(step.attrs["axis"]))

    def _float(self, step, label):
        ins = [self.spec(n) for n in step.inputs]
        emit_float_node(self.b, step.attrs["op"], label, list(step.inputs), step.output, step.attrs["attrs"],
                        step.consts, [len(s.shape) for s in ins])

    def _lut(self, step, label):
        x, y = step.inputs[0], step.output
        fn = None if self.lut == "table" else _lut_function(step)
        if fn is None:
            # the table itself: Gather indexes by the byte; int8 codes are negative indices, which
            # Gather counts from the end, exactly as the byte value 256 + q
            idx = self.tmp(f"{x}.index")
            self.b.node("Cast", [x], [idx], f"{label}.index", to=6)  # INT32
            table = self.b.const(f"{label}.table", step.consts["table"])
            self.b.node("Gather", [table, idx], [y], label, axis=0)
            return
        op_type, attrs, clip = fn
        name = step.attrs.get("function")
        if self.fmt == "qoperator" and name in ("sigmoid", "leaky_relu"):
            op = "QLinearSigmoid" if name == "sigmoid" else "QLinearLeakyRelu"
            self.b.node(op, [x, *self.qp(x), *self.qp(y)], [y], label, domain=MS, **attrs)
            return
        f = self.tmp(f"{y}.f32")
        ins = [self.dq(x, label)]
        if clip is not None:
            ins += ["" if v is None else self.b.const(f"{label}.{k}", np.float32(v))
                    for k, v in zip(("min", "max"), clip)]
        self.b.node(op_type, ins, [f], label, **attrs)
        self.q(f, y, label)

    def _dynamic_linear(self, step, label):
        """Per-row DynamicQuantizeLinear (reference.dynamic_quantize_rows) in float ops, then
        MatMulInteger and the dequantization of reference.quantized_linear, op for op."""
        b, c = self.b, step.consts
        x, y = step.inputs[0], step.output
        w = np.asarray(c["w"])
        o, k = w.shape
        f32 = lambda v: b.const(f"{label}.c{v:g}", np.float32(v))  # noqa: E731

        def n(op, ins, name, **attrs):
            out = self.tmp(f"{y}.{name}")
            b.node(op, ins, [out], f"{label}.{name}", **attrs)
            return out

        rows = n("Reshape", [x, self.int_const(f"{label}.rows_shape", [-1, k], np.int64)], "rows")
        mn = n("Min", [self._reduce("ReduceMin", rows, label, y), f32(0.0)], "row_min")
        mx = n("Max", [self._reduce("ReduceMax", rows, label, y), f32(0.0)], "row_max")
        spread = n("Div", [n("Sub", [mx, mn], "spread"), f32(255.0)], "scale_raw")
        scale = n("Where", [n("Equal", [mx, mn], "flat"), f32(1.0), spread], "row_scale")
        initial = n("Sub", [f32(0.0), n("Div", [mn, scale], "min_over_scale")], "zp_initial")
        zp = n("Round", [n("Clip", [initial, f32(0.0), f32(255.0)], "zp_clamped")], "row_zero_point")
        # QuantizeLinear per row: clamp(rne(x / scale) + zp, 0, 255) (integer bounds: same as
        # clamping before rounding)
        v = n("Add", [n("Round", [n("Div", [rows, scale], "x_over_scale")], "x_rounded"), zp], "x_shifted")
        xq = n("Cast", [n("Clip", [v, f32(0.0), f32(255.0)], "x_clamped")], "x_q", to=2)  # UINT8
        wt = self.int_const(f"{label}.weight_t", w.T, np.int8)
        acc = n("MatMulInteger", [xq, wt], "acc_raw")
        wsum = self.int_const(f"{label}.weight_col_sum", w.astype(np.int32).sum(axis=1), np.int32)
        corr = n("Mul", [n("Cast", [zp], "zp_i32", to=6), wsum], "zp_correction")
        accf = n("Cast", [n("Sub", [acc, corr], "acc")], "acc_f32", to=1)  # FLOAT
        sc = n("Mul", [scale, b.const(f"{label}.weight_scale", np.asarray(c["w_scale"], np.float32))], "out_scale")
        out = n("Add", [n("Mul", [accf, sc], "scaled"), b.const(f"{label}.bias", np.asarray(c["bias"], np.float32))],
                "biased")
        if step.attrs.get("activation") == "relu":
            out = n("Relu", [out], "relu")
        shape = [-1] + [int(d) for d in self.spec(y).shape[1:]]
        b.node("Reshape", [out, self.int_const(f"{label}.out_shape", shape, np.int64)], [y], label)

    def _reduce(self, op, x, label, y):
        """ReduceMin / ReduceMax over axis 1 keeping it ([M, 1]); axes became an input in opset 18."""
        out = self.tmp(f"{y}.{op[6:].lower()}_raw")
        if self.b.opset >= 18:
            self.b.node(op, [x, self.int_const(f"{label}.axes", [1], np.int64)], [out], f"{label}.{op}", keepdims=1)
        else:
            self.b.node(op, [x], [out], f"{label}.{op}", axes=[1], keepdims=1)
        return out
