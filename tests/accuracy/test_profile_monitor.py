"""qm.profile (per-step time from the C++ executor), qm.monitor (saturation and out-of-range
counters while the model serves) and qm.summary (full names). Expected counts are computed
independently with NumPy from the plan's quantization parameters."""
import threading

import numpy as np
import pytest

import eightbit as eb
from eightbit.data import cnn_graph, digits, mlp_graph
from eightbit.model import Plan, QuantizedModel, Step, TensorSpec

LONG = "a_very_long_layer_name_that_a_fixed_width_column_would_have_cut_somewhere_in_the_middle"


@pytest.fixture(scope="module")
def data():
    return digits()


@pytest.fixture(scope="module")
def cnn_qm(data):
    return eb.quantize(cnn_graph(data.weights), [data.calib_images])


def _mlp_graph(rng, relu_name="hidden"):
    g = eb.Graph()
    x = g.input("x", (None, 16))
    h = g.relu(g.linear(x, rng.normal(0, 0.5, (12, 16)).astype(np.float32), rng.normal(0, 0.1, 12).astype(np.float32)),
               name=relu_name)
    g.output(g.linear(h, rng.normal(0, 0.5, (4, 12)).astype(np.float32), name="out"))
    return g


def _qrange(spec):
    return (0, 255) if spec.dtype == np.uint8 else (-128, 127)


def _input_quant_tensor(qm):
    step = next(s for s in qm.plan.steps if s.op == "quantize")
    return step.output, qm.plan.tensors[step.output]


# ----------------------------------------------------------------------------------- profile

def test_profile_rows_shares_and_gops(cnn_qm, data):
    x = data.test_images[:64]
    prof = cnn_qm.profile(x, repeats=5)
    steps = cnn_qm.plan.steps
    assert len(prof.rows) == len(steps) and prof.batch == 64 and prof.repeats == 5
    assert [r.step for r in prof.rows] == list(range(len(steps)))
    assert [r.op for r in prof.rows] == [s.op for s in steps]
    assert [r.node for r in prof.rows] == [s.source for s in steps]
    assert all(r.seconds >= 0 for r in prof.rows) and prof.total_seconds > 0
    assert sum(r.share for r in prof.rows) == pytest.approx(1.0, abs=1e-9)
    assert prof.total_seconds == pytest.approx(sum(r.seconds for r in prof.rows))
    # independent MAC counts of the digits CNN: conv 1->16 3x3 on 8x8, conv 16->32 3x3 on 4x4, fc 128->10
    w = data.weights
    want = {"conv2d_0": 64 * 8 * 8 * 16 * (1 * 3 * 3), "conv2d_1": 64 * 4 * 4 * 32 * (16 * 3 * 3),
            "logits": 64 * 10 * 128}
    assert w["cnn_conv1_w"].shape == (16, 1, 3, 3) and w["cnn_conv2_w"].shape == (32, 16, 3, 3)
    for r in prof.rows:
        if r.op in ("conv", "linear"):
            assert r.macs == want[r.node], r
            assert r.gops == pytest.approx(2 * want[r.node] / r.seconds / 1e9, rel=1e-12)
        else:
            assert r.macs is None and r.gops is None
    text = prof.table()
    assert all(s.source in text for s in steps)
    d = prof.to_dict()
    assert len(d["rows"]) == len(steps) and d["batch"] == 64


def test_profile_dynamic_linear_and_dict_input(data):
    qm = eb.quantize(mlp_graph(data.weights), dynamic=True)
    assert any(s.op == "dynamic_linear" for s in qm.plan.steps)
    prof = qm.profile({"x": data.test_images[:10]}, repeats=3)
    for r, s in zip(prof.rows, qm.plan.steps):
        if s.op == "dynamic_linear":
            o, k = s.consts["w"].shape
            assert r.macs == 10 * o * k
            assert r.gops == pytest.approx(2 * 10 * o * k / r.seconds / 1e9, rel=1e-12)


def test_profile_does_not_change_results(cnn_qm, data):
    x = data.test_images[:20]
    want = cnn_qm(x)
    out, seconds = cnn_qm._executor.run_profiled([x])
    np.testing.assert_array_equal(out[0], want)
    assert len(seconds) == len(cnn_qm.plan.steps)


@pytest.mark.parametrize("repeats", [0, -1, 1.5, True])
def test_profile_bad_repeats(cnn_qm, data, repeats):
    with pytest.raises(ValueError, match="repeats"):
        cnn_qm.profile(data.test_images[:2], repeats=repeats)


# ----------------------------------------------------------------------------------- summary

def test_summary_never_cuts_names(rng):
    g = _mlp_graph(rng, relu_name=LONG)
    qm = eb.quantize(g, [rng.uniform(-1, 1, (32, 16)).astype(np.float32)])
    text = qm.summary()
    for s in qm.plan.steps:
        assert s.source in text and s.output in text
    assert LONG in text
    header = text.splitlines()[0]
    assert header.split()[:5] == ["step", "op", "node", "output", "shape"]


# ----------------------------------------------------------------------------------- monitor

def _drifted(rng, n, frac=0.10):
    """Calibrated on U(-1, 1): serve values in (-0.9, 0.9) except a `frac` share at +-(2..4)."""
    x = rng.uniform(-0.9, 0.9, (n, 16)).astype(np.float32)
    mask = rng.random(x.shape) < frac
    x[mask] = (rng.choice([-1.0, 1.0], mask.sum()) * rng.uniform(2, 4, mask.sum())).astype(np.float32)
    return x


def _expected_input_counts(qm, x):
    """(out of range, saturated) of the quantize step's output, from its scale and zero point."""
    _, spec = _input_quant_tensor(qm)
    qmin, qmax = _qrange(spec)
    s, zp = np.float64(np.float32(spec.scale)), int(spec.zero_point)
    lo, hi = s * (qmin - zp), s * (qmax - zp)
    xd = x.astype(np.float64)
    outside = int(np.sum((xd < lo) | (xd > hi)))
    q = eb.reference.quantize_linear(x, np.float32(spec.scale), spec.dtype.type(zp))
    sat = int(np.sum(q == qmin) if zp != qmin else 0) + int(np.sum(q == qmax) if zp != qmax else 0)
    return outside, sat


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_out_of_range_and_saturation(isa, rng, dtype):
    g = _mlp_graph(rng)
    qm = eb.quantize(g, [rng.uniform(-1, 1, (64, 16)).astype(np.float32) for _ in range(4)], activation_dtype=dtype)
    x = _drifted(rng, 500)
    name, spec = _input_quant_tensor(qm)
    with qm.monitor() as m:
        qm(x)
        stats = m.stats()
    n = x.size
    outside, sat = _expected_input_counts(qm, x)
    assert stats[name]["count"] == n
    assert stats[name]["out_of_range_rate"] == outside / n
    assert stats[name]["out_of_range_rate"] == pytest.approx(0.10, abs=0.01)
    assert stats[name]["saturation_rate"] == sat / n
    assert sat >= outside > 0  # every value beyond the range saturates
    # downstream: only the quantize step's tensor has an out-of-range rate; the hidden layer saturates
    others = {k: v for k, v in stats.items() if k != name}
    assert others and all(v["out_of_range_rate"] is None for v in others.values())
    assert any(v["saturation_rate"] > 0 for v in others.values())
    assert set(stats) == {t for t, spec in qm.plan.tensors.items() if spec.quantized}


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_relu_zeros_are_not_saturation(isa, rng, dtype):
    """x -> linear + relu -> output: the relu tensor's codes are recovered exactly from the
    dequantized output; its zeros (zero point = qmin) must not count, its qmax codes must."""
    g = eb.Graph()
    x_in = g.input("x", (None, 16))
    g.output(g.relu(g.linear(x_in, rng.normal(0, 0.5, (32, 16)).astype(np.float32)), name="act"))
    qm = eb.quantize(g, [rng.uniform(-1, 1, (64, 16)).astype(np.float32)], activation_dtype=dtype)
    relu_step = next(s for s in qm.plan.steps if s.op == "linear")
    spec = qm.plan.tensors[relu_step.output]
    qmin, qmax = _qrange(spec)
    assert spec.zero_point == qmin
    x = rng.uniform(-1.5, 1.5, (300, 16)).astype(np.float32)  # a little beyond calibration: some qmax codes
    with qm.monitor() as m:
        y = qm(x)
    codes = np.rint(y.astype(np.float64) / np.float64(np.float32(spec.scale))) + spec.zero_point
    zeros, tops = int(np.sum(codes == qmin)), int(np.sum(codes == qmax))
    assert zeros > 0.2 * codes.size and tops > 0
    st = m.stats()[relu_step.output]
    assert st["count"] == codes.size
    assert st["saturation_rate"] == tops / codes.size


def test_zero_point_at_qmax_counts_only_the_low_end(rng):
    """A hand-built plan whose tensor has zero point = qmax (a range [-2.55, 0]): codes at 255
    (value 0) are legitimate, codes at 0 saturate; out of range is x < -2.55 or x > 0."""
    f32, u8 = np.dtype(np.float32), np.dtype(np.uint8)
    plan = Plan({"x": TensorSpec("x", f32, (None, 4)), "xq": TensorSpec("xq", u8, (None, 4), 0.01, 255),
                 "y": TensorSpec("y", f32, (None, 4))},
                [Step("quantize", ("x",), "xq"), Step("dequantize", ("xq",), "y")], ["x"], ["y"])
    qm = QuantizedModel(plan)
    x = rng.uniform(-4, 1, (1000, 4)).astype(np.float32)
    x[:10] = 0.0
    m = qm.monitor()
    y = qm(x)
    m.stop()
    codes = np.rint(y.astype(np.float64) / np.float64(np.float32(0.01))) + 255
    st = m.stats()["xq"]
    assert np.sum(codes == 255) > 10
    assert st["saturation_rate"] == np.sum(codes == 0) / x.size
    lo = np.float64(np.float32(0.01)) * (0 - 255)
    assert st["out_of_range_rate"] == np.sum((x.astype(np.float64) < lo) | (x > 0)) / x.size


def test_counts_accumulate_reset_and_stop(rng):
    g = _mlp_graph(rng)
    qm = eb.quantize(g, [rng.uniform(-1, 1, (64, 16)).astype(np.float32)])
    x = _drifted(rng, 100)
    name, _ = _input_quant_tensor(qm)
    m = qm.monitor()
    assert m.active and all(v["count"] == 0 for v in m.stats().values())
    qm(x)
    one = m.stats()
    qm.run({"x": x})
    two = m.stats()
    for k in one:
        assert two[k]["count"] == 2 * one[k]["count"]
        assert two[k]["saturation_rate"] == one[k]["saturation_rate"]
    assert two[name]["out_of_range_rate"] == one[name]["out_of_range_rate"]
    assert qm.monitor() is m  # while active: the same handle, reset
    assert all(v["count"] == 0 and v["saturation_rate"] == 0.0 for v in m.stats().values())
    qm(x)
    m.reset()
    assert all(v["count"] == 0 for v in m.stats().values())
    qm(x)
    m.stop()
    assert not m.active
    qm(x)  # not counted
    assert m.stats()[name]["count"] == x.size
    m2 = qm.monitor()  # a new one, counting from zero
    assert m2 is not m and m2.stats()[name]["count"] == 0
    m2.stop()
    assert name in m.table()


def test_monitor_outputs_are_bit_identical(isa, cnn_qm, data):
    x = data.test_images * 1.7  # beyond the calibrated range: saturation everywhere
    plain = cnn_qm(x)
    with cnn_qm.monitor() as m:
        monitored = cnn_qm(x)
        stats = m.stats()
    np.testing.assert_array_equal(monitored, plain)
    assert stats["x:q"]["out_of_range_rate"] > 0
    assert not m.active


def test_monitor_under_threads(cnn_qm, data):
    """Runs from several threads add up: the counters are updated under the executor's run mutex."""
    x = data.test_images[:50]
    with cnn_qm.monitor() as m:
        threads = [threading.Thread(target=lambda: [cnn_qm(x) for _ in range(5)]) for _ in range(4)]
        for t in threads:
            t.start()
        for _ in range(5):
            m.stats()  # reading while others run
        for t in threads:
            t.join()
        stats = m.stats()
    assert stats["x:q"]["count"] == 20 * x.size
    assert stats["relu_0"]["count"] == 20 * 50 * 8 * 8 * 16
