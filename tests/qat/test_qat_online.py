"""Online QAT (eightbit.torch.online): the digits CNN learns from a stream whose inputs drift (a
sensor's gain rising from 1 to 3 and its offset from 0 to 1), exporting an int8 model every
EVERY batches. The int8 model exported before the drift is accurate on the original digits and
useless on the drifted ones; the one exported at the end is accurate on the drifted digits,
because the input's activation range moved with the drift and the weights adapted."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from _qat import DigitsCNN, ResNetTiny, accuracy, assert_engine_codes_equal  # noqa: E402

from eightbit.data import digits, digits_train  # noqa: E402
from eightbit.torch import ActivationQuant, QATConfig, prepare_qat  # noqa: E402
from eightbit.torch.online import OnlineQAT  # noqa: E402
from eightbit.torch.units import QConv2d  # noqa: E402

BATCHES, EVERY, BATCH = 100, 20, 32
STABLE, RAMP = 20, 40          # no drift for 20 batches, a linear drift over 40, then held
FINAL_GAIN, FINAL_OFFSET = 3.0, 1.0


def drift(t: int) -> tuple:
    """(gain, offset) of the stream at batch t (0-based)."""
    p = min(1.0, max(0.0, (t - STABLE) / RAMP))
    return 1.0 + (FINAL_GAIN - 1.0) * p, FINAL_OFFSET * p


def drifting_stream(images, labels, batches: int, seed: int = 1):
    """Random training batches with the drift applied: (gain * x + offset, labels)."""
    g = torch.Generator().manual_seed(seed)
    for t in range(batches):
        idx = torch.randint(0, len(images), (BATCH,), generator=g)
        gain, offset = drift(t)
        yield images[idx] * gain + offset, labels[idx]


@pytest.fixture(scope="module")
def one_thread():
    """These models are tiny: one thread is fastest, and immune to a busy machine's other loads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    pytest.importorskip("sklearn")
    x, y = digits_train()
    return SimpleNamespace(x=torch.from_numpy(x), y=torch.from_numpy(y), digits=digits())


def digits_model(data, **activation):
    return prepare_qat(DigitsCNN(data.digits.weights), (data.x[:BATCH],),
                       QATConfig(activation=ActivationQuant(**activation)))


@pytest.fixture(scope="module")
def stream_run(data, one_thread):
    """The drifting stream, once; at each export: the batch count, the int8 model, the model's
    mode, the input's observed range, and the bit-exact comparison of the engine with the QAT
    eval forward on test digits under the drift of the moment."""
    model = digits_model(data, momentum=0.1)
    test_x = torch.from_numpy(data.digits.test_images[:64])
    exports = []

    def on_export(qm, batch):
        gain, offset = drift(batch - 1)
        exports.append({"batch": batch, "qm": qm, "training": model.training,
                        "range": (float(model.x_quant.min_val), float(model.x_quant.max_val)),
                        "compared": assert_engine_codes_equal(model, qm, test_x * gain + offset)})

    online = OnlineQAT(model, torch.optim.Adam(model.parameters(), lr=1e-3), F.cross_entropy,
                       export_every=EVERY, on_export=on_export)
    losses = online.run(drifting_stream(data.x, data.y, BATCHES))
    return SimpleNamespace(online=online, exports=exports, losses=losses)


def test_exports_every_k_batches(stream_run):
    online, exports = stream_run.online, stream_run.exports
    assert [e["batch"] for e in exports] == list(range(EVERY, BATCHES + 1, EVERY))
    assert online.batches == len(stream_run.losses) == BATCHES
    assert online.exports == len(exports) == BATCHES // EVERY
    assert online.int8_model is exports[-1]["qm"]
    assert online.last_loss == stream_run.losses[-1]
    assert all(e["training"] for e in exports)       # the export restored training mode


def test_each_export_equals_the_qat_eval_forward(stream_run):
    """Checked inside on_export, on the model as it was then: every quantized tensor of the plan."""
    assert [e["compared"] for e in stream_run.exports] == [7] * len(stream_run.exports)


def test_int8_model_follows_the_drift(stream_run, data):
    images, labels = data.digits.test_images, data.digits.test_labels
    drifted = images * FINAL_GAIN + FINAL_OFFSET
    early, late = stream_run.exports[0]["qm"], stream_run.exports[-1]["qm"]
    acc = {"early original": accuracy(early(images), labels), "early drifted": accuracy(early(drifted), labels),
           "late drifted": accuracy(late(drifted), labels)}
    print("\nint8 accuracy:", {k: round(v, 4) for k, v in acc.items()})
    assert acc["early original"] >= 0.95       # measured 0.983
    assert acc["early drifted"] <= 0.3         # measured 0.111: chance
    assert acc["late drifted"] >= 0.93         # measured 0.964


def test_activation_ranges_follow_the_drift(stream_run):
    """The input's range: [0, 1] (pixels / 16) before the drift, [1, 4] once it is held (lagging
    it by about 1 / momentum = 10 batches), rising in between."""
    ranges = [e["range"] for e in stream_run.exports]
    assert ranges[0] == pytest.approx((0.0, 1.0), abs=1e-6)
    assert ranges[-1] == pytest.approx((FINAL_OFFSET, FINAL_GAIN + FINAL_OFFSET), abs=0.05)
    lows, highs = zip(*ranges)
    assert list(highs) == sorted(highs) and highs[1] > highs[0] + 0.5
    assert lows[1] > 0.1


def test_export_leaves_training_untouched(data, one_thread):
    """Training with exports every 4 batches (and a callback that runs the model in eval mode)
    ends bit for bit where training without exports does."""
    def train(export_every):
        torch.manual_seed(0)
        model = digits_model(data, momentum=0.1)
        evaluate = lambda qm, batch: assert_engine_codes_equal(model, qm, data.x[:16])  # noqa: E731
        online = OnlineQAT(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), F.cross_entropy,
                           export_every=export_every, on_export=evaluate if export_every else None)
        online.run(drifting_stream(data.x, data.y, 100, seed=5), max_batches=12)
        return online

    with_exports, without = train(4), train(None)
    assert (with_exports.exports, without.exports, with_exports.batches) == (3, 0, 12)
    a, b = with_exports.model.state_dict(), without.model.state_dict()
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_freeze_bn_keeps_running_statistics(one_thread):
    """freeze_bn=True: BatchNorm stays folded with its running statistics while the stream trains
    the rest; without it, the running statistics follow the batches."""
    def run(freeze):
        torch.manual_seed(0)
        model = prepare_qat(ResNetTiny(), (torch.randn(2, 3, 8, 8),))
        stats = [t for m in model.modules() if isinstance(m, QConv2d) and m.bn is not None
                 for t in (m.bn.running_mean, m.bn.running_var)]
        start = [t.clone() for t in stats]
        online = OnlineQAT(model, torch.optim.SGD(model.parameters(), lr=0.01), F.cross_entropy, freeze_bn=freeze)
        stream = ((torch.randn(16, 3, 8, 8) * 3 + 2, torch.randint(0, 10, (16,))) for _ in range(3))
        online.run(stream)
        moved = [i for i, (t, t0) in enumerate(zip(stats, start)) if not torch.equal(t, t0)]
        return model, online, moved

    model, online, moved = run(True)
    assert moved == [] and all(bool(m.bn_frozen) for m in model.modules() if isinstance(m, QConv2d))
    x = torch.randn(8, 3, 8, 8) * 3 + 2
    assert assert_engine_codes_equal(model, online.export(), x) > 10
    _, _, moved = run(False)
    assert len(moved) == 12       # running mean and variance of the six BatchNorms


def test_warns_when_ranges_cannot_follow(data):
    optimizer = lambda m: torch.optim.SGD(m.parameters(), lr=0.01)  # noqa: E731
    model = digits_model(data, observer="minmax")
    with pytest.warns(UserWarning, match="minmax"):
        OnlineQAT(model, optimizer(model), F.cross_entropy)
    model = prepare_qat(DigitsCNN(), (data.x[:2],), QATConfig(freeze_observers_after=10))
    with pytest.warns(UserWarning, match="freeze_observers_after=10"):
        OnlineQAT(model, optimizer(model), F.cross_entropy)
    model = digits_model(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OnlineQAT(model, optimizer(model), F.cross_entropy)


def test_rejects_bad_arguments(data):
    model = digits_model(data)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(TypeError, match="prepare_qat"):
        OnlineQAT(DigitsCNN(), opt, F.cross_entropy)
    with pytest.raises(ValueError, match="export_every"):
        OnlineQAT(model, opt, F.cross_entropy, export_every=0)
    with pytest.raises(TypeError, match="on_export"):
        OnlineQAT(model, opt, F.cross_entropy, export_every=2, on_export=5)
