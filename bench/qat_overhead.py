"""Training-step cost of quantization-aware training (eightbit.torch) against float training of the
same model, in the same run: one optimizer step (forward, backward, Adam) per timing, one torch
thread, median over repeats.

    python bench/qat_overhead.py [--steps 30] [--cases digits,resnet,mlp]

Columns: float step time, QAT step with the default ``exact="eval"`` (fake quantization with
straight-through gradients; the exact engine arithmetic only in eval mode), QAT with
``exact=True`` (every training forward also computes the engine's integer result), and PyTorch's
own QAT (torch.ao ``prepare_qat_fx``, x86 qconfig: a reference point, not bit-exact with any
engine), each as a ratio to float; and the eval forward (exact) against the float model's.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from eightbit.torch import QATConfig, prepare_qat
from eightbit.torch.models import DigitsCNN


def _block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ResNetStyle(nn.Module):
    """Stem and three stages of conv-bn-relu pairs with residual adds (CIFAR-sized input)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.s1, self.s2, self.s3 = _block(32, 32, 1), _block(32, 64, 2), _block(64, 128, 2)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(self.s1(x) + x)
        x = self.s3(self.s2(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


CASES = {
    "digits": (DigitsCNN, (32, 1, 8, 8), 10),
    "resnet": (ResNetStyle, (32, 3, 32, 32), 10),
    "mlp": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                  nn.Linear(256, 10)), (128, 1, 28, 28), 10),
}


def _median_step(model, x, y, steps) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    model.train()
    times = []
    for i in range(steps + 3):
        t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _median_eval(model, x, steps) -> float:
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(steps + 3):
            t = time.perf_counter()
            model(x)
            if i >= 3:
                times.append(time.perf_counter() - t)
    return statistics.median(times)


def _torch_ao(model, x):
    """PyTorch's own QAT (torch.ao prepare_qat_fx, x86 default qconfig) of the model, or None."""
    try:
        import warnings
        from torch.ao.quantization import get_default_qat_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_qat_fx
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return prepare_qat_fx(model.train(), get_default_qat_qconfig_mapping("x86"), (x,))
    except Exception:   # noqa: BLE001 - torch.ao is deprecated and may be gone in a later torch
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, 1 thread, {platform.processor() or platform.machine()}")
    print(f"{'case':8} {'float step':>11} {'QAT step':>9} {'ratio':>6} {'exact=True':>11} {'ratio':>6} "
          f"{'torch.ao QAT':>12} {'ratio':>6} {'eval float':>11} {'eval QAT':>9} {'ratio':>6}")
    for name in args.cases.split(","):
        make, shape, classes = CASES[name]
        x, y = torch.randn(*shape), torch.randint(0, classes, (shape[0],))
        base = make()
        t_float = _median_step(base, x, y, args.steps)
        e_float = _median_eval(base, x, args.steps)
        qat = prepare_qat(make(), (x,))
        t_qat = _median_step(qat, x, y, args.steps)
        e_qat = _median_eval(qat, x, args.steps)
        exact = prepare_qat(make(), (x,), QATConfig(exact=True))
        t_exact = _median_step(exact, x, y, args.steps)
        ao = _torch_ao(make(), x)
        t_ao = _median_step(ao, x, y, args.steps) if ao is not None else float("nan")
        ms = lambda t: f"{1e3 * t:8.2f} ms"  # noqa: E731
        print(f"{name:8} {ms(t_float):>11} {ms(t_qat):>9} {t_qat / t_float:5.2f}x {ms(t_exact):>11} "
              f"{t_exact / t_float:5.2f}x {ms(t_ao):>12} {t_ao / t_float:5.2f}x "
              f"{ms(e_float):>11} {ms(e_qat):>9} {e_qat / e_float:5.2f}x")


if __name__ == "__main__":
    main()
