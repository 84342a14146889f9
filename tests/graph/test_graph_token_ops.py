"""int64 graph inputs and the token ops (embedding, additive_mask, select): builders, shape and
dtype rules, the NumPy executor's id checks, and the same graph through eb.compile (C++)."""
import numpy as np
import pytest

import eightbit as eb

V, D, T = 10, 4, 5
rng = np.random.default_rng(0)
TABLE = rng.standard_normal((V, D)).astype(np.float32)


def _encoder_like():
    """ids -> embedding -> select token 0, and mask -> additive_mask: two outputs."""
    g = eb.Graph("tokens")
    ids = g.input("ids", (None, T), dtype="int64")
    mask = g.input("mask", (None, T), dtype="int64")
    e = g.embedding(ids, TABLE)
    g.output(g.select(e, axis=1, index=0))
    g.output(g.additive_mask(mask, fill=-1e4))
    return g


def test_int64_inputs_and_shapes():
    g = _encoder_like()
    assert g.tensors["ids"].dtype == "int64" and g.tensors["mask"].dtype == "int64"
    assert "int64" in g.summary() and "int64" in repr(g.tensors["ids"])
    assert [g.tensors[o].shape for o in g.outputs] == [(None, D), (None, 1, 1, T)]
    assert g.copy().tensors["ids"].dtype == "int64"


def test_run_and_compile_agree():
    g = _encoder_like()
    ids = rng.integers(0, V, size=(3, T))
    mask = np.array([[1] * T, [1, 1, 0, 0, 0], [1, 0, 1, 0, 1]])
    y = g.run({"ids": ids, "mask": mask})
    first, add = y[g.outputs[0]], y[g.outputs[1]]
    np.testing.assert_array_equal(first, TABLE[ids[:, 0]])
    np.testing.assert_array_equal(add[:, 0, 0], np.where(mask == 1, 0, -1e4).astype(np.float32))
    m = eb.compile(g)
    got = m.run({"ids": ids, "mask": mask})
    for k in y:
        np.testing.assert_array_equal(got[k], y[k])


def test_only_token_ops_read_integers():
    g = eb.Graph()
    ids = g.input("ids", (None, T), dtype="int64")
    with pytest.raises(ValueError, match="hold integers \\(int64\\); only embedding, additive_mask, padded_positions read"):
        g.relu(ids)
    with pytest.raises(ValueError, match="dtype must be one of"):
        g.input("x", (None, 3), dtype="int32")


def test_run_checks_ids():
    g = _encoder_like()
    mask = np.ones((1, T), np.int64)
    with pytest.raises(ValueError, match="token id 10 is not an integer in \\[0, 10\\)"):
        g.run({"ids": np.full((1, T), V), "mask": mask})
    with pytest.raises(ValueError, match="attention mask value -1 is not an integer in \\[0, 2\\)"):
        g.run({"ids": np.zeros((1, T), np.int64), "mask": -mask})
    with pytest.raises(TypeError, match="must be an integer array"):
        g.run({"ids": np.zeros((1, T), np.float32), "mask": mask})


def test_builder_errors():
    g = eb.Graph()
    ids = g.input("ids", (None, T), dtype="int64")
    x = g.input("x", (None, T, D))
    with pytest.raises(ValueError, match="weight must be a \\[V, D\\] table"):
        g.embedding(ids, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="fill must be a number"):
        g.additive_mask(ids, fill=float("nan"))
    with pytest.raises(ValueError, match="mask must have rank 2|must be 2-D|rank"):
        g.additive_mask(x)
    with pytest.raises(ValueError, match="axis must be >= 1"):
        g.select(x, axis=0, index=0)
    with pytest.raises(ValueError, match="index 5 is out of range"):
        g.select(x, axis=1, index=5)


def test_padded_positions_in_numpy_cpp_and_onnx():
    g = eb.Graph()
    ids = g.input("ids", (None, 6), dtype="int64")
    pos = g.padded_positions(ids, pad=1)
    g.output(g.embedding(pos, rng.standard_normal((8, 3)).astype(np.float32)))
    x = np.array([[1, 4, 5, 1, 6, 1], [7, 7, 7, 7, 7, 7]])
    y = g.run({"ids": x}, return_all=True)
    np.testing.assert_array_equal(y[pos.name], [[1, 2, 3, 1, 4, 1], [2, 3, 4, 5, 6, 7]])
    np.testing.assert_array_equal(eb.compile(g).run({"ids": x})[g.outputs[0]], y[g.outputs[0]])
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    proto = eb.to_onnx(g)
    onnx.checker.check_model(proto)
    s = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(s.run(None, {"ids": x})[0], y[g.outputs[0]])
    with pytest.raises(ValueError, match="pad must be >= 0"):
        g.padded_positions(ids, pad=-1)


def test_onnx_export_of_the_token_ops():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    g = _encoder_like()
    proto = eb.to_onnx(g)
    onnx.checker.check_model(proto)
    s = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = rng.integers(0, V, size=(2, T))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    got = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"ids": ids, "mask": mask})))
    want = g.run({"ids": ids, "mask": mask})
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
