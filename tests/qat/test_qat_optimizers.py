"""QAT with every torch.optim optimizer the issue names, and eightbit.torch.optim: the learned
scales' own parameter group (its learning rate is used: the scales move with it and stay put
without it), observers and BatchNorm statistics frozen at the configured optimizer step, the
state_dict round trip and learning-rate schedulers.

The model is the shipped digits CNN (98.3% on the test split in float) prepared with 4-bit
weights: 97.8% before QAT, so one epoch of QAT has something to recover."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from eightbit.data import digits, digits_train  # noqa: E402
from eightbit.torch import ActivationQuant, QATConfig, WeightQuant, convert, layers, prepare_qat  # noqa: E402
from eightbit.torch.optim import QuantParamOptimizer, param_groups, scale_parameters  # noqa: E402
from eightbit.torch.quantizers import ActQuant  # noqa: E402
from eightbit.torch.units import QConv2d  # noqa: E402

from _qat import DigitsCNN, ResNetTiny, accuracy, assert_engine_codes_equal  # noqa: E402

TRAIN_SAMPLES, BATCH = 1024, 32
ACCURACY_FLOOR = 0.97          # int8 model on the 360 test digits after one epoch
FOUR_BITS = QATConfig(weight=WeightQuant(bits=4))
LSQ = QATConfig(weight=WeightQuant(bits=4, learnable=True), activation=ActivationQuant(learnable=True))

# learning rates for one epoch from the trained CNN (Adadelta's 1.0 is its usual setting)
OPTIMIZERS = {
    "sgd": (torch.optim.SGD, dict(lr=0.05)),
    "sgd_momentum": (torch.optim.SGD, dict(lr=0.005, momentum=0.9)),
    "adam": (torch.optim.Adam, dict(lr=1e-3)),
    "rmsprop": (torch.optim.RMSprop, dict(lr=5e-4)),
    "adagrad": (torch.optim.Adagrad, dict(lr=1e-2)),
    "adamax": (torch.optim.Adamax, dict(lr=2e-3)),
    "adadelta": (torch.optim.Adadelta, dict(lr=1.0)),
}


@pytest.fixture(scope="module")
def data():
    d = digits()
    x, y = digits_train()
    return {"x": torch.from_numpy(x[:TRAIN_SAMPLES]), "y": torch.from_numpy(y[:TRAIN_SAMPLES]),
            "test_x": torch.from_numpy(d.test_images), "test_y": d.test_labels, "weights": d.weights}


def prepared_cnn(data, config):
    torch.manual_seed(0)
    return prepare_qat(DigitsCNN(data["weights"]), (data["test_x"][:8],), config)


def train_epoch(model, opt, data) -> None:
    model.train()
    order = torch.randperm(len(data["x"]))
    for i in range(0, len(order), BATCH):
        idx = order[i:i + BATCH]
        loss = F.cross_entropy(model(data["x"][idx]), data["y"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def eval_loss(model, data) -> float:
    """Cross-entropy on the whole training subset, in eval mode (the int8 model's forward)."""
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(data["x"]), data["y"]))


def calibrate(model, data) -> None:
    """One training-mode pass without gradients: the observers see the data once."""
    model.train()
    with torch.no_grad():
        model(data["x"])


def converted_accuracy(model, data) -> float:
    """The int8 model's test accuracy, after checking it equals the QAT eval forward bit for bit."""
    qm = convert(model)
    assert assert_engine_codes_equal(model, qm, data["test_x"]) == 7   # input, 3 layers, 2 pools, flatten
    return accuracy(qm(data["test_x"].numpy()), data["test_y"])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_trains_to_a_bit_exact_int8_model(name, data):
    model = prepared_cnn(data, FOUR_BITS)
    calibrate(model, data)
    before = eval_loss(model, data)
    cls, options = OPTIMIZERS[name]
    train_epoch(model, cls(model.parameters(), **options), data)
    after = eval_loss(model, data)
    assert after < 0.5 * before, f"{name}: training loss {before:.4f} -> {after:.4f}"
    assert converted_accuracy(model, data) >= ACCURACY_FLOOR


def initial_scales(model) -> list:
    """What the learned scales start from: each layer's rule on its weights, each activation's
    first-batch scale (the ActQuant's ``scale`` buffer keeps it)."""
    out = [u.weight_quant.rule_scale(u.float_weights()[0]) for _, u in layers(model)]
    return out + [m.scale.clone() for m in model.modules() if isinstance(m, ActQuant)]


def learned_scales(model) -> list:
    return [u.weight_quant.learned_scale.detach().clone() for _, u in layers(model)] + \
        [m.learned_scale.detach().clone() for m in model.modules() if isinstance(m, ActQuant)]


def test_param_groups_give_scales_their_own_rate_and_no_decay(data):
    model = prepared_cnn(data, LSQ)
    scales = scale_parameters(model)
    assert len(scales) == 3 + 4            # 3 layers' weight scales; the input's and 3 outputs' scales
    weights, scale_group = param_groups(model, lr=1e-3, scale_lr=1e-4, weight_decay=5e-4)
    assert (weights["name"], weights["lr"], weights["weight_decay"]) == ("weights", 1e-3, 5e-4)
    assert (scale_group["name"], scale_group["lr"], scale_group["weight_decay"]) == ("scales", 1e-4, 0.0)
    assert {id(p) for p in scale_group["params"]} == {id(p) for p in scales}
    assert len(weights["params"]) + len(scales) == len(list(model.parameters()))
    opt = torch.optim.AdamW(param_groups(model, lr=1e-3, scale_lr=1e-4))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]       # AdamW's default kept
    assert len(param_groups(prepared_cnn(data, FOUR_BITS), lr=0.1)) == 1       # nothing learned: one group


@pytest.mark.parametrize("scale_lr", [0.0, 1e-3])
def test_lsq_scales_learn_at_their_own_rate(scale_lr, data):
    model = prepared_cnn(data, LSQ)
    start = initial_scales(model)[:3]         # the weights' rule before training
    opt = QuantParamOptimizer(model, torch.optim.Adam, lr=1e-3, scale_lr=scale_lr)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, scale_lr]
    calibrate(model, data)           # not a step: sets the activation scales from the data
    before = eval_loss(model, data)
    train_epoch(model, opt, data)
    assert eval_loss(model, data) < 0.5 * before
    reference = start + initial_scales(model)[3:]
    for learned, initial in zip(learned_scales(model), reference):
        moved = float((learned != initial).float().mean())
        assert moved == 0.0 if scale_lr == 0 else moved > 0.9, f"{moved:.0%} of a scale's values moved"
    assert converted_accuracy(model, data) >= ACCURACY_FLOOR


def test_observers_and_batchnorm_freeze_at_the_configured_step():
    torch.manual_seed(0)
    model = prepare_qat(ResNetTiny(), (torch.randn(2, 3, 8, 8),))
    opt = QuantParamOptimizer(model, torch.optim.SGD, lr=0.01, momentum=0.9,
                              freeze_observers_at=3, freeze_bn_at=5)
    observers = [m for m in model.modules() if isinstance(m, ActQuant)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert observers and len(bns) == 6

    def snapshot():
        return ([torch.stack([o.min_val, o.max_val, o.scale, o.zero_point]) for o in observers],
                [torch.cat([b.running_mean, b.running_var]) for b in bns])

    history = [snapshot()]
    model.train()
    for _ in range(8):
        out = model(torch.randn(8, 3, 8, 8))
        loss = (out - torch.randn_like(out)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(snapshot())

    def same(a, b, part):
        return all(torch.equal(x, y) for x, y in zip(history[a][part], history[b][part]))

    assert opt.steps == 8 and all(int(o.steps) == 3 for o in observers)       # 3 batches observed
    assert not same(1, 3, 0) and all(same(3, k, 0) for k in range(4, 9))
    assert not same(3, 5, 1) and all(same(5, k, 1) for k in range(6, 9))
    assert all(bool(u.bn_frozen) for _, u in layers(model) if isinstance(u, QConv2d))


def test_state_dict_round_trip_and_lr_scheduler(data):
    model = prepared_cnn(data, LSQ)
    opt = QuantParamOptimizer(model, torch.optim.Adam, lr=1e-3, scale_lr=1e-4, freeze_observers_at=100)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    model.train()
    for i in range(3):
        loss = F.cross_entropy(model(data["x"][i * BATCH:(i + 1) * BATCH]), data["y"][i * BATCH:(i + 1) * BATCH])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == [1e-3 / 8, 1e-4 / 8]          # both groups, ratio kept
    saved = opt.state_dict()
    assert saved["quant_steps"] == 3 and len(saved["param_groups"]) == 2

    fresh = QuantParamOptimizer(prepared_cnn(data, LSQ), torch.optim.Adam, lr=1.0, scale_lr=1.0)
    fresh.load_state_dict(saved)
    assert fresh.steps == 3 and fresh.param_groups is fresh.optimizer.param_groups
    assert [g["lr"] for g in fresh.param_groups] == [1e-3 / 8, 1e-4 / 8]
    a, b = opt.state_dict()["state"], fresh.state_dict()["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k]["exp_avg"], b[k]["exp_avg"]) for k in a)


def test_wraps_a_built_optimizer_and_rejects_options_for_it(data):
    model = prepared_cnn(data, LSQ)
    inner = torch.optim.SGD(param_groups(model, lr=0.1, scale_lr=0.01), momentum=0.9)
    opt = QuantParamOptimizer(model, inner, freeze_observers_at=0)
    assert opt.optimizer is inner and opt.param_groups is inner.param_groups
    assert all(not bool(m.observing) for m in model.modules() if isinstance(m, ActQuant))   # frozen at 0
    with pytest.raises(TypeError, match="lr"):
        QuantParamOptimizer(model, inner, lr=0.1)
    with pytest.raises(TypeError, match="optimizer"):
        QuantParamOptimizer(model, "adam", lr=0.1)
