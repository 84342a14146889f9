"""Export the ONNX test models of tests/data/onnx/ from real PyTorch modules.

    pip install torch==2.13.0        # CPU build; not a dependency of eightbit
    python tools/export_torch_models.py [--out tests/data/onnx]

Each model is seeded, given weights scaled like a trained net (He-normal convs and linears,
random BatchNorm / LayerNorm affine parameters, BatchNorm running statistics accumulated over a
few batches in train mode), put in eval mode and exported with the TorchScript exporter
(``dynamo=False``: the dynamo exporter needs onnxscript) at opset 17, batch axis "N". Beside each
``<name>.onnx`` a ``<name>.npz`` holds ``x`` (an input batch) and ``y`` (torch's output for it), so
the tests compare against PyTorch without importing it.
"""
from __future__ import annotations

import argparse
import io
import math
import pathlib
import sys
import warnings

import numpy as np
import torch
from torch import nn

OPSET = 17
ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---- modules ------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock."""

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
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetBlock(nn.Module):
    """Stem conv 3->16 + BN + ReLU, BasicBlock 16->16, BasicBlock 16->32 stride 2, pool, fc -> 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def conv_bn(cin, cout, k, stride=1, groups=1):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 + BN + Hardswish, pointwise 1x1 + BN (MobileNetV3 without squeeze-excite)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.dw = nn.Sequential(*conv_bn(cin, cin, 3, stride, groups=cin), nn.Hardswish())
        self.pw = nn.Sequential(*conv_bn(cin, cout, 1))

    def forward(self, x):
        return self.pw(self.dw(x))


class InvertedResidual(nn.Module):
    """Expand 1x1 + BN + Hardswish, depthwise 3x3 + BN + Hardswish, project 1x1 + BN, + x."""

    def __init__(self, c, expand):
        super().__init__()
        self.block = nn.Sequential(*conv_bn(c, expand, 1), nn.Hardswish(),
                                   *conv_bn(expand, expand, 3, groups=expand), nn.Hardswish(),
                                   *conv_bn(expand, c, 1))

    def forward(self, x):
        return x + self.block(x)


class MobileNetBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 16, 3, 2), nn.Hardswish())
        self.blocks = nn.Sequential(DepthwiseSeparable(16, 24, 1), DepthwiseSeparable(24, 32, 2),
                                    InvertedResidual(32, 64))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.blocks(self.stem(x))), 1))


def make_mlp():
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


class TransformerFFN(nn.Module):
    """The feed-forward half of a transformer encoder layer: x + linear2(gelu(linear1(x)))."""

    def __init__(self, d=64, f=256):
        super().__init__()
        self.linear1 = nn.Linear(d, f)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(0.1)
        self.linear2 = nn.Linear(f, d)

    def forward(self, x):
        return x + self.dropout(self.linear2(self.activation(self.linear1(x))))


class TransformerBlock(nn.Module):
    """An attention-less post-LN encoder layer (nn.TransformerEncoderLayer's layout minus
    self-attention): norm2(h + ffn(h)) with h = norm1(x + linear0(x)), a token-mixing-free
    projection standing in for attention."""

    def __init__(self, d=64, f=128):
        super().__init__()
        self.linear0 = nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = TransformerFFN(d, f)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x):
        h = self.norm1(x + self.linear0(x))
        return self.norm2(self.ffn(h))


class AttentionBlock(nn.Module):
    """A post-LN transformer encoder layer with hand-written multi-head self-attention on
    batch-first [N, T, D] tokens: q / k / v projections split into heads with
    ``view(N, T, H, d).transpose(1, 2)``, ``softmax(q @ k^T / sqrt(d)) @ v``, heads merged back
    with ``transpose(1, 2).reshape(N, T, D)``, the output projection, residual and LayerNorm,
    then the feed-forward half. (nn.MultiheadAttention exports with batch and heads merged into
    one dimension, which no eightbit tensor can hold: the batch must stay dimension 0.)"""

    unit_gain = ("q_proj", "k_proj", "v_proj", "out_proj", "ffn.linear2")

    def __init__(self, d=64, heads=4, f=128):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = TransformerFFN(d, f)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x):
        n, t, d = x.shape
        hd = d // self.heads

        def split(h):
            return h.view(n, t, self.heads, hd).transpose(1, 2)  # [N, H, T, hd]

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(hd)
        a = torch.softmax(scores, dim=-1) @ v
        a = a.transpose(1, 2).reshape(n, t, d)
        h = self.norm1(x + self.out_proj(a))
        return self.norm2(self.ffn(h))


class FlattenByShape(nn.Module):
    """Two strided convs with ReLU, then x.view(x.size(0), -1) and a linear layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, 2, 1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu(self.conv1(x))))
        return self.fc(x.view(x.size(0), -1))


# ---- inputs and weights -------------------------------------------------------------------------
sys.path.insert(0, str(ROOT / "tests" / "onnx"))
from models import EXPORTED_INPUTS  # noqa: E402  (NumPy input makers shared with the tests)


def init_weights(model, g, bn_shift=0.2):
    """He-normal conv / linear weights (depthwise kernels with a dominant centre tap, as trained
    ones have), small biases, random norm affines (BatchNorm shifts of spread ``bn_shift``)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            w = torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
            if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1 and m.kernel_size[0] > 1:
                centre = torch.zeros(m.kernel_size)
                centre[m.kernel_size[0] // 2, m.kernel_size[1] // 2] = 1
                w = 0.5 * w + (0.5 + 0.5 * torch.rand(m.out_channels, 1, 1, 1, generator=g)) * centre
            m.weight.data = w
            if m.bias is not None:
                m.bias.data = (torch.rand(m.bias.shape, generator=g) * 2 - 1) / fan_in ** 0.5
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.6 + 0.8 * torch.rand(m.weight.shape, generator=g)
            m.bias.data = bn_shift * torch.randn(m.bias.shape, generator=g)
        elif isinstance(m, nn.LayerNorm):
            m.weight.data = 0.7 + 0.6 * torch.rand(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)
    # Linear layers feeding no ReLU / GELU (attention's q / k / v and the projections back into the
    # residual stream) get unit gain, as transformers initialize them (Xavier / LeCun), not He's 2
    for name in getattr(model, "unit_gain", ()):
        model.get_submodule(name).weight.data *= 0.5 ** 0.5
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    if last.out_features == 10:  # a classifier head: unit-gain, not He
        last.weight.data *= 0.5 ** 0.5


@torch.no_grad()
def calibrate_batchnorm(model, make_input, batches=4, batch=32):
    """Running statistics as training leaves them: cumulative averages over a few batches."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for _ in range(batches):
        model(make_input(batch))
    for m in bns:
        m.momentum = 0.1


# ---- export -------------------------------------------------------------------------------------
# name -> (module factory, seed, spread of BatchNorm shifts, export keeps BatchNormalization nodes)
MODELS = {
    "resnet_block": (ResNetBlock, 11, 0.2, False),
    "resnet_block_bn": (ResNetBlock, 11, 0.2, True),
    "mobilenet_block": (MobileNetBlock, 12, 1.0, False),  # trained MobileNets' BN shifts are O(1)
    "mlp": (make_mlp, 13, 0.2, False),
    "transformer_ffn": (TransformerFFN, 14, 0.2, False),
    "transformer_block": (TransformerBlock, 15, 0.2, False),
    "flatten_by_shape": (FlattenByShape, 16, 0.2, False),
    "attention_block": (AttentionBlock, 17, 0.2, False),
}


def export(name, out_dir, batch=4):
    factory, seed, bn_shift, keep_bn = MODELS[name]
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    inputs = EXPORTED_INPUTS[name]

    def make_input(n):
        return torch.from_numpy(inputs(rng, n)["x"])

    model = factory()
    init_weights(model, g, bn_shift)
    calibrate_batchnorm(model, make_input)
    model.eval()
    x = make_input(batch)
    with torch.no_grad():
        y = model(x)
    f = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and folding notices
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), f, input_names=["x"], output_names=["y"], opset_version=OPSET,
                          dynamic_axes={"x": {0: "N"}}, do_constant_folding=True, dynamo=False,
                          training=torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL)
    onnx_path = out_dir / f"{name}.onnx"
    onnx_path.write_bytes(f.getvalue())
    np.savez(out_dir / f"{name}.npz", x=x.numpy(), y=y.numpy())
    return onnx_path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "data" / "onnx")
    ap.add_argument("names", nargs="*", default=list(MODELS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        p = export(name, args.out)
        print(f"{p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}: {p.stat().st_size / 1024:.1f} KB")
    print(f"torch {torch.__version__}")


if __name__ == "__main__":
    sys.exit(main())
