"""int8 attention (eb.quantize(..., attention="int8")): the dynamic_bmm and softmax_bmm steps.

The reference (eightbit.reference.int8_attention) is checked against an independent int64 NumPy
computation written out below; the C++ steps must equal the reference bit for bit on every ISA;
the steps round-trip through .eb files and export to ONNX that ONNX Runtime runs to the same bits.
"""
import math

import numpy as np
import pytest

import eightbit as eb
import eightbit.reference as ref
from eightbit.model import Plan, QuantizedModel, Step, TensorSpec
from eightbit.model.execute import run_plan
from eightbit.models import bert_encoder, synthetic_bert_weights, synthetic_encoder_inputs
from eightbit.reference.int8_attention import exp_table

F32 = np.dtype(np.float32)
NEG = np.float32(np.finfo(np.float32).min)


# ---- an independent computation: per element / per row, Python ints and float32 scalars ------------

def _row_u8(row):
    """DynamicQuantizeLinear of one row (docs/numerics.md), scalar float32 arithmetic."""
    mn, mx = min(np.float32(row.min()), np.float32(0)), max(np.float32(row.max()), np.float32(0))
    scale = np.float32(1) if mx == mn else np.float32(mx - mn) / np.float32(255)
    zp = int(np.rint(min(max(np.float32(0) - np.float32(mn / scale), np.float32(0)), np.float32(255))))
    q = [int(min(max(np.rint(np.float32(v / scale)) + zp, 0), 255)) for v in row]
    return np.array(q, np.int64), np.float32(scale), zp


def _cols_s8(b):
    """Each column of b [K, N] symmetric int8 over [-127, 127]."""
    q, scales = np.zeros(b.shape, np.int64), []
    for n in range(b.shape[1]):
        amax = np.float32(np.abs(b[:, n]).max())
        s = amax / np.float32(127) if amax > 0 else np.float32(1)
        scales.append(np.float32(s))
        q[:, n] = [int(np.rint(min(max(np.float32(v / s), np.float32(-127)), np.float32(127)))) for v in b[:, n]]
    return q, scales


def _independent_dynamic_bmm(a, b, alpha=1.0):
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a, b = np.broadcast_to(a, lead + a.shape[-2:]), np.broadcast_to(b, lead + b.shape[-2:])
    y = np.zeros(lead + (a.shape[-2], b.shape[-1]), np.float32)
    for idx in np.ndindex(*lead):
        bq, sb = _cols_s8(b[idx])
        for m in range(a.shape[-2]):
            q, sa, zp = _row_u8(a[idx][m])
            acc = (q - zp) @ bq                                         # int64, exact
            for n in range(b.shape[-1]):
                y[idx + (m, n)] = np.float32(acc[n]) * np.float32(sa * np.float32(sb[n] * np.float32(alpha)))
    return y


def _independent_softmax_bmm(x, v, mask=None, scale=None, p_scale="row"):
    if scale is not None:
        x = x * np.float32(scale)
    if mask is not None:
        x = x + mask
    lead = np.broadcast_shapes(x.shape[:-2], v.shape[:-2])
    x, v = np.broadcast_to(x, lead + x.shape[-2:]), np.broadcast_to(v, lead + v.shape[-2:])
    table = [round(2 ** 24 * math.exp(-t / 256)) for t in range(4096)] + [0]
    y = np.zeros(lead + (x.shape[-2], v.shape[-1]), np.float32)
    for idx in np.ndindex(*lead):
        vq, sv = _cols_s8(v[idx])
        for m in range(x.shape[-2]):
            row = x[idx][m]
            top = np.float32(row.max())
            if top == -np.inf:
                continue                                                # nothing to attend to: 0
            with np.errstate(over="ignore"):
                e = [table[4096 if d == np.inf else int(np.rint(min(np.float32(d * np.float32(256)), np.float32(4096))))]
                     for d in (np.float32(top - r) for r in row)]
            s = sum(e)
            if p_scale == "row":
                p = [(ei * 255 + 2 ** 23) >> 24 for ei in e]
                sp = np.float32(2.0 ** 24 / (255.0 * s))
            else:
                r = (255 << 48) // s
                p = [(ei * r + 2 ** 47) >> 48 for ei in e]
                sp = np.float32(1) / np.float32(255)
            assert max(p) <= 255
            acc = np.array(p, np.int64) @ vq
            for n in range(v.shape[-1]):
                y[idx + (m, n)] = np.float32(acc[n]) * np.float32(sp * sv[n])
    return y


def test_exp_table():
    t = exp_table()
    assert t.dtype == np.int32 and t.shape == (4097,) and t[0] == 2 ** 24 and t[-1] == 0
    assert np.all(np.diff(t.astype(np.int64)) <= 0)
    assert t[256] == round(2 ** 24 * math.exp(-1))


# ---- reference against the independent computation ----------------------------------------------

def _inputs(rng, lead_a=(2, 3), lead_b=(2, 3), m=5, k=7, n=6):
    a = (rng.standard_normal(lead_a + (m, k)) * 2 + 0.5).astype(np.float32)
    b = rng.standard_normal(lead_b + (k, n)).astype(np.float32)
    return a, b


@pytest.mark.parametrize("lead_a,lead_b", [((2, 3), (2, 3)), ((2, 1), (2, 3)), ((2, 3), (2, 1))])
@pytest.mark.parametrize("alpha", [1.0, 0.25, 0.17677669])
def test_reference_dynamic_bmm(rng, lead_a, lead_b, alpha):
    a, b = _inputs(rng, lead_a, lead_b)
    b[0, 0, :, 1] = 0                                   # an all-zero column: scale 1, codes 0
    np.testing.assert_array_equal(ref.dynamic_bmm(a, b, alpha), _independent_dynamic_bmm(a, b, alpha))


def _attention_inputs(rng, n=2, h=3, m=6, t=9, d=5, lead_v=None, mask_kind="keys"):
    x = (rng.standard_normal((n, h, m, t)) * 4).astype(np.float32)
    v = rng.standard_normal((n, h if lead_v is None else lead_v, t, d)).astype(np.float32)
    mask = None
    if mask_kind == "keys":          # padding: the last keys of item 0 masked
        mask = np.zeros((n, 1, 1, t), np.float32)
        mask[0, ..., t - 3:] = NEG
    elif mask_kind == "full":        # a [N, H, M, T] mask with -inf and a fully masked row
        mask = np.where(rng.random((n, h, m, t)) < 0.3, np.float32(-np.inf), np.float32(0))
        mask[1, 2, 3, :] = -np.inf
    return x, v, mask


@pytest.mark.parametrize("p_scale", ["row", "fixed"])
@pytest.mark.parametrize("mask_kind,scale,lead_v", [("keys", 0.17677669, None), ("full", None, None),
                                                    (None, 0.5, 1)])
def test_reference_softmax_bmm(rng, p_scale, mask_kind, scale, lead_v):
    x, v, mask = _attention_inputs(rng, lead_v=lead_v, mask_kind=mask_kind)
    want = _independent_softmax_bmm(x, v, mask, scale, p_scale)
    np.testing.assert_array_equal(ref.softmax_bmm(x, v, mask, scale, p_scale), want)
    if mask_kind == "full":
        assert np.all(want[1, 2, 3] == 0)


def test_reference_is_close_to_float_attention(rng):
    x, v, mask = _attention_inputs(rng, m=16, t=32, d=16)
    z = x * np.float32(0.25) + mask
    p = np.exp(z - z.max(-1, keepdims=True))
    want = (p / p.sum(-1, keepdims=True)) @ v
    for p_scale, tol in (("row", 0.02), ("fixed", 0.03)):
        got = ref.softmax_bmm(x, v, mask, 0.25, p_scale)
        assert np.abs(got - want).max() < tol * np.abs(want).max(), p_scale


# ---- the C++ steps: bit-exact on every ISA ---------------------------------------------------------

def _bmm_model(a_shape, b_shape, alpha=1.0):
    out = (None,) + tuple(max(x, y) for x, y in zip(a_shape[1:-2], b_shape[1:-2])) + (a_shape[-2], b_shape[-1])
    t = {"a": TensorSpec("a", F32, (None,) + a_shape[1:]), "b": TensorSpec("b", F32, (None,) + b_shape[1:]),
         "y": TensorSpec("y", F32, out)}
    return QuantizedModel(Plan(t, [Step("dynamic_bmm", ("a", "b"), "y", {"alpha": alpha}, source="qk")],
                               ["a", "b"], ["y"]))


def _softmax_bmm_model(x_shape, v_shape, mask_shape=None, scale=None, p_scale="row"):
    out = (None,) + x_shape[1:-1] + (v_shape[-1],)
    t = {"x": TensorSpec("x", F32, (None,) + x_shape[1:]), "v": TensorSpec("v", F32, (None,) + v_shape[1:]),
         "y": TensorSpec("y", F32, out)}
    ins = ("x", "v")
    if mask_shape is not None:
        t["mask"] = TensorSpec("mask", F32, (None,) + mask_shape[1:])
        ins += ("mask",)
    step = Step("softmax_bmm", ins, "y", {"scale": scale, "p_scale": p_scale}, {"exp_table": exp_table()},
                source="pv")
    return QuantizedModel(Plan(t, [step], list(ins), ["y"]))


@pytest.mark.parametrize("lead_a,lead_b,m,k,n", [((2, 3), (2, 3), 5, 7, 6), ((2, 1), (2, 3), 17, 32, 33),
                                                 ((2, 3), (2, 1), 1, 3, 1)])
def test_dynamic_bmm_step_is_the_reference_on_every_isa(rng, isa, lead_a, lead_b, m, k, n):
    a, b = _inputs(rng, lead_a, lead_b, m, k, n)
    for alpha in (1.0, 0.17677669):
        y = _bmm_model(a.shape, b.shape, alpha).run({"a": a, "b": b})["y"]
        np.testing.assert_array_equal(y, ref.dynamic_bmm(a, b, alpha), err_msg=isa)


@pytest.mark.parametrize("p_scale", ["row", "fixed"])
@pytest.mark.parametrize("mask_kind,scale,lead_v,m,t,d", [("keys", 0.17677669, None, 6, 9, 5),
                                                          ("full", None, None, 17, 33, 16),
                                                          (None, 0.5, 1, 3, 4, 40)])
def test_softmax_bmm_step_is_the_reference_on_every_isa(rng, isa, p_scale, mask_kind, scale, lead_v, m, t, d):
    x, v, mask = _attention_inputs(rng, m=m, t=t, d=d, lead_v=lead_v, mask_kind=mask_kind)
    model = _softmax_bmm_model(x.shape, v.shape, None if mask is None else mask.shape, scale, p_scale)
    feeds = {"x": x, "v": v, **({} if mask is None else {"mask": mask})}
    want = ref.softmax_bmm(x, v, mask, scale, p_scale)
    np.testing.assert_array_equal(model.run(feeds)["y"], want, err_msg=isa)
    np.testing.assert_array_equal(run_plan(model.plan, feeds, ref)["y"], want)


# ---- the per-head path: shapes that hit its vector tails, blocks of rows, long rows, threads ----------

def _special_rows(a):
    """Rows that test the row parameters: all zero, constant, all negative, all positive, huge, tiny."""
    a = a.copy()
    a[0, 0, 0, :] = 0
    a[0, 0, 1, :] = np.float32(-2.5)
    a[0, 0, 2, :] = -np.abs(a[0, 0, 2, :])
    a[0, 0, 3, :] = np.abs(a[0, 0, 3, :])
    a[0, 0, 4, :] *= np.float32(1e30)
    a[0, 0, 5, :] *= np.float32(1e-30)
    return a


# (M, K, P): MiniLM's heads (25 and 128 tokens, head size 32), BERT-base's 64, K and P off the
# 16-lane vectors, M over several blocks of 16 rows and of the kernel's row tiles.
@pytest.mark.parametrize("m,k,n", [(25, 32, 25), (128, 32, 128), (33, 64, 17), (40, 20, 50), (6, 1, 1)])
def test_dynamic_bmm_head_shapes_on_every_isa(rng, isa, m, k, n):
    a, b = _inputs(rng, (2, 3), (2, 3), m, k, n)
    if m >= 6:
        a = _special_rows(a)
    b[1, 2, :, 0] = 0                                          # an all-zero column
    if n > 1:
        b[0, 1, :, 1] *= np.float32(1e-30)
    y = _bmm_model(a.shape, b.shape, 0.17677669).run({"a": a, "b": b})["y"]
    np.testing.assert_array_equal(y, ref.dynamic_bmm(a, b, 0.17677669), err_msg=isa)


@pytest.mark.parametrize("p_scale", ["row", "fixed"])
@pytest.mark.parametrize("mask_kind,m,t,d", [("keys", 25, 25, 32), ("rows", 25, 25, 32), ("keys", 128, 128, 32),
                                             ("full", 7, 47, 64), (None, 3, 2100, 8)])
def test_softmax_bmm_head_shapes_on_every_isa(rng, isa, p_scale, mask_kind, m, t, d):
    """A mask broadcasting along the keys ("rows"), and rows longer than 127 vectors of 16 (the
    AVX-512 softmax moves its int32 lane sums into int64 every 127 vectors)."""
    mk = "keys" if mask_kind == "rows" else mask_kind
    x, v, mask = _attention_inputs(rng, n=2, h=3, m=m, t=t, d=d, mask_kind=mk)
    if mask_kind == "rows":                                     # one value per query row: stride 0 along keys
        mask = np.where(rng.random((2, 1, m, 1)) < 0.2, NEG, np.float32(0.5)).astype(np.float32)
    if mask_kind is None:
        x[0, 0, 0, :] = 0                                       # every key alike: e = 2^24 each
    v[1, 0, :, 0] = 0
    model = _softmax_bmm_model(x.shape, v.shape, None if mask is None else mask.shape, 0.17677669, p_scale)
    feeds = {"x": x, "v": v, **({} if mask is None else {"mask": mask})}
    want = ref.softmax_bmm(x, v, mask, 0.17677669, p_scale)
    np.testing.assert_array_equal(model.run(feeds)["y"], want, err_msg=isa)


def test_heads_split_over_threads_give_the_same_bits(rng):
    """Enough heads for the pool to split them: the result does not depend on the thread count."""
    a, b = _inputs(rng, (4, 12), (4, 12), 64, 32, 64)
    x, v, mask = _attention_inputs(rng, n=4, h=12, m=64, t=64, d=32)
    qk = _bmm_model(a.shape, b.shape)
    pv = _softmax_bmm_model(x.shape, v.shape, mask.shape, 0.17677669, "fixed")
    before = eb.cpu_info()["num_threads"]
    try:
        outs = []
        for n in (1, 2, 3):
            eb.set_num_threads(n)
            outs.append((qk.run({"a": a, "b": b})["y"], pv.run({"x": x, "v": v, "mask": mask})["y"]))
    finally:
        eb.set_num_threads(before)
    for y in outs[1:]:
        np.testing.assert_array_equal(y[0], outs[0][0])
        np.testing.assert_array_equal(y[1], outs[0][1])
    np.testing.assert_array_equal(outs[0][0], ref.dynamic_bmm(a, b))
    np.testing.assert_array_equal(outs[0][1], ref.softmax_bmm(x, v, mask, 0.17677669, "fixed"))


def test_non_finite_values_in_a_late_head_are_refused(rng):
    """A bad value in the last head, where the pool's other thread finds it."""
    a, b = _inputs(rng, (4, 12), (4, 12), 64, 32, 64)
    model = _bmm_model(a.shape, b.shape)
    before = eb.cpu_info()["num_threads"]
    try:
        eb.set_num_threads(2)
        for name, value in (("a", np.inf), ("b", np.nan), ("b", -np.inf)):
            bad = {"a": a.copy(), "b": b.copy()}
            bad[name][3, 11, -1, -1] = value
            with pytest.raises(ValueError, match="NaN or infinity"):
                model.run(bad)
    finally:
        eb.set_num_threads(before)


def test_a_power_of_two_alpha_is_the_unscaled_product_scaled(rng):
    a, b = _inputs(rng)
    np.testing.assert_array_equal(ref.dynamic_bmm(a, b, 0.125), ref.dynamic_bmm(a, b) * np.float32(0.125))


def test_save_load_round_trip(rng, tmp_path):
    x, v, mask = _attention_inputs(rng)
    sm = _softmax_bmm_model(x.shape, v.shape, mask.shape, 0.3)
    a, b = _inputs(rng)
    bm = _bmm_model(a.shape, b.shape, 0.5)
    for model, feeds in ((sm, {"x": x, "v": v, "mask": mask}), (bm, {"a": a, "b": b})):
        model.save(tmp_path / "m.eb")
        back = eb.load(tmp_path / "m.eb")
        assert [s.op for s in back.plan.steps] == [s.op for s in model.plan.steps]
        np.testing.assert_array_equal(back.run(feeds)["y"], model.run(feeds)["y"])


# ---- bad input ----------------------------------------------------------------------------------

def test_non_finite_inputs_are_refused(rng):
    a, b = _inputs(rng)
    model = _bmm_model(a.shape, b.shape)
    for name in ("a", "b"):
        bad = {"a": a.copy(), "b": b.copy()}
        bad[name][1, 2, 0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN or infinity"):
            model.run(bad)
        with pytest.raises(ValueError, match="NaN or infinity"):
            ref.dynamic_bmm(bad["a"], bad["b"])
    x, v, mask = _attention_inputs(rng)
    model = _softmax_bmm_model(x.shape, v.shape, mask.shape)
    for name, value in (("x", np.nan), ("x", np.inf), ("v", np.inf), ("mask", np.nan)):
        bad = {"x": x.copy(), "v": v.copy(), "mask": mask.copy()}
        bad[name].flat[3] = value
        with pytest.raises(ValueError, match="NaN or"):
            model.run(bad)
        with pytest.raises(ValueError, match="NaN or"):
            ref.softmax_bmm(bad["x"], bad["v"], bad["mask"])


def test_bad_steps_are_refused(rng):
    with pytest.raises(ValueError, match="alpha"):
        _bmm_model((None, 2, 3, 4), (None, 2, 4, 5), alpha=0.0)
    with pytest.raises(ValueError, match="columns"):
        _bmm_model((None, 2, 3, 4), (None, 2, 5, 5))
    with pytest.raises(ValueError, match="broadcast"):
        _bmm_model((None, 2, 3, 4), (None, 3, 4, 5))
    with pytest.raises(ValueError, match="p_scale"):
        _softmax_bmm_model((None, 2, 3, 4), (None, 2, 4, 5), p_scale="tensor")
    with pytest.raises(ValueError, match="broadcast"):
        _softmax_bmm_model((None, 2, 3, 4), (None, 2, 4, 5), mask_shape=(None, 1, 1, 3))
    with pytest.raises(ValueError, match="output's"):   # the scores may not broadcast
        _softmax_bmm_model((None, 1, 3, 4), (None, 2, 4, 5))
    t = {"x": TensorSpec("x", F32, (None, 2, 3, 4)), "v": TensorSpec("v", F32, (None, 2, 4, 5)),
         "y": TensorSpec("y", F32, (None, 2, 3, 5))}
    for table in (exp_table()[:100], exp_table().astype(np.int64), np.full(4097, 7, np.int32)):
        step = Step("softmax_bmm", ("x", "v"), "y", {"scale": None, "p_scale": "row"}, {"exp_table": table})
        with pytest.raises(ValueError, match="exp_table"):
            QuantizedModel(Plan(t, [step], ["x", "v"], ["y"]))
    with pytest.raises(ValueError, match="p_scale"):
        ref.softmax_bmm(np.zeros((1, 2, 3), np.float32), np.zeros((1, 3, 2), np.float32), p_scale="x")
    with pytest.raises(ValueError, match="multiply"):
        ref.dynamic_bmm(np.zeros((1, 2, 3), np.float32), np.zeros((1, 2, 2), np.float32))


# ---- the encoder: eb.quantize(..., attention="int8") ------------------------------------------------

def _encoder(heads=4, hidden=48, t=12):
    w = synthetic_bert_weights(layers=2, hidden=hidden, heads=heads, ffn=96, seed=1)
    g = bert_encoder(w, layers=2, heads=heads, seq_len=t, hidden=hidden, ffn=96)
    x, mask = synthetic_encoder_inputs(w, 6, t, seed=2)
    mask[0, 8:] = 0                                     # padding in the first sequence
    return g, {"x": x, "mask": mask}


def _cosine(a, b):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("heads", [4, 3])          # head size 12 (scale stays) and 16 (1/4 folds)
def test_quantize_lowers_attention_to_int8(heads):
    g, feeds = _encoder(heads=heads)
    qf = eb.quantize(g, [feeds])
    qi = eb.quantize(g, [feeds], attention="int8")
    ops = [s.op for s in qi.plan.steps]
    assert ops.count("dynamic_bmm") == 2 and ops.count("softmax_bmm") == 2
    left = [s.source for s in qi.plan.steps if s.op == "float" and s.attrs["op"] in ("bmm", "softmax")]
    assert left and all(".pooler" in name or name == "pooled" for name in left)   # mean pooling stays float
    qk = next(s for s in qi.plan.steps if s.op == "dynamic_bmm")
    pv = next(s for s in qi.plan.steps if s.op == "softmax_bmm")
    folded = heads == 3                                 # d = 16: 1/sqrt(d) = 0.25
    assert qk.attrs["alpha"] == (0.25 if folded else 1.0)
    assert (pv.attrs["scale"] is None) == folded and len(pv.inputs) == 3
    want = g.run(feeds)["pooled"]
    assert _cosine(qi.run(feeds)["pooled"], want).min() > 0.995
    assert _cosine(qf.run(feeds)["pooled"], want).min() > 0.995
    assert [s.op for s in eb.quantize(g, [feeds], attention="float").plan.steps] == [s.op for s in qf.plan.steps]


def test_dynamic_quantization_and_exclude():
    g, feeds = _encoder()
    qd = eb.quantize(g, dynamic=True, attention="int8")
    assert [s.op for s in qd.plan.steps].count("softmax_bmm") == 2
    softmax = next(n.name for n in g.nodes if n.op == "softmax")
    qe = eb.quantize(g, [feeds], attention="int8", exclude=[softmax], min_sqnr=None)
    assert [s.op for s in qe.plan.steps].count("softmax_bmm") == 1
    with pytest.raises(ValueError, match="attention"):
        eb.quantize(g, [feeds], attention="int4")


def test_exported_steps_match_in_onnx_runtime(rng):
    ort = pytest.importorskip("onnxruntime")
    a, b = _inputs(rng, (2, 1), (2, 3), 6, 10, 7)
    x, v, mask = _attention_inputs(rng, m=6, t=9, d=5, mask_kind="full")
    cases = [(_bmm_model(a.shape, b.shape, 0.17677669), {"a": a, "b": b})]
    for p_scale in ("row", "fixed"):
        cases.append((_softmax_bmm_model(x.shape, v.shape, mask.shape, 0.3, p_scale), {"x": x, "v": v, "mask": mask}))
    for model, feeds in cases:
        sess = ort.InferenceSession(eb.to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(sess.run(None, feeds)[0], model.run(feeds)["y"])


def test_exported_encoder_runs_in_onnx_runtime():
    ort = pytest.importorskip("onnxruntime")
    g, feeds = _encoder()
    qi = eb.quantize(g, [feeds], attention="int8")
    sess = ort.InferenceSession(eb.to_onnx(qi).SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    want = qi.run(feeds)["pooled"]
    # the float steps around attention (layer norm, GELU) round differently in ONNX Runtime
    np.testing.assert_allclose(got["pooled"], want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_cli_attention_option(tmp_path):
    from pathlib import Path

    from eightbit.cli import main
    model = Path(__file__).parents[1] / "data" / "onnx" / "transformers" / "minilm_tiny_op14.onnx"
    assert main(["quantize", str(model), "--dynamic", "--attention", "int8", "--dim", "sequence=16",
                 "-o", str(tmp_path / "m.eb")]) == 0
    ops = [s.op for s in eb.load(tmp_path / "m.eb").plan.steps]
    assert ops.count("dynamic_bmm") == ops.count("softmax_bmm") > 0
