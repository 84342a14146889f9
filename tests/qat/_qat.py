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


class TorchvisionBasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock as written there: one ReLU module called twice, ``out += identity``."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision's resnet18 layout (7x7 stem, max pool, 4 stages of 2 basic blocks, average
    pool, fc), widths divided by ``shrink`` to keep tests fast."""

    def __init__(self, classes=10, shrink=4):
        super().__init__()
        w = [64 // shrink, 128 // shrink, 256 // shrink, 512 // shrink]
        self.conv1 = nn.Conv2d(3, w[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, stages = w[0], []
        for i, c in enumerate(w):
            stages.append(nn.Sequential(TorchvisionBasicBlock(cin, c, 1 if i == 0 else 2), TorchvisionBasicBlock(c, c)))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(w[3], classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 project, residual add."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Tiny(nn.Module):
    """MobileNetV2's structure at a small width, with a MobileNetV3-style squeeze-excite head
    (hardswish, hardsigmoid gate) and dropout before the classifier."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True),
            InvertedResidual(16, 16, 1, 1), InvertedResidual(16, 24, 2, 6), InvertedResidual(24, 24, 1, 6),
            nn.Conv2d(24, 64, 1, bias=False), nn.BatchNorm2d(64), nn.Hardswish())
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(64, 16, 1), nn.ReLU(), nn.Conv2d(16, 64, 1),
                                nn.Hardsigmoid())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, classes))

    def forward(self, x):
        x = self.features(x)
        x = x * self.se(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
