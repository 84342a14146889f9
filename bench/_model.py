"""Shared pieces of the whole-model benchmark (issue 4): the models, an ONNX exporter, the ONNX
Runtime baselines, the accuracy check, the Python-overhead measurement and the table.

Used by the pytest-benchmark suite (``bench_model.py``) and the plain script ``model_table.py``;
sessions, paired timing and the machine description come from ``_baselines.py``. Nothing here
times anything.

Models (random weights, deterministic seeds):

* ``resnet18_graph(rng)``: an eightbit float Graph with ResNet-18's exact shapes (torchvision's
  ``resnet18``): stem 7x7/2 conv 3->64 + BN + ReLU + max-pool 3x3/2 pad 1; 4 stages of 2
  BasicBlocks (64, 128, 256, 512 channels; the first block of stages 2-4 has stride 2 and a 1x1/2
  downsample conv + BN on the shortcut); residual add + ReLU; global average pool, flatten,
  linear 512->1000. Convs have no bias (BN follows), He-normal weights. Every BatchNorm's running
  mean / var are the statistics of its actual input on a probe batch (2 random images, drawn
  from the same distribution as the calibration and test images), with gamma ~ U(0.6, 1.4) and
  beta ~ N(0, 0.2): what a trained network's BN would look like, so every activation stays O(1).
  eightbit folds the 20 BatchNorms into the convs; ONNX Runtime does too (its Conv+BN fusion).
* ``mlp_graph(rng)``: 768 -> 3072 -> ReLU -> 768 -> ReLU -> 10 (three linears with bias).
* ``mobilenet_v2_graph(rng)``: torchvision's ``mobilenet_v2`` shapes at 224x224 (stem 3x3/2 conv
  3->32; 17 inverted residual blocks: 1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 project,
  residual add where the shape allows; 1x1 conv 320->1280), with MobileNetV3's hardswish after the
  last 1x1 conv and a hardswish head (1280 -> 1280 linear) before the 1000-class linear; BN
  statistics from a probe batch, as ResNet-18's.

Data: images x ~ N(0, 1), float32 [N, 3, 224, 224]; MLP vectors x ~ N(0, 1) [N, 768].
Calibration: the same batches for eightbit and ONNX Runtime (``calibration_batches``): ResNet-18
4 batches of 2 images, MLP 8 batches of 8 vectors; min/max calibration on both sides
(eightbit's default "minmax", ORT's default CalibrationMethod.MinMax).

Baselines (sessions from ``_baselines.ort_session``: intra_op 1, inter_op 1, sequential,
ORT_ENABLE_ALL), all fed the float32 model exported by ``graph_to_onnx``:

* ``ort-f32``: the exported float model as is (ORT fuses Conv+BN+ReLU itself).
* ``ort-i8`` for ResNet-18: ``onnxruntime.quantization.quant_pre_process`` (ORT's recommended
  preparation: shape inference and its basic graph optimizations, which fold BN into Conv), then
  ``quantize_static(quant_format=QDQ, per_channel=True, activation_type=QUInt8,
  weight_type=QInt8)`` with a CalibrationDataReader over the calibration batches. ORT turns the
  QDQ pairs into QLinearConv / QLinearAdd / ... when it builds the session (listed under the
  table).
* ``ort-i8`` for the MLP: ``quantize_dynamic(weight_type=QInt8)`` (ORT's defaults otherwise:
  per-tensor weights). The MLP is exported with linear as MatMul + Add, because ORT's dynamic
  quantizer only quantizes MatMul (a Gemm would stay float32). eightbit's side is static
  quantization (``eb.quantize`` has no dynamic mode yet) unless ``eb.quantize`` accepts
  ``dynamic=True`` when the bench runs; the table says which.

* ``ov-i8`` (issue 15) for ResNet-18 and MobileNetV2: OpenVINO's CPU plugin (``pip install
  openvino``; a bench-only baseline, not a dependency) on the very QDQ model of ``ort-i8``, its
  batch fixed per case, compiled with one inference thread, one stream, the latency hint and no
  pinning (``OV_CONFIG``); it runs the QDQ convolutions in int8 (its low-precision
  transformations), which the table shows from ``get_runtime_model()``. Without openvino the
  table says "not run (openvino not installed)" in its columns. ``model_table.py --isa NAME``
  (``set_isa_mode``) runs ours on eightbit's ISA NAME and OpenVINO under the matching oneDNN cap
  (``ONEDNN_MAX_CPU_ISA``, ``OV_ISA_CAPS``), to measure CPUs without AMX on an AMX machine; ORT
  has no such switch and keeps its default kernels.

Ours: ``qm = eb.quantize(graph, calibration_batches)`` (static, per-channel int8 weights, uint8
activations), timed ``qm(x)`` (float32 NCHW in, float32 logits out) with ``eb.set_num_threads(1)``.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

import _baselines as B

PREFIX = "model/"          # every measurement key of this table starts with it
I8, F32, OV = "ORT i8", "ORT f32", "OV i8"
OV_KIND = "ov-i8"          # measurement key suffix of the OpenVINO int8 baseline

# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

RESNET18, MLP, MOBILENETV2 = "resnet18", "mlp", "mobilenetv2"
IMAGE_MODELS = (RESNET18, MOBILENETV2)
IMAGE = (3, 224, 224)
MLP_DIMS = (768, 3072, 768, 10)


@dataclass(frozen=True)
class Case:
    model: str             # RESNET18 | MLP
    batch: int
    targets: tuple         # ((column, min ratio = baseline time / our time), ...)

    @property
    def id(self) -> str:
        return f"{self.model}-b{self.batch}"

    @property
    def label(self) -> str:
        return {RESNET18: "ResNet-18 224x224", MLP: "MLP 768-3072-768-10",
                MOBILENETV2: "MobileNetV2 224x224 (hardswish)"}[self.model]

    def key(self, impl: str) -> str:
        """Measurement key, e.g. ``model/resnet18-b1/ours`` or ``model/mlp-b1/ort-i8``."""
        return f"{PREFIX}{self.id}/{impl}"


CASES = [
    Case(RESNET18, 1, ((I8, 1.0), (F32, 3.0), (OV, 1.0))),
    Case(RESNET18, 8, ((I8, 1.0), (F32, 3.0), (OV, 1.0))),
    Case(MLP, 1, ((I8, 1.0),)),
    Case(MOBILENETV2, 1, ((I8, 1.0), (F32, 2.0))),
    Case(MOBILENETV2, 8, ((I8, 1.0), (F32, 2.0))),
]
BASELINE_KINDS = ("ort-i8", "ort-f32")
OV_MODELS = IMAGE_MODELS   # models the OpenVINO baseline runs on (the QDQ file of quantize_static)
OVERHEAD_KEY = PREFIX + "overhead/ours"
OVERHEAD_CXX_KEY = PREFIX + "overhead/cxx"
OVERHEAD_TARGET_S = 20e-6


def select(cases, words=None) -> list:
    """Cases whose id contains one of ``words`` (all without)."""
    return [c for c in cases if not words or any(w in c.id for w in words)]


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

def _probe_node(g, probe: dict, t):
    """Run the node producing t on the probe values (a one-node graph, the float executor)."""
    import eightbit as eb
    node = g.producer(t.name)
    one = eb.Graph("probe")
    ins = [one.input(f"in{i}", g.tensors[n].shape) for i, n in enumerate(node.inputs)]
    one.output(one.add_node(node.op, ins, node.attrs, node.consts, name="node"))
    probe[t.name] = one.run({f"in{i}": probe[n] for i, n in enumerate(node.inputs)})
    return t


def _conv_bn(g, probe, rng, x, c_out, k, stride, pad, relu, name, groups=1):
    """conv (He-normal, no bias) + BN with the probe's statistics (+ ReLU: True, "relu6" or
    "hardswish")."""
    c_in = g.tensors[x.name].shape[1]
    w = rng.standard_normal((c_out, c_in // groups, k, k)) * np.sqrt(2.0 / (c_in // groups * k * k))
    y = _probe_node(g, probe, g.conv2d(x, w, None, stride=stride, padding=pad, groups=groups, name=f"{name}.conv"))
    v = probe[y.name].astype(np.float64)
    mean, var = v.mean(axis=(0, 2, 3)), v.var(axis=(0, 2, 3))
    gamma, beta = rng.uniform(0.6, 1.4, c_out), rng.normal(0.0, 0.2, c_out)
    y = _probe_node(g, probe, g.batch_norm2d(y, mean, var, gamma, beta, name=f"{name}.bn"))
    if not relu:
        return y
    act = {True: g.relu, "relu6": g.relu6, "hardswish": g.hardswish}[relu]
    return _probe_node(g, probe, act(y, name=f"{name}.act"))


def _basic_block(g, probe, rng, x, c_out, stride, name):
    y = _conv_bn(g, probe, rng, x, c_out, 3, stride, 1, True, f"{name}.1")
    y = _conv_bn(g, probe, rng, y, c_out, 3, 1, 1, False, f"{name}.2")
    short = x
    if stride != 1 or g.tensors[x.name].shape[1] != c_out:
        short = _conv_bn(g, probe, rng, x, c_out, 1, stride, 0, False, f"{name}.down")
    s = _probe_node(g, probe, g.add(y, short, name=f"{name}.add"))
    return _probe_node(g, probe, g.relu(s, name=f"{name}.out"))


def resnet18_graph(rng, probe_batch: int = 2):
    """ResNet-18 (torchvision's shapes, 1000 classes) as an eightbit Graph with a free batch;
    random weights drawn from rng, BN statistics from a probe batch (see the module docstring)."""
    import eightbit as eb
    g = eb.Graph("resnet18")
    x = g.input("x", (None,) + IMAGE)
    probe = {"x": rng.standard_normal((probe_batch,) + IMAGE).astype(np.float32)}
    y = _conv_bn(g, probe, rng, x, 64, 7, 2, 3, True, "stem")
    y = _probe_node(g, probe, g.max_pool2d(y, 3, stride=2, padding=1, name="stem.pool"))
    for stage, c in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            y = _basic_block(g, probe, rng, y, c, stride, f"layer{stage}.{block}")
    y = g.flatten(g.global_avg_pool2d(y, name="avgpool"), 1, name="flatten")
    w = rng.standard_normal((1000, 512)) * np.sqrt(1.0 / 512)
    g.output(g.linear(y, w, rng.normal(0.0, 0.1, 1000), name="fc"))
    return g


MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1))   # (expansion, channels, repeats, first stride)


def mobilenet_v2_graph(rng, probe_batch: int = 2):
    """MobileNetV2 (torchvision's shapes, 1000 classes) with a hardswish head, as an eightbit
    Graph with a free batch (see the module docstring)."""
    import eightbit as eb
    g = eb.Graph("mobilenetv2")
    x = g.input("x", (None,) + IMAGE)
    probe = {"x": rng.standard_normal((probe_batch,) + IMAGE).astype(np.float32)}
    y = _conv_bn(g, probe, rng, x, 32, 3, 2, 1, "relu6", "stem")
    c_in, i = 32, 0
    for t, c, n, first_stride in MOBILENET_V2_BLOCKS:
        for r in range(n):
            stride, hidden, name = first_stride if r == 0 else 1, c_in * t, f"block{i}"
            h = y if t == 1 else _conv_bn(g, probe, rng, y, hidden, 1, 1, 0, "relu6", f"{name}.expand")
            h = _conv_bn(g, probe, rng, h, hidden, 3, stride, 1, "relu6", f"{name}.dw", groups=hidden)
            h = _conv_bn(g, probe, rng, h, c, 1, 1, 0, False, f"{name}.project")
            y = _probe_node(g, probe, g.add(y, h, name=f"{name}.add")) if stride == 1 and c_in == c else h
            c_in, i = c, i + 1
    y = _conv_bn(g, probe, rng, y, 1280, 1, 1, 0, "hardswish", "last")
    y = g.flatten(g.global_avg_pool2d(y, name="avgpool"), 1, name="flatten")
    w = rng.standard_normal((1280, 1280)) * np.sqrt(2.0 / 1280)
    y = g.hardswish(g.linear(y, w, rng.normal(0.0, 0.1, 1280), name="head"), name="head.act")
    w = rng.standard_normal((1000, 1280)) * np.sqrt(1.0 / 1280)
    g.output(g.linear(y, w, rng.normal(0.0, 0.1, 1000), name="fc"))
    return g


def mlp_graph(rng):
    """768 -> 3072 -> ReLU -> 768 -> ReLU -> 10, He-normal weights, small biases."""
    import eightbit as eb
    g = eb.Graph("mlp")
    y = g.input("x", (None, MLP_DIMS[0]))
    for i, (n_in, n_out) in enumerate(zip(MLP_DIMS[:-1], MLP_DIMS[1:])):
        w = rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
        y = g.linear(y, w, rng.normal(0.0, 0.1, n_out), name=f"fc{i + 1}")
        if i < len(MLP_DIMS) - 2:
            y = g.relu(y, name=f"relu{i + 1}")
    g.output(y)
    return g


@functools.lru_cache(maxsize=None)
def graph(model: str):
    if model == MOBILENETV2:
        return mobilenet_v2_graph(np.random.default_rng(2))
    return resnet18_graph(np.random.default_rng(18)) if model == RESNET18 else \
        mlp_graph(np.random.default_rng(768))


def _sample_shape(model: str) -> tuple:
    return IMAGE if model in IMAGE_MODELS else (MLP_DIMS[0],)


def _data(model: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, n, 1 if model in IMAGE_MODELS else 2])
    return rng.standard_normal((n,) + _sample_shape(model)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def calibration_batches(model: str) -> tuple:
    """The calibration set, identical for eightbit and ONNX Runtime."""
    n, per = (4, 2) if model in IMAGE_MODELS else (8, 8)
    x = _data(model, n * per, seed=1)
    return tuple(x[i * per:(i + 1) * per] for i in range(n))


@functools.lru_cache(maxsize=None)
def inputs(model: str, batch: int) -> np.ndarray:
    """The timed input of a case (not in the calibration set)."""
    return _data(model, batch, seed=2)


def eval_set(model: str, quick: bool = False) -> np.ndarray:
    """Inputs of the accuracy check (neither calibration nor timing data)."""
    n = (8 if quick else 16) if model in IMAGE_MODELS else 256
    return _data(model, n, seed=3)


# --------------------------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------------------------

def graph_to_onnx(g, *, linear_as: str = "gemm", opset: int = 17):
    """The float model of an eightbit Graph as an ONNX ModelProto: eightbit's own exporter
    (``eightbit.onnx.graph_to_onnx``; linear_as "gemm" or "matmul", see there)."""
    from eightbit.onnx.export_float import graph_to_onnx as export

    return export(g, linear_as=linear_as, opset=opset)


@functools.lru_cache(maxsize=None)
def onnx_fp32(model: str):
    """The exported float model: Gemm for ResNet-18's fc, MatMul + Add for the MLP (see above)."""
    return graph_to_onnx(graph(model), linear_as="gemm" if model in IMAGE_MODELS else "matmul")


def _reader(name: str, batches):
    """A CalibrationDataReader handing ORT the calibration batches, one per get_next."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rewind()

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = iter([{name: b} for b in batches])
    return Reader()


@contextlib.contextmanager
def _quiet_root_logger():
    import logging
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


@functools.lru_cache(maxsize=None)
def onnx_int8(model: str):
    """ONNX Runtime's own int8 model: quantize_static QDQ per-channel (ResNet-18) or
    quantize_dynamic (MLP), from the exported float model (see the module docstring)."""
    import onnx
    from onnxruntime.quantization import (QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    fp32 = onnx_fp32(model)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(fp32, src)
        if model == MLP:  # without quant_pre_process: it fuses MatMul + Add into Gemm
            with _quiet_root_logger():  # its "consider pre-processing" advice
                quantize_dynamic(src, out, weight_type=QuantType.QInt8)
        else:
            pre = os.path.join(tmp, "pre.onnx")
            quant_pre_process(src, pre)
            quantize_static(pre, out, _reader(fp32.graph.input[0].name, calibration_batches(model)),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return onnx.load(out)


@functools.lru_cache(maxsize=None)
def ort_model(model: str, kind: str):
    """(session, input name) of a baseline kind, 'ort-i8' or 'ort-f32', on 1 thread."""
    m = onnx_int8(model) if kind == "ort-i8" else onnx_fp32(model)
    return B.ort_session(m, 1), m.graph.input[0].name


def baseline_fn(case: Case, kind: str):
    sess, name = ort_model(case.model, kind)
    return B.ort_call(sess, {name: inputs(case.model, case.batch)})


def ort_run(model: str, kind: str, x: np.ndarray) -> np.ndarray:
    sess, name = ort_model(model, kind)
    return sess.run(None, {name: x})[0]


@functools.lru_cache(maxsize=None)
def ort_graph(model: str, kind: str) -> str:
    """What ORT runs for a baseline after its optimizations: op type counts, in order of first use."""
    import onnx
    m = onnx_int8(model) if kind == "ort-i8" else onnx_fp32(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        B.ort_session(m, 1, optimized_model_path=path)
        nodes = onnx.load(path).graph.node
    counts = Counter(f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in nodes)
    return ", ".join(f"{op} x{k}" for op, k in counts.items())


def check_export(model: str, x=None):
    """(ok, detail): ORT fp32 on the exported model against the eightbit float graph."""
    x = inputs(model, 1) if x is None else x
    ref = graph(model).run(x)
    got = ort_run(model, "ort-f32", x)
    err = float(np.abs(got - ref).max())
    tol = 1e-3 * max(1.0, float(np.abs(ref).max()))
    ok = got.shape == ref.shape and np.allclose(got, ref, rtol=1e-3, atol=tol)
    return ok, f"ORT fp32 vs graph.run: max |diff| {err:.2g} (max |y| {float(np.abs(ref).max()):.3g})"


# --------------------------------------------------------------------------------------------
# OpenVINO int8 (a bench-only baseline: pip install openvino)
# --------------------------------------------------------------------------------------------

# What compile_model gets: one inference thread, one stream, latency mode, no pinning (ours and
# ORT pin nothing either, and a pinned caller thread would change the 2-thread rows that run
# later in the same process). Keys the CPU plugin does not list in SUPPORTED_PROPERTIES are
# dropped (ov_config); releases before 2024 call the pinning switch AFFINITY (set to "NONE").
# INFERENCE_PRECISION_HINT is left at OpenVINO's default (bf16 on CPUs with AMX / AVX-512 BF16,
# else f32): it only concerns float ops left outside the int8 graph (MobileNetV2's hardswish).
OV_CONFIG = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
             "ENABLE_CPU_PINNING": False}
OV_READ_BACK = ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT", "ENABLE_CPU_PINNING",
                "AFFINITY", "INFERENCE_PRECISION_HINT", "EXECUTION_MODE_HINT")
_OV_ERR: dict = {}   # model -> why its OpenVINO baseline could not be built
_OV_COMPILED: list = []   # (model, batch) compiled so far, in order


@functools.lru_cache(maxsize=None)
def openvino():
    """(module, None) or (None, why): the openvino package, if installed and loadable."""
    try:
        import openvino as ov
        ov.Core
    except ImportError:
        return None, "openvino not installed"
    except Exception as e:  # installed but broken
        return None, f"openvino: {type(e).__name__}: {e}"
    return ov, None


@functools.lru_cache(maxsize=None)
def ov_core():
    return openvino()[0].Core()


@functools.lru_cache(maxsize=None)
def ov_config() -> tuple:
    """OV_CONFIG as (key, value) pairs, restricted to the CPU plugin's SUPPORTED_PROPERTIES."""
    supported = set(ov_core().get_property("CPU", "SUPPORTED_PROPERTIES"))
    cfg = {k: v for k, v in {**OV_CONFIG, **OV_ISA_CONFIG.get(ISA, {})}.items() if k in supported}
    if "ENABLE_CPU_PINNING" not in supported and "AFFINITY" in supported:
        cfg["AFFINITY"] = "NONE"
    return tuple(cfg.items())


@functools.lru_cache(maxsize=None)
def ov_compiled(model: str, batch: int):
    """OpenVINO's CPU plugin on ORT's int8 model, the very QDQ file of quantize_static
    (``onnx_int8``), its free batch dimension fixed to ``batch`` (Model.reshape: OpenVINO's advice
    for latency; in a quick check here the dynamic-batch model ran 5-15 % slower)."""
    import onnx
    core = ov_core()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "int8_qdq.onnx")
        onnx.save(onnx_int8(model), path)
        m = core.read_model(path)
    m.reshape({0: [batch, *_sample_shape(model)]})
    compiled = core.compile_model(m, "CPU", dict(ov_config()))
    _OV_COMPILED.append((model, batch))
    return compiled


@functools.lru_cache(maxsize=None)
def ov_request(model: str, batch: int):
    """One InferRequest per (model, batch), created once."""
    return ov_compiled(model, batch).create_infer_request()


def ov_why_not(model: str) -> str | None:
    """None when the OpenVINO baseline can run on this model, else why not (short)."""
    if model not in OV_MODELS:
        return "not an image model"
    if not B.have_ort():
        return "no onnxruntime (the QDQ file comes from its quantize_static)"
    why = openvino()[1]
    return why or _OV_ERR.get(model)


def ov_baseline_fn(case: Case):
    """The call to time: ``request.infer({0: x}, share_inputs=True)`` on the case's input
    (allocated beforehand; share_inputs: OpenVINO reads the array in place rather than copying
    it into its own tensor first), or None when OpenVINO cannot run it."""
    if ov_why_not(case.model) is not None:
        return None
    try:
        req = ov_request(case.model, case.batch)
    except Exception as e:  # reported under the table
        _OV_ERR[case.model] = f"OpenVINO failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        return None
    feed, infer = {0: inputs(case.model, case.batch)}, req.infer
    return lambda: infer(feed, share_inputs=True)


def ov_run(model: str, x: np.ndarray) -> np.ndarray:
    return np.array(ov_request(model, len(x)).infer({0: x})[0])


_OV_COMPUTE = ("Convolution", "FullyConnected", "MatMul", "Deconvolution")


@functools.lru_cache(maxsize=None)
def ov_nodes(model: str, batch: int = 1) -> tuple:
    """(layer type, runtime precision, primitive) of every node of the graph the CPU plugin runs
    (``get_runtime_model()``), in order, without Const / Input / Output."""
    rt = ov_compiled(model, batch).get_runtime_model()
    out = []
    for op in rt.get_ordered_ops():
        info = op.get_rt_info()

        def get(k):
            return info[k].astype(str) if k in info else "?"
        layer = get("layerType")
        if layer in ("Const", "Input", "Output", "Parameter", "Result"):
            continue
        out.append((layer, get("runtimePrecision"), get("primitiveType")))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def ov_runtime(model: str, batch: int = 1):
    """(int8 compute nodes, compute nodes, description) of the graph the CPU plugin runs
    (``get_runtime_model()``): per layer type, its runtime precision and primitive (kernel)."""
    kinds, n8, n = {}, 0, 0
    for layer, prec, prim in ov_nodes(model, batch):
        kinds.setdefault((layer, prec), Counter())[prim] += 1
        if layer in _OV_COMPUTE:
            n += 1
            n8 += prec in ("u8", "i8")
    parts = []
    for (layer, prec), prims in kinds.items():
        desc = ", ".join(f"{p} x{k}" if len(prims) > 1 else p for p, k in prims.items())
        parts.append(f"{layer} {prec} x{sum(prims.values())} [{desc}]")
    return n8, n, "; ".join(parts)


# ---- ISA mode (model_table.py --isa NAME; issue 15: speed on CPUs without AMX) ---------------

# eightbit ISA -> the cap OpenVINO's CPU plugin gets: oneDNN's ONEDNN_MAX_CPU_ISA (DNNL_MAX_CPU_ISA
# is the older spelling; both work in 2026.4). oneDNN reads it once, at the first ISA query of
# the process (in practice OpenVINO's first compile_model: setting it after `import openvino`,
# even after Core().get_property, still works; after a compile_model it does not), so it has to
# be in the environment before any OpenVINO compile. OpenVINO has no CPU property for it. It caps
# oneDNN's kernels (convolutions: brgconv_avx512_amx_I8 -> brgconv_avx512_I8 under
# AVX512_CORE_VNNI, brgconv_avx2_I8 under AVX2_VNNI, jit_avx2_I8 under AVX2) and the plugin's own
# JIT kernels that ask oneDNN's mayiuse; a few of its nodes dispatch on cpuid themselves and are
# not capped (Reduce stays jit_avx512_I8 under AVX2): ov_above_cap lists them under the table.
# ONNX Runtime has no such switch: MLAS picks its kernels by cpuid (AMX for u8s8 GEMMs on an AMX
# CPU), so the ORT columns stay on their default kernels.
OV_ISA_CAPS = {"avx512vnni": "AVX512_CORE_VNNI", "avxvnni": "AVX2_VNNI", "avx2": "AVX2",
               "amx": "AVX512_CORE_AMX"}
ONEDNN_ISA_VAR = "ONEDNN_MAX_CPU_ISA"
# substrings of OpenVINO primitive names that the cap of each mode rules out
_ABOVE_CAP = {"avx512vnni": ("amx",), "avxvnni": ("amx", "avx512"), "avx2": ("amx", "avx512"),
              "amx": ()}
# Extra compile_model properties per mode. The oneDNN cap leaves OpenVINO's default inference
# precision at bf16 here (chosen by cpuid: AVX512_BF16 / AMX); a CPU whose best int8 ISA is AVX2
# or AVX-VNNI has no AVX512_BF16, so OpenVINO runs f32 there (only float ops outside the int8
# graph are concerned: MobileNetV2's hardswish). avx512vnni keeps the default (bf16, as on Zen 4;
# a Cascade Lake / Ice Lake Xeon would get f32).
OV_ISA_CONFIG = {"avxvnni": {"INFERENCE_PRECISION_HINT": "f32"},
                 "avx2": {"INFERENCE_PRECISION_HINT": "f32"}}
ISA = None   # model_table.py --isa: the ISA of ours and the cap of OpenVINO (set_isa_mode)


def set_isa_mode(eb, isa: str) -> None:
    """Run ours on eightbit's ``isa`` (eb.set_isa, checked through eb.cpu_info()) and OpenVINO
    under the matching oneDNN cap (OV_ISA_CAPS, exported as ONEDNN_MAX_CPU_ISA). Call before any
    OpenVINO compile_model in the process; raises ValueError / RuntimeError when that cannot hold."""
    global ISA
    if isa not in OV_ISA_CAPS:
        raise ValueError(f"--isa {isa}: one of {', '.join(OV_ISA_CAPS)}")
    if _OV_COMPILED:
        raise RuntimeError("OpenVINO already compiled a model in this process: the oneDNN ISA cap "
                           "would not apply")
    os.environ[ONEDNN_ISA_VAR] = OV_ISA_CAPS[isa]
    ISA = isa
    ov_config.cache_clear()
    if eb is not None:
        eb.set_isa(isa)
        got = eb.cpu_info()["isa"]
        if got != isa:
            raise RuntimeError(f"eb.set_isa({isa!r}) did not take: eb.cpu_info()['isa'] = {got!r}")


def ov_above_cap(model: str, batch: int = 1) -> list:
    """'layer primitive xN' for the nodes of OpenVINO's runtime model whose primitive is beyond
    the cap of the ISA mode (e.g. an amx or avx512 kernel under --isa avx2); [] without ISA."""
    banned = _ABOVE_CAP.get(ISA, ())
    hits = Counter(f"{layer} {prim}" for layer, _, prim in ov_nodes(model, batch)
                   if any(b in prim.lower() for b in banned))
    return [f"{k} x{n}" for k, n in hits.items()]


def ort_isa_desc() -> str:
    """What the ORT columns run on in the ISA mode: their default kernels."""
    amx = "amx_int8" in B.cpu_flags()
    return ("ORT int8 / ORT fp32 = NOT capped (ONNX Runtime has no ISA switch; MLAS picks its "
            "kernels by cpuid" + (": AMX for the u8s8 GEMMs of QLinearConv / QGemm on this CPU, "
                                  "AVX-512 for fp32)" if amx else ")"))


def isa_lines(eb) -> list:
    """The ISA of each implementation (ISA mode only), printed above the table."""
    if ISA is None:
        return []
    try:
        ours = eb.cpu_info()["isa"] if eb is not None else None
    except Exception as e:
        ours = f"? ({type(e).__name__})"
    ours_desc = (f"ours = eightbit isa {ours} (eb.set_isa({ISA!r}); eb.cpu_info()['isa'] read "
                 f"after the run)" + ("" if ours == ISA else "  <- NOT the requested ISA")
                 if eb is not None else "ours = not run (no eightbit)")
    extra = OV_ISA_CONFIG.get(ISA)
    return [f"ISA mode --isa {ISA}: {ours_desc}; OV i8 = oneDNN capped at {ONEDNN_ISA_VAR}="
            f"{os.environ.get(ONEDNN_ISA_VAR)}"
            + (f" and {', '.join(f'{k}={v}' for k, v in extra.items())} (no AVX512_BF16 on such "
               f"CPUs)" if extra else "")
            + " (its runtime primitives are listed under the table); " + ort_isa_desc()]


def ov_settings_line() -> str:
    """OpenVINO's version, what compile_model got and what the compiled model reports."""
    ov, why = openvino()
    if ov is None:
        return f"OV i8: not run ({why}; pip install openvino)"
    try:
        got = dict(ov_config())
        cm = ov_compiled(*_OV_COMPILED[0]) if _OV_COMPILED else None
        back = []
        if cm is not None:
            for k in OV_READ_BACK:
                try:
                    back.append(f"{k}={cm.get_property(k)}")
                except Exception:
                    pass
        env = [f"{v}={os.environ[v]}" for v in (ONEDNN_ISA_VAR, "DNNL_MAX_CPU_ISA") if v in os.environ]
        return (f"OV i8 = OpenVINO {ov.get_version().split('-')[0]} CPU plugin on the same QDQ file "
                f"ORT int8 runs (quantize_static's output, batch fixed by Model.reshape): "
                f"compile_model(model, 'CPU', {got}); one InferRequest per case, "
                f"infer({{0: x}}, share_inputs=True)"
                + (f"; the compiled model reports {', '.join(back)}" if back else "")
                + (f"; environment {', '.join(env)}" if env else ""))
    except Exception as e:
        return f"OV i8: {type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------------
# eightbit
# --------------------------------------------------------------------------------------------

def has_dynamic(eb) -> bool:
    try:
        return "dynamic" in inspect.signature(eb.quantize).parameters
    except (TypeError, ValueError):
        return False


def our_mode(eb, model: str) -> str:
    return "dynamic" if model == MLP and has_dynamic(eb) else "static"


_QM: dict = {}
VIA_ONNX = False   # model_table.py --via-onnx: our graph is eb.from_onnx of the exported float model


def our_graph(eb, model: str):
    """The float graph eightbit quantizes: the builder's, or (VIA_ONNX) the ONNX importer's
    reading of the same float model ORT runs."""
    return eb.from_onnx(onnx_fp32(model)) if VIA_ONNX else graph(model)


def quantized(eb, model: str):
    """eb.quantize(graph, calibration batches), once per model (dynamic for the MLP if offered).
    Raises what eb.quantize raises (e.g. ImportError while eightbit.calibrate is missing)."""
    if model not in _QM:
        kw = {"dynamic": True} if our_mode(eb, model) == "dynamic" else {}
        _QM[model] = eb.quantize(our_graph(eb, model), list(calibration_batches(model)), **kw)
    return _QM[model]


def ours_fn(eb, case: Case):
    qm, x = quantized(eb, case.model), inputs(case.model, case.batch)
    return lambda: qm(x)


def _top1_agree(a, b) -> float:
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


def _rel_err(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@dataclass
class Accuracy:
    n: int
    ours_top1: float | None      # top-1 agreement with the float graph
    ort_top1: float | None
    ours_rel: float | None       # relative L2 error of the logits against the float graph
    ort_rel: float | None
    export: str = ""
    ov_top1: float | None = None  # OpenVINO on ORT's QDQ file (None: not run)
    ov_rel: float | None = None


def accuracy_store(results) -> dict:
    """{model: Accuracy}, kept on the Results object of the run."""
    return results.__dict__.setdefault("model_accuracy", {})


REL_ERR_LIMIT = 0.5   # ours is WRONG beyond this relative logit error (a broken model, not noise)


def verify(results, eb, case: Case, quick: bool = False) -> bool:
    """Accuracy of ours (and of ORT int8) against the float graph on the eval set, once per model;
    ours' output shape on the case input. Records the verdict; False when ours is broken."""
    store = accuracy_store(results)
    qm = quantized(eb, case.model)
    y = np.asarray(qm(inputs(case.model, case.batch)))
    want = (case.batch, MLP_DIMS[-1] if case.model == MLP else 1000)
    if y.shape != want or y.dtype != np.float32 or not np.isfinite(y).all():
        results.verify(case.key("ours"), False, f"got {y.dtype}{y.shape}, want float32{want}, finite")
        return False
    if case.model not in store:
        x = eval_set(case.model, quick)
        per = 8
        ref = np.concatenate([graph(case.model).run(x[i:i + per]) for i in range(0, len(x), per)])
        ours = np.concatenate([qm(x[i:i + per]) for i in range(0, len(x), per)])
        ort = None
        if B.have_ort():
            ort = np.concatenate([ort_run(case.model, "ort-i8", x[i:i + per])
                                  for i in range(0, len(x), per)])
        ov = None
        if ov_baseline_fn(case) is not None:   # builds the model, or records why not
            ov = np.concatenate([ov_run(case.model, x[i:i + per]) for i in range(0, len(x), per)])
        store[case.model] = Accuracy(
            len(x), _top1_agree(ours, ref), None if ort is None else _top1_agree(ort, ref),
            _rel_err(ours, ref), None if ort is None else _rel_err(ort, ref),
            ov_top1=None if ov is None else _top1_agree(ov, ref),
            ov_rel=None if ov is None else _rel_err(ov, ref))
    acc = store[case.model]
    ok = acc.ours_rel < REL_ERR_LIMIT
    results.verify(case.key("ours"), ok, f"relative logit error vs the float graph {acc.ours_rel:.3f}")
    return ok


def paired_baselines(case: Case, eb=None) -> dict:
    """{measurement key: (call, warm-up call, None)} timed beside ours: the ORT baselines and,
    given eb, the block that gives ours' C++ time (key ``cxx``, see cxx_block: the Python-side
    time is ours minus it). Every block starts with an untimed call, whatever its length (Paired
    does that only for calls under 5 ms): whole models take up to hundreds of ms, and a block's
    first call would otherwise find the previous implementation's data in cache, not its own.
    Ours gets the same through ``ours_prepare`` (see warm)."""
    out = _unwarmed_baselines(case, eb)
    return {k: (fn, fn, None) for k, fn in out.items()}


def warm(fn):
    """ours_prepare for Paired: one untimed call before each of ours' blocks."""
    return fn


def _unwarmed_baselines(case: Case, eb=None) -> dict:
    out = {}
    if eb is not None:
        # First in the cycle: a block running ours' model right before ours' own block would
        # leave ours' weights in cache for it (blocks of calls over 5 ms get no warm-up call).
        # So the cycle is cxx, ORT int8, OV int8, ORT fp32, ours: ours follows ORT fp32 as
        # without it.
        fn = cxx_block(quantized(eb, case.model), inputs(case.model, case.batch), case.key("ours"))
        if fn is not None:
            out[case.key("cxx")] = fn
    if B.have_ort():
        out[case.key("ort-i8")] = baseline_fn(case, "ort-i8")
        ov = ov_baseline_fn(case)
        if ov is not None:
            out[case.key(OV_KIND)] = ov
        out[case.key("ort-f32")] = baseline_fn(case, "ort-f32")
    return out


# ---- Python-side overhead --------------------------------------------------------------------

def tiny_graph():
    """One conv2d 1->1, 1x1 kernel, on a [N, 1, 1, 1] input: the smallest whole model."""
    import eightbit as eb
    g = eb.Graph("tiny")
    g.output(g.conv2d(g.input("x", (None, 1, 1, 1)), np.full((1, 1, 1, 1), 0.5), np.array([0.1]),
                      name="conv"))
    return g


def tiny_model(eb):
    if "tiny" not in _QM:
        calib = [np.linspace(-1, 1, 8, dtype=np.float32).reshape(8, 1, 1, 1)]
        _QM["tiny"] = eb.quantize(tiny_graph(), calib)
    return _QM["tiny"]


_NOT_WORK = ("cpu_info", "set_isa", "set_num_threads")


@contextlib.contextmanager
def _recording_cxx(calls: list):
    """Every function of the C++ extension (``eightbit._core``) replaced by a wrapper that records
    (function, args, kwargs) and calls it; the Python layers look them up as ``_core.name`` at
    call time, so they all go through the wrappers. Restored on exit."""
    from eightbit import _core
    saved = {}
    for name in dir(_core):
        fn = getattr(_core, name)
        if name.startswith("_") or name in _NOT_WORK or isinstance(fn, type) or not callable(fn):
            continue
        saved[name] = fn

        def wrapper(*args, _fn=fn, **kwargs):
            calls.append((_fn, args, kwargs))
            return _fn(*args, **kwargs)
        setattr(_core, name, wrapper)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(_core, name, fn)


def cxx_replay(qm, x):
    """(call, count): a call that runs exactly the C++ calls ``qm(x)`` makes (same functions, same
    arguments: the recorded arrays, packed weights and scales), without any of the Python around
    them (runner, eightbit.ops wrappers and checks, NumPy layout changes); (None, 0) if nothing
    was recorded or the recorded run differs from a plain one. Reads nothing of the runner: it
    works for any runner whose C++ entry points are functions of ``eightbit._core``."""
    calls = []
    with _recording_cxx(calls):
        y = qm(x)
    if not calls or not np.array_equal(np.asarray(y), np.asarray(qm(x))):
        return None, 0
    calls = tuple(calls)

    def replay():
        for fn, args, kwargs in calls:
            fn(*args, **kwargs)
    return replay, len(calls)


@dataclass
class CxxSplit:
    """How the C++ time of ours' calls is known: ``how`` = "executor" (each qm(x) of the cxx block
    timed, and the plan executor's own clock read after it, ``last_run_seconds``: ``samples`` of
    (wall, core) seconds) or "replay" (the paired median of the cxx block, a replay of ``calls``
    recorded C++ calls)."""
    how: str
    calls: int
    samples: list


_CXX: dict = {}   # measurement key of ours -> CxxSplit


def cxx_block(qm, x, ours_key: str):
    """The call to time beside ours that yields ours' C++ time, or None (then only qm(x) is known).

    With the C++ plan executor (``qm._executor.last_run_seconds``: the time one ``run`` spent in
    the core), the block runs qm(x) and keeps that figure; otherwise (the step interpreter: one
    C++ call per step) it replays the recorded C++ calls (``cxx_replay``)."""
    ex = getattr(qm, "_executor", None)
    if ex is not None and hasattr(ex, "last_run_seconds"):
        before = ex.last_run_seconds
        qm(x)
        if ex.last_run_seconds != before:   # qm(x) really went through the executor
            split = _CXX[ours_key] = CxxSplit("executor", 1, [])
            samples = split.samples

            def run_and_read():
                t0 = time.perf_counter()
                qm(x)
                t1 = time.perf_counter()
                samples.append((t1 - t0, ex.last_run_seconds))
            return run_and_read
    replay, n = cxx_replay(qm, x)
    if replay is None:
        return None
    _CXX[ours_key] = CxxSplit("replay", n, [])
    return replay


def python_seconds(results, ours_key: str, cxx_key: str):
    """(Python-side seconds per qm(x), C++ seconds per qm(x), CxxSplit), or Nones. Executor: the
    medians over the cxx block's calls of (wall - core) and of core, call by call. Replay: ours'
    median minus the replay's paired median."""
    split = _CXX.get(ours_key)
    if split is None:
        return None, None, None
    if split.how == "executor":
        if not split.samples:
            return None, None, split
        s = np.asarray(split.samples)
        return float(np.median(s[:, 0] - s[:, 1])), float(np.median(s[:, 1])), split
    ours, cxx = results.times.get(ours_key), results.times.get(B.paired_key(ours_key, cxx_key))
    if ours is None or cxx is None:
        return None, None, split
    return ours - cxx, cxx, split


def overhead_fns(eb):
    """(ours, cxx block or None, step ops): qm(x) on the tiny model with a [1, 1, 1, 1] input, and
    the block that gives its C++ time (cxx_block)."""
    qm = tiny_model(eb)
    x = np.array([[[[0.3]]]], np.float32)
    block = cxx_block(qm, x, OVERHEAD_KEY)
    return (lambda: qm(x)), block, [s.op for s in getattr(getattr(qm, "plan", None), "steps", [])]


def steps_of(eb, model: str) -> int | None:
    try:
        return len(quantized(eb, model).plan.steps)
    except Exception:
        return None


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

HEADERS = ["model", "batch", "ours ms", "ORT int8 QDQ ms", "xORT int8", "OV i8 ms", "xOV i8",
           "ORT fp32 ms", "xORT fp32", "target", "result"]


def headers() -> list:
    """HEADERS; in the ISA mode (model_table.py --isa) the time columns name their ISA."""
    if ISA is None:
        return HEADERS
    tags = {"ours ms": ISA, "OV i8 ms": OV_ISA_CAPS[ISA], "ORT int8 QDQ ms": "default",
            "ORT fp32 ms": "default"}
    return [f"{h} [{tags[h]}]" if h in tags else h for h in HEADERS]


def has_model(results) -> bool:
    return any(k.startswith(PREFIX) for k in (*results.times, *results.verified))


def fmt_ms(sec):
    return "-" if sec is None else f"{sec * 1e3:.2f}" if sec < 0.1 else f"{sec * 1e3:.1f}"


def _baseline_time(results, case: Case, kind: str):
    """(median, paired?): paired with ours if measured so, else from its own bench run."""
    t = results.times.get(B.paired_key(case.key("ours"), case.key(kind)))
    if t is not None:
        return t, True
    return results.times.get(case.key(kind)), False


def _verdict(results, ok, ours, ratio, targets, ov_missing=False) -> str:
    """PASS / FAIL over the targets; ov_missing: OpenVINO could not run here (not installed, or
    it failed), so its target is left out and the verdict says so."""
    if ok is False:
        return "WRONG"
    if not results.isas & {"avx512vnni", "avxvnni"}:
        return "n/a (no VNNI)"
    if ours is None:
        return "not run" + (" (no eightbit)" if results.eb_unavailable else "")
    skipped = [(c, t) for c, t in targets if c == OV and ov_missing and ratio.get(c) is None]
    targets = [ct for ct in targets if ct not in skipped]
    if any(ratio.get(c) is None for c, _ in targets):
        return "incomplete"
    verdict = "PASS" if all(ratio[c] >= t for c, t in targets) else "FAIL"
    return verdict + (f" ({OV} not run)" if skipped else "")


def _ov_cells(case: Case, t, ratio):
    """The OV i8 ms / xOV i8 cells: the time, or why there is none."""
    if t is not None:
        return fmt_ms(t), B.fmt_ratio(ratio)
    why = ov_why_not(case.model)
    if case.model not in OV_MODELS or why is None or not B.have_ort():
        return "-", "-"
    short = "not run (openvino not installed)" if why == "openvino not installed" else "not run (failed)"
    return short, short


def render(results, eb=None) -> str:
    """The whole-model target table, the overhead line, accuracy and the ORT graphs."""
    measured = {k.split("~")[0] for k in (*results.times, *results.verified)}
    cases = [c for c in CASES if any(c.key(k) in measured for k in ("ours",) + BASELINE_KINDS)]
    rows, notes = [], []
    for case in cases:
        ours = results.times.get(case.key("ours"))
        times, paired = {}, True
        for kind in BASELINE_KINDS + (OV_KIND,):
            times[kind], p = _baseline_time(results, case, kind)
            paired &= p or times[kind] is None
        ratio = {I8: times["ort-i8"] / ours if times["ort-i8"] and ours else None,
                 F32: times["ort-f32"] / ours if times["ort-f32"] and ours else None,
                 OV: times[OV_KIND] / ours if times[OV_KIND] and ours else None}
        ov_missing = case.model in OV_MODELS and ov_why_not(case.model) is not None
        ok, detail = results.verified.get(case.key("ours"), (None, ""))
        if ok is False:
            notes.append(f"{case.id}: ours is wrong: {detail}")
        if ours is None and detail:
            notes.append(f"{case.id}: ours not run: {detail}")
        if not paired and ours is not None:
            notes.append(f"{case.id}: baselines not paired with ours (their own bench runs)")
        label = case.label
        if case.model == MLP:
            mode = our_mode(eb, MLP) if eb is not None else "static"
            label += " *"
            notes.append(f"* {case.id}: the ORT int8 column is quantize_dynamic (DynamicQuantizeMatMul, "
                         f"per-tensor weights); ours is eb.quantize {mode}"
                         + (" (eb.quantize has no dynamic mode yet)" if mode == "static" else ""))
        target = ", ".join(f">={t:g}x {c}" for c, t in case.targets)
        rows.append([label, case.batch, fmt_ms(ours), fmt_ms(times["ort-i8"]),
                     B.fmt_ratio(ratio[I8]), *_ov_cells(case, times[OV_KIND], ratio[OV]),
                     fmt_ms(times["ort-f32"]), B.fmt_ratio(ratio[F32]),
                     target, _verdict(results, ok, ours, ratio, case.targets, ov_missing)])
    text = (isa_lines(eb) + B.format_table(headers(), rows, left=(0, -2, -1))) if rows else []
    if rows:
        text.append("ratio = baseline time / our time (higher is better; >= 1.0x means ours takes at "
                    "most the baseline's latency); medians over the same cycles (~20 ms blocks, or "
                    "one call when longer, of each implementation, alternating); single thread. "
                    "ORT int8 QDQ = quant_pre_process + quantize_static(QDQ, per_channel, "
                    "QUInt8 activations, QInt8 weights), min/max over the calibration batches "
                    "eightbit used (ResNet-18: 4 x 2 random N(0,1) images).")
        text += _ov_lines(cases)
    text += _python_time_lines(results, cases, eb)
    text += _overhead_lines(results, eb)
    text += _accuracy_lines(results)
    text += _graph_notes(cases)
    if results.eb_unavailable:
        text.append(f"eightbit not importable: {results.eb_unavailable}")
    text += [f"note: {n}" for n in notes]
    return "\n".join(text)


def _ov_lines(cases) -> list:
    """How OpenVINO ran, and whether it ran int8: the nodes of its runtime model."""
    models = [m for m in dict.fromkeys(c.model for c in cases) if m in OV_MODELS]
    if not models or not B.have_ort():
        return []
    lines = [ov_settings_line()]
    if openvino()[0] is None:
        return lines
    for model in models:
        why = ov_why_not(model)
        if why is not None:
            lines.append(f"OV i8, {model}: not run: {why}")
            continue
        batch = next((b for m, b in _OV_COMPILED if m == model), 1)
        try:
            n8, n, desc = ov_runtime(model, batch)
        except Exception as e:  # informative only
            lines.append(f"OV runtime model, {model}: unknown ({type(e).__name__}: {e})")
            continue
        verdict = (f"int8: {n8} of {n} Convolution / FullyConnected nodes run u8/i8"
                   + ("" if n8 == n else "  <- NOT all int8: the OV i8 column is partly float"))
        if ISA is not None:
            above = list(dict.fromkeys(a for m, b in _OV_COMPILED if m == model
                                       for a in ov_above_cap(m, b)))   # every batch compiled
            compute = [a for a in above if a.split()[0] in _OV_COMPUTE]
            cap, banned = OV_ISA_CAPS[ISA], _ABOVE_CAP[ISA]
            if not banned:
                verdict += f"; cap {cap} (AMX allowed)"
            elif not above:
                verdict += f"; cap {cap}: no primitive named {' / '.join(banned)}"
            else:
                verdict += (f"; cap {cap}: primitives beyond it: {', '.join(above)}"
                            + ("  <- a Convolution / FullyConnected is NOT capped" if compute else
                               " (no Convolution / FullyConnected among them: nodes that pick "
                               "their kernel by cpuid themselves)"))
        lines.append(f"OV runtime model, {model} (get_runtime_model(), batch {batch}, layer type "
                     f"runtimePrecision x count [primitive]): {verdict}; {desc}")
    return lines


def _how(split) -> str:
    if split.how == "executor":
        return ("the time inside the C++ plan executor (its last_run_seconds), call by call, "
                "medians")
    return f"its {split.calls} C++ calls (eightbit._core) replayed with the recorded arguments"


def _python_time_lines(results, cases, eb) -> list:
    parts, hows = [], set()
    for case in cases:
        py, cxx, split = python_seconds(results, case.key("ours"), case.key("cxx"))
        if py is None:
            continue
        hows.add(_how(split).replace(f"its {split.calls} C++", "its C++"))
        steps = steps_of(eb, case.model) if eb is not None else None
        parts.append(f"{case.id} {py * 1e6:.1f} us (C++ {fmt_ms(cxx)} ms"
                     + (f", {steps} plan steps)" if steps else ")"))
    if not parts:
        return []
    return [f"Python-side time per call (qm(x) minus {' / '.join(sorted(hows))}): "
            + "; ".join(parts)]


def _overhead_lines(results, eb) -> list:
    ours = results.times.get(OVERHEAD_KEY)
    target = f"target < {OVERHEAD_TARGET_S * 1e6:.0f} us"
    if ours is None:
        why = results.verified.get(OVERHEAD_KEY, (None, ""))[1]
        return [f"Python-side overhead per call ({target}): not measured{': ' + why if why else ''}"]
    over, cxx, split = python_seconds(results, OVERHEAD_KEY, OVERHEAD_CXX_KEY)
    model = "model: one 1x1 conv 1->1 on a 1x1x1x1 input (quantize, conv, dequantize steps)"
    if over is None:
        return [f"Python-side overhead per call ({target}): at most {ours * 1e6:.1f} us = qm(x) "
                f"({model}; its C++ time could not be separated)"]
    verdict = "PASS" if over < OVERHEAD_TARGET_S else "FAIL"
    return [f"Python-side overhead per call: {over * 1e6:.1f} us ({target}: {verdict}) = qm(x) "
            f"minus {_how(split)} (qm(x) {ours * 1e6:.1f} us, C++ {cxx * 1e6:.1f} us); {model}"]


def _accuracy_lines(results) -> list:
    store = accuracy_store(results)
    if not store:
        return []
    rows = []

    def pct(v):
        return "-" if v is None else f"{v * 100:.1f}%"

    def err(v):
        return "-" if v is None else f"{v:.3f}"
    for model, a in store.items():
        rows.append([{RESNET18: "ResNet-18", MLP: "MLP", MOBILENETV2: "MobileNetV2"}[model], a.n,
                     pct(a.ours_top1), pct(a.ort_top1), pct(a.ov_top1),
                     err(a.ours_rel), err(a.ort_rel), err(a.ov_rel)])
    text = ["", "accuracy against the float graph (graph.run), on random N(0,1) inputs that are "
            "neither calibration nor timing data (a rough check: random weights, random data); "
            "OV int8 = OpenVINO on ORT's QDQ file:"]
    text += B.format_table(["model", "samples", "top-1 agree ours", "top-1 agree ORT int8",
                            "top-1 agree OV int8", "rel. logit err ours", "rel. logit err ORT int8",
                            "rel. logit err OV int8"], rows, left=(0,))
    return text


def _graph_notes(cases) -> list:
    if not B.have_ort():
        return []
    notes = [""]
    for model in dict.fromkeys(c.model for c in cases):
        for kind in BASELINE_KINDS:
            try:
                desc = ort_graph(model, kind)
            except Exception as e:  # informative only
                desc = f"unknown ({type(e).__name__}: {e})"
            notes.append(f"ORT graph, {model} {kind}: {desc}")
    return notes

