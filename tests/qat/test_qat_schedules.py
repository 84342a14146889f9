"""Gradual quantization (eightbit.torch.schedules): each schedule sets the grids it states at the
steps it states, in the orders it states, a grid changed mid-training still converts to an int8
model equal to the QAT model bit for bit, sensitivity reports map to layer names, and custom
callbacks can change quantization parameters while training."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

import eightbit as eb  # noqa: E402
from eightbit.accuracy.report import Sensitivity, SensitivityRow  # noqa: E402
from eightbit.data import digits, digits_train  # noqa: E402
from eightbit.numerics import choose_qparams  # noqa: E402
from eightbit.torch import QATConfig, WeightQuant, convert, layers, prepare_qat  # noqa: E402
from eightbit.torch.optim import QuantParamOptimizer  # noqa: E402
from eightbit.torch.schedules import (BitWidthSchedule, Callbacks, LayerwiseSchedule, QATCallback,  # noqa: E402
                                      StepRefinement, onnx_module_name, sensitivity_scores)

from _qat import DigitsCNN, ResNetTiny, accuracy, assert_engine_codes_equal  # noqa: E402

BATCH = 32
FOUR_BITS = QATConfig(weight=WeightQuant(bits=4))
NAMES = ("conv1", "conv2", "fc")


@pytest.fixture(scope="module")
def data():
    d = digits()
    x, y = digits_train()
    return {"x": torch.from_numpy(x), "y": torch.from_numpy(y), "test_x": torch.from_numpy(d.test_images),
            "test_y": d.test_labels, "weights": d.weights}


def cnn(data, config=None):
    torch.manual_seed(0)
    return prepare_qat(DigitsCNN(data["weights"]), (data["test_x"][:8],), config)


def qmax(model) -> dict:
    """{layer: the largest weight code of its grid now}."""
    return {name: unit.weight_quant.spec.qmax for name, unit in layers(model)}


def train(model, data, steps, callbacks, lr=1e-3, first=0) -> list:
    """``steps`` Adam steps on digits (batches from ``first``), ``callbacks.on_step`` before each;
    returns qmax(model) as each step saw it."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    seen = []
    for step in range(first, first + steps):
        callbacks.on_step(model, step)
        seen.append(qmax(model))
        x, y = (data[k][step * BATCH % 1024:][:BATCH] for k in ("x", "y"))
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return seen


def assert_bit_exact(model, data) -> float:
    """The converted model equals the QAT eval forward bit for bit; returns its test accuracy."""
    qm = convert(model)
    assert assert_engine_codes_equal(model, qm, data["test_x"]) == 7
    return accuracy(qm(data["test_x"].numpy()), data["test_y"])


def weight_codes(unit) -> torch.Tensor:
    return unit.quantized_weights()[0]


# ------------------------------------------------------------------------------ bit widths

def test_bitwidth_schedule_lowers_precision_at_its_milestones(data):
    model = cnn(data)
    seen = train(model, data, 12, BitWidthSchedule({0: 8, 4: 6, 8: 4}))
    assert [s["conv2"] for s in seen] == [127] * 4 + [31] * 4 + [7] * 4
    assert all(len(set(s.values())) == 1 for s in seen)                    # all layers together
    for _, unit in layers(model):
        assert unit.weight_quant.spec == WeightQuant(bits=4)
        codes = weight_codes(unit)
        assert codes.abs().max() == 7 and torch.equal(codes, codes.round())   # [-7, 7], the max reached
    assert assert_bit_exact(model, data) >= 0.95


def test_bitwidth_schedule_on_named_layers_changes_nothing_twice(data):
    model = cnn(data, QATConfig(weight=WeightQuant(learnable=True)))
    schedule = BitWidthSchedule({2: 6, 5: 2}, layers=["conv2"])
    train(model, data, 3, schedule)                        # steps 0-2: conv2 at 6 bits from step 2
    assert qmax(model) == {"conv1": 127, "conv2": 31, "fc": 127}
    learned = model.conv2.weight_quant.learned_scale.detach().clone()
    schedule.on_step(model, 4)                             # same grid: the learned scale is kept
    assert bool(model.conv2.weight_quant.scale_set)
    assert torch.equal(model.conv2.weight_quant.learned_scale, learned)
    schedule.on_step(model, 5)                             # 2 bits: ternary, the scale restarts
    assert qmax(model)["conv2"] == 1 and not bool(model.conv2.weight_quant.scale_set)
    assert schedule.bits_at(1) is None and schedule.bits_at(100) == 2
    with pytest.raises(ValueError, match="conv9"):
        BitWidthSchedule({0: 4}, layers=["conv9"]).on_step(model, 0)
    with pytest.raises(ValueError, match="bits"):
        BitWidthSchedule({0: 12})


# ------------------------------------------------------------------------------ layer by layer

LOWERED = {   # order -> the layers in the order they reach 4 bits
    "first_last": ["fc", "conv2", "conv1"],
    "first_first": ["conv1", "conv2", "fc"],
    ("conv2", "conv1", "fc"): ["conv2", "conv1", "fc"],
    (("conv1", 0.30), ("conv2", 0.01), ("fc", 0.05)): ["conv2", "fc", "conv1"],     # least sensitive first
    (("conv1", 0.0), ("fc", 0.0)): ["fc", "conv1"],                # ties: first layers last; conv2 unscheduled
}


def as_order(key):
    if isinstance(key, str):
        return key
    return dict(key) if isinstance(key[0], tuple) else list(key)


@pytest.mark.parametrize("key", list(LOWERED), ids=lambda k: str(k)[:30])
def test_layerwise_schedule_lowers_layers_in_the_stated_order(key, data):
    model = cnn(data, FOUR_BITS)
    schedule = LayerwiseSchedule(as_order(key), start=1, every=2)
    order = LOWERED[key]
    assert schedule.ranking(model) == order
    for step in range(8):
        schedule.on_step(model, step)
        done = order[:max(0, (step - 1) // 2 + 1)]          # turns at steps 1, 3, 5
        want = {n: 7 if n in done or n not in order else 127 for n in NAMES}
        assert qmax(model) == want, f"step {step}"


def test_layerwise_schedule_with_mixed_precision_converts_bit_exact(data):
    model = cnn(data, FOUR_BITS)
    seen = train(model, data, 6, Callbacks([LayerwiseSchedule("first_last", every=3)]))
    assert seen[0] == {"conv1": 127, "conv2": 127, "fc": 7} and seen[-1] == {"conv1": 127, "conv2": 7, "fc": 7}
    assert weight_codes(model.conv1).abs().max() == 127 and weight_codes(model.fc).abs().max() == 7
    assert assert_bit_exact(model, data) >= 0.95


def test_layerwise_schedule_rejects_unknown_layers_and_orders(data):
    model = cnn(data, FOUR_BITS)
    with pytest.raises(ValueError, match="conv3"):
        LayerwiseSchedule(["conv1", "conv3"], every=1).on_step(model, 0)
    with pytest.raises(ValueError, match="order"):
        LayerwiseSchedule("random", every=1)


# ------------------------------------------------------------------------------ sensitivity

def onnx_graph(model, x):
    """eightbit's Graph of the float model through the TorchScript ONNX exporter (module scopes
    in the node names)."""
    pytest.importorskip("onnx")
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # the legacy exporter's deprecation notice
        torch.onnx.export(model.eval(), (x,), f, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    return eb.from_onnx(f.getvalue())


def test_sensitivity_report_orders_the_layers(data):
    graph = onnx_graph(DigitsCNN(data["weights"]), data["test_x"][:1])
    report = eb.sensitivity(graph, [data["test_x"][:128].numpy()], data["test_x"].numpy())   # SQNR drops
    model = cnn(data, FOUR_BITS)
    scores = sensitivity_scores(report, model)
    rows = {r.node: r.relative_drop for r in report.nodes}
    assert scores == {"conv1": rows["/conv1/Conv"], "conv2": rows["/conv2/Conv"], "fc": rows["/fc/Gemm"]}
    assert LayerwiseSchedule(report, every=1).ranking(model) == sorted(NAMES[::-1], key=scores.__getitem__)


def test_onnx_scope_names_map_to_nested_modules():
    torch.manual_seed(0)
    model = ResNetTiny()
    graph = onnx_graph(model, torch.randn(1, 3, 8, 8))
    report = Sensitivity("accuracy", [SensitivityRow(n.name, n.op, 1.0, 1.0, 0.0, i / 10)
                                      for i, n in enumerate(graph.nodes)])
    qat = prepare_qat(model, (torch.randn(2, 3, 8, 8),))
    scores = sensitivity_scores(report, qat)
    assert list(scores) == [name for name, _ in layers(qat)]   # every layer found, BatchNorm folded
    assert "layer2.shortcut.0" in scores and "stem.0" in scores
    assert onnx_module_name("/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"       # torchvision-style scope
    assert onnx_module_name("/fc/Gemm") == "fc" and onnx_module_name("/Relu") == ""


# ------------------------------------------------------------------------------ step refinement

def test_step_refinement_goes_from_a_coarse_grid_to_the_target(data):
    model = cnn(data, FOUR_BITS)
    opt = QuantParamOptimizer(model, torch.optim.Adam, lr=2e-3, callbacks=StepRefinement(every=8))
    model.train()
    seen = []
    for step in range(24):
        seen.append(qmax(model)["fc"])
        if step == 0:
            assert model.conv2.weight_quant.spec == WeightQuant(bits=4, levels=3, scale="mse")
        x, y = data["x"][step * BATCH:][:BATCH], data["y"][step * BATCH:][:BATCH]
        loss = F.cross_entropy(model(x), y)
        if step == 0:                                      # ternary codes, and the mse step uses them
            codes = weight_codes(model.conv2)
            assert set(codes.unique().tolist()) == {-1.0, 0.0, 1.0} and (codes != 0).float().mean() > 0.3
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert seen == [1] * 8 + [3] * 8 + [7] * 8                   # 3 -> 7 -> 15 levels
    assert all(u.weight_quant.spec == WeightQuant(bits=4) for _, u in layers(model))   # exactly the target
    assert assert_bit_exact(model, data) >= 0.95


def test_step_refinement_levels_up_to_8_bits_and_from_a_given_start(data):
    model = cnn(data)
    schedule = StepRefinement(every=10, start=5, layers=["fc"])
    got = []
    for step in (0, 4, 5, 14, 15, 25, 35, 45, 55, 65, 1000):
        schedule.on_step(model, step)
        got.append(qmax(model)["fc"])
    assert got == [1, 1, 3, 3, 7, 15, 31, 63, 127, 127, 127]
    assert model.fc.weight_quant.spec == WeightQuant() and qmax(model)["conv1"] == 127
    with pytest.raises(ValueError, match="levels"):
        StepRefinement(every=1, start_levels=4)
    with pytest.raises(ValueError, match="start_levels"):
        StepRefinement(every=1, start_levels=2)


# ------------------------------------------------------------------------------ custom callbacks

class FixOutputRange(QATCallback):
    """Fixes a layer's output range by hand from epoch ``epoch`` on: the range set, the
    observer frozen (the scale then stays, whatever the data do)."""

    def __init__(self, layer: str, lo: float, hi: float, epoch: int):
        self.layer, self.lo, self.hi, self.epoch = layer, lo, hi, epoch

    def on_epoch(self, model, epoch):
        if epoch == self.epoch:
            quant = getattr(model, self.layer).output_quant
            quant.set_range(self.lo, self.hi)
            quant.freeze()


def test_custom_callback_changes_quantization_parameters_while_training(data):
    model = cnn(data, FOUR_BITS)
    callbacks = Callbacks([FixOutputRange("fc", -12.0, 12.0, epoch=1), BitWidthSchedule({0: 8, 4: 4})])
    scales = []
    for epoch in range(3):
        callbacks.on_epoch(model, epoch)
        train(model, data, 4, callbacks, first=4 * epoch)
        scales.append((float(model.fc.output_quant.scale), float(model.conv2.output_quant.scale)))
    want_scale, want_zp = choose_qparams(np.float32(-12.0), np.float32(12.0), np.dtype(np.uint8))
    assert scales[1][0] == scales[2][0] == np.float32(want_scale) != scales[0][0]     # fixed from epoch 1
    assert scales[1][1] != scales[2][1]                                             # others still observe
    assert model.fc.output_quant.numpy_qparams() == (np.float32(want_scale), np.uint8(want_zp))
    assert assert_bit_exact(model, data) >= 0.9
