"""Binary (+-1) layers inside quantized models: eb.quantize(graph, calibration, binary=[...]).

* A CNN (int8 stem conv, binary 3x3 convs with padding 1 at stride 1 and 2, with and without bias,
  a residual add, a binary 1x1 conv, max pooling, a binary linear hidden layer, an int8 classifier)
  and an MLP (int8 first and last layers, two binary hidden linears, K and O across the 8-bit and
  64-bit word boundaries; [N, K] rows and [N, T, K] tokens): qm(x) (the C++ executor),
  qm.run_steps (eightbit.ops) and qm.reference_run (NumPy) give identical outputs on every kernel
  path, batch 1 and 3, with uint8, int8 and symmetric int8 activations; fused relu / relu6 clamp
  the codes of all three.
* The .eb round trip; summary(); the constants of a binary layer (1 bit per weight).
* Calibration runs on the binarised graph (graph.passes.binarize).
* Bad binary= arguments raise ValueError; hostile .eb files (sign bits past the channels, x_codes
  out of range or of the wrong length, w_signs of the wrong size, non-positive w_scale, ...) raise
  ModelFileError, both through eb.load and from the C++ reader alone (what the C library runs).

Every eb.quantize call here passes min_sqnr=None: the low-SQNR diagnostic of eb.quantize is tested
on its own (test_low_output_sqnr_warns_instead_of_failing).
"""
import re
import warnings
import zlib

import numpy as np
import pytest

import eightbit as eb
from eightbit.graph.passes import binarize, prepare_for_quantization
from eightbit.model import file_format as ff
from eightbit.model.execute import run_plan
from eightbit.numerics.clamp import activation_range
from eightbit import reference as R
from _plans import assert_refused, assert_same_steps, file_with_step_changed, load_tree, put

F = np.float32
VARIANTS = {"u8": {}, "s8": {"activation_dtype": "int8"}, "s8sym": {"activation_symmetric": True}}


def seed(*params):
    """A seed that does not change between runs (str hashes are randomised per process)."""
    return zlib.crc32(repr(params).encode())


def weights(rng, *shape, sd=0.3):
    return (rng.standard_normal(shape) * sd).astype(F)


# ---- the models ----------------------------------------------------------------------------

CNN_BINARY = ["bconv1", "bconv2", "bconv3", "bconv4", "bfc1"]
CNN_IN = (3, 12, 12)


def cnn_graph():
    """x [N,3,12,12] -> conv0 (int8, 12 ch, relu) -> bconv1 (3x3 pad 1, bias, relu) -> bconv2 (3x3
    pad 1, no bias) -> + conv0's output -> bconv3 (3x3 stride 2 pad 1, 12 -> 24, relu6) -> bconv4
    (1x1, 24 -> 24) -> max pool 2 -> flatten -> bfc1 (binary linear 216 -> 40, relu) -> fc2 (int8)."""
    rng = np.random.default_rng(seed("cnn"))
    g = eb.Graph()
    x = g.input("x", (None,) + CNN_IN)
    h = g.relu(g.conv2d(x, weights(rng, 12, 3, 3, 3), weights(rng, 12, sd=0.1), padding=1, name="conv0"),
               name="conv0_relu")
    b = g.relu(g.conv2d(h, weights(rng, 12, 12, 3, 3), weights(rng, 12), padding=1, name="bconv1"),
               name="bconv1_relu")
    b = g.conv2d(b, weights(rng, 12, 12, 3, 3), None, padding=1, name="bconv2")
    r = g.add(b, h, name="res")
    b = g.relu6(g.conv2d(r, weights(rng, 24, 12, 3, 3), weights(rng, 24), stride=2, padding=1, name="bconv3"),
                name="bconv3_relu6")
    b = g.conv2d(b, weights(rng, 24, 24, 1, 1), weights(rng, 24), name="bconv4")
    f = g.flatten(g.max_pool2d(b, 2, name="pool"), name="flat")
    f = g.relu(g.linear(f, weights(rng, 40, 216, sd=0.1), weights(rng, 40), name="bfc1"), name="bfc1_relu")
    g.output(g.linear(f, weights(rng, 10, 40), weights(rng, 10), name="fc2"))
    return g


MLP_BINARY = ["b1", "b2"]


def mlp_graph(tokens=False):
    """x [N, 20] (or [N, 5, 20] tokens) -> fc0 (int8, 37, relu) -> b1 (binary, 37 -> 96: K within a
    word, not whole bytes) -> b2 (binary, 96 -> 64, no bias, relu: K over two words, whole bytes)
    -> fc3 (int8, 10)."""
    rng = np.random.default_rng(seed("mlp"))
    g = eb.Graph()
    x = g.input("x", (None, 5, 20) if tokens else (None, 20))
    h = g.relu(g.linear(x, weights(rng, 37, 20), weights(rng, 37, sd=0.1), name="fc0"), name="fc0_relu")
    h = g.linear(h, weights(rng, 96, 37), weights(rng, 96, sd=0.1), name="b1")
    h = g.relu(g.linear(h, weights(rng, 64, 96), None, name="b2"), name="b2_relu")
    g.output(g.linear(h, weights(rng, 10, 64), weights(rng, 10), name="fc3"))
    return g


MODELS = {
    "cnn": (cnn_graph, CNN_BINARY, CNN_IN),
    "mlp": (lambda: mlp_graph(False), MLP_BINARY, (20,)),
    "mlp_tokens": (lambda: mlp_graph(True), MLP_BINARY, (5, 20)),
}


def data(name, shape, batch, i=0):
    return np.random.default_rng(seed(name, batch, i)).standard_normal((batch,) + shape).astype(F)


def calibration(name, shape):
    return [{"x": data(name, shape, 8, i)} for i in range(2)]


def quantize(model, binary=None, **kw):
    """The model quantized with its binary nodes; threshold 0 (the plain sign) unless said otherwise,
    so that the float graph binarised by graph.passes.binarize is the reference."""
    make, names, shape = MODELS[model]
    kw.setdefault("binary_threshold", 0.0)
    return eb.quantize(make(), calibration(model, shape), binary=names if binary is None else binary,
                       min_sqnr=None, **kw)


def binary_steps(qm):
    return [s for s in qm.plan.steps if s.op in ("binary_conv", "binary_linear")]


def sqnr_db(ref, got):
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - got) ** 2))


# ---- 1. the three executors agree ------------------------------------------------------------

@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_executor_ops_and_reference_agree_on_every_isa(isa, model, variant):
    qm = quantize(model, **VARIANTS[variant])
    steps = binary_steps(qm)
    want_ops = {"cnn": ["binary_conv"] * 4 + ["binary_linear"]}.get(model, ["binary_linear"] * 2)
    assert [s.op for s in steps] == want_ops
    assert {s.source for s in steps} == set(MODELS[model][1])
    dtype = np.uint8 if variant == "u8" else np.int8
    for s in steps:
        assert qm.plan.tensors[s.output].dtype == dtype and qm.plan.tensors[s.inputs[0]].dtype == dtype
        if variant == "s8sym":
            assert qm.plan.tensors[s.output].zero_point == 0
    out = qm.plan.outputs[0]
    for batch in (1, 3):
        x = data(model, MODELS[model][2], batch, 7)
        got = qm(x)
        assert got.dtype == F and got.shape == (batch,) + ((5, 10) if model == "mlp_tokens" else (10,))
        np.testing.assert_array_equal(got, qm.run_steps({"x": x})[out], err_msg=f"{isa} batch {batch} run_steps")
        np.testing.assert_array_equal(got, qm.reference_run({"x": x})[out], err_msg=f"{isa} batch {batch} reference")
        assert np.all(np.isfinite(got)) and np.ptp(got) > 0


def test_lowered_records():
    """The executor's records of the binary steps: the window of the float node, zero padding, the
    activation's clamp and x_codes (eightbit.binary.code_thresholds of the input's parameters)."""
    from eightbit.binary import code_thresholds

    qm = quantize("cnn")
    steps = {s.source: s for s in binary_steps(qm)}
    expect = {"bconv1": ((1, 1), (1, 1, 1, 1), "relu"), "bconv2": ((1, 1), (1, 1, 1, 1), None),
              "bconv3": ((2, 2), (1, 1, 1, 1), ("clip", 0.0, 6.0)), "bconv4": ((1, 1), (0, 0, 0, 0), None)}
    for name, (strides, pads, act) in expect.items():
        s = steps[name]
        assert s.lowered["kind"] == "binary_conv"
        assert (tuple(s.attrs["strides"]), tuple(s.attrs["pads"]), s.attrs["activation"]) == (strides, pads, act)
        assert list(s.lowered["strides"]) == list(strides) and list(s.lowered["pads"]) == list(pads)
        assert list(s.lowered["dilations"]) == [1, 1] and s.lowered["zero_padding"] is True
    assert steps["bfc1"].lowered["kind"] == "binary_linear" and steps["bfc1"].attrs["activation"] == "relu"
    for s in steps.values():
        x, y = qm.plan.tensors[s.inputs[0]], qm.plan.tensors[s.output]
        c = s.consts["threshold"].shape[0]
        assert s.consts["threshold"].dtype == F and np.all(s.consts["threshold"] == 0)
        codes = s.lowered["x_codes"]
        assert codes.dtype == np.int32 and codes.shape == (c,)
        np.testing.assert_array_equal(codes, code_thresholds(F(x.scale), np.array(x.zero_point, x.dtype),
                                                             s.consts["threshold"], c))
        # threshold 0: the codes below the zero point are -1
        assert np.all(codes == x.zero_point - np.iinfo(x.dtype).min)
        lo, hi = activation_range(s.attrs["activation"], F(y.scale), np.array(y.zero_point, y.dtype), y.dtype)
        assert (s.lowered["qmin"], s.lowered["qmax"]) == (lo, hi)


def activation_graph():
    """conv0 (int8) -> b_relu (binary 3x3, relu) -> b_relu6 (binary 3x3 stride 2, relu6) -> flatten ->
    b_fc (binary linear, relu): each binary output is also a graph output."""
    rng = np.random.default_rng(seed("act"))
    g = eb.Graph()
    x = g.input("x", (None, 3, 8, 8))
    h = g.conv2d(x, weights(rng, 10, 3, 3, 3), weights(rng, 10), padding=1, name="conv0")
    a = g.relu(g.conv2d(h, weights(rng, 16, 10, 3, 3), weights(rng, 16), padding=1, name="b_relu"), name="a")
    # wide weights: outputs up to ~25, so relu6 clamps the top of the range too
    b = g.relu6(g.conv2d(a, weights(rng, 16, 16, 3, 3, sd=2.0), weights(rng, 16), stride=2, padding=1,
                         name="b_relu6"), name="b")
    c = g.relu(g.linear(g.flatten(b), weights(rng, 24, 256), weights(rng, 24), name="b_fc"), name="c")
    for t in (a, b, c):
        g.output(t)
    return g


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_fused_relu_and_relu6_clamp_the_codes(isa, variant):
    g = activation_graph()
    cal = [{"x": data("act", (3, 8, 8), 8, i)} for i in range(2)]
    qm = eb.quantize(g, cal, binary=["b_relu", "b_relu6", "b_fc"], min_sqnr=None, **VARIANTS[variant])
    steps = {s.source: s for s in binary_steps(qm)}
    assert steps["b_relu"].attrs["activation"] == "relu"
    assert steps["b_relu6"].attrs["activation"] == ("clip", 0.0, 6.0)
    assert steps["b_fc"].attrs["activation"] == "relu"
    x = data("act", (3, 8, 8), 3, 9)
    ours = qm.run_steps({"x": x}, return_all=True)
    ref = run_plan(qm.plan, {"x": x}, R, return_all=True)
    cpp = qm.run({"x": x})
    for name, step in steps.items():
        y = qm.plan.tensors[step.output]
        lo, hi = activation_range(step.attrs["activation"], F(y.scale), np.array(y.zero_point, y.dtype), y.dtype)
        assert (step.lowered["qmin"], step.lowered["qmax"]) == (lo, hi)
        assert lo == y.zero_point                        # relu and relu6 clamp at real 0
        codes = ours[step.output]
        np.testing.assert_array_equal(codes, ref[step.output])
        assert codes.min() >= lo and codes.max() <= hi
        assert np.count_nonzero(codes == lo) > 0         # the clamp is hit
        out = {"b_relu": "a", "b_relu6": "b", "b_fc": "c"}[name]
        real = cpp[out]                                   # the C++ executor's codes, dequantized
        want = (codes.astype(np.float32) - F(y.zero_point)) * F(y.scale)
        np.testing.assert_array_equal(real, want if want.ndim == 2 else want.transpose(0, 3, 1, 2))
        assert real.min() == 0.0
    y6 = qm.plan.tensors[steps["b_relu6"].output]
    # relu6: nothing above 6 (within half a step), and the clamp at 6 in force
    assert cpp["b"].max() <= 6.0 + y6.scale / 2
    assert np.count_nonzero(cpp["b"] >= 6.0 - y6.scale) > 0
    if variant == "s8sym":   # symmetric int8: the relu clamp is at code 0, not the dtype's -128
        assert all(s.lowered["qmin"] == 0 for s in steps.values())


def test_graph_outputs_dequantize_a_binary_step():
    """A binary layer that is itself the graph's output: its step is followed by a dequantize."""
    rng = np.random.default_rng(seed("last"))
    g = eb.Graph()
    h = g.linear(g.input("x", (None, 12)), weights(rng, 12, 12), name="fc0")
    g.output(g.linear(h, weights(rng, 9, 12), weights(rng, 9), name="b"))
    qm = eb.quantize(g, [{"x": data("last", (12,), 8)}], binary=["b"], min_sqnr=None)
    assert [s.op for s in qm.plan.steps][-2:] == ["binary_linear", "dequantize"]
    x = data("last", (12,), 3, 1)
    np.testing.assert_array_equal(qm(x), qm.reference_run({"x": x})[qm.plan.outputs[0]])


def test_binary_accepts_one_name_as_a_string():
    a, b = quantize("mlp", binary="b1"), quantize("mlp", binary=["b1"])
    assert [s.op for s in a.plan.steps] == [s.op for s in b.plan.steps]
    assert [s.op for s in binary_steps(a)] == ["binary_linear"]
    x = data("mlp", (20,), 3, 2)
    np.testing.assert_array_equal(a(x), b(x))


# ---- 2. the .eb file, summary and size ---------------------------------------------------------

@pytest.mark.parametrize("model", sorted(MODELS))
def test_save_and_load_round_trip(tmp_path, model):
    qm = quantize(model)
    path = tmp_path / "m.eb"
    qm.save(path)
    loaded = eb.load(path)
    assert_same_steps(qm.plan, loaded.plan)
    for a, b in zip(qm.plan.steps, loaded.plan.steps):
        if a.op in ("binary_conv", "binary_linear"):
            np.testing.assert_array_equal(a.lowered["x_codes"], b.lowered["x_codes"])
    out = qm.plan.outputs[0]
    for batch in (1, 3):
        x = data(model, MODELS[model][2], batch, 11)
        want = qm(x)
        np.testing.assert_array_equal(loaded(x), want)
        np.testing.assert_array_equal(loaded.run_steps({"x": x})[out], want)
        np.testing.assert_array_equal(loaded.reference_run({"x": x})[out], want)
    # the file of the loaded model is the same file
    path2 = tmp_path / "again.eb"
    loaded.save(path2)
    assert path.read_bytes()[64:] == path2.read_bytes()[64:]


def test_summary_lists_the_binary_steps():
    qm = quantize("cnn")
    text = qm.summary()
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 10 and parts[1] in ("binary_conv", "binary_linear"):
            assert parts[8] == "1"                      # bits per weight
            rows[parts[2]] = (parts[1], int(parts[9]))
    assert {k: v[0] for k, v in rows.items()} == {"bconv1": "binary_conv", "bconv2": "binary_conv",
                                                   "bconv3": "binary_conv", "bconv4": "binary_conv",
                                                   "bfc1": "binary_linear"}
    for s in binary_steps(qm):
        assert rows[s.source][1] == sum(v.nbytes for v in s.consts.values())
    assert re.search(rf"constants: {qm.size_bytes} bytes", text)


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_a_binary_layer_takes_one_bit_per_weight(model):
    """The same layer's weights: int8 (one byte per weight) against packed signs (one bit, each
    channel row padded to whole bytes); a binary layer's constants are its signs plus three float32
    vectors (w_scale and bias per output channel, threshold per input channel)."""
    qb, q8 = quantize(model), quantize(model, binary=[])
    int8 = {s.source: s for s in q8.plan.steps if s.op in ("conv", "linear")}
    eighths = 0
    for s in binary_steps(qb):
        w = int8[s.source].consts["w"]
        o, c = w.shape[0], w.shape[1]
        taps = int(np.prod(w.shape[2:])) if w.ndim == 4 else 1
        signs = s.consts["w_signs"]
        assert signs.dtype == np.uint8 and signs.nbytes == o * taps * -(-c // 8)
        if c % 8 == 0:
            assert signs.nbytes * 8 == w.nbytes
            eighths += 1
        else:
            assert signs.nbytes * 8 < w.nbytes + 8 * o * taps
        assert sum(v.nbytes for v in s.consts.values()) == signs.nbytes + 4 * (2 * o + c)
    assert eighths >= 1
    assert qb.size_bytes < q8.size_bytes


# ---- 3. calibration sees the binarised graph ----------------------------------------------------

def observed_ranges(graph, batches):
    seen = {}

    def observe(name, a):
        lo, hi = seen.get(name, (np.inf, -np.inf))
        seen[name] = (min(lo, float(a.min())), max(hi, float(a.max())))
    for b in batches:
        graph.run(b, on_tensor=observe)
    return seen


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_calibration_ranges_are_those_of_the_binarised_graph(model):
    make, names, shape = MODELS[model]
    qm = quantize(model)
    prepared = prepare_for_quantization(make())
    cal = calibration(model, shape)
    binarised, plain = observed_ranges(binarize(prepared, names), cal), observed_ranges(prepared, cal)
    checked = differ = 0
    for s in binary_steps(qm):
        t = qm.plan.tensors[s.output]
        lo, hi = binarised[s.output]
        want = (max(hi, 0.0) - min(lo, 0.0)) / 255          # minmax over uint8
        assert t.scale == pytest.approx(want, rel=1e-6), s.source
        plo, phi = plain[s.output]
        differ += abs((max(phi, 0.0) - min(plo, 0.0)) / 255 / want - 1) > 0.05
        checked += 1
    assert checked == len(names)
    assert differ >= len(names) - 1    # the test tells them apart (but relu6 may clamp both ranges at 6)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_output_follows_the_binarised_float_graph(model):
    make, names, shape = MODELS[model]
    qm = quantize(model)
    prepared = prepare_for_quantization(make())
    x = data(model, shape, 16, 5)
    got = qm(x)
    binarised = binarize(prepared, names).run({"x": x})
    original = make().run({"x": x})
    near, far = sqnr_db(binarised, got), sqnr_db(original, got)
    assert near > 12 and far < 5 and near > far + 10, (near, far)


def test_binarize_pass():
    """graph.passes.binarize: weights alpha * sign(w) with alpha = mean |w| per output channel,
    sign(0) = +1, binary_threshold 0.0; the float executor feeds the node -1 / +1."""
    g = prepare_for_quantization(mlp_graph())
    w = g.node("b1").consts["weight"].copy()
    w[3, 5] = 0.0
    g.node("b1").consts["weight"] = w
    b = binarize(g, ["b1"])
    bw = b.node("b1").consts["weight"]
    alpha = np.mean(np.abs(w), axis=1, dtype=F)
    np.testing.assert_array_equal(bw, np.where(w < 0, -1, 1).astype(F) * alpha[:, None])
    assert bw[3, 5] == alpha[3] and b.node("b1").attrs["binary_threshold"] == 0.0
    assert "binary_threshold" not in b.node("b2").attrs
    np.testing.assert_array_equal(b.node("b2").consts["weight"], g.node("b2").consts["weight"])
    # the float executor: b1's input binarised to +-1 (x < 0 -> -1; the relu's zeros are +1)
    x = data("mlp", (20,), 4, 3)
    h = g.run({"x": x}, return_all=True)["fc0_relu"]
    y = b.run({"x": x}, return_all=True)["b1"]
    s = np.where(h < 0, F(-1), F(1))
    np.testing.assert_allclose(y, s @ bw.T.astype(np.float64) + g.node("b1").consts["bias"], rtol=1e-5, atol=1e-5)


# ---- 4. bad arguments ---------------------------------------------------------------------------

def small_graph():
    rng = np.random.default_rng(seed("small"))
    g = eb.Graph()
    x = g.input("x", (None, 4, 6, 6))
    h = g.conv2d(x, weights(rng, 8, 4, 3, 3), padding=1, name="conv")
    h = g.conv2d(h, weights(rng, 8, 4, 3, 3), padding=1, groups=2, name="grouped")
    h = g.conv2d(h, weights(rng, 8, 1, 3, 3), padding=1, groups=8, name="depthwise")
    h = g.max_pool2d(h, 2, name="pool")
    h = g.linear(g.flatten(h, name="flat"), weights(rng, 6, 72), name="fc")
    h = g.add(h, g.linear(h, weights(rng, 6, 6), name="fc2"), name="sum")
    g.output(g.linear(h, weights(rng, 3, 6), name="head"))
    return g


SMALL_CAL = [{"x": np.random.default_rng(1).standard_normal((4, 4, 6, 6)).astype(F)}]


@pytest.mark.parametrize("binary, extra, word", [
    (["nope"], {}, "nope"),                                   # no such node
    (["fc", "missing"], {}, "missing"),
    (["pool"], {}, "only linear and conv2d"),                 # not a linear / conv2d
    (["sum"], {}, "only linear and conv2d"),
    (["flat"], {}, "only linear and conv2d"),
    (["grouped"], {}, "groups"),                              # grouped conv
    (["depthwise"], {}, "groups"),                            # depthwise conv
    (["fc"], {"exclude": ["fc"]}, "exclude"),                 # also in exclude=
    (["fc", "conv"], {"exclude": ["conv"]}, "exclude"),
    (["fc"], {"dynamic": True}, "dynamic"),
    (["fc"], {"accuracy_budget": 0.01}, "accuracy_budget"),
])
def test_bad_binary_arguments_raise_value_error(binary, extra, word):
    with pytest.raises(ValueError, match=re.escape(word)):
        eb.quantize(small_graph(), SMALL_CAL, binary=binary, min_sqnr=None, **extra)


def test_a_channel_of_zero_weights_cannot_be_binary():
    g = small_graph()
    w = g.node("fc").consts["weight"].copy()
    w[2] = 0.0
    g.node("fc").consts["weight"] = w
    with pytest.raises(ValueError, match="zero"):
        eb.quantize(g, SMALL_CAL, binary=["fc"], min_sqnr=None)


def test_the_good_nodes_of_the_small_graph_are_accepted():
    qm = eb.quantize(small_graph(), SMALL_CAL, binary=["conv", "fc", "fc2"], min_sqnr=None)
    assert sorted(s.source for s in binary_steps(qm)) == ["conv", "fc", "fc2"]
    x = SMALL_CAL[0]["x"][:3]
    np.testing.assert_array_equal(qm(x), qm.reference_run({"x": x})[qm.plan.outputs[0]])


def test_low_output_sqnr_warns_instead_of_failing():
    """eb.quantize's check of the output SQNR (min_sqnr) warns when it is low and names the nodes
    that hurt most; with binary layers it must still warn (QuantizationWarning), not fail."""
    g = mlp_graph(tokens=True)
    cal = calibration("mlp_tokens", (5, 20))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            qm = eb.quantize(g, cal, binary=MLP_BINARY, min_sqnr=1000.0)   # every model is below 1000 dB
        except ValueError as e:
            pytest.fail(f"eb.quantize(binary=..., min_sqnr=1000) raised ValueError: {e}")
    assert any(issubclass(w.category, eb.QuantizationWarning) and "SQNR" in str(w.message) for w in caught)
    assert len(binary_steps(qm)) == 2


# ---- 5. hostile .eb files -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_cnn():
    """(the CNN's plan tree as the writer stores it, {source: step index})."""
    qm = quantize("cnn")
    tree = ff._plan_tree(qm.plan, "test")
    return tree, {s["source"]: i for i, s in enumerate(tree["steps"])}


def with_const(name, fn):
    def change(step):
        step["consts"][name] = fn(np.array(step["consts"][name]))
    return change


def with_record(name, fn):
    def change(step):
        step["lowered"][name] = fn(step["lowered"][name])
    return change


def set_padding_bit(a):
    a = a.copy()
    a[..., -1] |= 0x80          # bconv1 / bconv2 / bconv3 have 12 input channels: bits 4..7 are padding
    return a


def set_last_padding_bit_once(a):
    a = a.copy()
    a[a.shape[0] - 1, ..., -1].flat[-1] |= 0x10    # one bit (channel 12 of the last row's last tap)
    return a


def set_kind(kind):
    def change(step):
        step["lowered"]["kind"] = kind
    return change


HOSTILE = {
    # w_signs: a bit set past the input channels
    "bits_past_channels": ("bconv1", with_const("w_signs", set_padding_bit), "past the input channels"),
    "one_bit_past_channels": ("bconv3", with_const("w_signs", set_last_padding_bit_once), "past the input channels"),
    # x_codes out of [0, 256], or not one per input channel
    "x_codes_negative": ("bconv1", with_record("x_codes", put(-1, 3)), "x_codes"),
    "x_codes_257": ("bconv4", with_record("x_codes", put(257)), "x_codes"),
    "x_codes_huge": ("bfc1", with_record("x_codes", put(2**31 - 1, 100)), "x_codes"),
    "x_codes_short": ("bconv2", with_record("x_codes", lambda a: a[:-1].copy()), "x_codes"),
    "x_codes_long": ("bfc1", with_record("x_codes", lambda a: np.concatenate([a, a[:1]])), "x_codes"),
    "x_codes_empty": ("bconv1", with_record("x_codes", lambda a: a[:0].copy()), "x_codes"),
    "x_codes_float": ("bconv1", with_record("x_codes", lambda a: a.astype(F)), "x_codes"),
    # w_signs: the wrong byte count (per tap), the wrong rank or dtype
    "w_signs_extra_byte": ("bconv1", with_const("w_signs", lambda a: np.concatenate([a, a[..., :1] * 0], -1)),
                           "w_signs"),
    "w_signs_missing_byte": ("bconv4", with_const("w_signs", lambda a: a[..., 1:].copy()), "w_signs"),
    "w_signs_linear_extra_byte": ("bfc1", with_const("w_signs", lambda a: np.concatenate([a, a[:, :1] * 0], 1)),
                                  "w_signs"),
    "w_signs_flat": ("bconv2", with_const("w_signs", lambda a: a.reshape(a.shape[0], -1)), "w_signs"),
    "w_signs_int8": ("bfc1", with_const("w_signs", lambda a: a.view(np.int8)), "w_signs"),
    # w_scale: not positive and finite
    "w_scale_zero": ("bconv1", with_const("w_scale", put(0.0, 2)), "w_scale"),
    "w_scale_negative": ("bfc1", with_const("w_scale", put(-0.5, 7)), "w_scale"),
    "w_scale_minus_zero": ("bconv3", with_const("w_scale", put(-0.0)), "w_scale"),
    "w_scale_nan": ("bconv4", with_const("w_scale", put(np.nan, 1)), "w_scale"),
    "w_scale_inf": ("bconv2", with_const("w_scale", put(np.inf)), "w_scale"),
    "w_scale_short": ("bconv2", with_const("w_scale", lambda a: a[1:].copy()), "w_scale"),
    # bias: not finite
    "bias_nan": ("bfc1", with_const("bias", put(np.nan)), "bias"),
    # the record of another kind than the step
    "conv_as_linear": ("bconv1", set_kind("binary_linear"), "cannot run as"),
    "linear_as_conv": ("bfc1", set_kind("binary_conv"), "cannot run as"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_raises_model_file_error(tmp_path, saved_cnn, case):
    tree, index = saved_cnn
    source, change, word = HOSTILE[case]
    path = tmp_path / f"{case}.eb"
    file_with_step_changed(path, tree, index[source], lambda step, _: change(step))
    assert_refused(path, word)


def test_the_unchanged_tree_loads(tmp_path, saved_cnn):
    """The hostile cases start from a file that is fine: its tree written back loads and runs."""
    qm = load_tree(tmp_path / "ok.eb", saved_cnn[0])
    x = data("cnn", CNN_IN, 2, 1)
    np.testing.assert_array_equal(qm(x), quantize("cnn")(x))


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_default_thresholds_are_channel_means_through_the_binarised_graph(model):
    """binary_threshold="mean": each binary node's thresholds are its input's channel means on the
    calibration batches, measured with the binary nodes before it already binarised."""
    make, names, shape = MODELS[model]
    qm = quantize(model, binary_threshold="mean")
    cal = calibration(model, shape)
    g = prepare_for_quantization(make())
    order = [n.name for n in g.nodes if n.name in names]
    steps = {s.source: s for s in binary_steps(qm)}
    for name in order:
        x = g.node(name).inputs[0]
        seen = []
        for b in cal:
            g.run(b, on_tensor=lambda t, a: seen.append(np.asarray(a, np.float64)) if t == x else None)
        axis = 1 if seen[0].ndim == 4 else -1
        per_batch = [np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis]) for a in seen]
        mean = np.concatenate(per_batch).mean(axis=0)
        assert np.allclose(steps[name].consts["threshold"], mean.astype(F), rtol=1e-5, atol=1e-6), name
        g = binarize(g, [name], {name: mean.astype(F)})


def test_mean_thresholds_keep_a_relu_fed_layer_informative():
    """After a ReLU every input is >= 0: with threshold 0 a binary layer sees all +1 and its output
    is constant over the inputs; the channel means split them."""
    make, names, shape = MODELS["mlp"]
    x = data("mlp", shape, 32, 9)
    spread = {}
    for thr in (0.0, "mean"):
        qm = quantize("mlp", binary_threshold=thr)
        spread[thr] = float(np.std(qm(x), axis=0).mean())
    assert spread["mean"] > 0.0 and spread["mean"] > 10 * spread[0.0], spread