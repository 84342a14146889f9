"""One import for every sequence length: ``from_onnx(path, dims={"sequence": (lo, hi)})`` gives a
graph whose inputs hold a SeqLen; g.run, the quantized model (C++ executor, static defaults and
dynamic), its .eb file and its ONNX export serve every length in the range, compared with ONNX
Runtime fp32 on the original file and, for the quantized model, bit for bit with the plan fixed at
that length (Plan.at_length: the concrete path every other test covers). Lengths outside the range
and inputs that disagree are refused; a model whose shapes depend on the length otherwise (S + 1)
cannot be imported with a range."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import eightbit as eb  # noqa: E402
from eightbit.graph.ir import SeqLen  # noqa: E402
from eightbit.graph.sequence import at_length, unify  # noqa: E402
from eightbit.onnx import OnnxImportError  # noqa: E402
from models import ort_outputs  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "onnx" / "transformers"
MODELS = ["bert_tiny_op17", "bert_tiny_dynamo", "distilbert_tiny_op17", "roberta_tiny_op17", "sentence_tiny_op17"]
RANGE = (1, 24)
LENGTHS = (1, 2, 9, 24)

_GRAPHS: dict = {}


def _graph(model: str):
    if model not in _GRAPHS:
        _GRAPHS[model] = eb.from_onnx(DATA / f"{model}.onnx", dims={"sequence": RANGE})
    return _GRAPHS[model]


def _feeds(g, length: int, batch: int = 3, seed: int = 0) -> dict:
    """Random ids (RoBERTa's pad id 1 never drawn), the first row padded after its first half."""
    rng = np.random.default_rng(seed + length)
    feeds = {"input_ids": rng.integers(3, 100, size=(batch, length)),
             "attention_mask": np.ones((batch, length), np.int64)}
    feeds["attention_mask"][0, length // 2 + 1:] = 0
    if "token_type_ids" in g.inputs:
        feeds["token_type_ids"] = (rng.random((batch, length)) < 0.3).astype(np.int64)
    return feeds


def _first(y):
    return next(iter(y.values())) if isinstance(y, dict) else y


@pytest.mark.parametrize("model", MODELS)
def test_one_import_runs_every_length_as_onnx_runtime(model):
    g = _graph(model)
    seq = SeqLen(*RANGE)
    assert all(g.tensors[n].shape == (None, seq) for n in g.inputs)
    for length in LENGTHS:
        feeds = _feeds(g, length)
        want = ort_outputs(DATA / f"{model}.onnx", feeds)
        got = g.run(feeds)
        got = got if isinstance(got, dict) else {g.outputs[0]: got}
        for name, value in got.items():
            assert value.shape == want[name].shape
            np.testing.assert_allclose(value, want[name], rtol=0, atol=3e-5, err_msg=f"{name} at length {length}")


@pytest.mark.parametrize("model", ["bert_tiny_op17", "roberta_tiny_op17", "sentence_tiny_op17"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_quantized_model_equals_the_plan_fixed_at_each_length(model, dynamic, isa, tmp_path):
    g = _graph(model)
    calib = [_feeds(g, n, seed=7) for n in (5, 17, 24)]
    q = eb.quantize(g, calib, dynamic=dynamic)
    assert q._executor is not None  # the C++ plan, not the step-by-step fallback
    q.save(tmp_path / "m.eb")
    loaded = eb.QuantizedModel.load(tmp_path / "m.eb")
    for length in LENGTHS:
        feeds = _feeds(g, length)
        fixed = eb.QuantizedModel(q.plan.at_length(length)).run(feeds)
        for m in (q, loaded):
            got = m.run(feeds)
            for name in fixed:
                np.testing.assert_array_equal(got[name], fixed[name], err_msg=f"{name} at length {length}")
        # and close to the float model
        ref = _first(g.run(feeds))
        cos = np.sum(ref * _first(got), -1) / (np.linalg.norm(ref, axis=-1) * np.linalg.norm(_first(got), axis=-1))
        assert cos.min() > 0.99


def test_arena_is_laid_out_per_length():
    g = _graph("bert_tiny_op17")
    q = eb.quantize(g, [_feeds(g, 24)], dynamic=True)
    ex = q._executor
    sizes = {}
    for length in (24, 3, 24):
        q.run(_feeds(g, length, batch=1))
        sizes[length] = ex.arena_bytes
    # the arena grows to the longest run and is reused; a plan for 24 tokens needs more than for 3
    assert ex.arena_bytes_per_sample >= eb.QuantizedModel(q.plan.at_length(24))._executor.arena_bytes_per_sample
    assert eb.QuantizedModel(q.plan.at_length(3))._executor.arena_bytes_per_sample < ex.arena_bytes_per_sample


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_onnx_export_keeps_the_free_sequence(dynamic):
    """The export runs every length in ONNX Runtime exactly as the export of the plan fixed at
    that length does, and close to eightbit (a row's DynamicQuantizeLinear may round one code
    differently in ONNX Runtime: the fixed-length export differs the same way)."""
    g = _graph("bert_tiny_op17")
    q = eb.quantize(g, [_feeds(g, n, seed=3) for n in (6, 24)], dynamic=dynamic)
    for model in (g, q):
        proto = eb.to_onnx(model)
        dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
        assert dims == ["N", "sequence"]
        for length in (1, 7, 24):
            feeds = _feeds(g, length)
            if model is q:  # the plan's inputs are float32 ids
                feeds = {k: v.astype(np.float32) for k, v in feeds.items()}
                fixed = ort_outputs(eb.to_onnx(q.plan.at_length(length)), feeds)["last_hidden_state"]
            got = ort_outputs(proto, feeds)["last_hidden_state"]
            want = _first(model.run(feeds)) if model is g else model.run(feeds)["last_hidden_state"]
            if model is q:
                np.testing.assert_array_equal(got, fixed, err_msg=f"length {length}")
            np.testing.assert_allclose(got, want, rtol=0, atol=2e-3 if dynamic else 1e-4, err_msg=f"length {length}")


def test_lengths_outside_the_range_and_disagreeing_inputs_are_refused():
    g = _graph("bert_tiny_op17")
    q = eb.quantize(g, [_feeds(g, 8)], dynamic=True)
    long = _feeds(g, 25)
    for run in (g.run, q.run, q.reference_run):
        with pytest.raises(ValueError, match=r"sequence length 25.* outside the model's range 1 to 24"):
            run(long)
    mixed = _feeds(g, 8)
    mixed["attention_mask"] = np.ones((3, 9), np.int64)
    with pytest.raises(ValueError, match=r"disagree on the sequence length \(8 vs 9\)"):
        g.run(mixed)
    with pytest.raises(ValueError, match="expected shape"):
        q.run(mixed)


def test_bad_ranges_are_refused():
    path = DATA / "bert_tiny_op17.onnx"
    for bad in ((0, 8), (9, 8), (1.5, 8), (1, 2, 3)):
        with pytest.raises(OnnxImportError, match="range"):
            eb.from_onnx(path, dims={"sequence": bad})
    # lo == hi: the fixed-length import
    g = eb.from_onnx(path, dims={"sequence": (8, 8)})
    assert g.tensors["input_ids"].shape == (None, 8)


def _toy(length: int, extra: int = 0):
    """A graph at one length: rows of [N, T, 4] through a linear layer, reshaped to [N, T + extra, ...]."""
    g = eb.Graph()
    x = g.input("x", (None, length, 4))
    h = g.linear(x, np.eye(4, dtype=np.float32), None, name="proj")
    if extra:
        h = g.reshape(h, ((length * 4) // (length + extra), length + extra), name="r")
    g.output(h)
    return g


def test_unify_makes_the_length_symbolic_and_refuses_other_dependence():
    seq = SeqLen(1, 8)
    g = unify(_toy(8), _toy(7), seq)
    assert g.tensors["proj"].shape == (None, seq, 4)
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(g.run(x), x)
    assert at_length(g, 5).tensors["proj"].shape == (None, 5, 4)
    with pytest.raises(ValueError, match="depends on the sequence length"):
        unify(_toy(8, extra=8), _toy(7, extra=7), seq)


def test_ops_that_would_do_arithmetic_with_the_length_refuse_it():
    seq = SeqLen(2, 16)
    g = eb.Graph()
    x = g.input("x", (None, 3, seq, 8))
    with pytest.raises(ValueError, match="does not take the free sequence dimension"):
        g.max_pool2d(x, 2)
    with pytest.raises(ValueError, match="out of range"):
        g.select(x, axis=2, index=2)          # the shortest sequence has 2 tokens
    assert g.select(x, axis=2, index=1).shape == (None, 3, 8)
    with pytest.raises(ValueError, match=r"holds 48 \* S values per sample, but x"):
        g.reshape(x, (seq, 48))
    assert g.reshape(x, (seq, 3, 8)).shape == (None, seq, 3, 8)
    with pytest.raises(ValueError, match="concatenation along it"):
        g.concat([x, x], axis=2)


def test_file_records_the_range_and_refuses_a_sequence_it_does_not_declare(tmp_path):
    from eightbit.model import file_format

    g = _graph("bert_tiny_op17")
    q = eb.quantize(g, [_feeds(g, 8)], dynamic=True)
    tree = file_format._plan_tree(q.plan, "test")
    assert tree["sequence"] == [1, 24]
    assert {"name": "input_ids", "shape": [-1, -2]}.items() <= next(
        t for t in tree["tensors"] if t["name"] == "input_ids").items()
    del tree["sequence"]
    with pytest.raises(file_format.ModelFileError, match="bad dtype or shape"):
        file_format.read(file_format.encode_tree(tree))
    with pytest.raises(file_format.ModelFileError):  # the C++ reader alone (tensor -2 without a declared range)
        eb.runtime.core.build_model(file_format.encode_tree(tree), 0, lambda i: None)
    tree["sequence"] = [5, 2]
    with pytest.raises(file_format.ModelFileError, match="'sequence' must be two ints"):
        file_format.read(file_format.encode_tree(tree))


def test_command_line_quantizes_for_a_range_of_lengths(tmp_path):
    """eightbit quantize --dim sequence=lo:hi writes one .eb for every length in the range."""
    from eightbit.cli import main

    g = _graph("bert_tiny_op17")
    np.savez(tmp_path / "calib.npz", **_feeds(g, 24, seed=5))
    model = str(DATA / "bert_tiny_op17.onnx")
    assert main(["quantize", model, "--dim", "sequence=1:24", "--calib", str(tmp_path / "calib.npz"),
                 "-o", str(tmp_path / "s.eb")]) == 0
    q = eb.load(tmp_path / "s.eb")
    for length in (3, 24):
        feeds = _feeds(g, length)
        got, want = q.run(feeds)["last_hidden_state"], _first(g.run(feeds))
        cos = np.sum(got * want, -1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1))
        assert cos.min() > 0.99
    with pytest.raises(SystemExit):
        main(["quantize", model, "--dim", "sequence=5:2", "-o", str(tmp_path / "x.eb")])


def test_int8_attention_takes_the_free_sequence(isa):
    g = _graph("bert_tiny_op17")
    q = eb.quantize(g, [_feeds(g, n, seed=7) for n in (5, 24)], attention="int8")
    assert q._executor is not None and any(s.op == "softmax_bmm" for s in q.plan.steps)
    for length in LENGTHS:
        feeds = _feeds(g, length)
        fixed = eb.QuantizedModel(q.plan.at_length(length)).run(feeds)
        got = q.run(feeds)
        for name in fixed:
            np.testing.assert_array_equal(got[name], fixed[name], err_msg=f"{name} at length {length}")
