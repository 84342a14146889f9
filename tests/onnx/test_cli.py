"""`eightbit quantize` and `eightbit bench` on ONNX files."""
from pathlib import Path

import numpy as np
import pytest

import eightbit as eb
from eightbit.cli import main

ort = pytest.importorskip("onnxruntime")
DATA = Path(__file__).resolve().parent.parent / "data" / "onnx"


def _ort_run(path, feeds):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


@pytest.fixture()
def resnet(tmp_path, rng):
    """The torch-exported ResNet block, calibration samples as a .npy and a test batch."""
    x = np.load(DATA / "resnet_block.npz")["x"]
    np.save(tmp_path / "calib.npy", rng.standard_normal((48,) + x.shape[1:]).astype(np.float32))
    return DATA / "resnet_block.onnx", tmp_path, x


def test_quantize_writes_eb_and_onnx_that_agree(resnet, capsys):
    model, d, x = resnet
    assert main(["quantize", str(model), "--calib", str(d / "calib.npy"), "--batch-size", "16",
                 "--method", "percentile", "-o", str(d / "m.eb"), "--onnx-out", str(d / "m.onnx"),
                 "--onnx-format", "qoperator"]) == 0
    out = capsys.readouterr().out
    assert "0 stay float32" in out and "SQNR" in out and "wrote" in out
    qm = eb.load(d / "m.eb")
    y = qm(x)
    np.testing.assert_array_equal(_ort_run(d / "m.onnx", {"x": x}), y)
    want = _ort_run(model, {"x": x})
    assert 10 * np.log10(np.sum(want ** 2) / np.sum((want - y) ** 2)) >= 30


def test_quantize_options_reach_eb_quantize(resnet):
    model, d, x = resnet
    graph = eb.from_onnx(model)
    excluded = graph.nodes[0].name
    assert main(["quantize", str(model), "--calib", str(d / "calib.npy"), "--per-tensor",
                 "--activation-dtype", "int8", "--exclude", excluded, "-o", str(d / "m.eb")]) == 0
    qm = eb.load(d / "m.eb")
    assert qm.plan.steps[0].op == "float" and qm.plan.steps[0].source == excluded
    quantized = [t for t in qm.plan.tensors.values() if t.quantized]
    assert quantized and all(t.dtype == np.int8 for t in quantized)
    convs = [s for s in qm.plan.steps if s.op == "conv"]
    assert all(len(set(s.consts["w_scale"].tolist())) == 1 for s in convs)     # per tensor


def test_dynamic_needs_no_calibration(tmp_path, rng):
    model = DATA / "mlp.onnx"
    assert main(["quantize", str(model), "--dynamic", "-o", str(tmp_path / "m.eb")]) == 0
    qm = eb.load(tmp_path / "m.eb")
    assert [s.op for s in qm.plan.steps].count("dynamic_linear") == 3
    x = np.load(DATA / "mlp.npz")["x"]
    want = _ort_run(model, {"x": x})
    assert 10 * np.log10(np.sum(want ** 2) / np.sum((want - qm(x)) ** 2)) >= 30


def test_static_without_calibration_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="needs --calib"):
        main(["quantize", str(DATA / "mlp.onnx"), "-o", str(tmp_path / "m.eb")])


def test_already_quantized_model_imports(resnet, capsys):
    model, d, x = resnet
    main(["quantize", str(model), "--calib", str(d / "calib.npy"), "-o", str(d / "a.eb"),
          "--onnx-out", str(d / "a.onnx")])
    capsys.readouterr()
    assert main(["quantize", str(d / "a.onnx"), "--calib", str(d / "calib.npy"), "-o", str(d / "b.eb")]) == 0
    assert "already quantized" in capsys.readouterr().out
    np.testing.assert_array_equal(eb.load(d / "b.eb")(x), _ort_run(d / "a.onnx", {"x": x}))


def test_bench_onnx_prints_both_and_the_speed_up(resnet, capsys):
    model, d, _ = resnet
    assert main(["bench", str(model), "--calib", str(d / "calib.npy"), "--batch", "1", "2", "--threads", "1",
                 "--seconds", "0.05"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "ORT fp32 p50 ms" in lines[0] and "speed-up" in lines[0]
    rows = [line.split() for line in lines[1:]]
    assert [r[:2] for r in rows] == [["1", "1"], ["2", "1"]]
    for r in rows:
        # the speed-up is printed with 2 decimals, the times with 3
        assert float(r[-1].rstrip("x")) == pytest.approx(float(r[-2]) / float(r[2]), rel=0.02, abs=0.006)


def test_bench_onnx_without_calibration_says_so(capsys):
    assert main(["bench", str(DATA / "mlp.onnx"), "--batch", "1", "--threads", "1", "--seconds", "0.02"]) == 0
    assert "random" in capsys.readouterr().out


def test_input_shape_option_parses():
    from eightbit.cli import _input_shape
    assert _input_shape("x=N,3,224,224") == ("x", (None, 3, 224, 224))
    with pytest.raises(Exception, match="name=d0"):
        _input_shape("x:3,4")


@pytest.mark.parametrize("flag, linear_kind", [("auto", "dynamic_linear"), ("off", "linear")])
def test_per_token_option(tmp_path, flag, linear_kind):
    """--per-token auto (the default) runs the token-sequence linears per token; off keeps them int8."""
    model = DATA / "transformer_ffn.onnx"
    x = np.load(DATA / "transformer_ffn.npz")["x"]
    np.save(tmp_path / "calib.npy", x)
    assert main(["quantize", str(model), "--calib", str(tmp_path / "calib.npy"), "--per-token", flag,
                 "-o", str(tmp_path / "m.eb")]) == 0
    ops = [s.op for s in eb.load(tmp_path / "m.eb").plan.steps]
    assert ops.count(linear_kind) == 2
