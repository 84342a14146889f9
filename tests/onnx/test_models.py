"""The ONNX test models: the hand-built ones of models.py and the PyTorch-exported files of
tests/data/onnx (tools/export_torch_models.py).

First the test data itself: every model passes onnx.checker and runs in ONNX Runtime, the exported
files reproduce torch's outputs stored beside them, the hand-built models mirror torch's export
(same ops) and their variants compute the same function. Then the importer on them: eb.from_onnx
runs each in float as ONNX Runtime does, and eb.quantize makes an int8 model within 30 dB SQNR.
"""
from __future__ import annotations

import collections
import pathlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import eightbit as eb  # noqa: E402
from models import EXPORTED_INPUTS, MODELS  # noqa: E402  (tests/onnx is on sys.path under pytest)

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "onnx"
EXPORTED = sorted(p.stem for p in DATA.glob("*.onnx"))
MIN_SQNR_DB = 30.0
CALIB_BATCHES, CALIB_BATCH, EVAL_BATCH = 8, 32, 64


def _session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _run_ort(model, feeds):
    return _session(model).run(None, feeds)[0]


def _max_rel_err(want, got):
    return float(np.max(np.abs(want.astype(np.float64) - got)) / np.max(np.abs(want)))


def _sqnr_db(want, got):
    want = want.astype(np.float64)
    noise = float(np.sum((want - got) ** 2))
    return float("inf") if noise == 0 else 10 * float(np.log10(np.sum(want ** 2) / noise))


def _batch_dim(value_info):
    return value_info.type.tensor_type.shape.dim[0].dim_param


def _op_counts(model, drop=("Constant",)):
    return collections.Counter(n.op_type for n in model.graph.node if n.op_type not in drop)


def test_the_exported_files_are_all_there():
    assert set(EXPORTED) == set(EXPORTED_INPUTS)
    assert all((DATA / f"{name}.npz").is_file() for name in EXPORTED)


# ---- the test data ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_builder_makes_a_valid_model_ort_runs(name):
    model, inputs = MODELS[name]()
    onnx.checker.check_model(model, full_check=True)
    assert [_batch_dim(i) for i in model.graph.input] == ["N"]
    session = _session(model)
    for batch in (1, 3):
        feeds = inputs(np.random.default_rng(batch), batch)
        assert all(v.dtype == np.float32 and v.shape[0] == batch for v in feeds.values())
        y = session.run(None, feeds)[0]
        assert y.shape[0] == batch and np.all(np.isfinite(y))
        assert np.std(y) > 0.05  # a live network, not a constant


@pytest.mark.parametrize("name", MODELS)
def test_builder_is_deterministic(name):
    a, inputs_a = MODELS[name]()
    b, inputs_b = MODELS[name]()
    assert a.SerializeToString() == b.SerializeToString()
    fa, fb = inputs_a(np.random.default_rng(0), 2), inputs_b(np.random.default_rng(0), 2)
    assert all(np.array_equal(fa[k], fb[k]) for k in fa)


@pytest.mark.parametrize("pair", [("resnet_block", "resnet_block_folded"),
                                  ("mobilenet_block", "mobilenet_block_hardsigmoid"),
                                  ("transformer_ffn", "transformer_ffn_gelu20")], ids="-vs-".join)
def test_variants_compute_the_same_function(pair):
    (m1, inputs), (m2, _) = MODELS[pair[0]](), MODELS[pair[1]]()
    assert _op_counts(m1) != _op_counts(m2)
    feeds = inputs(np.random.default_rng(4), 8)
    y1, y2 = _run_ort(m1, feeds), _run_ort(m2, feeds)
    assert _max_rel_err(y1, y2) <= 1e-4


@pytest.mark.parametrize("name", EXPORTED)
def test_exported_file_reproduces_torch(name):
    path = DATA / f"{name}.onnx"
    assert path.stat().st_size < 300_000 and (DATA / f"{name}.npz").stat().st_size < 300_000
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.producer_name == "pytorch"
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert [_batch_dim(i) for i in model.graph.input] == ["N"]
    data = np.load(DATA / f"{name}.npz")
    x, y = data["x"], data["y"]
    assert _max_rel_err(y, _run_ort(path, {"x": x})) <= 1e-4
    # the batch is free: a different batch size runs, and sample 0 does not depend on it
    y1 = _run_ort(path, {"x": x[:1]})
    assert _max_rel_err(y[:1], y1) <= 1e-4


# hand-built model -> the exported file it imitates; BatchNormalization dropped where torch folded it
MIRRORS = {
    "resnet_block": ("resnet_block_bn", ()),
    "resnet_block_folded": ("resnet_block", ()),
    "mobilenet_block": ("mobilenet_block", ("BatchNormalization",)),
    "mlp": ("mlp", ()),
    "transformer_ffn": ("transformer_ffn", ()),
    "flatten_by_shape": ("flatten_by_shape", ()),
    "attention_block": ("attention_block", ()),
}


@pytest.mark.parametrize("name", MIRRORS)
def test_builder_writes_the_ops_torch_writes(name):
    exported, drop = MIRRORS[name]
    built, _ = MODELS[name]()
    torch_model = onnx.load(DATA / f"{exported}.onnx")
    assert _op_counts(built, ("Constant",) + drop) == _op_counts(torch_model)
    assert built.ir_version == torch_model.ir_version


# ---- the importer on them -----------------------------------------------------------------------
def _cases():
    return [pytest.param("built", n, id=f"built-{n}") for n in MODELS] + \
           [pytest.param("torch", n, id=f"torch-{n}") for n in EXPORTED]


def _case(kind, name, tmp_path):
    """(path of the ONNX file, its ONNX model, inputs(rng, batch))."""
    if kind == "built":
        model, inputs = MODELS[name]()
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, path)
        return path, model, inputs
    path = DATA / f"{name}.onnx"
    return path, onnx.load(path), EXPORTED_INPUTS[name]


@pytest.mark.parametrize("kind, name", _cases())
def test_imported_graph_runs_as_ort(kind, name, tmp_path):
    path, model, inputs = _case(kind, name, tmp_path)
    graph = eb.from_onnx(str(path))
    assert isinstance(graph, eb.Graph)
    feeds = inputs(np.random.default_rng(11), 8)
    want = _run_ort(model, feeds)
    got = graph.run(feeds)
    assert got.shape == want.shape
    assert np.max(np.abs(got.astype(np.float64) - want)) <= 1e-4 * np.max(np.abs(want))


@pytest.mark.parametrize("kind, name", _cases())
def test_quantized_import_within_30_db_of_ort(kind, name, tmp_path):
    path, model, inputs = _case(kind, name, tmp_path)
    graph = eb.from_onnx(str(path))
    rng = np.random.default_rng(12)
    calibration = [inputs(rng, CALIB_BATCH) for _ in range(CALIB_BATCHES)]
    qm = eb.quantize(graph, calibration)
    feeds = inputs(np.random.default_rng(13), EVAL_BATCH)
    want = _run_ort(model, feeds)
    got = qm.run(feeds)[qm.plan.outputs[0]]
    assert got.shape == want.shape
    sqnr = _sqnr_db(want, got)
    assert sqnr >= MIN_SQNR_DB, f"{kind} {name}: int8 SQNR {sqnr:.1f} dB against ONNX Runtime fp32"
