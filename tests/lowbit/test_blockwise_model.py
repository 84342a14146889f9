"""Block-quantized low-bit weights inside quantized models: eb.quantize(graph, calibration,
weight_bits=4, block_size=32) (and weight_bits 3 / 2, block sizes 16 ... 128, dynamic=True).

* An MLP (linear + relu stack; K = 64, 96, 100, 128: K = 100 no block size divides, so that layer
  stays an int8 ``linear`` step, a ``dynamic_linear`` one with dynamic=True), a token MLP on
  [N, T, K] inputs (a linear, a matmul, a residual add, linears) and a CNN (int8 convs, a linear
  head): every linear / matmul layer whose K the block size divides becomes a ``blockwise_linear``
  step with relu fused; qm(x) (the C++ executor), qm.run_steps (eightbit.ops) and qm.reference_run
  (NumPy) give identical outputs on every kernel path, batch 1 and 3.
  With dynamic=True the CNN's convs are float32 steps, whose float GEMM is specified against the
  other kernel paths, not NumPy (docs/kernels.md, "Float32 GEMM"): there the C++ executor is
  checked for the same bits on every path, and its blockwise head against the reference applied to
  the executor's own conv features.
* The step's constants are eightbit.reference.quantize_blockwise's codes (ONNX int4 packing) and
  scales; K*N/2 + 4*N*K/B + 4*N bytes a layer; the .eb round trip; summary()'s "w bits" column.
* Accuracy: a small MLP trained on sklearn's digits keeps its accuracy with 4-bit block-32 weights
  (the int8, 4-, 3- and 2-bit accuracies are printed; run with -s).
* Bad weight_bits / block_size raise ValueError; hostile .eb files (w_codes of the wrong shape,
  block sizes that are not powers of two in [16, 256] or do not divide K, w_scales not finite or of
  the wrong shape, NaN bias, relu missing from the record, ...) raise ModelFileError, both through
  eb.load and from the C++ reader alone (what the C library runs). Scales of either sign and zero
  are valid (ONNX Runtime's int4 quantizer writes negative ones), as are codes of -8.

Every eb.quantize call passes min_sqnr=None (2-bit weights are far from the float model).
"""
import functools
import re
import zlib

import numpy as np
import pytest

import eightbit as eb
from eightbit import reference as R
from eightbit.model import file_format as ff
from eightbit.model.file_format import ModelFileError
from eightbit.runtime import core as _core
from _plans import assert_refused, assert_same_steps, file_with_step_changed, load_tree, put

F = np.float32
BLOCK_OPS = ("blockwise_linear",)


def seed(*params):
    """A seed that does not change between runs (str hashes are randomised per process)."""
    return zlib.crc32(repr(params).encode())


def weights(rng, *shape, sd=0.3):
    return (rng.standard_normal(shape) * sd).astype(F)


# ---- the models ----------------------------------------------------------------------------

def mlp_graph():
    """x [N, 64] -> fc1 (64 -> 96, relu) -> fc2 (96 -> 100, relu) -> fc3 (100 -> 128, no bias, relu;
    K = 100: no block size divides it) -> fc4 (128 -> 10)."""
    rng = np.random.default_rng(seed("mlp"))
    g = eb.Graph()
    x = g.input("x", (None, 64))
    h = g.relu(g.linear(x, weights(rng, 96, 64, sd=0.15), weights(rng, 96, sd=0.1), name="fc1"), name="r1")
    h = g.relu(g.linear(h, weights(rng, 100, 96, sd=0.15), weights(rng, 100, sd=0.1), name="fc2"), name="r2")
    h = g.relu(g.linear(h, weights(rng, 128, 100, sd=0.15), None, name="fc3"), name="r3")
    g.output(g.linear(h, weights(rng, 10, 128, sd=0.15), weights(rng, 10), name="fc4"))
    return g


def token_graph():
    """x [N, 6, 64] -> up (linear 64 -> 128, relu) -> down (matmul 128 -> 64) -> + x -> fc (linear
    64 -> 96, relu) -> head (linear 96 -> 10): a transformer's token MLP and a head, per token."""
    rng = np.random.default_rng(seed("tokens"))
    g = eb.Graph()
    x = g.input("x", (None, 6, 64))
    h = g.relu(g.linear(x, weights(rng, 128, 64, sd=0.15), weights(rng, 128, sd=0.1), name="up"), name="up_relu")
    h = g.matmul(h, weights(rng, 128, 64, sd=0.1), name="down")
    h = g.add(h, x, name="res")
    h = g.relu(g.linear(h, weights(rng, 96, 64, sd=0.15), weights(rng, 96), name="fc"), name="fc_relu")
    g.output(g.linear(h, weights(rng, 10, 96, sd=0.15), weights(rng, 10), name="head"))
    return g


def cnn_graph(expose_features=False):
    """x [N, 3, 8, 8] -> conv0 (3x3 pad 1, relu) -> conv1 (3x3 stride 2 pad 1, relu) -> flatten (128)
    -> fc1 (128 -> 32, relu) -> fc2 (32 -> 10). ``expose_features``: the flattened features are a
    graph output too."""
    rng = np.random.default_rng(seed("cnn"))
    g = eb.Graph()
    x = g.input("x", (None, 3, 8, 8))
    h = g.relu(g.conv2d(x, weights(rng, 8, 3, 3, 3), weights(rng, 8, sd=0.1), padding=1, name="conv0"), name="c0")
    h = g.relu(g.conv2d(h, weights(rng, 8, 8, 3, 3, sd=0.15), weights(rng, 8, sd=0.1), stride=2, padding=1,
                        name="conv1"), name="c1")
    f = g.flatten(h, name="flat")
    if expose_features:
        g.output(f)
    h = g.relu(g.linear(f, weights(rng, 32, 128, sd=0.1), weights(rng, 32, sd=0.1), name="fc1"), name="fc1_relu")
    g.output(g.linear(h, weights(rng, 10, 32, sd=0.2), weights(rng, 10), name="fc2"))
    return g


# model: (graph, input shape, output shape, {linear / matmul node: K}, {node with fused relu}, convs)
MODELS = {
    "mlp": (mlp_graph, (64,), (10,), {"fc1": 64, "fc2": 96, "fc3": 100, "fc4": 128}, {"fc1", "fc2", "fc3"}, ()),
    "tokens": (token_graph, (6, 64), (6, 10), {"up": 64, "down": 128, "fc": 64, "head": 96}, {"up", "fc"}, ()),
    "cnn": (cnn_graph, (3, 8, 8), (10,), {"fc1": 128, "fc2": 32}, {"fc1"}, ("conv0", "conv1")),
}

# (weight_bits, block_size, dynamic)
CONFIGS = [(4, 32, False), (3, 16, False), (2, 64, False), (4, 128, False),
           (4, 16, True), (2, 32, True), (3, 64, True)]


def config_id(c):
    return f"w{c[0]}b{c[1]}" + ("dyn" if c[2] else "")


def data(name, shape, batch, i=0):
    return np.random.default_rng(seed(name, batch, i)).standard_normal((batch,) + shape).astype(F)


def calibration(name, shape):
    return [{"x": data(name, shape, 8, i)} for i in range(2)]


def outputs_of_every_executor(qm, i):
    """[(x, qm(x))] on the MLP's data for batches 1 and 3 (draw i), after checking that the C++
    executor, run_steps and the reference agree bit for bit."""
    out, runs = qm.plan.outputs[0], []
    for batch in (1, 3):
        x = data("mlp", (64,), batch, i)
        got = qm(x)
        np.testing.assert_array_equal(got, qm.run_steps({"x": x})[out])
        np.testing.assert_array_equal(got, qm.reference_run({"x": x})[out])
        runs.append((x, got))
    return runs


@functools.lru_cache(maxsize=None)
def quantize(model, bits=4, block=32, dynamic=False):
    """The quantized model (cached: the models are only read)."""
    make, shape = MODELS[model][:2]
    cal = None if dynamic else calibration(model, shape)
    return eb.quantize(make(), cal, weight_bits=bits, block_size=block, dynamic=dynamic, min_sqnr=None)


def blockwise_steps(qm):
    return [s for s in qm.plan.steps if s.op in BLOCK_OPS]


def expected_ops(model, block, dynamic):
    """{source node: op} of the model's linear / matmul layers and convs."""
    _, _, _, ks, _, convs = MODELS[model]
    want = {}
    for name, k in ks.items():
        if k % block == 0:
            want[name] = "blockwise_linear"
        elif dynamic or model == "tokens":    # tokens: per_token="auto" quantizes [N, T, K] inputs per row
            want[name] = "dynamic_linear"
        else:
            want[name] = "linear"
    for name in convs:
        want[name] = "float" if dynamic else "conv"
    return want


def float_weight(graph, name):
    """The node's weight as [O, K] float32 (a matmul's b is [K, O])."""
    node = graph.node(name)
    w = node.consts["weight"] if "weight" in node.consts else node.consts["b"].T
    return np.ascontiguousarray(w, F)


def codes_of(step):
    c = step.consts["w_codes"]
    return R.unpack_nibbles(c, 2 * c.shape[1])


# ---- 1. the three executors agree; the plan ----------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_executor_ops_and_reference_agree_on_every_isa(isa, model, config):
    bits, block, dynamic = config
    qm = quantize(model, bits, block, dynamic)
    _, shape, out_shape, ks, relus, _ = MODELS[model]
    want = expected_ops(model, block, dynamic)
    got = {s.source: s.op for s in qm.plan.steps if s.source in want}
    assert got == want
    assert sum(v == "blockwise_linear" for v in want.values()) >= 1
    for s in blockwise_steps(qm):
        assert s.attrs["block_size"] == block and s.attrs["bits"] == bits
        assert s.attrs["activation"] == ("relu" if s.source in relus else None)
        assert s.lowered == {"kind": "blockwise_linear", "block_size": block, "relu": s.source in relus}
        assert qm.plan.tensors[s.inputs[0]].dtype == F and qm.plan.tensors[s.output].dtype == F
    float_gemm = dynamic and model == "cnn"       # float convs: the same bits on every path, not NumPy's
    out = qm.plan.outputs[0]
    for batch in (1, 3):
        x = data(model, shape, batch, 7)
        got = qm(x)
        assert got.dtype == F and got.shape == (batch,) + out_shape
        steps, ref = qm.run_steps({"x": x})[out], qm.reference_run({"x": x})[out]
        np.testing.assert_array_equal(steps, ref, err_msg=f"{isa} batch {batch} run_steps vs reference")
        if float_gemm:
            np.testing.assert_allclose(got, steps, rtol=1e-5, atol=1e-5)
            before = eb.cpu_info()["isa"]
            eb.set_isa("scalar")
            try:
                scalar = qm(x)
            finally:
                eb.set_isa(before)
            np.testing.assert_array_equal(got, scalar, err_msg=f"{isa} batch {batch} vs the scalar path")
        else:
            np.testing.assert_array_equal(got, steps, err_msg=f"{isa} batch {batch} executor vs run_steps")
        assert np.all(np.isfinite(got)) and np.ptp(got) > 0


@pytest.mark.parametrize("config", [c for c in CONFIGS if c[2] and 32 % c[1] == 0], ids=config_id)
def test_dynamic_cnn_head_is_exact_on_the_executors_own_features(isa, config):
    """dynamic=True: the CNN's float convs are not NumPy's bits, but its blockwise head is exactly
    the reference's on the features the C++ executor computed."""
    bits, block, _ = config
    qm = eb.quantize(cnn_graph(expose_features=True), None, weight_bits=bits, block_size=block, dynamic=True,
                     min_sqnr=None)
    steps = blockwise_steps(qm)
    assert [s.source for s in steps] == ["fc1", "fc2"]
    assert [s.op for s in qm.plan.steps] == ["float", "float", "float", "blockwise_linear", "blockwise_linear"]
    for batch in (1, 3):
        x = data("cnn", (3, 8, 8), batch, 3)
        got = qm.run({"x": x})
        h = got["flat"]
        for s in steps:
            h = R.blockwise_linear(h, codes_of(s), s.consts["w_scales"], s.attrs["block_size"], s.consts["bias"],
                                   s.attrs["activation"])
        np.testing.assert_array_equal(got["fc2"], h, err_msg=f"{isa} batch {batch}")


def test_relu_is_fused_into_the_blockwise_step():
    """No step of its own for a relu after a blockwise layer: the step clamps (exact zeros, nothing
    negative), the layer without relu has negative outputs."""
    qm = quantize("mlp", 4, 32)
    assert [s.op for s in qm.plan.steps] == ["blockwise_linear", "blockwise_linear", "quantize", "linear",
                                             "dequantize", "blockwise_linear"]
    assert not any(s.source in ("r1", "r2", "r3") for s in qm.plan.steps)
    x = data("mlp", (64,), 16, 1)
    every = qm.run_steps({"x": x}, return_all=True)
    for s in blockwise_steps(qm):
        y = every[s.output]
        if s.attrs["activation"] == "relu":
            assert y.min() == 0.0 and np.count_nonzero(y == 0) > 0 and not np.any(np.signbit(y))
        else:
            assert y.min() < 0
    # the same layers without the relu: the step's output is the relu of theirs
    g = mlp_graph()
    plain = eb.Graph()
    xi = plain.input("x", (None, 64))
    n = g.node("fc1")
    plain.output(plain.linear(xi, n.consts["weight"], n.consts["bias"], name="fc1"))
    q2 = eb.quantize(plain, calibration("mlp", (64,)), weight_bits=4, block_size=32, min_sqnr=None)
    (s2,) = blockwise_steps(q2)
    assert s2.attrs["activation"] is None and s2.lowered["relu"] is False
    np.testing.assert_array_equal(np.maximum(q2(x), F(0)), every[blockwise_steps(qm)[0].output])


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_step_constants_are_the_reference_quantization(model, config):
    """w_codes: quantize_blockwise's codes of the float weight in ONNX's int4 packing; w_scales its
    scales; bias the node's bias (zeros without one). Codes within +-(2^(bits-1) - 1)."""
    bits, block, dynamic = config
    qm = quantize(model, bits, block, dynamic)
    g = MODELS[model][0]()
    qmax = 2 ** (bits - 1) - 1
    for s in blockwise_steps(qm):
        w = float_weight(g, s.source)
        o, k = w.shape
        codes, scales = R.quantize_blockwise(w, block, bits)
        c = s.consts
        assert c["w_codes"].dtype == np.uint8 and c["w_codes"].shape == (o, k // 2)
        np.testing.assert_array_equal(c["w_codes"], R.pack_nibbles(codes))
        np.testing.assert_array_equal(codes_of(s), codes)
        assert np.abs(codes).max() <= qmax and np.abs(codes).max() == qmax
        assert c["w_scales"].dtype == F and c["w_scales"].shape == (o, k // block)
        np.testing.assert_array_equal(c["w_scales"], scales)
        bias = g.node(s.source).consts.get("bias")
        assert c["bias"].dtype == F and c["bias"].shape == (o,)
        np.testing.assert_array_equal(c["bias"], np.zeros(o, F) if bias is None else bias)


def test_codes_minus_8_run_the_same_on_every_executor(isa, tmp_path):
    """A packed weight may hold -8 (nibble 0x8), which quantize_blockwise never makes: a file with
    such codes loads and the three executors agree."""
    qm = quantize("mlp", 4, 32)
    tree = ff._plan_tree(qm.plan, "test")
    steps = list(tree["steps"])
    i = [j for j, s in enumerate(steps) if s["source"] == "fc2"][0]
    step = dict(steps[i])
    step["consts"] = dict(step["consts"])
    codes = np.array(step["consts"]["w_codes"])
    codes[::3, ::2] = 0x88                       # both nibbles -8
    codes[1, :] = 0x8F                           # -1 (low), -8 (high)
    step["consts"]["w_codes"] = codes
    steps[i] = step
    path = tmp_path / "minus8.eb"
    path.write_bytes(ff.encode_tree({**tree, "steps": steps}))
    loaded = eb.load(path)
    s = blockwise_steps(loaded)[1]
    assert s.source == "fc2" and codes_of(s).min() == -8
    for x, got in outputs_of_every_executor(loaded, 5):
        assert not np.array_equal(got, qm(x))


# ---- 2. the .eb file, summary and size ---------------------------------------------------------

ROUND_TRIP = [("mlp", 4, 32, False), ("mlp", 2, 16, True), ("tokens", 3, 32, False), ("cnn", 4, 64, False),
              ("tokens", 4, 64, True)]


@pytest.mark.parametrize("model, bits, block, dynamic", ROUND_TRIP)
def test_save_and_load_round_trip(tmp_path, model, bits, block, dynamic):
    qm = quantize(model, bits, block, dynamic)
    path = tmp_path / "m.eb"
    qm.save(path)
    loaded = eb.load(path)
    assert_same_steps(qm.plan, loaded.plan)
    for a, b in zip(qm.plan.steps, loaded.plan.steps):
        if a.op in BLOCK_OPS:
            assert a.lowered == b.lowered
    assert loaded.size_bytes == qm.size_bytes
    out = qm.plan.outputs[0]
    shape = MODELS[model][1]
    for batch in (1, 3):
        x = data(model, shape, batch, 11)
        want = qm(x)
        np.testing.assert_array_equal(loaded(x), want)
        np.testing.assert_array_equal(loaded.run_steps({"x": x})[out], qm.run_steps({"x": x})[out])
        np.testing.assert_array_equal(loaded.reference_run({"x": x})[out], qm.reference_run({"x": x})[out])
    path2 = tmp_path / "again.eb"
    loaded.save(path2)
    assert path.read_bytes()[64:] == path2.read_bytes()[64:]


def summary_rows(qm):
    """{node: (op, w bits, bytes)} of summary()'s rows."""
    text = qm.summary()
    lines = text.splitlines()
    assert lines[0].split() == ["step", "op", "node", "output", "shape", "dtype", "scale", "zp", "w", "bits",
                                "bytes"]
    rows = {}
    for line in lines[2:]:
        parts = line.split()
        if len(parts) == 10:
            rows[parts[2]] = (parts[1], parts[8], int(parts[9]))
    assert re.search(rf"constants: {qm.size_bytes} bytes", text)
    return rows


def stored_bytes(step, bits):
    """A step's constant bytes in the .eb file: each weight code at ``bits`` bits (rounded up to
    whole bytes per output row) where the grid is narrower than its storage (8 bits, or 4 for
    the blockwise nibbles), every other constant as it is."""
    codes = {"linear": "w", "conv": "w", "dynamic_linear": "w", "blockwise_linear": "w_codes"}.get(step.op)
    total = 0
    for name, v in step.consts.items():
        v = np.asarray(v)
        if name == codes and bits < (4 if codes == "w_codes" else 8):
            per_row = v[0].size * (2 if codes == "w_codes" else 1)       # codes in one output row
            total += v.shape[0] * -(-per_row * bits // 8)
        else:
            total += v.nbytes
    return total


@pytest.mark.parametrize("bits", [4, 3, 2])
def test_summary_shows_the_weight_bits(bits):
    qm = quantize("mlp", bits, 32)
    rows = summary_rows(qm)
    assert {k: v[:2] for k, v in rows.items() if k.startswith("fc")} == {
        "fc1": ("blockwise_linear", str(bits)), "fc2": ("blockwise_linear", str(bits)),
        "fc3": ("linear", str(bits)), "fc4": ("blockwise_linear", str(bits))}   # fc3: the int8 kernel, b-bit grid
    for s in qm.plan.steps:
        if s.source in rows:
            assert rows[s.source][2] == stored_bytes(s, bits)
    assert qm.size_bytes == sum(stored_bytes(s, bits) for s in qm.plan.steps)
    dyn = summary_rows(quantize("mlp", bits, 32, True))
    assert dyn["fc1"][:2] == ("blockwise_linear", str(bits)) and dyn["fc3"][:2] == ("dynamic_linear", str(bits))
    cnn = summary_rows(quantize("cnn", bits, 32))
    assert cnn["conv0"][:2] == ("conv", str(bits)) and cnn["conv1"][:2] == ("conv", str(bits))
    assert cnn["fc1"][:2] == ("blockwise_linear", str(bits))


@pytest.mark.parametrize("model, block", [("mlp", 16), ("mlp", 32), ("tokens", 64), ("cnn", 32), ("cnn", 128)])
def test_a_blockwise_layer_takes_half_a_byte_per_weight(model, block):
    """Constants of a blockwise layer [N, K]: K*N/2 bytes of codes, 4*N*K/B of scales, 4*N of bias;
    the model is smaller than its int8 form, a layer about (1/2 + 4/B) / 1 of its int8 weights."""
    q4 = quantize(model, 4, block)
    q8 = eb.quantize(MODELS[model][0](), calibration(model, MODELS[model][1]), min_sqnr=None)
    int8 = {s.source: s for s in q8.plan.steps if s.op in ("linear", "dynamic_linear")}
    checked = 0
    for s in blockwise_steps(q4):
        n, k = float_weight(MODELS[model][0](), s.source).shape
        assert k == MODELS[model][3][s.source]
        nbytes = sum(v.nbytes for v in s.consts.values())
        assert nbytes == k * n // 2 + 4 * n * k // block + 4 * n
        assert s.consts["w_codes"].nbytes == k * n // 2
        w8 = int8[s.source].consts["w"]
        assert w8.shape == (n, k) and w8.dtype == np.int8
        assert s.consts["w_codes"].nbytes * 2 == w8.nbytes
        checked += 1
    assert checked >= 1
    assert q4.size_bytes < q8.size_bytes


# ---- 3. accuracy on sklearn's digits ------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def digits_mlp():
    """A 64 -> 64 (relu) -> 10 MLP trained with NumPy minibatch SGD (cross entropy, 600 steps) on
    1300 of sklearn's digits: (graph, calibration batch, test x, test labels)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(F), d.target
    rng = np.random.default_rng(seed("digits"))
    order = rng.permutation(len(x))
    train, test = order[:1300], order[1300:]
    w1 = (rng.standard_normal((64, 64)) * np.sqrt(2 / 64)).astype(F)
    b1 = np.zeros(64, F)
    w2 = (rng.standard_normal((10, 64)) * np.sqrt(2 / 64)).astype(F)
    b2 = np.zeros(10, F)
    for _ in range(600):
        idx = rng.choice(train, 64)
        xb, yb = x[idx], y[idx]
        h = np.maximum(xb @ w1.T + b1, 0)
        z = h @ w2.T + b2
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(yb)), yb] -= 1
        p /= len(yb)
        gh = p @ w2
        gh[h <= 0] = 0
        w2 -= F(0.1) * (p.T @ h).astype(F)
        b2 -= F(0.1) * p.sum(0).astype(F)
        w1 -= F(0.1) * (gh.T @ xb).astype(F)
        b1 -= F(0.1) * gh.sum(0).astype(F)
    g = eb.Graph()
    xi = g.input("x", (None, 64))
    h = g.relu(g.linear(xi, w1, b1, name="fc1"), name="r1")
    g.output(g.linear(h, w2, b2, name="fc2"))
    return g, x[train[:256]], x[test], y[test]


def test_four_bit_weights_keep_the_digits_accuracy():
    g, cal, x, y = digits_mlp()
    acc = {"float": float(np.mean(g.run({"x": x}).argmax(1) == y))}
    for bits in (8, 4, 3, 2):
        qm = eb.quantize(g, [cal], weight_bits=bits, block_size=32, min_sqnr=None)
        if bits != 8:
            assert [s.op for s in qm.plan.steps] == ["blockwise_linear", "blockwise_linear"]
        acc[f"{bits}-bit" if bits != 8 else "int8"] = float(np.mean(qm(x).argmax(1) == y))
    print("\ndigits accuracy (block 32, 497 test images): "
          + ", ".join(f"{k} {100 * v:.1f}%" for k, v in acc.items()))
    assert acc["float"] > 0.9
    assert acc["4-bit"] >= acc["float"] - 0.03
    assert acc["2-bit"] < acc["4-bit"]


# ---- 4. bad arguments ---------------------------------------------------------------------------

@pytest.mark.parametrize("kw, word", [
    ({"weight_bits": 1}, "weight_bits"),
    ({"weight_bits": 9}, "weight_bits"),
    ({"weight_bits": 16}, "weight_bits"),
    ({"weight_bits": 0}, "weight_bits"),
    ({"weight_bits": -4}, "weight_bits"),
    ({"weight_bits": True}, "weight_bits"),
    ({"weight_bits": "4"}, "weight_bits"),
    ({"weight_bits": None}, "weight_bits"),
    ({"weight_bits": 4, "block_size": 8}, "block_size"),
    ({"weight_bits": 4, "block_size": 48}, "block_size"),
    ({"weight_bits": 4, "block_size": 512}, "block_size"),
    ({"weight_bits": 3, "block_size": 0}, "block_size"),
    ({"weight_bits": 2, "block_size": -32}, "block_size"),
    ({"weight_bits": 4, "block_size": 33}, "block_size"),
    ({"weight_bits": 4, "block_size": True}, "block_size"),
    ({"weight_bits": 4, "block_size": "32"}, "block_size"),
    ({"weight_bits": 4, "block_size": None}, "block_size"),
])
@pytest.mark.parametrize("dynamic", [False, True])
def test_bad_arguments_raise_value_error(kw, word, dynamic):
    cal = None if dynamic else calibration("mlp", (64,))
    with pytest.raises(ValueError, match=re.escape(word)):
        eb.quantize(mlp_graph(), cal, dynamic=dynamic, min_sqnr=None, **kw)


def test_int8_weights_are_the_default():
    """weight_bits=8 (the default): no blockwise step."""
    for qm in (eb.quantize(mlp_graph(), calibration("mlp", (64,)), min_sqnr=None),
               eb.quantize(mlp_graph(), calibration("mlp", (64,)), weight_bits=8, block_size=64, min_sqnr=None),
               eb.quantize(mlp_graph(), None, dynamic=True, min_sqnr=None)):
        assert not blockwise_steps(qm)
        assert {s.op for s in qm.plan.steps} & {"linear", "dynamic_linear"}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_input_row_is_refused_by_the_executor(isa, bad):
    """The step quantizes each row by its max |x|: NaN or infinity in any row (here the 6th of 9)
    is a ValueError naming the step, not rows of garbage."""
    qm = quantize("mlp", 4, 32, True)
    first = blockwise_steps(qm)[0]
    assert qm.plan.steps[0] is first                     # the input reaches the blockwise step as is
    x = data("mlp", (64,), 9, 3)
    x[5, 17] = bad
    with pytest.raises(ValueError, match="NaN or infinity"):
        qm(x)
    x[5, 17] = 0.0
    assert np.all(np.isfinite(qm(x)))


# ---- 5. hostile .eb files -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_mlp():
    """(the 4-bit block-32 MLP's plan tree as the writer stores it, {source: step index}): fc1 reads
    x [N, 64] (2 blocks), fc2 K = 96 (3 blocks), fc4 K = 128 (4 blocks)."""
    qm = quantize("mlp", 4, 32)
    tree = ff._plan_tree(qm.plan, "test")
    return tree, {s["source"]: i for i, s in enumerate(tree["steps"])}


def with_const(name, fn):
    def change(step, tree):
        step["consts"][name] = fn(np.array(step["consts"][name]))
    return change


def with_record(name, fn):
    def change(step, tree):
        step["lowered"][name] = fn(step["lowered"][name])
    return change


def block_size(value, record=True, attrs=True):
    """block_size set to ``value`` in the executor's record and / or the step's attrs."""
    def change(step, tree):
        if record:
            step["lowered"]["block_size"] = value
        if attrs:
            step["attrs"] = {**step["attrs"], "block_size": value}
    return change


def without_record(name):
    def change(step, tree):
        del step["lowered"][name]
    return change


def set_kind(kind):
    def change(step, tree):
        step["lowered"]["kind"] = kind
    return change


def input_width(k):
    """The step's input tensor declared [N, k]."""
    def change(step, tree):
        tensors = list(tree["tensors"])
        j = [i for i, t in enumerate(tensors) if t["name"] == step["inputs"][0]][0]
        tensors[j] = {**tensors[j], "shape": (-1, k)}
        tree["tensors"] = tensors
    return change


HOSTILE = {
    # w_codes: not [O, K / 2] uint8, or O / K not those of the layer
    "w_codes_extra_row": ("fc2", with_const("w_codes", lambda a: np.concatenate([a, a[:1]])), "has shape"),
    "w_codes_missing_row": ("fc4", with_const("w_codes", lambda a: a[1:].copy()), "has shape"),
    "w_codes_extra_column": ("fc1", with_const("w_codes", lambda a: np.concatenate([a, a[:, :16]], 1)), "has shape"),
    "w_codes_k_too_small": ("fc4", with_const("w_codes", lambda a: a[:, :32].copy()), "has shape"),
    "w_codes_half_k_odd": ("fc2", with_const("w_codes", lambda a: a[:, :-1].copy()), "block_size"),   # K = 94
    "w_codes_1d": ("fc1", with_const("w_codes", lambda a: a.reshape(-1)), "w_codes"),
    "w_codes_3d": ("fc2", with_const("w_codes", lambda a: a.reshape(a.shape[0], 3, -1)), "w_codes"),
    "w_codes_unpacked": ("fc1", with_const("w_codes", lambda a: np.repeat(a, 2, axis=1)), "has shape"),     # [O, K]
    "w_codes_int8": ("fc4", with_const("w_codes", lambda a: a.view(np.int8)), "w_codes"),
    "w_codes_empty": ("fc2", with_const("w_codes", lambda a: a[:, :0].copy()), "w_codes"),
    # the input's K: odd, or not the weights' K
    "input_k_odd": ("fc1", input_width(65), "has shape"),
    "input_k_other": ("fc1", input_width(96), "has shape"),
    # block_size: not a power of two in [16, 256], or not dividing K
    "block_8": ("fc1", block_size(8), "block_size"),
    "block_512": ("fc4", block_size(512), "block_size"),
    "block_48": ("fc2", block_size(48), "block_size"),
    "block_0": ("fc1", block_size(0), "block_size"),
    "block_negative": ("fc1", block_size(-32), "block_size"),
    "block_64_of_k_96": ("fc2", block_size(64), "block_size"),
    "block_128_of_k_64": ("fc1", block_size(128), "block_size"),
    "block_256_of_k_128": ("fc4", block_size(256), "block_size"),
    "block_48_record_only": ("fc2", block_size(48, attrs=False), "block_size"),
    "block_16_record_only": ("fc1", block_size(16, attrs=False), "w_scales"),    # w_scales then [96, 2], not [96, 4]
    "block_float": ("fc1", block_size(32.0), "block_size"),
    "block_missing": ("fc2", without_record("block_size"), "block_size"),
    # w_scales: not finite float32 [O, K / B] (any sign is fine: test_scales_of_either_sign_...)
    "w_scales_nan": ("fc2", with_const("w_scales", put(np.nan, 5)), "w_scales"),
    "w_scales_inf": ("fc1", with_const("w_scales", put(np.inf, 1)), "w_scales"),
    "w_scales_minus_inf": ("fc4", with_const("w_scales", put(-np.inf)), "w_scales"),
    "w_scales_short": ("fc2", with_const("w_scales", lambda a: a[:, 1:].copy()), "w_scales"),
    "w_scales_long": ("fc2", with_const("w_scales", lambda a: np.concatenate([a, a[:, :1]], 1)), "w_scales"),
    "w_scales_missing_row": ("fc1", with_const("w_scales", lambda a: a[1:].copy()), "w_scales"),
    "w_scales_transposed": ("fc2", with_const("w_scales", lambda a: np.ascontiguousarray(a.T)), "w_scales"),
    "w_scales_flat": ("fc4", with_const("w_scales", lambda a: a.reshape(-1)), "w_scales"),
    "w_scales_int32": ("fc1", with_const("w_scales", lambda a: a.view(np.int32)), "w_scales"),
    # bias: not O finite float32 values
    "bias_nan": ("fc2", with_const("bias", put(np.nan, 4)), "bias"),
    "bias_inf": ("fc4", with_const("bias", put(-np.inf)), "bias"),
    "bias_short": ("fc1", with_const("bias", lambda a: a[1:].copy()), "bias"),
    "bias_int32": ("fc2", with_const("bias", lambda a: a.view(np.int32)), "bias"),
    # the record: relu missing or of the wrong type; another kind than the step
    "relu_missing": ("fc1", without_record("relu"), "relu"),
    "relu_missing_no_activation": ("fc4", without_record("relu"), "relu"),
    "relu_int": ("fc2", with_record("relu", lambda v: 1), "relu"),
    "as_conv": ("fc1", set_kind("conv"), "cannot run as"),
    "as_unknown_kind": ("fc4", set_kind("linear"), "unknown step kind"),
    "as_dynamic_linear": ("fc2", set_kind("dynamic_linear"), "cannot run as"),
}


@pytest.fixture(scope="module")
def saved_mlp_2bit():
    """saved_mlp's 2-bit form: the blockwise codes stored as w_packed, 2 bits a code."""
    tree = ff._plan_tree(quantize("mlp", 2, 32).plan, "test")
    return tree, {s["source"]: i for i, s in enumerate(tree["steps"])}


def with_both_code_forms(step, tree):
    """w_codes (the nibbles of the unpacked codes) beside w_packed."""
    shape = step["lowered"]["w_shape"]
    codes = ff.unpack_codes(step["consts"]["w_packed"], 2, tuple(shape))
    step["consts"]["w_codes"] = R.blockwise.pack_nibbles(codes)


HOSTILE_PACKED = {
    "bits_4_in_record": ("fc2", with_record("w_bits", lambda v: 4), "w_bits"),
    "bits_1_in_record": ("fc1", with_record("w_bits", lambda v: 1), "w_bits"),
    "bits_missing": ("fc4", without_record("w_bits"), "w_bits"),
    "shape_rank_4": ("fc2", with_record("w_shape", lambda v: [v[0], v[1] // 4, 2, 2]), "w_shape"),
    "shape_rows": ("fc1", with_record("w_shape", lambda v: [v[0] + 1, v[1]]), "w_packed"),
    "short_rows": ("fc4", with_const("w_packed", lambda a: a[:, :-1].copy()), "w_packed"),
    "packed_int8": ("fc2", with_const("w_packed", lambda a: a.view(np.int8)), "w_packed"),
    "codes_beside_packed": ("fc1", with_both_code_forms, "w_codes"),
}


@pytest.mark.parametrize("bits", [2, 3])
def test_narrow_block_codes_are_stored_at_their_bits(tmp_path, bits):
    """2- and 3-bit block-quantized codes take bits, not a nibble, per weight in the file
    (w_packed, as the int8-kernel layers' narrow grids); summary and size_bytes count the same
    bytes; the file loads (Python's reader and the C++ reader alone) into the same steps and
    outputs, and writes back the same bytes."""
    qm = quantize("mlp", bits, 32)
    tree = ff._plan_tree(qm.plan, "test")
    for stored, step in zip(tree["steps"], qm.plan.steps):
        if step.op == "blockwise_linear":
            o, k = step.consts["w_codes"].shape[0], 2 * step.consts["w_codes"].shape[1]
            assert "w_codes" not in stored["consts"]
            assert stored["consts"]["w_packed"].shape == (o, -(-k * bits // 8))
            assert stored["lowered"]["w_bits"] == bits and list(stored["lowered"]["w_shape"]) == [o, k]
    assert qm.size_bytes == sum(stored_bytes(s, bits) for s in qm.plan.steps) < quantize("mlp", 4, 32).size_bytes
    path = tmp_path / "narrow.eb"
    qm.save(path)
    _core.ModelFile.map(str(path)).build()
    loaded = eb.load(path)
    assert_same_steps(qm.plan, loaded.plan)
    x = data("mlp", (64,), 3, 2)
    np.testing.assert_array_equal(loaded(x), qm(x))
    np.testing.assert_array_equal(loaded(x), loaded.reference_run({"x": x})[loaded.plan.outputs[0]])
    loaded.save(tmp_path / "again.eb")
    assert (tmp_path / "again.eb").read_bytes()[64:] == path.read_bytes()[64:]


@pytest.mark.parametrize("case", sorted(HOSTILE_PACKED))
def test_hostile_packed_block_codes_are_refused(tmp_path, saved_mlp_2bit, case):
    source, change, word = HOSTILE_PACKED[case]
    assert_refused(hostile_file(tmp_path, saved_mlp_2bit, case, source, change), word)


def hostile_file(tmp_path, saved, case, source, change):
    tree, index = saved
    path = tmp_path / f"{case}.eb"
    file_with_step_changed(path, tree, index[source], change)
    return path


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_raises_model_file_error(tmp_path, saved_mlp, case):
    source, change, word = HOSTILE[case]
    path = hostile_file(tmp_path, saved_mlp, case, source, change)
    assert_refused(path, word)


def test_the_unchanged_tree_loads(tmp_path, saved_mlp):
    """The hostile cases start from a file that is fine: its tree written back loads and runs."""
    qm = load_tree(tmp_path / "ok.eb", saved_mlp[0])
    x = data("mlp", (64,), 2, 1)
    np.testing.assert_array_equal(qm(x), quantize("mlp", 4, 32)(x))


def test_a_bias_of_the_wrong_rank_fails_to_load(tmp_path, saved_mlp):
    """The same values in the same order as [O, 1]: eb.load's plan check refuses it (the C++ reader
    counts a bias's values, as it does for every step)."""
    path = hostile_file(tmp_path, saved_mlp, "bias_2d", "fc1", with_const("bias", lambda a: a.reshape(-1, 1)))
    with pytest.raises(ModelFileError, match="bias"):
        eb.load(path)


def test_scales_of_either_sign_and_zero_run_the_same_on_every_executor(isa, tmp_path, saved_mlp):
    """w_scales may be any finite float32 (ONNX Runtime's symmetric int4 quantizer writes negative
    ones): zero, -0.0 and negative scales load, and the three executors agree."""
    tree, index = saved_mlp
    steps = list(tree["steps"])
    for source, j, v in (("fc1", 0, 0.0), ("fc1", 3, -0.0), ("fc2", slice(None, None, 2), None),
                         ("fc4", slice(5, 9), -1e-3)):
        i = index[source]
        step = dict(steps[i])
        step["consts"] = dict(step["consts"])
        scales = np.array(step["consts"]["w_scales"])
        if v is None:
            scales.reshape(-1)[j] *= F(-1)          # every other scale of fc2 negated
        else:
            scales.reshape(-1)[j] = v
        step["consts"]["w_scales"] = scales
        steps[i] = step
    path = tmp_path / "signs.eb"
    path.write_bytes(ff.encode_tree({**tree, "steps": steps}))
    _core.ModelFile.map(str(path)).build()
    loaded = eb.load(path)
    sc = {s.source: s.consts["w_scales"] for s in blockwise_steps(loaded)}
    assert np.count_nonzero(sc["fc2"] < 0) > 0 and np.count_nonzero(sc["fc4"] < 0) == 4
    assert sc["fc1"].reshape(-1)[0] == 0 and np.signbit(sc["fc1"].reshape(-1)[3])
    for x, got in outputs_of_every_executor(loaded, 8):
        assert np.all(np.isfinite(got)) and not np.array_equal(got, quantize("mlp", 4, 32)(x))
