"""ONNX export of block-quantized low-bit layers (blockwise_linear steps): int4 weights [K, O] ->
DequantizeLinear(axis=0, block_size) -> MatMul -> Add bias -> Relu, opset 21.

* ONNX Runtime's output equals float64 NumPy ``x @ (codes * scales).T + bias`` within float32
  rounding; eightbit's equals ORT's within the bound of eightbit's run-time row quantization of x
  (half a step, row max |x| / 254, per element of x, times the column's sum of |w|), carried
  layer by layer. ORT's default session fuses DQ -> MatMul into MatMulNBits with accuracy level 4
  (its own int8 quantization of x per block): within twice that bound. Sessions with
  ``session.qdq_matmulnbits_accuracy_level=0`` compute in float.
* export -> eb.from_onnx_quantized: the same codes and scales bit for bit, identical outputs.
* Layers on the int8 kernels with 2-7-bit grids (``w_bits``) export as int8 weights holding their codes.
* An opset below 21 is refused.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import eightbit as eb  # noqa: E402
from eightbit.reference.blockwise import unpack_nibbles  # noqa: E402

F = np.float32
U = 2.0 ** -24            # float32's unit roundoff
K, HIDDEN, OUT, T = 256, 128, 16, 5


# ---- models -------------------------------------------------------------------------------

def _graph(rank: int, seed: int = 0):
    """rank 2: x [N, 256] -> fc1 (linear, bias, relu) -> fc2 (linear, no bias).
    rank 3: x [N, 5, 256] -> fc1 (linear, no bias, relu) -> mm (matmul by a constant [128, 16])."""
    rng = np.random.default_rng(seed)
    g = eb.Graph()
    x = g.input("x", (None, K) if rank == 2 else (None, T, K))
    bias = (rng.standard_normal(HIDDEN) * 0.1).astype(F) if rank == 2 else None
    h = g.relu(g.linear(x, (rng.standard_normal((HIDDEN, K)) * 0.1).astype(F), bias, name="fc1"), name="r1")
    if rank == 2:
        g.output(g.linear(h, (rng.standard_normal((OUT, HIDDEN)) * 0.1).astype(F), None, name="fc2"))
    else:
        g.output(g.matmul(h, (rng.standard_normal((HIDDEN, OUT)) * 0.1).astype(F), name="mm"))
    return g


def _inputs(rank: int, n: int, seed: int):
    shape = (n, K) if rank == 2 else (n, T, K)
    return np.random.default_rng(seed).standard_normal(shape).astype(F)


def _quantize(graph, rank, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return eb.quantize(graph, [_inputs(rank, 8, s) for s in (1, 2)], min_sqnr=None, **kw)


def _session(model, accuracy_level=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    if accuracy_level is not None:     # of the MatMulNBits ORT makes from DQ -> MatMul
        so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(accuracy_level))
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _ort(model, x, accuracy_level=None):
    return _session(model, accuracy_level).run(None, {"x": x})[0]


def _dequantized(step) -> np.ndarray:
    """float64 weights [O, K] = codes * scales (exact in float64)."""
    codes = unpack_nibbles(step.consts["w_codes"], 2 * step.consts["w_codes"].shape[1]).astype(np.float64)
    return codes * np.repeat(step.consts["w_scales"].astype(np.float64), step.attrs["block_size"], axis=1)


def _blockwise(qm):
    return [s for s in qm.plan.steps if s.op == "blockwise_linear"]


# ---- independent references -----------------------------------------------------------------

def _float64_run(qm, x):
    """The blockwise layers in float64 (the model must be blockwise layers only)."""
    h = x.astype(np.float64)
    for step in qm.plan.steps:
        assert step.op == "blockwise_linear"
        h = h @ _dequantized(step).T + step.consts["bias"].astype(np.float64)
        if step.attrs["activation"] == "relu":
            h = np.maximum(h, 0.0)
    return h


def _error_bound(qm, x, row_quantizations: int):
    """Per output element: how far two executions of the model may be apart, carried step by
    step on eightbit's own intermediate values h (every plan tensor: run_steps(return_all)).

    A blockwise layer's input differs by e (the bound so far); each side that quantizes the rows of
    its input to symmetric int8 (``row_quantizations``: 0, 1 or 2) moves each element by at most half
    a step, (row max |h| + max e) / 254 (times 1 + 2^-16 for the float32 division into the codes).
    Through the weights W [O, K]: (e + steps) @ |W|.T. Float32 rounding of each side (ORT's K-term
    dot product, eightbit's per-block products and sums, the weight's, scale's and bias' roundings):
    (K + 2 * blocks + 6) u (|h| + e + steps) @ |W|.T + |bias|. Relu is 1-Lipschitz. Other steps (the
    int8 layers before) must see equal inputs: ORT computes them bit for bit as eightbit does."""
    name = qm.plan.inputs[0]
    vals = qm.run_steps({name: x}, return_all=True)
    err = {name: np.zeros(x.shape)}
    for step in qm.plan.steps:
        if step.op != "blockwise_linear":
            assert all(not np.any(err.get(i, 0.0)) for i in step.inputs), "an int8 step after a float difference"
            err[step.output] = 0.0
            continue
        h = vals[step.inputs[0]].astype(np.float64)
        e = np.broadcast_to(err[step.inputs[0]], h.shape)
        w = np.abs(_dequantized(step))
        k, blocks = w.shape[1], w.shape[1] // step.attrs["block_size"]
        row_max = np.max(np.abs(h), axis=-1, keepdims=True) + np.max(e, axis=-1, keepdims=True)
        steps = row_quantizations * row_max / 254.0 * (1 + 2.0 ** -16)
        fp = (k + 2 * blocks + 6) * U * ((np.abs(h) + e + steps) @ w.T + np.abs(step.consts["bias"]))
        err[step.output] = (e + steps) @ w.T + fp
    return err[qm.plan.outputs[0]]


# ---- the exported form, ORT, float64 ---------------------------------------------------------

@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("block", [32, 64, 128])
def test_ort_runs_the_export_as_float_math_and_eightbit_within_its_row_rounding(block, rank, bits):
    qm = _quantize(_graph(rank, seed=block + rank), rank, weight_bits=bits, block_size=block)
    layers = _blockwise(qm)
    assert [s.op for s in qm.plan.steps] == ["blockwise_linear"] * 2
    assert [s.attrs["bits"] for s in layers] == [bits, bits]
    model = eb.to_onnx(qm)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import} == {"": 21}
    first = ["MatMul", "Add", "Relu"] if rank == 2 else ["MatMul", "Relu"]    # no Add for a layer without bias
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear", *first, "DequantizeLinear", "MatMul"]
    inits = {t.name: t for t in model.graph.initializer}
    for dq, step in zip([n for n in model.graph.node if n.op_type == "DequantizeLinear"], layers):
        attrs = {a.name: helper.get_attribute_value(a) for a in dq.attribute}
        assert attrs == {"axis": 0, "block_size": block}
        w, s = inits[dq.input[0]], numpy_helper.to_array(inits[dq.input[1]])
        assert w.data_type == TensorProto.INT4
        codes = unpack_nibbles(step.consts["w_codes"], 2 * step.consts["w_codes"].shape[1])
        assert np.array_equal(numpy_helper.to_array(w).astype(np.int8), codes.T)
        assert s.dtype == F and np.array_equal(s, step.consts["w_scales"].T)

    x = _inputs(rank, 3, seed=7)
    exact = _float64_run(qm, x)
    theirs = _ort(model, x, accuracy_level=0)
    assert theirs.shape == exact.shape == ((3, OUT) if rank == 2 else (3, T, OUT))
    assert np.all(np.abs(theirs - exact) <= _error_bound(qm, x, 0))
    np.testing.assert_allclose(theirs, exact, rtol=1e-5, atol=1e-5 * np.abs(exact).max())

    ours = qm(x)
    assert np.array_equal(ours, qm.run_steps({"x": x})["mm" if rank == 3 else "fc2"])
    assert np.all(np.abs(ours - theirs) <= _error_bound(qm, x, 1))
    # the row rounding is what separates them: float32 rounding alone does not cover the difference
    assert np.any(np.abs(ours - theirs) > _error_bound(qm, x, 0))
    # ORT's default session: DQ -> MatMul becomes MatMulNBits, which quantizes x per block (level 4)
    assert np.all(np.abs(ours - _ort(model, x)) <= _error_bound(qm, x, 2))


def test_opset_21_is_the_default_and_lower_opsets_are_refused():
    qm = _quantize(_graph(2), 2, weight_bits=4, block_size=32)
    assert eb.to_onnx(qm).opset_import[0].version == 21
    assert eb.to_onnx(qm, opset=21).opset_import[0].version == 21
    for opset in (17, 20):
        with pytest.raises(ValueError, match=r"opset: .*block-quantized.*int4 DequantizeLinear.* from opset 21; "
                                             rf"got opset={opset}"):
            eb.to_onnx(qm, opset=opset)
    int8 = _quantize(_graph(2), 2)                          # no blockwise step: the default stays 17
    assert eb.to_onnx(int8).opset_import[0].version == 17


# ---- round trip ------------------------------------------------------------------------------

@pytest.mark.parametrize("bits, rank, block", [(4, 2, 32), (3, 3, 64), (2, 2, 128)])
def test_export_then_import_keeps_codes_scales_and_outputs(tmp_path, bits, rank, block):
    qm = _quantize(_graph(rank, seed=bits), rank, weight_bits=bits, block_size=block)
    path = tmp_path / "m.onnx"
    eb.to_onnx(qm, path)
    back = eb.from_onnx_quantized(str(path))
    ours, theirs = _blockwise(qm), _blockwise(back)
    assert len(theirs) == 2
    for a, b in zip(ours, theirs):
        assert b.attrs["block_size"] == block
        assert np.array_equal(a.consts["w_codes"], b.consts["w_codes"])
        assert a.consts["w_scales"].tobytes() == b.consts["w_scales"].tobytes()
    x = _inputs(rank, 4, seed=11)
    assert np.array_equal(back(x), qm(x))


def test_imported_int4_model_exports_back_to_the_same_ort_results():
    """Weights as ONNX Runtime's symmetric quantizer makes them (code -8, negative scales): the
    re-export is the same blocked DQ -> MatMul, so ORT computes the same bits."""
    rng = np.random.default_rng(5)
    n, k, block = 24, 64, 32
    codes = rng.integers(-8, 8, (k, n)).astype(np.int8)
    codes[0, 0] = -8
    scales = (rng.standard_normal((k // block, n)) * 0.05).astype(F)
    w = helper.make_tensor("Wq", TensorProto.INT4, [k, n], codes.flatten().tolist())
    dq = helper.make_node("DequantizeLinear", ["Wq", "Ws"], ["W"], name="dq", axis=0, block_size=block)
    mm = helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")
    g = helper.make_graph([dq, mm], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", n])],
                          [w, numpy_helper.from_array(scales, "Ws")])
    original = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    qm = eb.from_onnx_quantized(original)
    again = eb.to_onnx(qm)
    onnx.checker.check_model(again, full_check=True)
    x = rng.standard_normal((3, k)).astype(F)
    for level in (0, None):
        assert np.array_equal(_ort(again, x, level), _ort(original, x, level))


# ---- mixed models and int8-kernel layers on narrow grids ----------------------------------------

def _mixed_graph():
    """x [N, 96] -> fc1 (int8, 96 -> 256, relu) -> fc2 (4-bit, 256 -> 128, relu) -> fc3 (2-bit, 128 -> 16)."""
    rng = np.random.default_rng(21)
    def layer(o, k):
        return (rng.standard_normal((o, k)) * 0.1).astype(F), (rng.standard_normal(o) * 0.1).astype(F)

    g = eb.Graph()
    x = g.input("x", (None, 96))
    h = g.relu(g.linear(x, *layer(256, 96), name="fc1"), name="r1")
    h = g.relu(g.linear(h, *layer(128, 256), name="fc2"), name="r2")
    g.output(g.linear(h, *layer(16, 128), name="fc3"))
    return g


def _int8_weights(model) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == TensorProto.INT8
            and not t.name.endswith("zero_point")}


def test_mixed_int8_and_low_bit_layers_export_together():
    rng = np.random.default_rng(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = eb.quantize(_mixed_graph(), [rng.standard_normal((8, 96)).astype(F) for _ in range(2)], min_sqnr=None,
                         weight_bits={"fc2": 4, "fc3": 2}, block_size=64)
    assert [s.op for s in qm.plan.steps] == ["quantize", "linear", "dequantize", "blockwise_linear", "blockwise_linear"]
    model = eb.to_onnx(qm)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 21
    int8 = _int8_weights(model)
    assert len(int8) == 1 and np.array_equal(next(iter(int8.values())), qm.plan.steps[1].consts["w"])
    x = rng.standard_normal((6, 96)).astype(F)
    ours, theirs = qm(x), _ort(model, x, accuracy_level=0)
    assert np.all(np.abs(ours - theirs) <= _error_bound(qm, x, 1))
    assert np.all(np.abs(ours - _ort(model, x)) <= _error_bound(qm, x, 2))


def _cnn():
    """Convs and a linear whose K (24) no block size divides: every layer on the int8 kernels."""
    rng = np.random.default_rng(3)
    g = eb.Graph()
    x = g.input("x", (None, 3, 12, 12))
    h = g.relu(g.conv2d(x, rng.standard_normal((16, 3, 3, 3)).astype(F) * 0.3, np.zeros(16, F), padding=1, name="c1"))
    h = g.relu(g.conv2d(h, rng.standard_normal((24, 16, 3, 3)).astype(F) * 0.1, None, padding=1, stride=2, name="c2"))
    h = g.flatten(g.global_avg_pool2d(h))
    g.output(g.linear(h, rng.standard_normal((10, 24)).astype(F) * 0.2, None, name="fc"))
    return g


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
@pytest.mark.parametrize("bits", [2, 3, 5, 7])
def test_int8_kernel_layers_on_narrow_grids_export_their_codes_as_int8(bits, fmt):
    rng = np.random.default_rng(bits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = eb.quantize(_cnn(), [rng.standard_normal((4, 3, 12, 12)).astype(F) for _ in range(2)], min_sqnr=None,
                         weight_bits=bits, block_size=16)
    weighted = [s for s in qm.plan.steps if "w" in s.consts]
    assert [s.attrs.get("w_bits") for s in weighted] == [bits] * 3
    model = eb.to_onnx(qm, format=fmt)
    onnx.checker.check_model(model, full_check=True)
    exported = sorted(_int8_weights(model).values(), key=lambda a: a.size)
    planned = sorted((s.consts["w"] for s in weighted), key=lambda a: a.size)
    qmax = 2 ** (bits - 1) - 1
    for got, want in zip(exported, planned, strict=True):
        assert got.shape == want.shape and np.array_equal(got, want) and np.abs(got).max() == qmax
    x = rng.standard_normal((3, 3, 12, 12)).astype(F)
    back = eb.from_onnx_quantized(model)
    assert all(np.array_equal(a.consts["w"], b.consts["w"])
               for a, b in zip(weighted, [s for s in back.plan.steps if "w" in s.consts], strict=True))
    assert np.array_equal(back(x), qm(x))
    assert np.array_equal(_ort(model, x), qm(x))     # uint8 activations: ORT's integer kernels, bit for bit
