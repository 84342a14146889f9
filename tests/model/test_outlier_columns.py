"""Outlier columns of dynamic_linear (float32 input columns beside the int8 product) and the
per-token default of static quantization for linear layers over token sequences."""
import warnings

import numpy as np
import pytest

import eightbit as eb
from eightbit import reference
from eightbit.models import bert_encoder, synthetic_bert_weights, synthetic_encoder_inputs
from eightbit.quantizer import OUTLIER_RATIO, outlier_columns

from _records import Records


def _outlier_weights(rng, o=24, k=128, cols=(3, 17)):
    """Gaussian weights with one dominant weight per column of ``cols`` (each 40x its row's next)."""
    w = rng.normal(0, k ** -0.5, (o, k)).astype(np.float32)
    for i, c in enumerate(cols):
        w[2 * i + 1, c] = 40 * np.abs(w[2 * i + 1]).max()
    return w


def _int64_linear(x, w_q, w_scale, bias, cols, w_out, relu=False):
    """The outlier formula from integers and float32 steps written out independently: per-row
    DynamicQuantizeLinear of x with the outlier columns zeroed, an int64 product, then the float32
    dequantization, bias and one product and one sum per outlier column."""
    x = x.copy()
    kept = x.copy()
    x[:, cols] = 0
    mn = np.minimum(x.min(1), 0).astype(np.float32)
    mx = np.maximum(x.max(1), 0).astype(np.float32)
    s = np.where(mx == mn, np.float32(1), (mx - mn) / np.float32(255)).astype(np.float32)
    z = np.clip(np.rint(np.float32(0) - mn / s), 0, 255).astype(np.int64)
    q = np.clip(np.rint(x / s[:, None]) + z[:, None], 0, 255).astype(np.int64)
    acc = (q - z[:, None]) @ w_q.astype(np.int64).T
    y = (acc.astype(np.float32) * (s[:, None] * w_scale[None, :]).astype(np.float32)).astype(np.float32)
    y = (y + bias).astype(np.float32)
    for j, c in enumerate(cols):
        y = (y + (kept[:, c:c + 1] * w_out[:, j]).astype(np.float32)).astype(np.float32)
    return np.maximum(y, np.float32(0)) if relu else y


def test_outlier_columns_picks_the_dominant_weights(rng):
    w = _outlier_weights(rng)
    assert outlier_columns(w).tolist() == [3, 17]
    assert outlier_columns(rng.normal(size=(64, 256)).astype(np.float32)).size == 0   # Gaussian: none
    w = rng.normal(size=(8, 128)).astype(np.float32)
    w[:, 5] = 0
    top = np.abs(w[0]).max()
    w[0, 5] = top * (OUTLIER_RATIO * 0.99)        # just under the ratio: int8
    assert outlier_columns(w).size == 0
    w[0, 5] = top * (OUTLIER_RATIO * 1.01)
    assert outlier_columns(w).tolist() == [5]
    many = rng.normal(size=(200, 128)).astype(np.float32)
    many[np.arange(200), np.arange(200) % 128] = 1e3  # every column dominates some row: capped at K / 64
    assert outlier_columns(many).size == 2


@pytest.mark.parametrize("relu", [False, True])
def test_reference_and_kernels_agree_with_int64_math(rng, isa, relu):
    w = _outlier_weights(rng)
    cols = outlier_columns(w)
    rest = w.copy()
    rest[:, cols] = 0
    w_q, w_scale = eb.numerics.quantize_weight_symmetric(rest, per_channel=True)
    w_scale = np.asarray(w_scale, np.float32)
    bias = rng.normal(0, 0.1, 24).astype(np.float32)
    x = rng.normal(0, 1, (9, 128)).astype(np.float32)
    x[0, 3], x[4, 17] = 250.0, -90.0               # the outlier inputs a massive activation gives
    w_out = np.ascontiguousarray(w[:, cols])
    act = "relu" if relu else None
    want = _int64_linear(x, w_q, w_scale, bias, cols, w_out, relu)
    got_ref = reference.quantized_linear(x, w_q, w_scale, bias, act, outlier_cols=cols, outlier_w=w_out)
    got_ops = eb.ops.quantized_linear(x, w_q, w_scale, bias, act, outlier_cols=cols, outlier_w=w_out)
    np.testing.assert_array_equal(got_ref, want)
    np.testing.assert_array_equal(got_ops, want)
    # the massive inputs no longer set their rows' scale: far closer to float than plain int8
    exact = x.astype(np.float64) @ w.T.astype(np.float64) + bias
    exact = np.maximum(exact, 0) if relu else exact
    plain_q, plain_s = eb.numerics.quantize_weight_symmetric(w, per_channel=True)
    plain = reference.quantized_linear(x, plain_q, np.asarray(plain_s, np.float32), bias, act)
    assert np.abs(want - exact).max() * 10 < np.abs(plain - exact).max()


def test_bad_outliers_are_refused(rng):
    w_q = rng.integers(-127, 128, (4, 6)).astype(np.int8)
    x = rng.normal(size=(2, 6)).astype(np.float32)
    s = np.ones(4, np.float32)
    for cols, w_out, what in [([2, 1], np.ones((4, 2)), "ascending"), ([6], np.ones((4, 1)), "ascending"),
                              ([1], np.ones((3, 1)), "outlier_w"), ([1], None, "together"),
                              ([1], np.full((4, 1), np.inf), "finite")]:
        for m in (reference, eb.ops):
            with pytest.raises(ValueError, match=what):
                m.quantized_linear(x, w_q, s, None, outlier_cols=np.array(cols),
                                   outlier_w=None if w_out is None else w_out.astype(np.float32))
    x[1, 1] = np.inf                                 # a non-finite outlier input: refused, as any other
    for m in (reference, eb.ops):
        with pytest.raises(ValueError, match="NaN or infinity"):
            m.quantized_linear(x, w_q, s, None, outlier_cols=np.array([1]), outlier_w=np.ones((4, 1), np.float32))


def _records_with_outliers(cols, w_out, per_tensor=False):
    r = Records()
    r.add_tensor("x", "float32", [-1, 6])
    r.add_tensor("y", "float32", [-1, 4])
    consts = {"w": np.ones((4, 6), np.int8), "w_scale": np.ones(4, np.float32), "bias": np.zeros(4, np.float32),
              "outlier_cols": np.asarray(cols, np.int32), "outlier_w": np.asarray(w_out, np.float32)}
    r.step("dynamic_linear", ["x"], "y", consts, relu=False, per_tensor=per_tensor)
    return r


@pytest.mark.parametrize("cols, w_out", [([3, 3], np.ones((4, 2))), ([-1], np.ones((4, 1))), ([6], np.ones((4, 1))),
                                         ([1], np.ones((4, 2))), ([1], np.ones((5, 1))),
                                         ([1], np.full((4, 1), np.nan))])
def test_the_executor_refuses_bad_outlier_records(cols, w_out):
    with pytest.raises(ValueError, match="outlier"):
        _records_with_outliers(cols, w_out)


def test_outliers_need_per_row_quantization():
    with pytest.raises(ValueError, match="per-row"):
        _records_with_outliers([1], np.ones((4, 1)), per_tensor=True)


def test_the_executor_runs_outlier_records():
    r = _records_with_outliers([1, 4], np.arange(8).reshape(4, 2))
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    (y,) = r.run([x])
    want = reference.quantized_linear(x, np.ones((4, 6), np.int8), np.ones(4, np.float32), np.zeros(4, np.float32),
                                      outlier_cols=np.array([1, 4]), outlier_w=np.arange(8, dtype=np.float32).reshape(4, 2))
    np.testing.assert_array_equal(y, want)


@pytest.fixture(scope="module")
def encoder():
    """A 2-layer encoder with the planted massive activations (synthetic_bert_weights: a [CLS]
    neuron of the FFN writing ~200 into one residual channel, gammas 2-3x in three channels)."""
    w = synthetic_bert_weights(layers=2, hidden=96, heads=4, ffn=384, seed=3)
    g = bert_encoder(w, layers=2, heads=4, seq_len=16, hidden=96, ffn=384)
    calib = [dict(zip(("x", "mask"), synthetic_encoder_inputs(w, 16, 16, seed=s))) for s in (1, 2)]
    data = dict(zip(("x", "mask"), synthetic_encoder_inputs(w, 48, 16, seed=9)))
    return g, calib, data


def _cosine(g, qm, data):
    want = g.run(data)["pooled"][:, 0].astype(np.float64)
    got = qm.run(data)["pooled"][:, 0].astype(np.float64)
    c = (want * got).sum(-1) / np.linalg.norm(want, axis=-1) / np.linalg.norm(got, axis=-1)
    return c.mean(), c.min()


def test_encoder_defaults_are_accurate(encoder):
    """Static defaults and dynamic quantization keep the pooled embeddings within 0.998 cosine of
    float32 (measured: both 0.9997 mean, 0.9992 worst; 0.9993 without outlier columns); per-tensor
    activation scales lose ten times more (0.989 mean, 0.973 worst)."""
    g, calib, data = encoder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.QuantizationWarning)
        static = eb.quantize(g, calib)
        dynamic = eb.quantize(g, dynamic=True)
        per_tensor = eb.quantize(g, calib, per_token=False)
    for qm in (static, dynamic):
        assert {s.op for s in qm.plan.steps} <= {"dynamic_linear", "float", "softmax", "quantize", "reshape",
                                                  "dequantize"}
        assert any("outlier_cols" in s.consts for s in qm.plan.steps)     # the planted neuron runs in float32
        mean, worst = _cosine(g, qm, data)
        assert mean >= 0.998 and worst >= 0.99, (mean, worst)
    assert _cosine(g, per_tensor, data)[0] < mean - 0.005


def test_per_token_is_checked(encoder):
    g, calib, _ = encoder
    with pytest.raises(ValueError, match="per_token"):
        eb.quantize(g, calib, per_token="yes")
    with pytest.raises(ValueError, match="per_token"):
        eb.quantize(g, dynamic=True, per_token=False)


def test_outlier_model_saves_loads_and_exports(encoder, tmp_path):
    """The outlier consts survive .eb save / load, and to_onnx writes them op for op: ONNX Runtime
    gives our bits for the dynamic_linear layers."""
    ort = pytest.importorskip("onnxruntime")
    g, _, data = encoder
    qm = eb.quantize(g, dynamic=True)
    qm.save(tmp_path / "m.eb")
    back = eb.load(tmp_path / "m.eb")
    y = qm.run(data)["pooled"]
    np.testing.assert_array_equal(back.run(data)["pooled"], y)
    lin = eb.Graph()
    x = lin.input("x", (None, 5, 128))
    lin.output(lin.linear(x, _outlier_weights(np.random.default_rng(1)), name="fc"))
    m = eb.quantize(lin, dynamic=True)
    assert m.plan.steps[0].consts["outlier_cols"].tolist() == [3, 17]
    xs = np.random.default_rng(2).normal(size=(3, 5, 128)).astype(np.float32)
    xs[:, 0, 3] = 300.0
    sess = ort.InferenceSession(eb.to_onnx(m).SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, {"x": xs})[0], m(xs))
