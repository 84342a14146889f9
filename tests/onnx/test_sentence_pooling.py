"""Sentence-encoder pooling (tests/data/onnx/transformers/sentence_tiny_op17.onnx: BertModel, masked
mean pooling and L2 normalisation as sentence-transformers writes them, and the plain mean):
imported at two sequence lengths and compared with ONNX Runtime fp32 and torch's stored outputs,
run by g.run, eb.compile and eb.quantize (dynamic and static), exported back to ONNX; and the
reduce graph op, its converters (ReduceSum / ReduceMean / ReduceL2, Expand) and its errors."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

import eightbit as eb  # noqa: E402
from models import ort_outputs  # noqa: E402
from eightbit.graph import Graph  # noqa: E402
from eightbit.onnx import OnnxImportError  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "onnx" / "transformers"
MODEL = DATA / "sentence_tiny_op17.onnx"
SEQ_LENS = (8, 16)
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUTS = ("sentence_embedding", "mean_embedding")

_GRAPHS: dict = {}


def _graph(seq: int):
    if seq not in _GRAPHS:
        _GRAPHS[seq] = eb.from_onnx(MODEL, dims={"sequence": seq})
    return _GRAPHS[seq]


def _feeds(seq: int) -> dict:
    data = np.load(DATA / "sentence_tiny.npz")
    return {n: data[f"{n}_{seq}"] for n in INPUTS}


_ort = ort_outputs


def _cosines(a, b) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ---- the model ----------------------------------------------------------------------------------

@pytest.mark.parametrize("seq", SEQ_LENS)
def test_import_matches_onnxruntime_and_torch(seq):
    g = _graph(seq)
    assert [n.op for n in g.nodes if n.op == "reduce"] == ["reduce"] * 4     # two sums, the norm, the mean
    keep = [n for n in g.nodes if n.op == "embedding" and n.inputs == ["attention_mask"]]
    assert len(keep) == 1                                    # the keep mask [N, T, 1] as float32
    assert sum(n.op == "additive_mask" for n in g.nodes) == 1
    feeds = _feeds(seq)
    assert (feeds["attention_mask"] == 0).any()
    got, want = g.run(feeds), _ort(MODEL, feeds)
    torch_out = np.load(DATA / "sentence_tiny.npz")
    for k in OUTPUTS:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5, err_msg=f"{k} vs ONNX Runtime")
        np.testing.assert_allclose(got[k], torch_out[f"{k}_{seq}"], rtol=0, atol=1e-5, err_msg=f"{k} vs torch")
    np.testing.assert_allclose(np.linalg.norm(got["sentence_embedding"], axis=1), 1.0, rtol=1e-6)


def test_padding_does_not_change_the_sentence_embedding():
    """Masked mean pooling: the padded positions (any ids) do not count."""
    g = _graph(16)
    feeds = _feeds(16)
    other = dict(feeds, input_ids=np.where(feeds["attention_mask"] == 0, 7, feeds["input_ids"]))
    np.testing.assert_allclose(g.run(other)["sentence_embedding"], g.run(feeds)["sentence_embedding"],
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("seq", SEQ_LENS)
def test_compiled_matches_the_graph_without_host_steps(seq):
    from eightbit.model import lowering
    g = _graph(seq)
    m = eb.compile(g)
    kinds = {s.lowered["kind"] for s in lowering.lower(m.plan).steps}
    assert "host" not in kinds and "float_reduce" in kinds
    feeds = _feeds(seq)
    got, want = m.run(feeds), g.run(feeds)
    for k in OUTPUTS:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5, err_msg=k)


def test_dynamic_quantization_stays_close():
    g = _graph(16)
    q = eb.quantize(g, dynamic=True)
    assert any(s.op == "dynamic_linear" for s in q.plan.steps)
    feeds = _feeds(16)
    got, want = q.run(feeds), g.run(feeds)
    for k in OUTPUTS:
        assert _cosines(got[k], want[k]).min() >= 0.999, k


def test_static_quantization_stays_close():
    g = _graph(16)
    feeds = _feeds(16)
    rng = np.random.default_rng(3)
    calib = []
    for _ in range(4):                                   # random ids, random padding
        ids = rng.integers(1, 512, size=(4, 16))
        mask = (np.arange(16) < rng.integers(4, 17, size=(4, 1))).astype(np.int64)
        calib.append({"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    q = eb.quantize(g, calib + [feeds], min_sqnr=None)
    reduce_steps = [s for s in q.plan.steps if s.op == "float" and s.attrs["op"] == "reduce"]
    assert len(reduce_steps) == 4 and not any(s.attrs["int8_form"] for s in reduce_steps)
    got, want = q.run(feeds), g.run(feeds)
    for k in OUTPUTS:
        assert _cosines(got[k], want[k]).min() >= 0.999, k


def test_exported_graph_runs_in_onnxruntime():
    g = _graph(8)
    feeds = _feeds(8)
    proto = eb.to_onnx(g)
    assert {"ReduceSum", "ReduceL2", "ReduceMean"} <= {n.op_type for n in proto.graph.node}
    got, want = _ort(proto, feeds), g.run(feeds)
    for k in OUTPUTS:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5, err_msg=k)


def test_exported_dynamic_model_runs_in_onnxruntime():
    """The quantized plan's float reduce steps export as Reduce* nodes (float32 inputs: ids as floats)."""
    g = _graph(16)
    feeds = _feeds(16)
    q = eb.quantize(g, dynamic=True)
    got = _ort(eb.to_onnx(q), {k: v.astype(np.float32) for k, v in feeds.items()})
    want = q.run(feeds)
    # LayerNorm rounds once from double here and in float32 steps in ONNX Runtime (1.9e-6 apart on
    # the embeddings' LayerNorm); a row's per-token quantization may then pick another code
    for k in OUTPUTS:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=5e-5, err_msg=k)


# ---- the reduce graph op ------------------------------------------------------------------------

def _reduce_graph(mode, axes, keepdims=False, shape=(None, 5, 4, 6)):
    g = Graph("r")
    x = g.input("x", shape)
    g.output(g.reduce(x, mode, axes, keepdims))
    return g


@pytest.mark.parametrize("axes, keepdims, want", [
    ((1,), False, (None, 4, 6)), ((1,), True, (None, 1, 4, 6)), ((2, 3), False, (None, 5)),
    (3, True, (None, 5, 4, 1)), ((1, 2, 3), False, (None,)),
])
def test_reduce_shapes(axes, keepdims, want):
    g = _reduce_graph("sum", axes, keepdims)
    assert g.tensors[g.outputs[0]].shape == want


@pytest.mark.parametrize("mode, axes, keepdims, error, message", [
    ("sum", 0, False, ValueError, "batch"),
    ("sum", (1, 3), False, ValueError, "contiguous"),
    ("sum", (2, 1), False, ValueError, "contiguous"),
    ("sum", (4,), False, ValueError, "out of range"),
    ("sum", -1, False, ValueError, ">= 0"),
    ("median", 1, False, ValueError, "mode must be one of"),
    ("sum", 1, 1, TypeError, "keepdims must be a bool"),
    ("sum", "1", False, TypeError, "axes must be"),
])
def test_reduce_errors(mode, axes, keepdims, error, message):
    with pytest.raises(error, match=message):
        _reduce_graph(mode, axes, keepdims)


@pytest.mark.parametrize("mode", ["sum", "mean", "l2", "max"])
def test_reduce_matches_numpy_in_float64(mode):
    x = (np.random.default_rng(1).standard_normal((3, 5, 4, 6)) * 10).astype(np.float32)
    x64 = x.astype(np.float64)
    want = {"sum": lambda: x64.sum((2, 3)), "mean": lambda: x64.mean((2, 3)),
            "l2": lambda: np.sqrt((x64 * x64).sum((2, 3))), "max": lambda: x64.max((2, 3))}[mode]()
    got = _reduce_graph(mode, (2, 3)).run(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=2e-7, atol=0)


@pytest.mark.parametrize("opset", [13, 17, 18])
@pytest.mark.parametrize("mode", ["sum", "mean", "l2", "max"])
def test_reduce_exports_to_onnx(mode, opset):
    g = _reduce_graph(mode, (1, 2), keepdims=True)
    proto = eb.to_onnx(g, opset=opset)
    x = np.random.default_rng(2).standard_normal((2, 5, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(_ort(proto, {"x": x})[g.outputs[0]], g.run(x), rtol=1e-5, atol=1e-5)
    again = eb.from_onnx(proto)
    assert [n.op for n in again.nodes] == ["reduce"]
    assert again.nodes[0].attrs == g.nodes[0].attrs


# ---- converters ---------------------------------------------------------------------------------

def _model(nodes, inits=(), opset=17, x_shape=("N", 5, 4), out_rank=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    out_rank = len(x_shape) if out_rank is None else out_rank
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(out_rank)])
    graph = helper.make_graph(nodes, "m", [x], [y], initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _axes_init(values):
    return onnx.numpy_helper.from_array(np.array(values, np.int64), "axes")


@pytest.mark.parametrize("op, opset, as_input", [("ReduceSum", 13, True), ("ReduceSum", 11, False),
                                                 ("ReduceMean", 17, False), ("ReduceMean", 18, True),
                                                 ("ReduceL2", 17, False), ("ReduceL2", 18, True)])
def test_reduce_converters_match_onnxruntime(op, opset, as_input):
    if as_input:
        node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=0)
        model = _model([node], [_axes_init([-1])], opset, out_rank=2)
    else:
        model = _model([helper.make_node(op, ["x"], ["y"], axes=[-1], keepdims=0)], opset=opset, out_rank=2)
    g = eb.from_onnx(model)
    assert g.nodes[0].op == "reduce" and g.nodes[0].attrs["axes"] == (2,)
    x = np.random.default_rng(4).standard_normal((3, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(g.run(x), _ort(model, {"x": x})["y"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axes, message", [([0], "batch"), ([-4, 1], "batch"), ([1, 3], "not contiguous")])
def test_reduce_axes_errors(axes, message):
    model = _model([helper.make_node("ReduceSum", ["x", "axes"], ["y"])], [_axes_init(axes)], 13,
                   x_shape=("N", 5, 4, 3))
    with pytest.raises(OnnxImportError, match=message):
        eb.from_onnx(model)


def test_reduce_without_axes():
    model = _model([helper.make_node("ReduceSum", ["x"], ["y"])], opset=13)
    with pytest.raises(OnnxImportError, match="every axis, the batch included"):
        eb.from_onnx(model)
    model = _model([helper.make_node("ReduceSum", ["x"], ["y"], noop_with_empty_axes=1)], opset=13)
    assert [n.op for n in eb.from_onnx(model).nodes] == ["identity"]


@pytest.mark.parametrize("target, want_op", [([1, 5, 3], "mul"), ([5, 7], "mul"), ([1, 1], "identity"),
                                             ([5, 1], "identity")])
def test_expand(target, want_op):
    shape = onnx.numpy_helper.from_array(np.array(target, np.int64), "shape")
    model = _model([helper.make_node("Expand", ["x", "shape"], ["y"])], [shape], x_shape=("N", 5, 1))
    g = eb.from_onnx(model)
    assert [n.op for n in g.nodes] == [want_op]
    x = np.random.default_rng(5).standard_normal((2, 5, 1)).astype(np.float32)
    np.testing.assert_array_equal(g.run(x), _ort(model, {"x": x})["y"])


@pytest.mark.parametrize("target, message", [([2, 5, 1, 1], "more dimensions"), ([3, 5, 1], "batch"),
                                             ([1, 4, 1], "does not broadcast"), ([1, 5, 0], "below 1")])
def test_expand_errors(target, message):
    shape = onnx.numpy_helper.from_array(np.array(target, np.int64), "shape")
    model = _model([helper.make_node("Expand", ["x", "shape"], ["y"])], [shape], x_shape=("N", 5, 1))
    with pytest.raises(OnnxImportError, match=message):
        eb.from_onnx(model)


def test_keep_mask_becomes_a_float_tensor():
    """``attention_mask.unsqueeze(-1).float()`` ([N, T, 1], 1 kept, 0 padded) is taken out of the
    mask region as a float32 tensor (a lookup in [[0], [1]]), which refuses other mask values."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 3])
    mask = helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3])
    nodes = [helper.make_node("Unsqueeze", ["mask", "axes"], ["m3"]),
             helper.make_node("Cast", ["m3"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "m"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x, mask], [y], [_axes_init([-1])]),
                              opset_imports=[helper.make_opsetid("", 17)])
    g = eb.from_onnx(model)
    assert [n.op for n in g.nodes] == ["embedding", "identity", "mul"]
    xs = np.random.default_rng(6).standard_normal((2, 4, 3)).astype(np.float32)
    m = np.array([[1, 1, 0, 0], [1, 0, 1, 1]])
    np.testing.assert_array_equal(g.run({"x": xs, "mask": m}), _ort(model, {"x": xs, "mask": m})["y"])
    with pytest.raises(ValueError, match="not an integer in \\[0, 2\\)"):
        g.run({"x": xs, "mask": m * 2})


def test_equal_of_the_free_batch_with_a_size_is_refused():
    """Folding carries the free batch through Equal only against numbers it cannot be (< 1)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    two = onnx.numpy_helper.from_array(np.array([2, 4], np.int64), "two")
    ones = onnx.numpy_helper.from_array(np.array([1, 1], np.int64), "ones")
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Equal", ["s", "two"], ["e"]),
             helper.make_node("Where", ["e", "ones", "s"], ["t"]), helper.make_node("Expand", ["x", "t"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [two, ones]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match="which it may equal"):
        eb.from_onnx(model)


def _token_type_model(read_as_ids=True):
    """BERT without a token_type_ids input: its buffer of zeros expanded to Shape(input_ids)."""
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3])
    inits = [onnx.numpy_helper.from_array(np.zeros((1, 4), np.int64), "buffer"),
             onnx.numpy_helper.from_array(np.arange(30, dtype=np.float32).reshape(10, 3), "words"),
             onnx.numpy_helper.from_array(np.array([[0.5, -1, 2], [3, 3, 3]], np.float32), "types")]
    nodes = [helper.make_node("Shape", ["ids"], ["s"]), helper.make_node("Expand", ["buffer", "s"], ["t"]),
             helper.make_node("Gather", ["words", "ids"], ["w"])]
    if read_as_ids:
        nodes += [helper.make_node("Gather", ["types", "t"], ["te"]), helper.make_node("Add", ["w", "te"], ["y"])]
    else:
        nodes += [helper.make_node("Cast", ["t"], ["tf"], to=TensorProto.FLOAT),
                  helper.make_node("Unsqueeze", ["tf", "axes"], ["t3"]), helper.make_node("Add", ["w", "t3"], ["y"])]
        inits.append(_axes_init([-1]))
    return helper.make_model(helper.make_graph(nodes, "g", [ids], [y], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_constant_token_types_expanded_to_the_batch_fold():
    """Ids that are the same for every sample (BERT's token-type buffer expanded to [batch, T])
    fold to [1, T] with a free batch when only embedding lookups read them."""
    model = _token_type_model()
    g = eb.from_onnx(model)
    assert [n.op for n in g.nodes] == ["embedding", "add"]
    ids = np.array([[1, 2, 3, 9], [0, 0, 5, 5], [7, 7, 7, 7]])
    np.testing.assert_array_equal(g.run(ids), _ort(model, {"ids": ids})["y"])
    with pytest.raises(OnnxImportError, match="free batch"):
        eb.from_onnx(_token_type_model(read_as_ids=False))
