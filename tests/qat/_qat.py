"""Shared by the QAT tests: small torch models with the structure of real ones, a few training
steps, and the check that the engine's codes equal the QAT model's on every quantized tensor."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eightbit.torch.models import DigitsCNN  # noqa: F401  (the tests' digits model)
from eightbit.torch.quantizers import ActQuant
from eightbit.torch.units import QGlobalAvgPool2d, Unit


class BasicBlock(nn.Module):
    """ResNet's basic block: conv-bn-relu, conv-bn, the shortcut (1x1 conv-bn when the shape
    changes), add, relu."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetTiny(nn.Module):
    """Stem, two basic blocks (the second downsamples), global average pool, linear."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class OpZoo(nn.Module):
    """Every other op with an int8 step: relu6, clip, ceil-mode max pool, average pool without the
    padding in the count, concatenation, a squeeze-excite gate (sigmoid, mul), hardswish, leaky
    relu, tanh, a mean over H and W, linear + relu."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 1)
        self.c = nn.Conv2d(16, 16, 3, padding=1, groups=2)
        self.se1 = nn.Conv2d(16, 4, 1)
        self.se2 = nn.Conv2d(4, 16, 1)
        self.d = nn.Conv2d(16, 12, 3, stride=2, padding=1)
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        h = torch.cat([F.relu6(self.a(x)), torch.clamp(self.b(x), -1.0, 2.0)], dim=1)
        h = F.max_pool2d(h, 3, stride=2, padding=1, ceil_mode=True)
        h = F.hardswish(self.c(h))
        g = torch.sigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(h, 1)))))
        h = h * g
        h = F.avg_pool2d(F.leaky_relu(h, 0.1), 3, stride=1, padding=1, count_include_pad=False)
        h = torch.tanh(self.d(h))
        return self.fc2(F.relu(self.fc1(h.mean((2, 3)))))


def train_steps(model, make_batch, steps=8, lr=0.01, optimizer=None):
    """A few SGD steps on a squared-error loss towards random targets (moves weights, BatchNorm
    statistics and observers)."""
    model.train()
    opt = optimizer or torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(steps):
        x = make_batch()
        out = model(x)
        loss = (out - torch.randn_like(out)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def qat_codes(model, x) -> dict:
    """{plan tensor name: codes (NHWC for 4-D maps)} of every quantized tensor of the QAT model
    on x, in eval mode: the plan's names are the fx nodes' (an ActQuant's is its input's + ":q",
    a graph output's quantized form + ":q")."""
    model.eval()
    modules = dict(model.named_modules())
    outputs = {a.name for n in model.graph.nodes if n.op == "output"
               for a in (n.args[0] if isinstance(n.args[0], (tuple, list)) else (n.args[0],))}
    names, values = {}, {}
    for node in model.graph.nodes:
        m = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(m, ActQuant):   # a float input's quantized form is "x:q"; a float step's "name"
            names[m] = node.args[0].name + (":q" if node.args[0].op == "placeholder" else "")
        elif isinstance(m, Unit) and (m.output_quant is not None or m.copies_codes):
            names[m] = node.name + (":q" if node.name in outputs else "")
    hooks = [m.register_forward_hook(lambda mod, args, out: values.__setitem__(mod, out.detach()))
             for m in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    codes = {}
    for m, name in names.items():
        scale, zp = m.qparams()
        c = (torch.round(values[m] / scale.detach()) + zp).numpy()
        codes[name] = c.transpose(0, 2, 3, 1) if c.ndim == 4 else c
        if isinstance(m, QGlobalAvgPool2d) and not m.keepdim:     # the pool's own [N, 1, 1, C] tensor
            codes[name.replace(":q", "") + "_pool"] = c.reshape(c.shape[0], 1, 1, -1)
    return codes


def assert_engine_codes_equal(model, qm, x) -> int:
    """Every quantized tensor of the engine's plan (run step by step with the current ISA's
    kernels) equals the QAT model's codes, and the whole-plan executor's outputs equal the QAT
    model's eval outputs bit for bit. Returns the number of tensors compared."""
    expected = qat_codes(model, x)
    feeds = {qm.input_names[0]: x.numpy()}
    got = qm.run_steps(feeds, return_all=True)
    compared = 0
    for name, arr in got.items():
        if arr.dtype in (np.uint8, np.int8):
            assert name in expected, f"plan tensor {name!r} has no QAT counterpart"
            mismatch = np.count_nonzero(arr.astype(np.int32) != expected[name].astype(np.int32))
            assert mismatch == 0, f"{name}: {mismatch} of {arr.size} codes differ"
            compared += 1
    with torch.no_grad():
        y = model(x).numpy()
    np.testing.assert_array_equal(qm(x.numpy()), y)
    return compared


def accuracy(logits, labels) -> float:
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())
