"""The shipped digits CNN (eightbit.data.digits) as a torch module, for fine-tuning with QAT."""
from __future__ import annotations

from . import _torch  # noqa: F401
import torch
import torch.nn.functional as F
from torch import nn


class DigitsCNN(nn.Module):
    """conv 3x3 (16) -> relu -> max pool 2 -> conv 3x3 (32) -> relu -> max pool 2 -> flatten ->
    linear 128 -> 10, on [N, 1, 8, 8] images (pixels / 16). ``weights``: eightbit.data.digits()
    .weights (the trained float model), or None for a fresh one."""

    def __init__(self, weights: dict | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(128, 10)
        if weights is not None:
            with torch.no_grad():
                for name in ("conv1", "conv2", "fc"):
                    getattr(self, name).weight.copy_(torch.from_numpy(weights[f"cnn_{name}_w"]))
                    getattr(self, name).bias.copy_(torch.from_numpy(weights[f"cnn_{name}_b"]))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


def digits_cnn(trained: bool = True) -> DigitsCNN:
    """The digits CNN with its shipped float weights (``trained=False``: freshly initialised)."""
    from ..data import digits
    return DigitsCNN(digits().weights if trained else None)
