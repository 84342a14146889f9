"""Models with ONNX Runtime's com.microsoft MatMulNBits (4-bit weights, a scale per block of K)
import as blockwise_linear steps: the model's codes and scales, eightbit's numerics
(eightbit.reference.blockwise, rows quantized to int8), close to ONNX Runtime's output. The nodes
are written here as ORT's symmetric quantizer writes them (codes u = q + 8, zero point 8,
scales of either sign), so the test needs no quantizer package."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import eightbit as eb  # noqa: E402
from eightbit.onnx import OnnxImportError  # noqa: E402
from eightbit.reference import blockwise as R  # noqa: E402

F = np.float32


def _nbits_node(name, x, y, codes, scales, block, *, bias=None, zero_points=None, bits=4, g_idx=False):
    """A MatMulNBits node and its initializers for codes int8 [N, K] in [-8, 7], scales [N, K / B]."""
    n, k = codes.shape
    u = (codes.astype(np.int16) + 8).astype(np.uint8).reshape(n, k // 2, 2)
    packed = (u[..., 0] | (u[..., 1] << 4)).reshape(n, k // block, block // 2)
    inits = [numpy_helper.from_array(packed, f"{name}.B"), numpy_helper.from_array(scales.astype(F), f"{name}.scales")]
    ins = [x, f"{name}.B", f"{name}.scales"]
    if zero_points is not None or g_idx or bias is not None:
        ins.append(f"{name}.zp" if zero_points is not None else "")
        if zero_points is not None:
            inits.append(numpy_helper.from_array(zero_points, f"{name}.zp"))
    if g_idx or bias is not None:
        ins.append(f"{name}.g_idx" if g_idx else "")
        if g_idx:
            inits.append(numpy_helper.from_array(np.arange(k, dtype=np.int32) // block, f"{name}.g_idx"))
    if bias is not None:
        ins.append(f"{name}.bias")
        inits.append(numpy_helper.from_array(bias.astype(F), f"{name}.bias"))
    node = helper.make_node("MatMulNBits", ins, [y], name=name, domain="com.microsoft", K=k, N=n, bits=bits,
                            block_size=block, accuracy_level=4)
    return node, inits


def _weights(rng, n, k, block, negative_scales=True):
    """ORT's symmetric rule: scale = the block's signed max / -8, so that code -8 is the max."""
    w = rng.standard_normal((n, k)).astype(F)
    blocks = w.reshape(n, k // block, block)
    idx = np.abs(blocks).argmax(axis=2)
    signed_max = np.take_along_axis(blocks, idx[..., None], axis=2)[..., 0]
    scales = (signed_max / F(-8) if negative_scales else np.abs(signed_max) / F(7)).astype(F)
    codes = np.clip(np.rint(blocks / scales[..., None]), -8, 7).astype(np.int8).reshape(n, k)
    return codes, scales


def _model(nodes, inits, k, n_out, extra_outputs=()):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", n_out])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def _ort(model, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _mlp(rng, k=128, h=192, n=16, block=32, bias=True, negative_scales=True):
    c1, s1 = _weights(rng, h, k, block, negative_scales)
    c2, s2 = _weights(rng, n, h, block, negative_scales)
    b1 = rng.standard_normal(h).astype(F) if bias else None
    n1, i1 = _nbits_node("fc1", "x", "h0", c1, s1, block, bias=b1)
    relu = helper.make_node("Relu", ["h0"], ["h"], name="relu")
    n2, i2 = _nbits_node("fc2", "h", "y", c2, s2, block)
    return _model([n1, relu, n2], i1 + i2, k, n), (c1, s1, b1, c2, s2)


@pytest.mark.parametrize("block", [16, 32, 64])
@pytest.mark.parametrize("bias", [False, True])
def test_matmulnbits_mlp_imports_as_blockwise_steps(block, bias, isa):
    rng = np.random.default_rng(block + bias)
    model, (c1, s1, b1, c2, s2) = _mlp(rng, block=block, bias=bias)
    qm = eb.from_onnx_quantized(model)
    assert [s.op for s in qm.plan.steps].count("blockwise_linear") == 2
    x = rng.standard_normal((5, 128)).astype(F)
    y = qm(x)
    # The model's own codes and scales, eightbit's numerics, every executor
    h = R.blockwise_linear(x, c1, s1, block, b1, None)
    expected = R.blockwise_linear(np.maximum(h, 0), c2, s2, block)
    assert np.array_equal(y, expected)
    assert np.array_equal(qm.run_steps({"x": x})["y"], y)
    # Close to ONNX Runtime (which quantizes the activations per block instead of per row)
    theirs = _ort(model, x)
    assert np.linalg.norm(y - theirs) / np.linalg.norm(theirs) < 0.03


def test_positive_scales_and_zero_points_of_eight_are_accepted(tmp_path):
    rng = np.random.default_rng(7)
    codes, scales = _weights(rng, 24, 64, 32, negative_scales=False)
    zp = np.full((24, 1), 0x88, np.uint8)                 # two blocks of zero point 8, packed
    node, inits = _nbits_node("fc", "x", "y", codes, scales, 32, zero_points=zp)
    model = _model([node], inits, 64, 24)
    qm = eb.from_onnx_quantized(model)
    x = rng.standard_normal((3, 64)).astype(F)
    assert np.array_equal(qm(x), R.blockwise_linear(x, codes, scales, 32))
    qm.save(tmp_path / "m.eb")
    assert np.array_equal(eb.load(tmp_path / "m.eb")(x), qm(x))


@pytest.mark.parametrize("case, word", [
    ("zero_points", "zero points"), ("bits", "bits"), ("g_idx", "g_idx"), ("block", "block_size"),
])
def test_unsupported_matmulnbits_forms_are_refused(case, word):
    rng = np.random.default_rng(3)
    codes, scales = _weights(rng, 8, 64, 32)
    kwargs = {"zero_points": np.full((8, 1), 0x77, np.uint8)} if case == "zero_points" else {}
    kwargs.update({"bits": 2} if case == "bits" else {}, **({"g_idx": True} if case == "g_idx" else {}))
    node, inits = _nbits_node("fc", "x", "y", codes, scales, 32, **kwargs)
    if case == "block":  # K = 64 with a block size of 48 (not a power of two, not dividing K)
        for a in node.attribute:
            if a.name == "block_size":
                a.i = 48
    with pytest.raises(OnnxImportError, match=word):
        eb.from_onnx_quantized(_model([node], inits, 64, 8))


def _blocked_dq_model(codes_kn, scales, block, *, dtype="int4", zero_point=None, axis=0, reader="MatMul"):
    """The opset-21 QDQ form: DequantizeLinear(int4 / uint4 weights [K, N], block_size) -> MatMul."""
    k, n = codes_kn.shape
    if dtype == "int4":
        w = helper.make_tensor("Wq", TensorProto.INT4, [k, n], codes_kn.flatten().tolist())
    else:
        w = helper.make_tensor("Wq", TensorProto.UINT4, [k, n], (codes_kn.astype(np.int16) + 8).flatten().tolist())
    inits = [w, numpy_helper.from_array(scales.astype(F), "Ws")]
    ins = ["Wq", "Ws"]
    if zero_point is not None:
        kind = TensorProto.INT4 if dtype == "int4" else TensorProto.UINT4
        inits.append(helper.make_tensor("Wz", kind, list(scales.shape), [zero_point] * scales.size))
        ins.append("Wz")
    dq = helper.make_node("DequantizeLinear", ins, ["W"], name="dq", axis=axis, block_size=block)
    mm = helper.make_node(reader, ["x", "W"], ["y"], name="mm")
    g = helper.make_graph([dq, mm], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", n])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("dtype, zero_point", [("int4", None), ("int4", 0), ("uint4", 8)])
def test_blocked_dequantize_linear_imports_as_a_blockwise_step(dtype, zero_point, isa):
    rng = np.random.default_rng(11)
    codes, scales = _weights(rng, 24, 64, 32)                # [N, K], [N, K / B]
    model = _blocked_dq_model(codes.T.copy(), scales.T.copy(), 32, dtype=dtype, zero_point=zero_point)
    qm = eb.from_onnx_quantized(model)
    assert [s.op for s in qm.plan.steps] == ["blockwise_linear"]
    x = rng.standard_normal((4, 64)).astype(F)
    y = qm(x)
    assert np.array_equal(y, R.blockwise_linear(x, codes, scales, 32))
    theirs = _ort(model, x)
    assert np.linalg.norm(y - theirs) / np.linalg.norm(theirs) < 0.03


@pytest.mark.parametrize("case, word", [("zero_point", "symmetric"), ("axis", "axis 0"), ("reader", "MatMul")])
def test_unsupported_blocked_dequantize_forms_are_refused(case, word):
    rng = np.random.default_rng(12)
    codes, scales = _weights(rng, 16, 64, 32)
    kwargs = {"zero_point": {"zero_point": 3}, "axis": {"axis": 1}, "reader": {"reader": "Add"}}[case]
    c, s = codes.T.copy(), scales.T.copy()
    if case == "axis":   # blocks along N: the shapes ONNX asks for then
        c, s = codes.copy().T, np.repeat(scales.T, 1, axis=0)
    if case == "reader":
        c, s = codes.T.copy()[:, :16], scales.T.copy()[:, :16]
    with pytest.raises(OnnxImportError, match=word):
        eb.from_onnx_quantized(_blocked_dq_model(c, s, 32, **kwargs))
