"""Quantization-aware training of the shipped digits CNN with eightbit.torch.

For each weight precision (8, 4, 2 bits, binary) with 8-bit activations, this script measures the
test accuracy of the float model, of post-training quantization (observers run on the
calibration images, no training) and of quantization-aware training (fine-tuned on the training
split), each run by the int8 engine, and checks that the engine and the QAT model agree bit for
bit. It also saves the 8-bit model as `.eb` and ONNX (QDQ) files, and shows transfer learning: a
CNN trained on digits 0-4 fine-tuned with QAT on digits 5-9.

    pip install "eightbit[torch]" scikit-learn && python examples/qat_digits.py [--epochs 6]

scikit-learn provides the training split (its bundled digits; nothing is downloaded).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import eightbit as eb
from eightbit.data import digits, digits_train
from eightbit.torch import QATConfig, WeightQuant, convert, freeze_observers, prepare_qat
from eightbit.torch.models import DigitsCNN


def calibrate(model, images, batch=64):
    """Post-training quantization: observers see the calibration images, nothing trains."""
    model.train()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            model(torch.from_numpy(images[i:i + batch]))
    return model


def finetune(model, images, labels, epochs, lr, seed=0, params=None):
    """Adam on the cross entropy with a cosine schedule; a QAT model's observers freeze for the
    last epoch."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters() if params is None else params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * ((len(images) + 31) // 32))
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    model.train()
    for epoch in range(epochs):
        if epoch == epochs - 1:
            freeze_observers(model)
        for idx in torch.randperm(len(images), generator=gen).split(32):
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model


def transfer(epochs):
    """Transfer learning: a float CNN trained on digits 0-4 gets a new head and is fine-tuned with
    QAT on digits 5-9 (features frozen, or every layer trained); int8 accuracy on 5-9's test images."""
    d = digits()
    train_x, train_y = digits_train()

    def split(x, y, lo):
        keep = (y >= lo) & (y < lo + 5)
        return x[keep], y[keep] - lo

    torch.manual_seed(0)
    base = finetune(DigitsCNN(), *split(train_x, train_y, 0), epochs, 3e-3)
    new_x, new_y = split(train_x, train_y, 5)
    test_x, test_y = split(d.test_images, d.test_labels, 5)
    for label, frozen in (("head only", True), ("all layers", False)):
        model = DigitsCNN()
        model.load_state_dict(base.state_dict())
        model.fc = nn.Linear(128, 5)
        qat = prepare_qat(model, (torch.from_numpy(new_x[:8]),))
        for name, p in qat.named_parameters():
            p.requires_grad_(not frozen or name.startswith("fc."))
        finetune(qat, new_x, new_y, epochs, 5e-3, params=[p for p in qat.parameters() if p.requires_grad])
        print(f"transfer 0-4 -> 5-9, {label:10}: int8 {100 * accuracy(convert(qat), test_x, test_y):.2f} %")


def accuracy(qm, images, labels) -> float:
    return float((qm(images).argmax(axis=1) == labels).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)     # layers this small train fastest on one thread
    d = digits()
    train_x, train_y = digits_train()
    example = (torch.from_numpy(d.calib_images[:8]),)
    float_model = DigitsCNN(d.weights).eval()
    with torch.no_grad():
        float_acc = float((float_model(torch.from_numpy(d.test_images)).argmax(1).numpy() == d.test_labels).mean())
    print(f"float32: {100 * float_acc:.2f} %  ({len(train_x)} training images, {len(d.test_labels)} test images)")
    print(f"{'weights':>8}  {'post-training':>13}  {'QAT':>7}  {'QAT - float':>11}  {'train s':>7}  engine = QAT")
    for label, spec, lr in (("8-bit", WeightQuant(bits=8), 1e-4), ("4-bit", WeightQuant(bits=4, scale="mse"), 5e-4),
                            ("2-bit", WeightQuant(bits=2, scale="mse"), 1e-3), ("binary", WeightQuant(bits=1), 1e-3)):
        config = QATConfig(weight=spec)
        ptq = convert(calibrate(prepare_qat(DigitsCNN(d.weights), example, config), d.calib_images))
        qat = calibrate(prepare_qat(DigitsCNN(d.weights), example, config), d.calib_images)
        t = time.perf_counter()
        finetune(qat, train_x, train_y, args.epochs, lr)
        seconds = time.perf_counter() - t
        qm = convert(qat)
        qat.eval()
        with torch.no_grad():
            same = np.array_equal(qat(torch.from_numpy(d.test_images)).numpy(), qm(d.test_images))
        a_ptq, a_qat = accuracy(ptq, d.test_images, d.test_labels), accuracy(qm, d.test_images, d.test_labels)
        print(f"{label:>8}  {100 * a_ptq:12.2f}%  {100 * a_qat:6.2f}%  {100 * (a_qat - float_acc):+10.2f}   "
              f"{seconds:7.1f}  {'bit for bit' if same else 'DIFFERENT'}")
        if label == "8-bit":
            path = os.path.join(tempfile.mkdtemp(), "digits_qat.eb")
            qm.save(path)
            eb.to_onnx(qm, path + ".onnx")
            print(f"          saved {path} ({os.path.getsize(path)} bytes) and {path}.onnx")
    transfer(args.epochs)


if __name__ == "__main__":
    main()
