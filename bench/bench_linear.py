"""eb.QuantizedLinear (dynamic int8: per-row quantization of its float input inside the call)
against ORT fp32 Gemm (an exported nn.Linear: transB=1, bias), ORT's DynamicQuantizeMatMul
(what onnxruntime.quantization.quantize_dynamic makes of it) and NumPy float32."""
import numpy as np
import pytest

import _baselines as B

GROUP = f"linear-{B.LINEAR_BATCH}x{B.LINEAR_IN}->{B.LINEAR_OUT}"


def bench_linear_ours(benchmark, paired, eb, results):
    benchmark.group = GROUP
    x, w, bias = B.linear_data()
    lin = eb.QuantizedLinear(w, bias)
    y = np.asarray(lin(x))
    assert y.dtype == np.float32 and y.shape == (B.LINEAR_BATCH, B.LINEAR_OUT)
    rel = B.linear_rel_err(y, x, w, bias)
    ok = rel < B.LINEAR_TOL
    results.verify("lin/ours", ok, f"relative L2 error vs float32 {rel:.2e}")
    if not ok:
        pytest.fail(f"QuantizedLinear: relative L2 error vs float32 {rel:.3e} >= {B.LINEAR_TOL}")
    kinds = B.LINEAR_BASELINES if B.have_ort() else ["numpy"]
    paired("lin/ours", lambda: lin(x), {f"lin/{k}": B.linear_baseline_fn(k) for k in kinds})


@pytest.mark.parametrize("kind", B.LINEAR_BASELINES)
def bench_linear_baseline(benchmark, results, kind):
    benchmark.group = GROUP
    if kind != "numpy" and not B.have_ort():
        pytest.skip("onnx / onnxruntime not installed")
    fn = B.linear_baseline_fn(kind)
    if kind != "numpy":
        x, w, bias = B.linear_data()
        rel = B.linear_rel_err(fn()[0], x, w, bias)
        assert rel < B.LINEAR_TOL, f"{kind}: relative L2 error vs float32 {rel:.2e}"
    B.run_and_record(benchmark, results, f"lin/{kind}", fn)
