"""AdaRound (eightbit.torch.adaround): on the shipped digits CNN at 4 and 2 bits, learned rounding
gives a more accurate int8 model than nearest rounding at the same weight and activation scales,
and every layer's output (on held-out images) is closer to the float model's; the converted model
equals the QAT model bit for bit; codes move one step at most from nearest and stay on the grid;
BatchNorm-folded weights round consistently; bad arguments raise named errors."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import eightbit as eb  # noqa: E402
from eightbit.data import digits  # noqa: E402
from eightbit.torch import QATConfig, WeightQuant, convert, layers, prepare_qat  # noqa: E402
from eightbit.torch.adaround import LayerResult, adaround, adaround_quantize, calibrate_observers  # noqa: E402
from eightbit.torch.quantizers import ActQuant  # noqa: E402
from eightbit.torch.units import QConv2d  # noqa: E402
from _qat import DigitsCNN, ResNetTiny, accuracy, assert_engine_codes_equal, train_steps  # noqa: E402

ITERATIONS = 300          # per layer: enough to settle the rounding of this small model in about a second
CONFIGS = {"4bit": QATConfig(weight=WeightQuant(bits=4)),
           "2bit_mse": QATConfig(weight=WeightQuant(bits=2, scale="mse"))}
NAMES = ["conv1", "conv2", "fc"]


def _data():
    d = digits()
    return torch.from_numpy(d.calib_images), torch.from_numpy(d.test_images), d.test_labels


def _prepared(config):
    calib, _, _ = _data()
    return prepare_qat(DigitsCNN(digits().weights), (calib[:2],), config)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def run(request):
    """Round-to-nearest post-training quantization and AdaRound, from the same prepared model
    and the same calibration; their int8 models' test accuracies."""
    calib, test, labels = _data()
    nearest = _prepared(CONFIGS[request.param])
    calibrate_observers(nearest, calib)
    reported = []
    model = adaround(_prepared(CONFIGS[request.param]), calib, iterations=ITERATIONS, progress=reported.append)
    acc = {key: accuracy(convert(m)(test.numpy()), labels) for key, m in (("nearest", nearest), ("adaround", model))}
    print(f"\n{request.param}: test accuracy nearest {acc['nearest']:.4f}, AdaRound {acc['adaround']:.4f}")
    return {"name": request.param, "nearest": nearest.eval(), "model": model, "reported": reported, "acc": acc}


def _layer_outputs(model, images) -> dict:
    """{layer: its output (fused ReLU, before output quantization)} computed from the int8 codes
    and scales, on the input the quantized model gives the layer (the engine's values)."""
    inputs, units = {}, dict(layers(model))
    hooks = [u.register_forward_pre_hook(lambda m, args, n=n: inputs.__setitem__(n, args[0])) for n, u in units.items()]
    with torch.no_grad():
        model.eval()(images)
    for h in hooks:
        h.remove()
    out = {}
    for name, unit in units.items():
        codes, scale, bias = unit.quantized_weights()
        w = codes * scale.reshape((-1,) + (1,) * (codes.dim() - 1))
        y = F.conv2d(inputs[name], w, bias, padding=1) if isinstance(unit, QConv2d) else F.linear(inputs[name], w, bias)
        out[name] = F.relu(y) if unit.activation == "relu" else y
    return out


def _float_outputs(images) -> dict:
    """{layer: its output in the float DigitsCNN}: conv + ReLU, and the logits."""
    fm, out = DigitsCNN(digits().weights).eval(), {}
    hooks = [getattr(fm, n).register_forward_hook(lambda m, a, y, n=n: out.__setitem__(n, y)) for n in NAMES]
    with torch.no_grad():
        fm(images)
    for h in hooks:
        h.remove()
    return {n: (y if n == "fc" else F.relu(y)) for n, y in out.items()}


def _mse(model, images) -> dict:
    ref, got = _float_outputs(images), _layer_outputs(model, images)
    return {n: float((got[n] - ref[n]).pow(2).mean()) for n in NAMES}


def test_adaround_more_accurate_than_nearest(run):
    acc = run["acc"]
    assert acc["adaround"] >= acc["nearest"], acc
    if run["name"] == "2bit_mse":            # where rounding matters most: a large gain
        assert acc["adaround"] >= acc["nearest"] + 0.1, acc
    assert acc["adaround"] > 0.9, acc


def test_every_layer_reconstructs_better_than_nearest(run):
    _, test, _ = _data()
    near, ada = _mse(run["nearest"], test), _mse(run["model"], test)
    print(f"\n{run['name']}: held-out layer output MSE nearest / AdaRound: "
          + ", ".join(f"{n} {near[n]:.5f} / {ada[n]:.5f}" for n in NAMES))
    for n in NAMES:
        assert ada[n] < near[n], (n, near[n], ada[n])


def test_reported_results(run):
    """progress gets each layer's result in forward order, the same as model.eb_adaround; the
    reported calibration error is the error of the rounding the model now uses."""
    calib, _, _ = _data()
    reported = run["reported"]
    assert [r.name for r in reported] == NAMES and all(isinstance(r, LayerResult) for r in reported)
    assert run["model"].eb_adaround == {r.name: r for r in reported}
    measured = _mse(run["model"], calib)
    for r in reported:
        assert r.used and r.adaround < r.nearest and 0 < r.changed < r.weights, r
        assert r.adaround == pytest.approx(measured[r.name], rel=1e-4)


def test_same_activation_scales_as_nearest(run):
    """Observers calibrated by adaround are those of plain post-training calibration: the
    comparison with nearest rounding is at the same scales."""
    def qparams(m):
        return [(float(q.scale), float(q.zero_point)) for q in m.modules() if isinstance(q, ActQuant)]
    assert qparams(run["model"]) == qparams(run["nearest"])


def test_converted_model_equals_qat_model(run):
    _, test, _ = _data()
    qm = convert(run["model"])
    assert assert_engine_codes_equal(run["model"], qm, test[:64]) >= 5


def _check_codes(model, names) -> int:
    """Codes are floor(w / s) + rounding on the grid, one step at most from nearest; returns how
    many differ from nearest."""
    changed = 0
    for name, unit in layers(model):
        codes, scale, _ = unit.quantized_weights()
        w = unit.float_weights()[0].detach()
        ratio = w / scale.reshape((-1,) + (1,) * (w.dim() - 1))
        qmax = unit.weight_quant.spec.qmax
        assert codes.abs().max() <= qmax and torch.equal(codes, codes.round())
        rounding = unit.weight_quant.rounding
        if name not in names:
            assert rounding is None
            continue
        assert rounding.shape == w.shape and set(rounding.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(codes, torch.clamp(torch.floor(ratio) + rounding, -qmax, qmax))
        nearest = torch.clamp(torch.round(ratio), -qmax, qmax)
        assert (codes - nearest).abs().max() <= 1
        changed += int((codes != nearest).sum())
    return changed


def test_codes_one_step_from_nearest_and_weights_unchanged(run):
    assert _check_codes(run["model"], NAMES) > 0
    float_model = DigitsCNN(digits().weights)
    for name, unit in layers(run["model"]):
        assert torch.equal(unit.layer.weight, getattr(float_model, name).weight)


def test_batchnorm_folded_weights_and_layer_subset():
    """ResNet blocks: the folded conv + BatchNorm weights are rounded (their scale recomputed from
    them), observers already set by training are kept, only the named layers are rounded, and
    the engine equals the QAT model bit for bit; a one-shot iterator of (x, y) batches is read
    only up to max_samples."""
    torch.manual_seed(0)
    model = prepare_qat(ResNetTiny(), (torch.randn(2, 3, 8, 8),), QATConfig(weight=WeightQuant(bits=4)))
    train_steps(model, lambda: torch.randn(16, 3, 8, 8), steps=4)
    before = [float(q.scale) for q in model.modules() if isinstance(q, ActQuant)]
    names = ["layer1.conv1", "layer2.shortcut.0", "fc"]
    batches = iter([(torch.randn(16, 3, 8, 8), torch.zeros(16)) for _ in range(6)])
    adaround(model, batches, iterations=40, max_samples=32, layers=names)
    assert len(list(batches)) == 4
    assert [float(q.scale) for q in model.modules() if isinstance(q, ActQuant)] == before
    assert list(model.eb_adaround) == names and not model.training
    _check_codes(model, {n for n in names if model.eb_adaround[n].used})
    assert assert_engine_codes_equal(model, convert(model), torch.randn(4, 3, 8, 8)) > 8


def test_adaround_quantize_is_the_three_steps():
    calib, test, _ = _data()
    config = CONFIGS["4bit"]
    qm = adaround_quantize(DigitsCNN(digits().weights), (calib[:2],), calib, config, iterations=30)
    assert isinstance(qm, eb.QuantizedModel)
    expected = convert(adaround(_prepared(config), calib, iterations=30))
    np.testing.assert_array_equal(qm(test.numpy()), expected(test.numpy()))


@pytest.mark.parametrize("call, error, match", [
    (lambda m, c: adaround(DigitsCNN(), c), TypeError, "model"),
    (lambda m, c: adaround(m, c[:0]), ValueError, "calibration"),
    (lambda m, c: adaround(m, []), ValueError, "calibration"),
    (lambda m, c: adaround(m, "images"), TypeError, "calibration"),
    (lambda m, c: adaround(m, [(c[:4].tolist(),)]), TypeError, "calibration"),
    (lambda m, c: adaround(m, c, layers=["conv3"]), ValueError, "layers"),
    (lambda m, c: adaround(m, c, iterations=-1), ValueError, "iterations"),
    (lambda m, c: adaround(m, c, batch_size=0), ValueError, "batch_size"),
    (lambda m, c: adaround(m, c, beta=(20,)), ValueError, "beta"),
    (lambda m, c: adaround(m, c, lr=0), ValueError, "lr"),
    (lambda m, c: calibrate_observers(DigitsCNN(), c), TypeError, "model"),
])
def test_argument_errors(call, error, match):
    calib, _, _ = _data()
    with pytest.raises(error, match=match):
        call(_prepared(CONFIGS["4bit"]), calib)
