"""Shared pieces of the GEMM benchmark: cases, input data, baseline builders, targets, the table.

Used by the pytest-benchmark suite (``conftest.py``, ``bench_gemm.py``, ``bench_linear.py``) and by
the plain script ``gemm_table.py``. Nothing here times anything; callers measure and hand the
medians to :class:`Results`, which renders the target table.

Baselines (all built in-process, weights as initializers so ONNX Runtime prepacks them):

* ``ort_matmul_integer``: one ``MatMulInteger`` node, A uint8 input, B int8 initializer,
  a_zero_point uint8 initializer, b_zero_point int8 initializer 0 (u8s8, ORT's VNNI path).
* ``ort_matmul_f32``: one ``MatMul`` node, float32, B initializer.
* ``ort_gemm_f32``: one ``Gemm`` node, B [out, in] initializer with transB=1, bias C initializer
  (what an exported ``nn.Linear`` looks like).
* ``ort_dynamic_quant_matmul``: one ``com.microsoft.DynamicQuantizeMatMul`` node (what
  ``onnxruntime.quantization.quantize_dynamic`` fuses a Linear into): informative only.
* NumPy float32 ``@`` (single-threaded BLAS, see conftest.py): informative only.

ORT sessions are single-threaded unless asked otherwise: intra_op 1, inter_op 1, sequential,
default graph optimization level (ORT_ENABLE_ALL). They are called the usual way,
``session.run(None, {name: array})``.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

A_ZERO_POINT = 119  # a non-trivial activation zero point, so the compensation path is exercised

GEMM_SHAPES = [
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (1, 4096, 4096),
    (1, 768, 768),
    (16, 768, 3072),
    (128, 768, 768),
]

LINEAR_BATCH, LINEAR_IN, LINEAR_OUT = 32, 768, 3072


def shape_id(shape) -> str:
    m, k, n = shape
    return f"{m}x{k}x{n}"


def gemm_ops(shape) -> float:
    m, k, n = shape
    return 2.0 * m * k * n


# Variants of "ours" measured on a GEMM shape: (variant, shapes it runs on)
OUR_VARIANTS = {
    "1t": GEMM_SHAPES,                       # default ISA, 1 thread
    "avx2": [(1024, 1024, 1024)],            # eb.set_isa("avx2"), the exact (vpmaddwd) path
    "2t": [(1024, 1024, 1024)],              # eb.set_num_threads(2)
}

# Baselines measured on a GEMM shape: (kind, threads) -> shapes
BASELINES = {
    ("ort-i8", 1): GEMM_SHAPES,
    ("ort-f32", 1): GEMM_SHAPES,
    ("numpy", 1): GEMM_SHAPES,
    ("ort-i8", 2): [(1024, 1024, 1024)],     # informative, beside our 2-thread row
    ("ort-f32", 2): [(1024, 1024, 1024)],
}

LINEAR_BASELINES = ["ort-gemm-f32", "ort-dyn-i8", "numpy"]


def paired_key(ours_key: str, baseline_key: str) -> str:
    """Key of a baseline median measured in the same rounds as ours_key."""
    return f"{ours_key}~{baseline_key}"


def key(kind: str, shape=None, threads: int = 1) -> str:
    """Measurement key, e.g. ``ours-1t/1024x1024x1024`` or ``ort-i8-2t/1024x1024x1024``."""
    if kind.startswith("ours"):
        name = kind
    else:
        name = f"{kind}-{threads}t" if threads != 1 else kind
    return name if shape is None else f"{name}/{shape_id(shape)}"


# --------------------------------------------------------------------------------------------
# Input data (deterministic, cached)
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def gemm_data(shape):
    """A uint8 [M,K], B int8 [K,N] in [-127, 127], and their float32 twins (A - zp, B)."""
    m, k, n = shape
    rng = np.random.default_rng(1000 + m * 7 + k * 13 + n * 17)
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    b = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
    a_f = (a.astype(np.float32) - np.float32(A_ZERO_POINT))
    b_f = b.astype(np.float32)
    return a, b, a_f, b_f


@functools.lru_cache(maxsize=None)
def gemm_reference(shape) -> np.ndarray:
    """Exact int32 result of (A - zp) @ B. float64 BLAS is exact here: |sum| < 2**53."""
    a, b, _, _ = gemm_data(shape)
    ref = (a.astype(np.float64) - A_ZERO_POINT) @ b.astype(np.float64)
    return ref.astype(np.int32)


@functools.lru_cache(maxsize=None)
def linear_data():
    rng = np.random.default_rng(7)
    w = (rng.standard_normal((LINEAR_OUT, LINEAR_IN)) * (1.0 / np.sqrt(LINEAR_IN))).astype(np.float32)
    bias = (rng.standard_normal(LINEAR_OUT) * 0.1).astype(np.float32)
    x = rng.standard_normal((LINEAR_BATCH, LINEAR_IN)).astype(np.float32)
    return x, w, bias


# --------------------------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------------------------

def have_ort() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except Exception:
        return False
    return True


def ort_session(model, threads: int, optimized_model_path=None):
    """A CPU session on ``threads`` intra-op threads (inter_op 1, sequential, ORT_ENABLE_ALL).

    optimized_model_path: where ORT saves the graph after its optimizations (what it runs)."""
    import onnx
    import onnxruntime as ort

    model.ir_version = min(onnx.IR_VERSION, 10)
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads > 1:
        # ORT's workers spin after a parallel run by default; in paired rounds (see Paired) they
        # would then compete with the next call for the second core.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_model_path is not None:
        so.optimized_model_filepath = str(optimized_model_path)
        so.log_severity_level = 3  # ORT warns that a saved NCHWc graph is machine-specific
    # graph_optimization_level left at its default, ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), sess_options=so,
                                providers=["CPUExecutionProvider"])


def one_node_model(node, inputs, outputs, initializers, domains=(("", 17),)):
    from onnx import helper
    graph = helper.make_graph([node], "bench", inputs, outputs, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in domains],
                             producer_name="eightbit-bench")


@functools.lru_cache(maxsize=None)
def ort_matmul_integer(shape, threads: int = 1):
    """MatMulInteger u8s8, B / zero points as initializers. Returns (session, feed)."""
    from onnx import TensorProto, helper, numpy_helper
    m, k, n = shape
    a, b, _, _ = gemm_data(shape)
    node = helper.make_node("MatMulInteger", ["A", "B", "a_zp", "b_zp"], ["Y"])
    model = one_node_model(
        node,
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(b, "B"),
         numpy_helper.from_array(np.array(A_ZERO_POINT, dtype=np.uint8), "a_zp"),
         numpy_helper.from_array(np.array(0, dtype=np.int8), "b_zp")],
    )
    return ort_session(model, threads), {"A": a}


@functools.lru_cache(maxsize=None)
def ort_matmul_f32(shape, threads: int = 1):
    """fp32 MatMul, B initializer. Returns (session, feed)."""
    from onnx import TensorProto, helper, numpy_helper
    m, k, n = shape
    _, _, a_f, b_f = gemm_data(shape)
    node = helper.make_node("MatMul", ["A", "B"], ["Y"])
    model = one_node_model(
        node,
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(b_f, "B")],
    )
    return ort_session(model, threads), {"A": a_f}


@functools.lru_cache(maxsize=None)
def ort_gemm_f32():
    """fp32 Gemm as an exported nn.Linear: B [out, in] initializer, transB=1, bias C initializer."""
    from onnx import TensorProto, helper, numpy_helper
    x, w, bias = linear_data()
    node = helper.make_node("Gemm", ["X", "W", "bias"], ["Y"], transB=1)
    model = one_node_model(
        node,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [LINEAR_BATCH, LINEAR_IN])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [LINEAR_BATCH, LINEAR_OUT])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(bias, "bias")],
    )
    return ort_session(model, 1), {"X": x}


@functools.lru_cache(maxsize=None)
def ort_dynamic_quant_matmul():
    """com.microsoft.DynamicQuantizeMatMul: what ORT's quantize_dynamic makes of a Linear.

    Weights int8 symmetric per output channel (as eightbit's default), bias float. Informative.
    """
    from onnx import TensorProto, helper, numpy_helper
    x, w, bias = linear_data()
    scale = np.maximum(np.abs(w).max(axis=1), 1e-12) / 127.0          # [out]
    wq = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)  # [out, in]
    node = helper.make_node("DynamicQuantizeMatMul", ["X", "B", "b_scale", "b_zp", "bias"], ["Y"],
                            domain="com.microsoft")
    model = one_node_model(
        node,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [LINEAR_BATCH, LINEAR_IN])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [LINEAR_BATCH, LINEAR_OUT])],
        [numpy_helper.from_array(np.ascontiguousarray(wq.T), "B"),
         numpy_helper.from_array(scale.astype(np.float32), "b_scale"),
         numpy_helper.from_array(np.zeros(LINEAR_OUT, dtype=np.int8), "b_zp"),
         numpy_helper.from_array(bias, "bias")],
        domains=(("", 17), ("com.microsoft", 1)),
    )
    return ort_session(model, 1), {"X": x}


@functools.lru_cache(maxsize=None)
def ort_matmul_integer_output(shape) -> np.ndarray:
    sess, feed = ort_matmul_integer(shape)
    return sess.run(None, feed)[0]


def check_gemm(out, shape):
    """(ok, detail): our int32 output against ORT MatMulInteger's, exactly.

    ORT is the oracle when it agrees with the exact float64 reference (it does on VNNI machines;
    its non-VNNI u8s8 path may saturate); otherwise the exact reference is.
    """
    ref = gemm_reference(shape)
    out = np.asarray(out)
    if out.dtype != np.int32 or out.shape != ref.shape:
        return False, f"got {out.dtype}{out.shape}, want int32{ref.shape}"
    if have_ort():
        ort_out = ort_matmul_integer_output(shape)
        if np.array_equal(ort_out, ref):
            oracle, name = ort_out, "ORT MatMulInteger"
        else:
            oracle, name = ref, "the exact reference (ORT MatMulInteger itself is inexact here)"
    else:
        oracle, name = ref, "the exact float64 reference"
    diff = out.astype(np.int64) - oracle
    bad = np.count_nonzero(diff)
    if bad:
        first = tuple(int(i) for i in np.argwhere(diff)[0])
        return False, (f"{bad} of {out.size} elements differ from {name}; max |diff| "
                       f"{int(np.abs(diff).max())}; first at {first}: {int(out[first])} != {int(oracle[first])}")
    return True, f"bit-exact vs {name}"


def ort_call(session, feed):
    """The usual, fair call: ``session.run(None, feed)``; inputs built outside the timed region."""
    run = session.run
    return lambda: run(None, feed)


def gemm_baseline_fn(kind: str, shape, threads: int = 1):
    """The call to time for a GEMM baseline: 'ort-i8', 'ort-f32' or 'numpy'."""
    if kind == "numpy":
        _, _, a_f, b_f = gemm_data(shape)
        return lambda: a_f @ b_f
    build = ort_matmul_integer if kind == "ort-i8" else ort_matmul_f32
    return ort_call(*build(shape, threads))


def gemm_paired_baselines(shape, threads: int = 1) -> dict:
    """{measurement key: call} of the baselines timed beside ours on a GEMM shape."""
    kinds = ["ort-i8", "ort-f32", "numpy"] if have_ort() else ["numpy"]
    if threads > 1:
        kinds = [k for k in kinds if k != "numpy"]
    return {key(k, shape, threads): gemm_baseline_fn(k, shape, threads) for k in kinds}


def linear_baseline_fn(kind: str):
    """The call to time for a Linear baseline: 'ort-gemm-f32', 'ort-dyn-i8' or 'numpy'."""
    x, w, bias = linear_data()
    if kind == "numpy":
        return lambda: x @ w.T + bias
    sess, feed = ort_gemm_f32() if kind == "ort-gemm-f32" else ort_dynamic_quant_matmul()
    return ort_call(sess, feed)


def linear_rel_err(y, x, w, bias) -> float:
    ref = x @ w.T + bias
    return float(np.linalg.norm(np.asarray(y, dtype=np.float32) - ref) / np.linalg.norm(ref))


LINEAR_TOL = 0.02  # relative L2 error of a dynamic int8 Linear against float32


# --------------------------------------------------------------------------------------------
# eightbit
# --------------------------------------------------------------------------------------------

def gemm_ours_fn(eb, shape):
    """Pack B outside the timed region; returns the call to time (prepacked matmul_integer)."""
    a, b, _, _ = gemm_data(shape)
    zp = np.uint8(A_ZERO_POINT)
    pw = eb.pack_weights(b)
    matmul = eb.ops.matmul_integer
    return lambda: matmul(a, pw, zp)


def add_timing_args(ap, unit="row", default=1.0, quick=0.3, quick_help="short timing, at least 3 cycles"):
    """The table scripts' timing options: -t/--time (seconds of paired timing per ``unit``), --quick,
    --min-cycles. timing_defaults fills what the command line left out."""
    ap.add_argument("-t", "--time", type=float, default=None,
                    help=f"seconds of timing per {unit} (default {default}, {quick} with --quick)")
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--min-cycles", type=int, default=None)
    ap.set_defaults(timing_default=default, timing_quick=quick)


def timing_defaults(args):
    """args.time and args.min_cycles where the command line gave none (add_timing_args)."""
    if args.time is None:
        args.time = args.timing_quick if args.quick else args.timing_default
    if args.min_cycles is None:
        args.min_cycles = 3 if args.quick else 5
    return args


def import_eightbit():
    """(module, None) or (None, reason)."""
    try:
        import eightbit as eb
        eb.cpu_info()
        return eb, None
    except Exception as e:  # not built yet, or broken
        return None, f"{type(e).__name__}: {e}"


def available_isas(eb) -> set:
    """ISAs eightbit can run here; from /proc/cpuinfo when eightbit is not importable."""
    if eb is not None:
        try:
            return set(eb.cpu_info().get("available", []))
        except Exception:
            pass
    flags = cpu_flags()
    isas = {"scalar"}
    if "avx2" in flags:
        isas.add("avx2")
    if "avx_vnni" in flags:
        isas.add("avxvnni")
    if {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= flags:
        isas.add("avx512vnni")
    return isas


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def eb_isa(eb, name):
    """Switch eightbit's ISA for one case; restore the previous one after."""
    prev = eb.cpu_info()["isa"]
    eb.set_isa(name)
    try:
        yield
    finally:
        eb.set_isa(prev)


@contextlib.contextmanager
def eb_threads(eb, n):
    """Run one case on n threads; back to 1 thread after (the suite's default)."""
    eb.set_num_threads(n)
    try:
        yield
    finally:
        eb.set_num_threads(1)


def run_and_record(benchmark, results, key, fn):
    """Time fn with pytest-benchmark and record the median under key."""
    benchmark(fn)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None with --benchmark-disable
        results.record(key, stats.stats.median)


BLOCK_S = 0.02       # each implementation runs in blocks of about this many seconds of calls
WARM_BELOW_S = 5e-3  # calls shorter than this get an untimed warm call at the start of each block


class Paired:
    """Baselines timed in the same stretch of time as ours, in short alternating blocks.

    The machines we measure on are shared: their speed drifts by 2x and more from one second to
    the next (bimodal; see bench/README.md), so a ratio of two medians taken seconds apart is
    noise. Here every implementation of a case runs in blocks of about ``BLOCK_S`` seconds of
    back-to-back calls, the blocks cycling through baselines and ours until the budget is spent:
    all medians come from the same cycles, and within a block each call runs hot (its own weights in
    cache, as in a benchmark loop). Each block opens with one untimed call when calls are short,
    so no implementation pays for the cache or clock state the previous one left behind.

    Ours is timed by ``benchmark.pedantic`` (its rounds are consecutive calls, one per round); the
    baselines' blocks run in pedantic's untimed ``setup`` before every k-th round and are timed with
    ``time.perf_counter``, the clock pytest-benchmark uses.
    """

    def __init__(self, ours, baselines, ours_prepare=None):
        """ours: the timed callable. baselines: {name: fn or (fn, before, after)}, where before /
        after are untimed (e.g. switching thread counts). ours_prepare: untimed, before ours' blocks."""
        self.ours = ours
        self.baselines = {k: (v if isinstance(v, tuple) else (v, None, None)) for k, v in baselines.items()}
        self.ours_prepare = ours_prepare
        self.samples = {k: [] for k in self.baselines}
        self.plan = {}            # name -> (calls per block, warm call?)
        self.ours_block = 1
        self.ours_warm = True
        self.recording = False
        self._round = 0

    def _block(self, name, record):
        fn, before, after = self.baselines[name]
        n, warm = self.plan.get(name, (1, True))
        if before is not None:
            before()
        if warm:
            fn()
        out = self.samples[name] if record else []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        if after is not None:
            after()

    def _cycle_start(self, record):
        for name in self.baselines:
            self._block(name, record)
        if self.ours_prepare is not None:
            self.ours_prepare()
        if self.ours_warm:
            self.ours()

    def setup(self):
        if self._round % self.ours_block == 0:
            self._cycle_start(self.recording)
        self._round += 1

    def _single(self, fn, before=None, after=None):
        if before is not None:
            before()
        fn()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        if after is not None:
            after()
        return max(dt, 1e-7)

    def run(self, benchmark, budget_s, min_cycles=5, warmup=True):
        """Size the blocks, warm up, run ``benchmark.pedantic``. Returns {name: median seconds}."""
        cycle = 0.0
        for name, (fn, before, after) in self.baselines.items():
            t = self._single(fn, before, after)
            n = max(1, round(BLOCK_S / t))
            self.plan[name] = (n, t < WARM_BELOW_S)
            cycle += t * (n + (t < WARM_BELOW_S))
        if self.ours_prepare is not None:
            self.ours_prepare()
        t = self._single(self.ours)
        self.ours_block = max(1, round(BLOCK_S / t))
        self.ours_warm = t < WARM_BELOW_S
        cycle += t * (self.ours_block + self.ours_warm)
        cycles = max(min_cycles, math.ceil(budget_s / cycle))
        rounds = int(min(cycles * self.ours_block, 1_000_000))
        if warmup:  # one unrecorded cycle (pedantic's warmup_rounds would record setup's blocks)
            self._cycle_start(record=False)
            for _ in range(self.ours_block):
                self.ours()
        self._round = 0
        self.recording = True
        benchmark.pedantic(self.ours, setup=self.setup, rounds=rounds, iterations=1)
        self.recording = False
        return {k: float(np.median(v)) for k, v in self.samples.items() if v}


class PedanticShim:
    """Stands in for pytest-benchmark's fixture in gemm_table.py: same rounds, same clock."""

    def __init__(self):
        self.times = []

    def pedantic(self, target, setup=None, rounds=1, iterations=1, warmup_rounds=0):
        for _ in range(rounds):
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            target()
            self.times.append(time.perf_counter() - t0)

    @property
    def median(self):
        return float(np.median(self.times))


def time_paired(benchmark, results, ours_key, ours, baselines, budget_s, min_cycles=5, warmup=True,
                ours_prepare=None):
    """Time ours and its baselines in the same cycles (:class:`Paired`) and record the medians:
    ours under ``ours_key``, each baseline under ``paired_key(ours_key, name)``.

    benchmark: pytest-benchmark's fixture or a :class:`PedanticShim`. Returns (ours median,
    {baseline name: median}); ours median is None under ``--benchmark-disable`` (nothing recorded).
    """
    med = Paired(ours, baselines, ours_prepare).run(benchmark, budget_s, min_cycles=min_cycles,
                                                    warmup=warmup)
    if isinstance(benchmark, PedanticShim):
        ours_med = benchmark.median
    else:
        stats = getattr(benchmark, "stats", None)
        ours_med = None if stats is None else stats.stats.median
    if ours_med is None:
        return None, med
    results.record(ours_key, ours_med)
    for name, sec in med.items():
        results.record(paired_key(ours_key, name), sec)
    return ours_med, med


# --------------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------------

RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
                  "amx_int8")


def _cpuinfo():
    model, flags = "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        return None, set()
    return model, flags


def cpu_flags() -> set:
    return _cpuinfo()[1]


def cpu_flags_line() -> str:
    model, flags = _cpuinfo()
    if model is None:
        return "CPU flags: /proc/cpuinfo not readable"
    got = " ".join(f"{fl}={'yes' if fl in flags else 'no'}" for fl in RELEVANT_FLAGS)
    return f"CPU: {model}; {usable_cpus()} usable cpus; flags: {got}"


class CpuUsage:
    """CPU time used by other processes, and stolen by the hypervisor, while we measured.

    Our own use is subtracted, so the figure says how much of the 2 cores we did not have."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.s0 = self._stat()
        self.own0 = self._own()

    @staticmethod
    def _own():
        t = os.times()
        return t.user + t.system

    @staticmethod
    def _stat():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        user, nice, system, idle, iowait, irq, softirq, steal = v
        return (user + nice + system + irq + softirq) / hz, steal / hz

    def line(self) -> str:
        s1 = self._stat()
        if s1 is None or self.s0 is None:
            return "CPU use by other processes: unknown"
        wall = max(time.perf_counter() - self.t0, 1e-9)
        other = max(0.0, (s1[0] - self.s0[0]) - (self._own() - self.own0)) / wall
        steal = (s1[1] - self.s0[1]) / wall
        warn = ""
        if other > 0.1 or steal > 0.05:
            warn = ("  <- the machine was not idle: absolute times and the 2-thread row are "
                    "unreliable (ratios are paired, see bench/README.md)")
        return (f"during the run, other processes used {other:.2f} cores and the hypervisor stole "
                f"{steal:.2f} cores (of {usable_cpus()}){warn}")


def numpy_blas_line() -> str:
    try:
        import threadpoolctl
        info = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
        desc = ", ".join(f"{i.get('internal_api')} {i.get('version')} arch={i.get('architecture')}"
                         f" threads={i.get('num_threads')}" for i in info) or "no BLAS found"
    except ImportError:
        desc = (f"threadpoolctl not installed; OPENBLAS_NUM_THREADS="
                f"{os.environ.get('OPENBLAS_NUM_THREADS')}")
    ct = os.environ.get("OPENBLAS_CORETYPE")
    note = f"; OPENBLAS_CORETYPE={ct} is set (slows NumPy: its column is informative only)" if ct else ""
    return f"NumPy {np.__version__}: {desc}{note}"


def header_lines(eb, numpy_blas=True) -> list:
    """What the tables were measured on: CPU, eightbit's ISA, versions, NumPy's BLAS."""
    lines = [cpu_flags_line()]
    if eb is not None:
        try:
            lines.append(f"eb.cpu_info(): {eb.cpu_info()}")
        except Exception as e:
            lines.append(f"eb.cpu_info() failed: {e}")
    lines.append(versions_line(eb))
    if numpy_blas:
        lines.append(numpy_blas_line())
    return lines


def versions_line(eb) -> str:
    parts = [f"numpy {np.__version__}"]
    try:
        import onnxruntime
        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except Exception:
        parts.append("onnxruntime not installed")
    if eb is not None:
        parts.append(f"eightbit {getattr(eb, '__version__', '?')}")
    return "versions: " + ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Targets and the table
# --------------------------------------------------------------------------------------------

# Baseline columns of the table: column name -> header
COLUMNS = ["ORT i8", "ORT f32", "NumPy f32", "ours 1T"]


@dataclass
class Row:
    label: str
    ours: str                      # measurement key of ours
    ops: float                     # 2*M*N*K
    cols: dict                     # column -> measurement key
    targets: list                  # [(column, min ratio)]
    needs: str = "vnni"            # "vnni" | "avx2" | "2cpus"
    note: str = ""


def table_rows() -> list:
    rows = []
    s1024 = (1024, 1024, 1024)
    gemm_targets = {
        (1024, 1024, 1024): [("ORT f32", 3.8), ("ORT i8", 1.0)],
        (2048, 2048, 2048): [("ORT i8", 1.15)],
        (1, 4096, 4096): [("ORT i8", 1.0)],
        (1, 768, 768): [("ORT i8", 1.3)],
        (16, 768, 3072): [("ORT i8", 1.0)],
        (128, 768, 768): [("ORT i8", 1.0)],
    }
    for shape in GEMM_SHAPES:
        rows.append(Row(
            label=shape_id(shape), ours=key("ours-1t", shape), ops=gemm_ops(shape),
            cols={"ORT i8": key("ort-i8", shape), "ORT f32": key("ort-f32", shape),
                  "NumPy f32": key("numpy", shape)},
            targets=gemm_targets[shape]))
    rows.append(Row(
        label="1024^3 isa=avx2 (exact)", ours=key("ours-avx2", s1024), ops=gemm_ops(s1024),
        cols={"ORT i8": key("ort-i8", s1024), "ORT f32": key("ort-f32", s1024),
              "NumPy f32": key("numpy", s1024)},
        targets=[("ORT f32", 0.9)], needs="avx2",
        note="ORT columns: 1 thread, default ISA"))
    rows.append(Row(
        label="1024^3 2 threads", ours=key("ours-2t", s1024), ops=gemm_ops(s1024),
        cols={"ORT i8": key("ort-i8", s1024, 2), "ORT f32": key("ort-f32", s1024, 2),
              "ours 1T": key("ours-1t", s1024)},
        targets=[("ours 1T", 1.8)], needs="2cpus",
        note="ORT columns: ORT on 2 threads"))
    lin_ops = 2.0 * LINEAR_BATCH * LINEAR_IN * LINEAR_OUT
    rows.append(Row(
        label=f"QuantizedLinear {LINEAR_BATCH}x{LINEAR_IN}->{LINEAR_OUT}", ours="lin/ours",
        ops=lin_ops,
        cols={"ORT i8": "lin/ort-dyn-i8", "ORT f32": "lin/ort-gemm-f32", "NumPy f32": "lin/numpy"},
        targets=[("ORT f32", 3.0)],
        note="ORT f32 = Gemm transB=1 + bias; ORT i8 = DynamicQuantizeMatMul"))
    return rows


def format_table(headers, rows, left=()) -> list:
    """Lines of a plain-text table: columns padded to width, right-aligned except the columns
    whose indices are in ``left`` (negative indices count from the end)."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    left = {i % len(widths) for i in left}

    def fmt(cells):
        return "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def fmt_us(sec):
    if sec is None:
        return "-"
    us = sec * 1e6
    return f"{us:.1f}" if us < 100 else f"{us:.0f}"


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}x"


@dataclass
class Results:
    """Medians (seconds) by measurement key, plus correctness verdicts by key of ours."""
    times: dict = field(default_factory=dict)
    verified: dict = field(default_factory=dict)   # key -> (ok: bool, detail: str)
    eb_unavailable: str | None = None
    isas: set = field(default_factory=set)

    def record(self, k: str, seconds: float):
        self.times[k] = seconds

    def verify(self, k: str, ok: bool, detail: str = ""):
        self.verified[k] = (ok, detail)

    def supported(self, row: Row) -> bool:
        if row.needs == "vnni":
            return bool(self.isas & {"avx512vnni", "avxvnni"})
        if row.needs == "avx2":
            return "avx2" in self.isas
        if row.needs == "2cpus":
            return usable_cpus() >= 2
        return True

    def has_gemm(self) -> bool:
        """Whether any case of the GEMM table was measured or verified."""
        row_keys = {k for r in table_rows() for k in (r.ours, *r.cols.values())}
        return any(k.split("~")[0] in row_keys for k in (*self.times, *self.verified))

    def render(self) -> str:
        """The GEMM target table."""
        headers = (["case", "ours us", "GOP/s"]
                   + [h for c in COLUMNS for h in (f"{c} us", f"x{c}")]
                   + ["target", "result"])
        lines = []
        notes = []
        standalone = set()
        for row in table_rows():
            ours = self.times.get(row.ours)
            cells = [row.label, fmt_us(ours), "-" if ours is None else f"{row.ops / ours / 1e9:.0f}"]
            ratios = {}
            for c in COLUMNS:
                base = None
                if c in row.cols:
                    base = self.times.get(paired_key(row.ours, row.cols[c]))
                    if base is None and row.cols[c] in self.times:
                        base = self.times[row.cols[c]]
                        standalone.add(row.label)
                r = base / ours if (base is not None and ours) else None
                ratios[c] = r
                cells += [fmt_us(base), fmt_ratio(r)]
            target = ", ".join(f">={t:g}x {c}" for c, t in row.targets)
            ok_v, detail = self.verified.get(row.ours, (None, ""))
            if ok_v is False:
                result = "WRONG"
                notes.append(f"{row.label}: result mismatch: {detail}")
            elif not self.supported(row):
                result = "n/a"
                notes.append(f"{row.label}: n/a: this machine lacks {row.needs}")
            elif ours is None:
                result = "not run" + (" (no eightbit)" if self.eb_unavailable else "")
            elif any(ratios[c] is None for c, _ in row.targets):
                result = "incomplete"
            else:
                result = "PASS" if all(ratios[c] >= t for c, t in row.targets) else "FAIL"
                if ok_v is None:
                    result += " (unverified)"
            cells += [target, result]
            if row.note:
                notes.append(f"{row.label}: {row.note}")
            lines.append(cells)
        text = format_table(headers, lines, left=(0, -2, -1))
        text.append("ratio = baseline time / our time (higher is better); times are medians over the "
                    "same cycles (~20 ms blocks of each implementation, alternating), single thread "
                    "unless stated; GOP/s = 2*M*N*K / our time.")
        if standalone:
            text.append("baselines not paired with ours (taken from their own bench_baseline runs) in: "
                        + ", ".join(sorted(standalone)))
        if self.eb_unavailable:
            text.append(f"eightbit not importable: {self.eb_unavailable}")
        text += [f"note: {n}" for n in notes]
        return "\n".join(text)
