"""prepare_qat -> train -> convert: the engine's int8 model computes, on every ISA, the codes the QAT
model's eval forward computes, on every quantized tensor (ResNet-style blocks, every op with an int8
step, low-bit and binary weights, int8 and symmetric activations, learned scales); the converted
model saves as .eb and exports to ONNX with the same outputs; bad arguments raise named errors."""
from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import eightbit as eb  # noqa: E402
from eightbit.torch import ActivationQuant, QATConfig, WeightQuant, convert, layers, prepare_qat  # noqa: E402
from eightbit.torch.units import QConv2d  # noqa: E402
from _qat import OpZoo, ResNetTiny, assert_engine_codes_equal, train_steps  # noqa: E402

CONFIGS = {
    "default": QATConfig(),
    "int8_activations": QATConfig(activation=ActivationQuant(dtype="int8")),
    "symmetric": QATConfig(activation=ActivationQuant(dtype="int8", symmetric=True)),
    "per_tensor_4bit": QATConfig(weight=WeightQuant(bits=4, per_channel=False, scale="mse")),
    "binary": QATConfig(weight=WeightQuant(bits=1)),
    "ternary_levels": QATConfig(weight=WeightQuant(levels=3)),
    "learned_scales": QATConfig(weight=WeightQuant(learnable=True), activation=ActivationQuant(learnable=True)),
    "minmax_bn_frozen": QATConfig(activation=ActivationQuant(observer="minmax"), freeze_bn_after=3),
}


def _trained(model_cls, shape, config, seed=0):
    torch.manual_seed(seed)
    model = prepare_qat(model_cls(), (torch.randn(*shape),), config)
    return train_steps(model, lambda: torch.randn(*shape), steps=6)


@functools.lru_cache(maxsize=None)
def _converted(model_cls, shape, name):
    """Trained once per configuration, checked on every ISA."""
    model = _trained(model_cls, shape, CONFIGS[name])
    return model, convert(model)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_resnet_block_codes_equal_engine_on_every_isa(name, isa):
    shape = (4, 3, 16, 16)
    model, qm = _converted(ResNetTiny, shape, name)
    ops = [s.op for s in qm.plan.steps]
    assert ops.count("conv") == 6 and ops.count("add") == 2 and "float" not in ops
    torch.manual_seed(1)
    assert assert_engine_codes_equal(model, qm, torch.randn(*shape) * 2) >= 12   # + 2 relu tables when symmetric


@pytest.mark.parametrize("name", ["default", "int8_activations", "per_tensor_4bit"])
def test_every_int8_op_codes_equal_engine_on_every_isa(name, isa):
    shape = (3, 3, 12, 12)
    model, qm = _converted(OpZoo, shape, name)
    ops = {s.op for s in qm.plan.steps}
    assert {"concat", "max_pool", "avg_pool", "global_avg_pool", "mul", "lut", "conv", "linear"} <= ops
    assert "float" not in ops
    assert assert_engine_codes_equal(model, qm, torch.randn(*shape)) >= 20


def test_weights_lie_on_the_configured_grid():
    for spec, allowed in ((WeightQuant(bits=4), range(-7, 8)), (WeightQuant(bits=2), range(-1, 2)),
                          (WeightQuant(bits=1), (-1, 1)), (WeightQuant(levels=5), range(-2, 3))):
        model = _trained(ResNetTiny, (2, 3, 8, 8), QATConfig(weight=spec))
        qm = convert(model)
        for step in qm.plan.steps:
            if step.op == "conv":
                assert set(np.unique(step.consts["w"]).tolist()) <= set(allowed), spec


def test_batchnorm_trains_then_folds():
    """BatchNorm's running statistics move while training (batch statistics normalise); in eval the
    conv runs with the folded weights, which is what the engine gets."""
    model = prepare_qat(ResNetTiny(), (torch.randn(4, 3, 8, 8),))
    stem = dict(layers(model))["stem.0"]
    before = stem.bn.running_mean.clone()
    train_steps(model, lambda: torch.randn(4, 3, 8, 8) + 1.0, steps=3)
    assert not torch.equal(before, stem.bn.running_mean)
    model.eval()
    w, b = stem.float_weights()
    f = stem.bn.weight / torch.sqrt(stem.bn.running_var + stem.bn.eps)
    torch.testing.assert_close(w, stem.layer.weight * f.reshape(-1, 1, 1, 1))
    torch.testing.assert_close(b, stem.bn.bias - stem.bn.running_mean * f)


def test_training_forward_can_be_exact():
    """exact=True: the training forward already computes the engine's codes (and still learns)."""
    torch.manual_seed(0)
    model = prepare_qat(OpZoo(), (torch.randn(2, 3, 12, 12),), QATConfig(exact=True))
    before = [p.detach().clone() for p in model.parameters()]
    train_steps(model, lambda: torch.randn(2, 3, 12, 12), steps=3)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    from eightbit.torch import freeze_observers
    freeze_observers(model)
    x = torch.randn(2, 3, 12, 12)
    model.train()
    y_train = model(x).detach()
    model.eval()
    np.testing.assert_array_equal(y_train.numpy(), convert(model)(x.numpy()))


class _Encoder(nn.Module):
    """A BERT-style encoder layer written out (self-attention with matmul / softmax, layer norms,
    GELU feed-forward), then mean pooling and a classifier."""

    def __init__(self, d=32, heads=4, ffn=64):
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff1, self.ff2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.cls = nn.Linear(d, 3)

    def _heads(self, t):
        n, s, d = t.shape
        return t.view(n, s, self.heads, self.dh).permute(0, 2, 1, 3)

    def forward(self, x):
        n, s, d = x.shape
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        att = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) / self.dh ** 0.5, dim=-1)
        h = torch.matmul(att, v).transpose(1, 2).reshape(n, s, d)
        x = self.ln1(x + self.out(h))
        x = self.ln2(x + self.ff2(F.gelu(self.ff1(x))))
        return self.cls(x.mean(1))


def test_encoder_runs_per_token_linear_layers():
    """Linear layers over token sequences quantize their input per token at run time (dynamic_linear
    steps, the same arithmetic in the QAT forward); attention, layer norms and GELU stay float32,
    as eb.quantize runs them. Float steps are not bit-specified, so the outputs agree closely, not
    exactly."""
    torch.manual_seed(0)
    shape = (4, 10, 32)
    model = prepare_qat(_Encoder(), (torch.randn(*shape),))
    assert all(u.per_token for name, u in layers(model) if name != "cls")
    train_steps(model, lambda: torch.randn(*shape), steps=4)
    qm = convert(model)
    ops = [s.op for s in qm.plan.steps]
    assert ops.count("dynamic_linear") == 6 and ops.count("linear") == 1
    model.eval()
    x = torch.randn(*shape)
    y = model(x).detach().numpy()
    got = qm(x.numpy())
    assert np.abs(got - y).max() <= 1e-3 * max(1.0, np.abs(y).max())


def test_encoder_with_a_free_sequence_length():
    """convert(sequence=(lo, hi)): one engine model for every length in the range (traced at hi
    and hi - 1, unified), close to the QAT model at each length; lengths outside are refused."""
    torch.manual_seed(0)
    model = prepare_qat(_Encoder(), (torch.randn(4, 10, 32),))
    train_steps(model, lambda: torch.randn(4, 10, 32), steps=4)
    qm = convert(model, sequence=(2, 16))
    assert qm.plan.sequence() is not None
    model.eval()
    for length in (2, 7, 10, 16):
        x = torch.randn(3, length, 32)
        y = model(x).detach().numpy()
        assert np.abs(qm(x.numpy()) - y).max() <= 1e-3 * max(1.0, np.abs(y).max()), length
    with pytest.raises(ValueError):
        qm(np.zeros((1, 17, 32), np.float32))
    with pytest.raises(ValueError, match="sequence"):
        convert(model, sequence=(4, 1))

    class FixedPositions(nn.Module):          # a position table of the example's length only
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.zeros(10, 32))
            self.fc = nn.Linear(32, 2)

        def forward(self, x):
            return self.fc(x + self.pos).mean(1)
    fixed = _trained(FixedPositions, (2, 10, 32), QATConfig())
    with pytest.raises(ValueError, match="does not run at length 16"):
        convert(fixed, sequence=(2, 16))


def test_saved_and_onnx_exported_models_give_the_same_outputs(tmp_path):
    model = _trained(ResNetTiny, (2, 3, 8, 8), QATConfig())
    qm = convert(model)
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    path = str(tmp_path / "qat.eb")
    qm.save(path)
    np.testing.assert_array_equal(eb.load(path)(x), qm(x))
    ort = pytest.importorskip("onnxruntime")
    eb.to_onnx(qm, path + ".onnx")
    sess = ort.InferenceSession(path + ".onnx", providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], qm(x))


def test_layer_kept_float_by_config():
    model = _trained(ResNetTiny, (2, 3, 8, 8), QATConfig(layers={"fc": None, "stem.0": WeightQuant(bits=4)}))
    names = dict(layers(model))
    assert "fc" not in names and names["stem.0"].weight_quant.spec.bits == 4
    assert isinstance(names["layer1.conv1"], QConv2d)
    qm = convert(model)
    assert any(s.op == "float" and s.attrs["op"] == "linear" for s in qm.plan.steps)
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    np.testing.assert_allclose(qm(x.numpy()), model(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_copies_checkpoints_and_pickles_keep_the_quantization(tmp_path):
    """copy.deepcopy, torch.save / torch.load and state_dict round trips keep what convert and the
    freezing schedule need (a GraphModule's deepcopy rebuilds the module), and a learned rounding."""
    import copy
    model = _trained(ResNetTiny, (2, 3, 8, 8), QATConfig(freeze_observers_after=8))
    fc = dict(layers(model))["fc"]
    fc.weight_quant.rounding = (torch.rand_like(fc.layer.weight) > 0.5).float()
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    expected = convert(model)(x)
    path = tmp_path / "qat.pt"
    torch.save(model, path)
    for clone in (copy.deepcopy(model), torch.load(path, weights_only=False)):
        np.testing.assert_array_equal(convert(clone)(x), expected)
        assert int(clone.eb_step.steps) == 6
        train_steps(clone, lambda: torch.randn(2, 3, 8, 8), steps=3)   # passes step 8: observers freeze
        assert not bool(clone.x_quant.observing) and bool(model.x_quant.observing)
    fresh = prepare_qat(ResNetTiny(), (torch.randn(2, 3, 8, 8),), QATConfig(freeze_observers_after=8))
    fresh.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(convert(fresh)(x), expected)


def test_bad_arguments_raise_named_errors():
    with pytest.raises(TypeError, match="model"):
        prepare_qat("not a model", (torch.randn(1, 3),))
    with pytest.raises(TypeError, match="example_inputs"):
        prepare_qat(nn.Linear(3, 2), ([1, 2, 3],))
    with pytest.raises(TypeError, match="config"):
        prepare_qat(nn.Linear(3, 2), (torch.randn(1, 3),), {"bits": 4})
    with pytest.raises(ValueError, match="config.layers"):
        prepare_qat(nn.Linear(3, 2), (torch.randn(1, 3),), QATConfig(layers={"nope": None}))
    with pytest.raises(TypeError, match="prepare_qat"):
        convert(nn.Linear(3, 2))

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x
    with pytest.raises(ValueError, match="torch.fx cannot trace"):
        prepare_qat(Branchy(), (torch.randn(1, 3),))
    for kwargs, match in (({"bits": 9}, "bits"), ({"bits": 0}, "bits"), ({"levels": 4}, "levels"),
                          ({"scale": "median"}, "scale")):
        with pytest.raises(ValueError, match=match):
            WeightQuant(**kwargs)
    for kwargs, match in (({"dtype": "int16"}, "dtype"), ({"symmetric": True}, "symmetric"),
                          ({"observer": "ema"}, "observer"), ({"momentum": 0.0}, "momentum"),
                          ({"per_token": "yes"}, "per_token")):
        with pytest.raises(ValueError, match=match):
            ActivationQuant(**kwargs)
    with pytest.raises(ValueError, match="freeze_bn_after"):
        QATConfig(freeze_bn_after=-1)
    with pytest.raises(ValueError, match="exact"):
        QATConfig(exact="train")


def test_dropout_trains_and_vanishes_in_the_engine():
    model_f = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    model = _trained(lambda: model_f, (4, 3, 8, 8), QATConfig())
    model.train()
    x = torch.randn(4, 3, 8, 8)
    assert not torch.equal(model(x), model(x))           # dropout is active while training
    qm = convert(model)
    assert [s.op for s in qm.plan.steps] == ["quantize", "conv", "reshape", "linear", "dequantize"]
    assert_engine_codes_equal(model, qm, x)


def test_convert_refuses_what_it_cannot_honor():
    model = prepare_qat(nn.Sequential(nn.Conv2d(2, 2, 3), nn.Flatten()), (torch.randn(1, 2, 5, 5),))
    with pytest.raises(ValueError, match="never observed data"):
        convert(model)                                   # no batch ever set the ranges
    circular = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular"), nn.ReLU())
    model = _trained(lambda: circular, (2, 2, 5, 5), QATConfig())
    assert layers(model) == []                           # kept float: no int8 form
    with pytest.raises(ValueError, match="padding_mode"):
        convert(model)


def test_untranslatable_float_op_is_named():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.cumsum(self.fc(x), dim=1)
    model = _trained(Odd, (2, 4), QATConfig())
    with pytest.raises(ValueError, match="cumsum"):
        convert(model)


def test_eightbit_imports_without_torch():
    """eightbit itself never imports torch (eightbit.torch is the only module that needs it)."""
    code = "import sys, eightbit; import eightbit.data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_real_architectures_codes_equal_engine(arch):
    """torchvision's ResNet-18 and MobileNetV2 layouts (shared ReLU modules, in-place adds, ReLU6,
    depthwise convolutions, squeeze-excite gates, dropout), every layer int8 and every code equal."""
    from _qat import MobileNetV2Tiny, ResNet18
    cls, shape = {"resnet18": (ResNet18, (2, 3, 64, 64)), "mobilenet_v2": (MobileNetV2Tiny, (2, 3, 32, 32))}[arch]
    model = _trained(cls, shape, QATConfig(), seed=3)
    qm = convert(model)
    ops = [s.op for s in qm.plan.steps]
    assert "float" not in ops and ops.count("conv") == {"resnet18": 20, "mobilenet_v2": 13}[arch]
    assert assert_engine_codes_equal(model, qm, torch.randn(*shape)) >= 20
