"""Shared pieces of the convolution benchmark (issue 3): layers, data, baselines, the table.

Used by the pytest-benchmark suite (``bench_conv.py``) and the plain script ``conv_table.py``; the
sessions, the paired timing and the machine description come from ``_baselines.py``. Nothing here
times anything.

Ours: ``eb.pack_conv_weights(w, 0, group=g)`` once, then ``eb.ops.qlinear_conv(x_nhwc, x_scale,
x_zp, packed_w, w_scale, 0, y_scale, y_zp, B, pads=..., strides=..., group=g, layout="NHWC")``:
uint8 NHWC in, uint8 NHWC out, int8 weights with one scale per output channel, int32 bias,
float requantization (ONNX Runtime's), one thread unless the case says otherwise.

Baselines, the same layer and the same quantization, built in-process as one-node models with
weights, scales, zero points and bias as initializers (so ORT prepacks the weights), in sessions
made by ``_baselines.ort_session`` (intra_op 1, inter_op 1, sequential, ORT_ENABLE_ALL):

* ``ort-i8-nchw``: ONNX ``QLinearConv`` on the uint8 NCHW tensor, as an exported model has it.
  ORT's NHWC transformer rewrites it into Transpose -> ``com.microsoft.QLinearConv``
  (channels_last=1) -> Transpose, so every call pays two transposes around the NHWC kernel.
* ``ort-i8-nhwc``: ``com.microsoft.QLinearConv`` with ``channels_last=1``, fed the NHWC tensor
  ours gets: the same MLAS kernel without the transposes (ORT 1.32 accepts the node directly).
  The faster of the two, per case and in the same cycles, is THE "ORT i8" baseline; the table
  says which one won and shows the other's time.
* ``ort-f32``: ONNX fp32 ``Conv``, NCHW, on the dequantized tensors ((x - x_zp) * x_scale,
  w * w_scale, B * x_scale * w_scale); ORT's NCHWc transformer runs it as ReorderInput ->
  ``com.microsoft.nchwc.Conv`` -> ReorderOutput (the stem, 3 input channels, without ReorderInput).

The graphs ORT actually ran (after its optimizations) are listed under the table.

Data: x uint8 uniform in [0, 255] with x_zero_point 119, x_scale 0.02; w int8 uniform in
[-127, 127], w_zero_point 0, w_scale per output channel in [0.005, 0.015]; B int32 of the order of
the accumulator; y_zero_point 128 and a y_scale that spreads the output over [0, 255] (1-2 % of
the outputs saturate). Correctness, once per case, outside timing: our output
must equal both ORT QLinearConv variants' bit for bit ("exact" in the table); if it does not, the
note says whether eightbit.reference sides with ours or with ORT.
"""
from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from dataclasses import dataclass

import numpy as np

import _baselines as B

# --------------------------------------------------------------------------------------------
# Layers and cases
# --------------------------------------------------------------------------------------------

PREFIX = "conv/"          # every measurement key of this table starts with it
I8, F32 = "ORT i8", "ORT f32"


@dataclass(frozen=True)
class ConvLayer:
    id: str                # for pytest ids, -k and --layers
    label: str             # for the table
    c_in: int
    c_out: int
    hw: int                # input height = width
    k: int                 # kernel height = width
    stride: int = 1
    pad: int = 0           # on every side
    group: int = 1
    targets: tuple = ()    # ((column, min ratio), ...)
    peak_target: float | None = None   # min fraction of the VNNI probe's GOP/s (avx512vnni path)

    @property
    def out_hw(self) -> int:
        return (self.hw + 2 * self.pad - self.k) // self.stride + 1

    @property
    def pads(self) -> list:
        return [self.pad] * 4

    @property
    def strides(self) -> list:
        return [self.stride] * 2

    def ops(self, batch: int) -> float:
        """2 x multiply-adds of one call."""
        return 2.0 * batch * self.c_out * self.out_hw ** 2 * (self.c_in // self.group) * self.k ** 2


_3X3 = ((I8, 1.0), (F32, 3.5))
PEAK = 0.93   # issue 15: the forced avx512vnni path at >= 93 % of the VNNI probe (3x3 @56/28/14)

LAYERS = [
    ConvLayer("3x3-64-56", "3x3 64->64 @56", 64, 64, 56, 3, pad=1, targets=_3X3, peak_target=PEAK),
    ConvLayer("3x3-128-28", "3x3 128->128 @28", 128, 128, 28, 3, pad=1, targets=_3X3,
              peak_target=PEAK),
    ConvLayer("3x3-256-14", "3x3 256->256 @14", 256, 256, 14, 3, pad=1, targets=_3X3,
              peak_target=PEAK),
    ConvLayer("3x3-512-7", "3x3 512->512 @7", 512, 512, 7, 3, pad=1, targets=_3X3),
    ConvLayer("1x1-256-64-56", "1x1 256->64 @56", 256, 64, 56, 1, targets=((I8, 1.0),)),
    ConvLayer("dw3x3-128-56", "dw 3x3 128 @56", 128, 128, 56, 3, pad=1, group=128,
              targets=((I8, 1.2),)),
    ConvLayer("stem7x7s2-3-64-224", "7x7/2 3->64 @224", 3, 64, 224, 7, stride=2, pad=3,
              targets=((I8, 1.8),)),
]
BATCHES = (1, 8)


@dataclass(frozen=True)
class Case:
    layer: ConvLayer
    batch: int
    threads: int = 1       # > 1: an informative row, ours and ORT on that many threads

    @property
    def id(self) -> str:
        return f"{self.layer.id}-b{self.batch}" + (f"-{self.threads}t" if self.threads > 1 else "")

    def key(self, impl: str) -> str:
        """Measurement key, e.g. ``conv/3x3-64-56-b1/ours`` or ``conv/3x3-64-56-b1/ort-f32``."""
        return f"{PREFIX}{self.id}/{impl}"


CASES = [Case(layer, batch) for layer in LAYERS for batch in BATCHES]
THREADED_CASES = [Case(LAYERS[0], 8, threads=2)]   # informative; runs last (two_threads)

I8_KINDS = ("ort-i8-nchw", "ort-i8-nhwc")
BASELINE_KINDS = I8_KINDS + ("ort-f32",)
VARIANT = {"ort-i8-nchw": "NCHW", "ort-i8-nhwc": "NHWC"}


def case_id(case: Case) -> str:
    return case.id


def select(cases, layers=None, batches=None) -> list:
    """Cases whose layer id or label contains one of ``layers`` and whose batch is in ``batches``."""
    return [c for c in cases
            if (not layers or any(s in c.layer.id or s in c.layer.label for s in layers))
            and (not batches or c.batch in batches)]


# --------------------------------------------------------------------------------------------
# Data (deterministic, cached)
# --------------------------------------------------------------------------------------------

X_SCALE = np.float32(0.02)
X_ZP = np.uint8(B.A_ZERO_POINT)   # 119: non-trivial, so the zero-point compensation runs
W_ZP = np.int8(0)
Y_ZP = np.uint8(128)


@dataclass(frozen=True)
class ConvData:
    x: np.ndarray          # uint8 NCHW
    x_nhwc: np.ndarray     # the same, NHWC (contiguous)
    w: np.ndarray          # int8 OIHW
    w_scale: np.ndarray    # float32 [C_out]
    bias: np.ndarray       # int32 [C_out]
    y_scale: np.float32


@functools.lru_cache(maxsize=None)
def conv_data(layer: ConvLayer, batch: int) -> ConvData:
    rng = np.random.default_rng([layer.c_in, layer.c_out, layer.hw, layer.k, layer.group, batch])
    x = rng.integers(0, 256, size=(batch, layer.c_in, layer.hw, layer.hw), dtype=np.uint8)
    w = rng.integers(-127, 128, size=(layer.c_out, layer.c_in // layer.group, layer.k, layer.k),
                     dtype=np.int8)
    w_scale = rng.uniform(0.005, 0.015, layer.c_out).astype(np.float32)
    # accumulator spread: sqrt(K) * std(x - zp) * std(w), both ~73 for uniform bytes
    spread = int(np.sqrt(w[0].size) * 74.0 * 73.0)
    bias = rng.integers(-spread, spread, layer.c_out, dtype=np.int32)
    y_scale = np.float32(X_SCALE * 0.01 * spread / 40.0)   # +-3 sigma ~ +-120 steps around y_zp
    return ConvData(x, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w, w_scale, bias, y_scale)


@functools.lru_cache(maxsize=None)
def conv_data_f32(layer: ConvLayer, batch: int):
    """The dequantized tensors (x NCHW, w OIHW, bias) of conv_data, float32."""
    d = conv_data(layer, batch)
    x = (d.x.astype(np.float32) - np.float32(X_ZP)) * X_SCALE
    w = d.w.astype(np.float32) * d.w_scale[:, None, None, None]
    bias = d.bias.astype(np.float32) * X_SCALE * d.w_scale
    return x, w, bias


def nhwc_shape(layer: ConvLayer, batch: int, output=False) -> list:
    return ([batch, layer.out_hw, layer.out_hw, layer.c_out] if output
            else [batch, layer.hw, layer.hw, layer.c_in])


def nchw_shape(layer: ConvLayer, batch: int, output=False) -> list:
    n, h, w, c = nhwc_shape(layer, batch, output)
    return [n, c, h, w]


# --------------------------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------------------------

def qlinear_conv_model(layer: ConvLayer, batch: int, layout: str):
    """One QLinearConv node: ONNX's on NCHW, or com.microsoft's with channels_last=1 on NHWC."""
    from onnx import TensorProto, helper, numpy_helper
    d = conv_data(layer, batch)
    attrs = dict(kernel_shape=[layer.k, layer.k], pads=layer.pads, strides=layer.strides,
                 group=layer.group)
    inputs = ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "B"]
    if layout == "NHWC":
        node = helper.make_node("QLinearConv", inputs, ["y"], domain="com.microsoft",
                                channels_last=1, **attrs)
        domains, shape = (("", 17), ("com.microsoft", 1)), nhwc_shape
    else:
        node = helper.make_node("QLinearConv", inputs, ["y"], **attrs)
        domains, shape = (("", 17),), nchw_shape
    consts = {"x_scale": X_SCALE, "x_zp": X_ZP, "w": d.w, "w_scale": d.w_scale, "w_zp": W_ZP,
              "y_scale": d.y_scale, "y_zp": Y_ZP, "B": d.bias}
    return B.one_node_model(
        node,
        [helper.make_tensor_value_info("x", TensorProto.UINT8, shape(layer, batch))],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, shape(layer, batch, output=True))],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()],
        domains=domains,
    )


def conv_f32_model(layer: ConvLayer, batch: int):
    """One fp32 Conv node, NCHW, weights and bias initializers."""
    from onnx import TensorProto, helper, numpy_helper
    _, w, bias = conv_data_f32(layer, batch)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[layer.k, layer.k],
                            pads=layer.pads, strides=layer.strides, group=layer.group)
    return B.one_node_model(
        node,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, nchw_shape(layer, batch))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, nchw_shape(layer, batch, output=True))],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")],
    )


def _model_and_feed(layer: ConvLayer, batch: int, kind: str):
    if kind == "ort-f32":
        return conv_f32_model(layer, batch), {"x": conv_data_f32(layer, batch)[0]}
    d = conv_data(layer, batch)
    layout = VARIANT[kind]
    return qlinear_conv_model(layer, batch, layout), {"x": d.x_nhwc if layout == "NHWC" else d.x}


@functools.lru_cache(maxsize=None)
def ort_conv(layer: ConvLayer, batch: int, kind: str, threads: int = 1):
    """(session, feed) of a baseline kind: 'ort-i8-nchw', 'ort-i8-nhwc' or 'ort-f32'."""
    model, feed = _model_and_feed(layer, batch, kind)
    return B.ort_session(model, threads), feed


def baseline_fn(case: Case, kind: str):
    """The call to time: ``session.run(None, feed)``, inputs built beforehand."""
    return B.ort_call(*ort_conv(case.layer, case.batch, kind, case.threads))


@functools.lru_cache(maxsize=None)
def ort_output_nhwc(layer: ConvLayer, batch: int, kind: str) -> np.ndarray:
    sess, feed = ort_conv(layer, batch, kind)
    y = sess.run(None, feed)[0]
    return y if kind == "ort-i8-nhwc" else np.ascontiguousarray(y.transpose(0, 2, 3, 1))


def _node_desc(node) -> str:
    from onnx import helper
    name = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return name + ("(channels_last=1)" if attrs.get("channels_last") == 1 else "")


@functools.lru_cache(maxsize=None)
def ort_graph(layer: ConvLayer, kind: str) -> str:
    """The nodes ORT runs for a baseline, after its graph optimizations (batch 1)."""
    import onnx
    model, _ = _model_and_feed(layer, 1, kind)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        B.ort_session(model, 1, optimized_model_path=path)
        nodes = onnx.load(path).graph.node
    return " -> ".join(_node_desc(n) for n in nodes)


# --------------------------------------------------------------------------------------------
# eightbit and the checks
# --------------------------------------------------------------------------------------------

def conv_ours_fn(eb, case: Case):
    """Pack the weights outside the timed region; returns the call to time."""
    layer, d = case.layer, conv_data(case.layer, case.batch)
    packed = eb.pack_conv_weights(d.w, W_ZP, group=layer.group)
    qlinear_conv = eb.ops.qlinear_conv
    args = (d.x_nhwc, X_SCALE, X_ZP, packed, d.w_scale, W_ZP, d.y_scale, Y_ZP, d.bias)
    kwargs = dict(pads=layer.pads, strides=layer.strides, group=layer.group, layout="NHWC")
    return lambda: qlinear_conv(*args, **kwargs)


def reference_nhwc(layer: ConvLayer, batch: int) -> np.ndarray:
    """eightbit.reference.qlinear_conv (pure NumPy, slow): the tie-breaker on a mismatch."""
    from eightbit import reference
    d = conv_data(layer, batch)
    return reference.qlinear_conv(d.x_nhwc, X_SCALE, X_ZP, d.w, d.w_scale, W_ZP, d.y_scale, Y_ZP,
                                  d.bias, pads=layer.pads, strides=layer.strides,
                                  group=layer.group, layout="NHWC")


def _mismatch(a, b) -> str:
    diff = a.astype(np.int32) - b.astype(np.int32)
    first = tuple(int(i) for i in np.argwhere(diff)[0])
    return (f"{np.count_nonzero(diff)} of {a.size} differ, max |diff| {int(np.abs(diff).max())}, "
            f"first at NHWC {first}: {int(a[first])} vs {int(b[first])}")


def check_conv(out, case: Case):
    """(ok, detail): our NHWC output against both ORT QLinearConv variants, bit for bit.

    ok is None (unverified) without ONNX Runtime. On a mismatch, eightbit.reference says who is
    off."""
    layer, batch = case.layer, case.batch
    out = np.asarray(out)
    want = tuple(nhwc_shape(layer, batch, output=True))
    if out.dtype != np.uint8 or out.shape != want:
        return False, f"got {out.dtype}{out.shape}, want uint8{want}"
    if not B.have_ort():
        return None, "unverified: onnxruntime not installed"
    problems = []
    for kind in I8_KINDS:
        ort_out = ort_output_nhwc(layer, batch, kind)
        if not np.array_equal(out, ort_out):
            ref = reference_nhwc(layer, batch)
            side = ("eightbit.reference agrees with ours" if np.array_equal(ref, out) else
                    "eightbit.reference agrees with ORT" if np.array_equal(ref, ort_out) else
                    "eightbit.reference agrees with neither")
            problems.append(f"vs ORT {VARIANT[kind]}: {_mismatch(out, ort_out)} ({side})")
    if problems:
        return False, "; ".join(problems)
    return True, "bit-exact vs ORT QLinearConv, NCHW and NHWC"


def check_baseline(case: Case, kind: str):
    """Sanity of a baseline on its own: shape and dtype; the fp32 Conv, requantized, within one
    step of ORT's QLinearConv (so it computes the same layer)."""
    layer, batch = case.layer, case.batch
    out = baseline_fn(case, kind)()[0]
    want = tuple((nhwc_shape if kind == "ort-i8-nhwc" else nchw_shape)(layer, batch, output=True))
    dtype = np.float32 if kind == "ort-f32" else np.uint8
    assert out.dtype == dtype and out.shape == want, f"{kind}: got {out.dtype}{out.shape}"
    if kind == "ort-f32":
        y_scale = conv_data(layer, batch).y_scale
        q = np.clip(np.rint(out / y_scale) + float(Y_ZP), 0, 255).transpose(0, 2, 3, 1)
        err = np.abs(q - ort_output_nhwc(layer, batch, "ort-i8-nhwc")).max()
        assert err <= 1, f"ort-f32 requantized differs from ORT QLinearConv by {err} steps"


def verify(results, case: Case, fn) -> bool:
    """Check ours once, outside timing; record the verdict. False on a mismatch."""
    ok, detail = check_conv(fn(), case)
    results.verify(case.key("ours"), ok, detail)
    return ok is not False


@contextlib.contextmanager
def case_threads(eb, case: Case):
    """eightbit on the case's thread count for its duration (the suite runs on 1 thread)."""
    if case.threads == 1:
        yield
    else:
        with B.eb_threads(eb, case.threads):
            yield


def paired_baselines(eb, case: Case, ours) -> dict:
    """{measurement key: call} timed beside ours. For a multi-thread case, ours on 1 thread too
    (switched untimed before and after its blocks)."""
    out = {}
    if case.threads > 1:
        out[case.key("ours-1t")] = (ours, lambda: eb.set_num_threads(1),
                                    lambda: eb.set_num_threads(case.threads))
    if B.have_ort():
        out.update({case.key(kind): baseline_fn(case, kind) for kind in BASELINE_KINDS})
    return out


# --------------------------------------------------------------------------------------------
# The VNNI throughput probe (issue 15)
# --------------------------------------------------------------------------------------------

VNNI_PROBE_ITERATIONS = 20_000_000   # x 12 vpdpbusd of 64 MACs: ~35 ms at ~870 GOP/s
VNNI_PROBE_CALLS = 3


def vnni_probe_samples(eb, calls: int = VNNI_PROBE_CALLS) -> list:
    """int8 ops per second of eightbit's VNNI throughput probe (``_core.vnni_probe``: a loop of
    12 independent ``vpdpbusd`` zmm, one core, 2 ops per MAC), ``calls`` runs of
    VNNI_PROBE_ITERATIONS; [] unless eightbit's active ISA is avx512vnni (EIGHTBIT_ISA=avx512vnni
    on a CPU with AMX, where the default is amx) or the CPU lacks AVX-512 VNNI (probe 0)."""
    if eb is None or eb.cpu_info().get("isa") != "avx512vnni":
        return []
    from eightbit import _core
    out = [float(_core.vnni_probe(VNNI_PROBE_ITERATIONS)) for _ in range(calls)]
    return [x for x in out if x > 0]


def record_vnni_probe(results, when: str, samples: list):
    """Keep probe samples on the Results of the run, under "before" / "after" the cases."""
    if samples:
        results.__dict__.setdefault("vnni_probe", {}).setdefault(when, []).extend(samples)


def vnni_peak(results):
    """The probe's peak (max over every sample of the run), ops/s, or None when not measured."""
    probe = getattr(results, "vnni_probe", None) or {}
    samples = [x for v in probe.values() for x in v]
    return max(samples) if samples else None


def vnni_probe_line(results) -> str:
    probe = getattr(results, "vnni_probe", None) or {}
    if not probe:
        return ""
    parts = [f"{when} " + "/".join(f"{x / 1e9:.0f}" for x in v) for when, v in probe.items()]
    return (f"VNNI probe (independent vpdpbusd zmm, one core, this process, "
            f"{VNNI_PROBE_ITERATIONS // 1_000_000}M iterations a call): {'; '.join(parts)} GOP/s; "
            f"peak = max {vnni_peak(results) / 1e9:.0f} GOP/s")


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

HEADERS = ["layer", "batch", "ours us", "GOP/s", "% VNNI peak", "ORT i8 us", "variant", "xORT i8",
           "other variant us", "ORT f32 us", "xORT f32", "check", "target", "result",
           "peak target", "peak result"]


def has_conv(results) -> bool:
    return any(k.startswith(PREFIX) for k in (*results.times, *results.verified))


def _baseline_time(results, case: Case, kind: str):
    """(median, paired?): paired with ours if measured so, else from its own bench run."""
    t = results.times.get(B.paired_key(case.key("ours"), case.key(kind)))
    if t is not None:
        return t, True
    return results.times.get(case.key(kind)), False


def _row(results, case: Case):
    """(cells, notes, winning ORT i8 variant or None) of one case."""
    layer, notes = case.layer, []
    ours = results.times.get(case.key("ours"))
    times, paired = {}, True
    for kind in BASELINE_KINDS:
        times[kind], p = _baseline_time(results, case, kind)
        paired &= p or times[kind] is None
    i8 = {k: times[k] for k in I8_KINDS if times[k] is not None}
    best = min(i8, key=i8.get) if i8 else None
    other = next((k for k in i8 if k != best), None)
    ratio = {I8: (i8[best] / ours if best and ours else None),
             F32: (times["ort-f32"] / ours if times["ort-f32"] and ours else None)}
    ok, detail = results.verified.get(case.key("ours"), (None, ""))
    check = {True: "exact", False: "WRONG", None: "-"}[ok]
    if ok is False:
        notes.append(f"{case.id}: result mismatch: {detail}")
    if not paired and ours is not None:
        notes.append(f"{case.id}: baselines not paired with ours (their own bench runs)")
    if case.threads > 1:
        target, result = f"info ({case.threads} threads)", "WRONG" if ok is False else "-"
        one = results.times.get(B.paired_key(case.key("ours"), case.key("ours-1t")))
        notes.append(f"{case.id}: ours and ORT on {case.threads} threads"
                     + (f"; ours on 1 thread {B.fmt_us(one)} us, {one / ours:.2f}x speed-up"
                        if one and ours else ""))
    else:
        target = ", ".join(f">={t:g}x {c}" for c, t in layer.targets)
        result = _verdict(results, ok, ours, ratio, layer.targets)
    peak = vnni_peak(results)
    frac = (layer.ops(case.batch) / ours / peak
            if ours and peak and case.threads == 1 else None)
    peak_target = "-" if layer.peak_target is None or case.threads > 1 else \
        f">={layer.peak_target * 100:g}%"
    if peak_target == "-" or frac is None:
        peak_result = "WRONG" if ok is False and peak_target != "-" else "-"
    else:
        peak_result = "WRONG" if ok is False else "PASS" if frac >= layer.peak_target else "FAIL"
    cells = [layer.label + (f" {case.threads}T" if case.threads > 1 else ""), case.batch,
             B.fmt_us(ours), "-" if ours is None else f"{layer.ops(case.batch) / ours / 1e9:.0f}",
             "-" if frac is None else f"{frac * 100:.1f}%",
             B.fmt_us(i8.get(best)), VARIANT.get(best, "-"), B.fmt_ratio(ratio[I8]),
             B.fmt_us(i8.get(other)), B.fmt_us(times["ort-f32"]), B.fmt_ratio(ratio[F32]),
             check, target, result, peak_target, peak_result]
    return cells, notes, best


def _verdict(results, ok, ours, ratio, targets) -> str:
    if ok is False:
        return "WRONG"
    if not results.isas & {"avx512vnni", "avxvnni"}:
        return "n/a (no VNNI)"
    if ours is None:
        return "not run" + (" (no eightbit)" if results.eb_unavailable else "")
    if any(ratio[c] is None for c, _ in targets):
        return "incomplete"
    verdict = "PASS" if all(ratio[c] >= t for c, t in targets) else "FAIL"
    return verdict + (" (unverified)" if ok is None else "")


def _active_isa() -> str:
    eb, why = B.import_eightbit()
    return "none (eightbit not importable)" if eb is None else str(eb.cpu_info().get("isa"))


def _graph_notes(layers) -> list:
    """Which graph ORT ran per baseline kind, grouped over layers."""
    if not B.have_ort():
        return []
    notes = []
    for kind in BASELINE_KINDS:
        graphs = {}
        for layer in layers:
            try:
                graphs.setdefault(ort_graph(layer, kind), []).append(layer.label)
            except Exception as e:  # informative only
                graphs.setdefault(f"unknown ({type(e).__name__}: {e})", []).append(layer.label)
        for graph, labels in graphs.items():
            where = "all layers" if len(labels) == len(layers) else ", ".join(labels)
            notes.append(f"ORT graph, {kind} ({where}): {graph}")
    return notes


def render(results) -> str:
    """The convolution target table for the cases measured (or verified)."""
    measured = {k.split("~")[0] for k in (*results.times, *results.verified)}
    cases = [c for c in CASES + THREADED_CASES
             if any(c.key(kind) in measured for kind in ("ours",) + BASELINE_KINDS)]
    rows, notes, wins = [], [], {}
    for case in cases:
        cells, n, best = _row(results, case)
        rows.append(cells)
        notes += n
        if best is not None and case.threads == 1:
            wins.setdefault(VARIANT[best], []).append(case.id)
    text = B.format_table(HEADERS, rows, left=(0, 6, -5, -4, -3, -2, -1))
    text.append("ratio = baseline time / our time (higher is better); times are medians over the "
                "same cycles (~20 ms blocks of each implementation, alternating), single thread "
                "unless stated; GOP/s = 2*MACs / our time. ORT i8 = the faster ORT QLinearConv "
                "variant in that case (NCHW: ONNX node, ORT adds transposes; NHWC: "
                "com.microsoft.QLinearConv channels_last=1); other variant = the slower one.")
    if wins:
        total, common = sum(map(len, wins.values())), max(wins, key=lambda v: len(wins[v]))
        text.append("faster ORT i8 variant: " + "; ".join(
            f"{v} in {len(ids)} of {total}" + ("" if v == common else f" ({', '.join(ids)})")
            for v, ids in sorted(wins.items(), key=lambda kv: -len(kv[1]))))
    probe = vnni_probe_line(results)
    if probe:
        text.append(probe + "; % VNNI peak = our GOP/s / that peak (single-thread rows); peak "
                    "result: the extra target of issue 15 (the avx512vnni path at >= 93 % of the "
                    "probe on the 3x3 layers at 56/28/14), beside the target column")
    else:
        text.append("% VNNI peak: not measured (only with eightbit's avx512vnni path active, e.g. "
                    "EIGHTBIT_ISA=avx512vnni on an AMX CPU; active ISA: "
                    f"{_active_isa()})")
    text += _graph_notes(list(dict.fromkeys(c.layer for c in cases)))
    if results.eb_unavailable:
        text.append(f"eightbit not importable: {results.eb_unavailable}")
    text += [f"note: {n}" for n in notes]
    return "\n".join(text)
