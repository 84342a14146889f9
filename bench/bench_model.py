"""Whole models (issue 4): eightbit's ``eb.quantize`` + ``qm(x)`` against ONNX Runtime's own int8
model (quantize_static QDQ per-channel for ResNet-18, quantize_dynamic for the MLP) and ONNX
Runtime fp32, single thread, in the same run. The models, baselines and table are in _model.py.

``bench_model_ours`` checks ours against the float graph (accuracy on an eval set, once per model),
then times ``qm(x)`` with pytest-benchmark and, in the same stretch of time, both ORT baselines
(``_baselines.Paired``). ``bench_model_overhead`` measures the Python-side overhead per call (a
one-conv model: ``qm(x)`` against its C++ calls replayed directly). ``bench_model_baseline``
times each baseline on its own (pytest-benchmark's tables; works without eightbit), and
``bench_model_baseline_ov`` OpenVINO int8 on ORT's QDQ file (ResNet-18, MobileNetV2; skipped
without ``pip install openvino``).
"""
import pytest

import _baselines as B
import _model as M


def _quantized_or_skip(eb, results, case):
    try:
        return M.quantized(eb, case.model)
    except ImportError as e:  # eightbit.calibrate not there yet: nothing of ours to time
        results.verify(case.key("ours"), None, f"eb.quantize: {e}")
        pytest.skip(f"eb.quantize unavailable: {type(e).__name__}: {e}")


@pytest.mark.parametrize("case", M.CASES, ids=[c.id for c in M.CASES])
def bench_model_ours(benchmark, paired, eb, results, case):
    benchmark.group = f"model-{case.id}"
    _quantized_or_skip(eb, results, case)
    if not M.verify(results, eb, case):
        pytest.fail(f"{case.id}: {results.verified[case.key('ours')][1]}")
    fn = M.ours_fn(eb, case)
    paired(case.key("ours"), fn, M.paired_baselines(case, eb), ours_prepare=M.warm(fn))


def bench_model_overhead(benchmark, paired, eb, results):
    benchmark.group = "model-overhead"
    try:
        ours, cxx, _ = M.overhead_fns(eb)
    except ImportError as e:
        results.verify(M.OVERHEAD_KEY, None, f"eb.quantize: {e}")
        pytest.skip(f"eb.quantize unavailable: {type(e).__name__}: {e}")
    paired(M.OVERHEAD_KEY, ours, {} if cxx is None else {M.OVERHEAD_CXX_KEY: cxx})


@pytest.mark.parametrize("case,kind", [pytest.param(c, k, id=f"{c.id}-{k}")
                                       for c in M.CASES for k in M.BASELINE_KINDS])
def bench_model_baseline(benchmark, need_ort, results, case, kind):
    benchmark.group = f"model-{case.id}"
    ok, detail = M.check_export(case.model)
    assert ok, f"exported {case.model} differs from the float graph: {detail}"
    B.run_and_record(benchmark, results, case.key(kind), M.baseline_fn(case, kind))


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{c.id}-{M.OV_KIND}")
                                  for c in M.CASES if c.model in M.OV_MODELS])
def bench_model_baseline_ov(benchmark, need_ort, results, case):
    benchmark.group = f"model-{case.id}"
    fn = M.ov_baseline_fn(case)
    if fn is None:
        pytest.skip(f"OpenVINO baseline not run: {M.ov_why_not(case.model)}")
    B.run_and_record(benchmark, results, case.key(M.OV_KIND), fn)
