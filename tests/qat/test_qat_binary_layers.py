"""XNOR layers in QAT (WeightQuant(bits=1, binary_inputs=True)): binary weights and binarised inputs
against trained per-channel thresholds; convert turns them into the engine's binary_conv /
binary_linear steps, whose codes equal the QAT model's eval forward on every quantized tensor, on
every ISA; trained on digits, a binary hidden layer keeps most of the float accuracy."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from eightbit.torch import QATConfig, WeightQuant, convert, prepare_qat  # noqa: E402
from _qat import ResNetTiny, assert_engine_codes_equal, train_steps  # noqa: E402

XNOR = WeightQuant(bits=1, binary_inputs=True)


def _resnet_config():
    """Stem and classifier int8, the blocks' convs XNOR (the downsample 1x1 too)."""
    model = ResNetTiny()
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and not n.startswith("stem")]
    return QATConfig(layers={n: XNOR for n in convs})


def test_xnor_resnet_block_codes_equal_engine_on_every_isa(isa):
    torch.manual_seed(0)
    shape = (4, 3, 16, 16)
    model = prepare_qat(ResNetTiny(), (torch.randn(*shape),), _resnet_config())
    train_steps(model, lambda: torch.randn(*shape), steps=6)
    qm = convert(model)
    ops = [s.op for s in qm.plan.steps]
    assert ops.count("binary_conv") >= 4 and ops.count("conv") >= 1 and "float" not in ops
    torch.manual_seed(1)
    assert assert_engine_codes_equal(model, qm, torch.randn(*shape) * 2) >= 10


class _Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(64, 128), nn.Linear(128, 128), nn.Linear(128, 10)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def test_thresholds_start_at_the_first_batch_means_and_learn():
    torch.manual_seed(0)
    model = prepare_qat(_Mlp(), (torch.randn(8, 64),), QATConfig(layers={"fc2": XNOR}))
    unit = next(m for m in model.modules() if getattr(m, "binary_inputs", False))
    assert not bool(unit.threshold_initialized)
    model.train()
    x = torch.randn(32, 64)
    model(x)
    assert bool(unit.threshold_initialized)
    before = unit.threshold.detach().clone()
    assert torch.all(before > 0)             # a ReLU's channel means: positive, unlike the plain sign's 0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(x), torch.randint(0, 10, (32,)))
    loss.backward()
    assert unit.threshold.grad is not None and torch.any(unit.threshold.grad != 0)
    opt.step()
    assert not torch.equal(unit.threshold.detach(), before)


def test_binary_inputs_need_binary_weights():
    with pytest.raises(ValueError, match="binary_inputs"):
        WeightQuant(bits=4, binary_inputs=True)


def test_xnor_digits_accuracy():
    """A digits MLP with its hidden layer XNOR, trained with QAT: within a few points of float;
    the converted engine model gives the QAT model's predictions."""
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    X = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(X), generator=g)
    tr, te = idx[:1300], idx[1300:]
    torch.manual_seed(0)
    model = prepare_qat(_Mlp(), (X[:8],), QATConfig(layers={"fc2": XNOR}))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(400):
        b = tr[torch.randint(0, len(tr), (64,), generator=g)]
        opt.zero_grad()
        nn.functional.cross_entropy(model(X[b]), y[b]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        qat_pred = model(X[te]).argmax(1)
    acc = float((qat_pred == y[te]).float().mean())
    qm = convert(model)
    assert [s.op for s in qm.plan.steps].count("binary_linear") == 1
    engine_pred = torch.tensor(qm(X[te].numpy()).argmax(1))
    assert float((engine_pred == qat_pred).float().mean()) == 1.0
    print(f"XNOR hidden layer, QAT on digits: {100 * acc:.1f} %")
    assert acc > 0.9
