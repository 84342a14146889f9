"""int8 GEMM: eightbit's prepacked matmul_integer against ORT MatMulInteger, ORT fp32 MatMul and
NumPy float32, single thread unless marked. One pytest-benchmark group per shape.

``bench_ours*`` time ours with pytest-benchmark and, in the same stretch of time, the baselines
(``_baselines.Paired``: short alternating blocks); the table printed at the end uses those paired
medians. ``bench_baseline`` times each baseline on its own, for pytest-benchmark's tables and
history, and so that the suite measures something before eightbit is built.
"""
import numpy as np
import pytest

import _baselines as B


def _verify(results, k, fn, shape):
    """Once per case, outside timing: bit-exact against ORT MatMulInteger."""
    ok, detail = B.check_gemm(fn(), shape)
    results.verify(k, ok, detail)
    if not ok:
        pytest.fail(f"{k}: {detail}")


@pytest.mark.parametrize("shape", B.OUR_VARIANTS["1t"], ids=B.shape_id)
def bench_ours(benchmark, paired, eb, results, shape):
    benchmark.group = B.shape_id(shape)
    k = B.key("ours-1t", shape)
    fn = B.gemm_ours_fn(eb, shape)
    _verify(results, k, fn, shape)
    paired(k, fn, B.gemm_paired_baselines(shape))


@pytest.mark.parametrize("shape", B.OUR_VARIANTS["avx2"], ids=B.shape_id)
def bench_ours_avx2(benchmark, paired, eb, results, shape):
    benchmark.group = B.shape_id(shape)
    if "avx2" not in B.available_isas(eb):
        pytest.skip("no AVX2 on this machine")
    k = B.key("ours-avx2", shape)
    with B.eb_isa(eb, "avx2"):
        assert eb.cpu_info()["isa"] == "avx2"
        fn = B.gemm_ours_fn(eb, shape)   # packed under the ISA it runs on
        _verify(results, k, fn, shape)
        paired(k, fn, B.gemm_paired_baselines(shape))


@pytest.mark.two_threads
@pytest.mark.parametrize("shape", B.OUR_VARIANTS["2t"], ids=B.shape_id)
def bench_ours_2threads(benchmark, paired, eb, results, shape):
    benchmark.group = B.shape_id(shape) + "-2threads"
    if B.usable_cpus() < 2:
        pytest.skip("fewer than 2 usable CPUs")
    k = B.key("ours-2t", shape)
    fn = B.gemm_ours_fn(eb, shape)
    with B.eb_threads(eb, 2):
        _verify(results, k, fn, shape)
        # ours on 1 thread, in the same cycles: switch to 1 thread and back, untimed
        baselines = {B.key("ours-1t", shape): (fn, lambda: eb.set_num_threads(1),
                                               lambda: eb.set_num_threads(2))}
        baselines.update(B.gemm_paired_baselines(shape, threads=2))
        paired(k, fn, baselines, ours_prepare=fn)  # warm the pool


def _baseline_params():
    for (kind, threads), shapes in B.BASELINES.items():
        for shape in shapes:
            marks = [pytest.mark.two_threads] if threads > 1 else []
            yield pytest.param(kind, threads, shape, marks=marks,
                               id=f"{kind}-{threads}t-{B.shape_id(shape)}")


@pytest.mark.parametrize("kind,threads,shape", list(_baseline_params()))
def bench_baseline(benchmark, results, kind, threads, shape):
    benchmark.group = B.shape_id(shape) + ("-2threads" if threads > 1 else "")
    if threads > B.usable_cpus():
        pytest.skip(f"fewer than {threads} usable CPUs")
    if kind != "numpy" and not B.have_ort():
        pytest.skip("onnx / onnxruntime not installed")
    fn = B.gemm_baseline_fn(kind, shape, threads)
    if kind == "ort-i8":  # sanity: ORT's int8 output has the expected type and shape
        out = fn()[0]
        assert out.dtype == np.int32 and out.shape == (shape[0], shape[2])
    B.run_and_record(benchmark, results, B.key(kind, shape, threads), fn)
