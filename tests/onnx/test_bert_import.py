"""BERT-family encoders as torch.onnx.export writes them (tests/data/onnx/transformers/README.md: BERT with
SDPA attention at opsets 14 and 17 and through the dynamo exporter, DistilBERT, a MiniLM-like
BERT with eager attention and tanh GELU, RoBERTa with position ids computed from the ids;
planted outliers): imported with int64 token inputs and
the sequence length fixed at import, compared with ONNX Runtime fp32 and torch's stored outputs at
two sequence lengths with padded rows, run by g.run, eb.compile and eb.quantize (dynamic and
static), exported back to ONNX, and fed bad ids. Neither torch nor transformers is needed."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import eightbit as eb  # noqa: E402
from models import ort_outputs  # noqa: E402
from eightbit.onnx import OnnxImportError  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "onnx" / "transformers"
MODELS = ["bert_tiny_op14", "bert_tiny_op17", "bert_tiny_dynamo", "distilbert_tiny_op17", "minilm_tiny_op14",
          "roberta_tiny_op17", "roberta_tiny_dynamo"]
SEQ_LENS = (8, 16)
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _family(model: str) -> str:
    return model.rsplit("_", 1)[0]


def _feeds(model: str, seq: int) -> dict:
    data = np.load(DATA / f"{_family(model)}.npz")
    return {n: data[f"{n}_{seq}"] for n in INPUTS if f"{n}_{seq}" in data}


def _torch_outputs(model: str, seq: int) -> dict:
    data = np.load(DATA / f"{_family(model)}.npz")
    return {o: data[f"{o}_{seq}"] for o in ("last_hidden_state", "pooler_output") if f"{o}_{seq}" in data}


_ort = ort_outputs


def _as_dict(graph, y) -> dict:
    return y if isinstance(y, dict) else {graph.outputs[0]: y}


def _cosine(a, b) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


_GRAPHS: dict = {}


def _graph(model: str, seq: int):
    """The import of `model` at sequence length `seq` (cached: each import folds the shapes)."""
    key = (model, seq)
    if key not in _GRAPHS:
        _GRAPHS[key] = eb.from_onnx(DATA / f"{model}.onnx", dims={"sequence": seq})
    return _GRAPHS[key]


@pytest.mark.parametrize("seq", SEQ_LENS)
@pytest.mark.parametrize("model", MODELS)
def test_import_matches_onnxruntime_and_torch(model, seq):
    g = _graph(model, seq)
    assert all(g.tensors[n].dtype == "int64" and g.tensors[n].shape == (None, seq) for n in g.inputs)
    ops = {n.op for n in g.nodes}
    assert {"embedding", "additive_mask"} <= ops
    feeds = _feeds(model, seq)
    assert (feeds["attention_mask"] == 0).any()          # rows with padding
    got = _as_dict(g, g.run(feeds))
    want = _ort(DATA / f"{model}.onnx", feeds)
    torch_out = _torch_outputs(model, seq)
    assert set(got) == set(want) == set(torch_out)
    for k in got:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=5e-5, err_msg=f"{k} vs ONNX Runtime")
        np.testing.assert_allclose(got[k], torch_out[k], rtol=0, atol=5e-5, err_msg=f"{k} vs torch")


@pytest.mark.parametrize("model", MODELS)
def test_one_additive_mask_per_model(model):
    """The mask sub-graph (whatever the exporter wrote) becomes one additive_mask read by every
    layer's attention: nothing of it is left per layer."""
    g = _graph(model, SEQ_LENS[0])
    masks = [n for n in g.nodes if n.op == "additive_mask"]
    assert len(masks) == 1
    assert masks[0].inputs == ["attention_mask"]
    assert masks[0].attrs["fill"] == float(np.finfo(np.float32).min)
    readers = [n for n in g.nodes if n.inputs and n.inputs[-1] == masks[0].output or
               n.op == "identity" and n.inputs == [masks[0].output]]
    assert 1 <= len(readers) <= 2                                  # the two layers (or one identity per layer)
    prepared = eb.compile(g).plan.steps
    assert sum(1 for s in prepared if s.attrs.get("op") == "additive_mask") == 1


@pytest.mark.parametrize("model", ["roberta_tiny_op17", "roberta_tiny_dynamo"])
def test_roberta_position_ids_come_from_the_ids(model):
    """RoBERTa numbers the positions of non-padding ids from padding_idx + 1 (CumSum in the
    export): one padded_positions node feeds the position embedding; the token types, gathered
    from a buffer by those positions, are the same for every input and fold into a constant."""
    g = _graph(model, 8)
    (pos,) = [n for n in g.nodes if n.op == "padded_positions"]
    assert pos.inputs == ["input_ids"] and pos.attrs == {"pad": 1}
    assert [n.op for n in g.consumers(pos.output)] == ["embedding"]
    assert sum(n.op == "embedding" for n in g.nodes) == 2              # words and positions
    ids = np.array([[5, 1, 7, 9, 1, 1, 3, 1]])
    np.testing.assert_array_equal(g.run({"input_ids": ids, "attention_mask": np.ones_like(ids)},
                                        return_all=True)[pos.output], [[2, 1, 3, 4, 1, 1, 5, 1]])


def test_padding_does_not_change_kept_tokens():
    """Padding tokens (any ids behind a 0 in the mask) do not change the kept tokens' states."""
    g = _graph("bert_tiny_op17", 16)
    feeds = _feeds("bert_tiny_op17", 16)
    base = g.run(feeds)["last_hidden_state"]
    other = {k: v.copy() for k, v in feeds.items()}
    other["input_ids"][feeds["attention_mask"] == 0] = 7
    again = g.run(other)["last_hidden_state"]
    kept = feeds["attention_mask"] == 1
    np.testing.assert_allclose(again[kept], base[kept], rtol=0, atol=1e-5)
    assert not np.allclose(again[~kept], base[~kept])


@pytest.mark.parametrize("seq", SEQ_LENS)
@pytest.mark.parametrize("model", ["bert_tiny_op14", "distilbert_tiny_op17", "minilm_tiny_op14", "bert_tiny_dynamo",
                                   "roberta_tiny_op17", "roberta_tiny_dynamo"])
def test_compile_runs_in_cpp(model, seq):
    g = _graph(model, seq)
    m = eb.compile(g)
    assert not any(s.lowered and s.lowered.get("kind") == "host" for s in m.plan.steps if s.lowered)
    kinds = {s.op for s in m.plan.steps}
    assert "embedding" in kinds
    feeds = _feeds(model, seq)
    want = _as_dict(g, g.run(feeds))
    got = m.run(feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=3e-5, err_msg=k)
    ort_out = _ort(DATA / f"{model}.onnx", feeds)
    for k in want:
        np.testing.assert_allclose(got[k], ort_out[k], rtol=0, atol=5e-5, err_msg=f"{k}: compiled vs ONNX Runtime")


def test_compiled_plan_has_no_host_step():
    from eightbit.model import lowering
    m = eb.compile(_graph("bert_tiny_op17", 8))
    kinds = {s.lowered["kind"] for s in lowering.lower(m.plan).steps}
    assert "host" not in kinds
    assert {"embedding", "additive_mask", "float_select"} <= kinds


@pytest.mark.parametrize("model, at_least", [("bert_tiny_op17", 0.9999), ("distilbert_tiny_op17", 0.9999),
                                             ("minilm_tiny_op14", 0.9999), ("roberta_tiny_op17", 0.9995)])
def test_dynamic_quantization_stays_close(model, at_least):
    g = _graph(model, 16)
    q = eb.quantize(g, dynamic=True)
    assert any(s.op == "dynamic_linear" for s in q.plan.steps)
    feeds = _feeds(model, 16)
    want = _as_dict(g, g.run(feeds))
    got = q.run(feeds)
    for k in want:
        assert _cosine(got[k], want[k]) > at_least, k


@pytest.mark.parametrize("model", ["bert_tiny_op17", "minilm_tiny_op14"])
def test_static_quantization_runs(model):
    g = _graph(model, 16)
    feeds = _feeds(model, 16)
    rng = np.random.default_rng(3)
    calib = []
    for _ in range(4):                                   # random ids, random padding
        ids = rng.integers(1, 512, size=(4, 16))
        mask = (np.arange(16) < rng.integers(4, 17, size=(4, 1))).astype(np.int64)
        batch = {"input_ids": ids * mask, "attention_mask": mask}
        if "token_type_ids" in g.inputs:
            batch["token_type_ids"] = np.zeros_like(ids)
        calib.append(batch)
    q = eb.quantize(g, calib + [feeds], min_sqnr=None)
    want = _as_dict(g, g.run(feeds))
    got = q.run(feeds)
    for k in want:
        assert _cosine(got[k], want[k]) > 0.999, k
    # the masked scores stay float32: the mask's fill never meets an int8 grid
    mask_out = next(n.output for n in g.nodes if n.op == "additive_mask")
    assert all(s.op in ("float", "softmax") for s in q.plan.steps if any(i.startswith(mask_out) for i in s.inputs))


def test_exported_graph_runs_in_onnxruntime():
    g = _graph("bert_tiny_op17", 16)
    feeds = _feeds("bert_tiny_op17", 16)
    proto = eb.to_onnx(g)
    assert {"Gather"} <= {n.op_type for n in proto.graph.node}
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in proto.graph.input)
    got = _ort(proto, feeds)
    want = g.run(feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=3e-5, err_msg=k)
    again = eb.from_onnx(proto)                      # and back: the mask is recognised again
    np.testing.assert_allclose(again.run(feeds)["last_hidden_state"], want["last_hidden_state"], rtol=0, atol=3e-5)


def test_exported_dynamic_model_runs_in_onnxruntime():
    g = _graph("distilbert_tiny_op17", 8)
    feeds = _feeds("distilbert_tiny_op17", 8)
    q = eb.quantize(g, dynamic=True)
    proto = eb.to_onnx(q)
    got = _ort(proto, {k: v.astype(np.float32) for k, v in feeds.items()})   # plan inputs are float32
    want = q.run(feeds)
    np.testing.assert_allclose(got["last_hidden_state"], want["last_hidden_state"], rtol=0, atol=1e-4)


def test_save_and_load_keep_the_token_steps(tmp_path):
    g = _graph("minilm_tiny_op14", 8)
    feeds = _feeds("minilm_tiny_op14", 8)
    m = eb.compile(g)
    m.save(tmp_path / "m.eb")
    loaded = eb.load(tmp_path / "m.eb")
    want, got = m.run(feeds), loaded.run(feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


# ---- bad inputs ------------------------------------------------------------------------------------

def _runners():
    g = _graph("bert_tiny_op17", 8)
    return [("graph", g.run), ("compiled", eb.compile(g).run), ("dynamic", eb.quantize(g, dynamic=True).run),
            ("steps", eb.compile(g).run_steps)]


@pytest.mark.parametrize("bad", [512, -1, 1 << 40])
def test_out_of_table_ids_raise(bad):
    feeds = _feeds("bert_tiny_op17", 8)
    feeds["input_ids"] = feeds["input_ids"].copy()
    feeds["input_ids"][1, 2] = bad
    for name, run in _runners():
        with pytest.raises(ValueError, match="token id .* is not an integer in \\[0, 512\\)"):
            run(feeds)


def test_bad_token_type_and_mask_values_raise():
    feeds = _feeds("bert_tiny_op17", 8)
    types = dict(feeds, token_type_ids=np.full_like(feeds["token_type_ids"], 2))
    mask = dict(feeds, attention_mask=np.where(feeds["attention_mask"] == 1, 3, 0))
    for name, run in _runners():
        with pytest.raises(ValueError, match="not an integer in \\[0, 2\\)"):
            run(types)
        with pytest.raises(ValueError, match="attention mask value 3"):
            run(mask)


def test_non_integer_ids_raise_in_the_compiled_model():
    feeds = {k: v.astype(np.float32) for k, v in _feeds("bert_tiny_op17", 8).items()}
    feeds["input_ids"][0, 0] = 3.5
    with pytest.raises(ValueError, match="token id 3.5 is not an integer"):
        eb.compile(_graph("bert_tiny_op17", 8)).run(feeds)
    feeds["input_ids"][0, 0] = np.nan
    with pytest.raises(ValueError, match="token id nan"):
        eb.compile(_graph("bert_tiny_op17", 8)).run(feeds)


def test_graph_run_wants_integer_ids():
    feeds = _feeds("bert_tiny_op17", 8)
    with pytest.raises(TypeError, match="input 'input_ids' must be an integer array"):
        _graph("bert_tiny_op17", 8).run(dict(feeds, input_ids=feeds["input_ids"].astype(np.float32)))


# ---- import options and errors ---------------------------------------------------------------------

def test_sequence_length_must_be_given():
    with pytest.raises(OnnxImportError, match="dims=\\{'sequence': 128\\}"):
        eb.from_onnx(DATA / "bert_tiny_op17.onnx")
    with pytest.raises(OnnxImportError, match="names no dimension"):
        eb.from_onnx(DATA / "bert_tiny_op17.onnx", dims={"seq": 8})


def test_input_shapes_fix_the_sequence_too():
    g = eb.from_onnx(DATA / "distilbert_tiny_op17.onnx",
                     input_shapes={"input_ids": (None, 8), "attention_mask": (None, 8)})
    feeds = _feeds("distilbert_tiny_op17", 8)
    np.testing.assert_allclose(g.run(feeds), _torch_outputs("distilbert_tiny_op17", 8)["last_hidden_state"],
                               rtol=0, atol=5e-5)


def test_a_computation_of_the_mask_that_is_not_a_mask_is_refused():
    """A sub-graph computed from the integer mask alone that is no attention mask (here the
    mask as a row [N, 1, T], added to the hidden states; the keep mask [N, T, 1] of mean pooling
    is taken, test_sentence_pooling.py) raises, naming the tensor."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 4])
    mask = helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 4])
    nodes = [helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
             helper.make_node("Add", ["x", "m3"], ["y"])]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    model = helper.make_model(helper.make_graph(nodes, "g", [x, mask], [y], [axes]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match="'m3' is computed from the integer input 'mask' alone"):
        eb.from_onnx(model)


def test_every_unsupported_op_is_listed_at_once():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])
    nodes = [helper.make_node("Sin", ["x"], ["a"]), helper.make_node("Cos", ["a"], ["b"]),
             helper.make_node("Sin", ["b"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match="unsupported ONNX ops: Cos \\(Cos_1\\), Sin \\(Sin_0, Sin_2\\)"):
        eb.from_onnx(model)


def test_a_mask_region_asking_for_a_huge_tensor_is_refused_before_allocating():
    """The probe evaluation of the mask region checks each node's output size against the
    folding limits (a few bytes of ONNX can ask for gigabytes)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])
    mask = helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 4, 4])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 30000, 30000, 4])
    nodes = [helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axes"], ["m4"]),
             helper.make_node("Expand", ["m4", "shape"], ["big"]),
             helper.make_node("ReduceMax", ["big"], ["small"], keepdims=1),
             helper.make_node("Add", ["x", "small"], ["y"])]
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    model = helper.make_model(helper.make_graph(nodes, "g", [x, mask], [y], [axes, shape]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match="MiB"):
        eb.from_onnx(model)


def test_command_line_quantizes_an_encoder(tmp_path, capsys):
    """eightbit quantize with --dim sequence=N: dynamic, and static from a .npz of int64 inputs."""
    from eightbit.cli import main

    feeds = _feeds("distilbert_tiny_op17", 8)
    np.savez(tmp_path / "calib.npz", **feeds)
    model = str(DATA / "distilbert_tiny_op17.onnx")
    assert main(["quantize", model, "--dim", "sequence=8", "--dynamic", "-o", str(tmp_path / "d.eb")]) == 0
    assert main(["quantize", model, "--dim", "sequence=8", "--calib", str(tmp_path / "calib.npz"),
                 "-o", str(tmp_path / "s.eb")]) == 0
    want = _graph("distilbert_tiny_op17", 8).run(feeds)
    for name in ("d.eb", "s.eb"):
        got = eb.load(tmp_path / name).run(feeds)["last_hidden_state"]
        assert _cosine(got, want) > 0.999, name
