"""Transfer learning with QAT on the 8x8 digits: a float CNN pretrained on digits 0-4 is fine-tuned
with quantization-aware training on digits 5-9 (a new head; the features frozen or trained), and
its int8 engine model classifies them; and the QAT targets on the shipped CNN hold (int8
within 0.5 points of float; 4-bit weights recover to within 1 point where post-training loses more)."""
from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from eightbit.data import digits, digits_train  # noqa: E402
from eightbit.torch import QATConfig, WeightQuant, convert, freeze_observers, prepare_qat  # noqa: E402
from _qat import DigitsCNN, accuracy  # noqa: E402

pytest.importorskip("sklearn")


def _fit(model, x, y, epochs, lr, seed=0, params=None):
    """Adam on the cross entropy, batches of 32, a fixed shuffle."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params if params is not None else model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(32):
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def _classes(x, y, lo, hi):
    keep = (y >= lo) & (y <= hi)
    return x[keep], y[keep] - lo


@functools.lru_cache(maxsize=None)
def _pretrained_on_0_to_4():
    torch.manual_seed(0)
    x, y = _classes(*digits_train(), 0, 4)
    model = _fit(DigitsCNN(), x, y, epochs=8, lr=3e-3)
    model.fc = nn.Linear(128, 10)       # re-headed below
    return model.state_dict()


def _transfer_model(pretrained: bool):
    """The CNN with the features pretrained on digits 0-4 (or freshly initialised) and a new head."""
    torch.manual_seed(1)
    model = DigitsCNN()
    if pretrained:
        model.load_state_dict(_pretrained_on_0_to_4())
    model.fc = nn.Linear(128, 5)        # the new task: digits 5-9
    return model


def _qat_on_5_to_9(model, epochs, lr, freeze_features=False):
    """QAT on digits 5-9 (all layers, or the head only); (int8 test accuracy, QAT model, int8 model,
    test images)."""
    x, y = _classes(*digits_train(), 5, 9)
    qat = prepare_qat(model, (torch.from_numpy(x[:8]),))
    params = None
    if freeze_features:
        for name, p in qat.named_parameters():
            p.requires_grad_(name.startswith("fc."))
        params = [p for p in qat.parameters() if p.requires_grad]
    _fit(qat, x, y, epochs, lr, seed=2, params=params)
    qm = convert(qat)
    d = digits()
    tx, ty = _classes(d.test_images, d.test_labels, 5, 9)
    return accuracy(qm(tx), ty), qat, qm, tx


def test_pretrained_features_transfer_to_new_classes():
    """With the features frozen, only the new head trains (with QAT on every layer): features
    pretrained on digits 0-4 serve digits 5-9 far better than random ones."""
    model = _transfer_model(pretrained=True)
    conv_before = model.conv1.weight.detach().clone()
    transfer, qat, qm, tx = _qat_on_5_to_9(model, epochs=4, lr=5e-3, freeze_features=True)
    random_features, *_ = _qat_on_5_to_9(_transfer_model(pretrained=False), epochs=4, lr=5e-3, freeze_features=True)
    assert torch.equal(qat.conv1.layer.weight, conv_before)
    assert transfer >= 0.8 and transfer > random_features + 0.04, (transfer, random_features)
    qat.eval()
    with torch.no_grad():
        np.testing.assert_array_equal(qat(torch.from_numpy(tx)).numpy(), qm(tx))


def test_fine_tuning_every_layer_on_the_new_classes():
    acc, *_ = _qat_on_5_to_9(_transfer_model(pretrained=True), epochs=4, lr=5e-3)
    assert acc >= 0.9, acc


def _shipped_accuracy(config, lr, epochs):
    """(post-training, QAT) int8 accuracy of the shipped CNN on the test split."""
    d = digits()
    example = (torch.from_numpy(d.calib_images[:8]),)

    def calibrated():
        torch.manual_seed(0)
        model = prepare_qat(DigitsCNN(d.weights), example, config)
        model.train()
        with torch.no_grad():
            for i in range(0, len(d.calib_images), 64):
                model(torch.from_numpy(d.calib_images[i:i + 64]))
        return model

    ptq = accuracy(convert(calibrated())(d.test_images), d.test_labels)
    qat = calibrated()
    x, y = digits_train()
    _fit(qat, x, y, epochs - 1, lr)
    freeze_observers(qat)
    _fit(qat, x, y, 1, lr / 4, seed=1)
    return ptq, accuracy(convert(qat)(d.test_images), d.test_labels)


def test_qat_targets_on_the_shipped_cnn():
    d = digits()
    with torch.no_grad():
        float_acc = accuracy(DigitsCNN(d.weights)(torch.from_numpy(d.test_images)).numpy(), d.test_labels)
    _, int8 = _shipped_accuracy(QATConfig(), 1e-4, epochs=2)
    assert int8 >= float_acc - 0.005, (int8, float_acc)
    ptq4, qat4 = _shipped_accuracy(QATConfig(weight=WeightQuant(bits=4, scale="mse")), 5e-4, epochs=3)
    assert qat4 >= float_acc - 0.01, (qat4, float_acc)
    assert qat4 > ptq4, (qat4, ptq4)
