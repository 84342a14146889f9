"""int8 convolution (issue 3): eightbit's qlinear_conv (NHWC, prepacked weights) against ONNX
Runtime QLinearConv (NCHW and NHWC variants; the faster is the baseline) and ONNX Runtime fp32
Conv, batch 1 and 8, single thread (plus one informative 2-thread case, run last). One
pytest-benchmark group per case; the layers, data and baselines are in _conv.py.

``bench_conv_ours`` checks ours against both ORT variants bit for bit, then times it with
pytest-benchmark and, in the same stretch of time, the baselines (``_baselines.Paired``); the
table printed at the end uses those paired medians. ``bench_conv_baseline`` times each baseline on
its own, for pytest-benchmark's tables and history, and so that the suite measures something
before eightbit is built. With eightbit's avx512vnni path active (``EIGHTBIT_ISA=avx512vnni``),
the VNNI throughput probe runs around this module's cases (``vnni_probe``), for the table's
"% VNNI peak" column.
"""
import pytest

import _baselines as B
import _conv as C


def _ours_params():
    for case in C.CASES + C.THREADED_CASES:
        marks = [pytest.mark.two_threads] if case.threads > 1 else []
        yield pytest.param(case, marks=marks, id=case.id)


@pytest.fixture(scope="module", autouse=True)
def vnni_probe(results):
    """The VNNI probe before and after this module's cases (nothing unless the active ISA is
    avx512vnni); the samples accumulate on results, the table uses their max."""
    eb, _ = B.import_eightbit()
    C.record_vnni_probe(results, "before", C.vnni_probe_samples(eb))
    yield
    C.record_vnni_probe(results, "after", C.vnni_probe_samples(eb))


@pytest.mark.parametrize("case", list(_ours_params()))
def bench_conv_ours(benchmark, paired, eb, results, case):
    benchmark.group = f"conv-{case.id}"
    if case.threads > B.usable_cpus():
        pytest.skip(f"fewer than {case.threads} usable CPUs")
    fn = C.conv_ours_fn(eb, case)
    with C.case_threads(eb, case):
        if not C.verify(results, case, fn):
            pytest.fail(f"{case.id}: {results.verified[case.key('ours')][1]}")
        paired(case.key("ours"), fn, C.paired_baselines(eb, case, fn),
               ours_prepare=fn if case.threads > 1 else None)  # wakes the pool before ours' blocks


@pytest.mark.parametrize("case,kind", [pytest.param(c, k, id=f"{c.id}-{k}")
                                       for c in C.CASES for k in C.BASELINE_KINDS])
def bench_conv_baseline(benchmark, need_ort, results, case, kind):
    benchmark.group = f"conv-{case.id}"
    C.check_baseline(case, kind)
    B.run_and_record(benchmark, results, case.key(kind), C.baseline_fn(case, kind))
