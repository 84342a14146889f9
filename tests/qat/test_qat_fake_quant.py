"""Fake quantization's forward values (eightbit.reference's QuantizeLinear then DequantizeLinear) and
its gradients: the straight-through estimator (1 inside the grid's range, 0 where the value
clipped) and LSQ's scale gradient, against formulas written out in NumPy float64."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import eightbit.reference as ref  # noqa: E402
from eightbit.torch.config import WeightQuant  # noqa: E402
from eightbit.torch.fake_quant import fake_quantize  # noqa: E402
from eightbit.torch.quantizers import WeightQuantizer  # noqa: E402


@pytest.mark.parametrize("qmin,qmax,zp", [(0, 255, 37), (-128, 127, 0), (-7, 7, 0)])
def test_forward_is_quantize_then_dequantize(qmin, qmax, zp):
    rng = np.random.default_rng(0)
    scale = np.float32(0.0625)                          # power of two: many exact .5 ties
    x = (rng.integers(-600, 600, 4000) / 8).astype(np.float32) * scale
    got = fake_quantize(torch.from_numpy(x), torch.tensor(scale), zp, qmin, qmax).numpy()
    dtype = np.uint8 if qmin == 0 else np.int8
    q = ref.quantize_linear(x, scale, dtype(zp)).astype(np.int64)
    q = np.clip(q, qmin, qmax)                          # a narrower grid (4 bits) clips further
    want = ((q - zp).astype(np.float32) * scale).astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_straight_through_and_lsq_gradients():
    rng = np.random.default_rng(1)
    qmin, qmax, zp = 0, 255, 100
    x = rng.normal(0, 3, 5000).astype(np.float32)
    g = rng.normal(0, 1, 5000).astype(np.float32)
    scale = torch.tensor(0.02, requires_grad=True)
    xt = torch.from_numpy(x).requires_grad_(True)
    fake_quantize(xt, scale, zp, qmin, qmax).backward(torch.from_numpy(g))
    v = x.astype(np.float64) / np.float64(np.float32(0.02))
    lo, hi = qmin - zp, qmax - zp
    inside = (v >= lo) & (v <= hi)
    np.testing.assert_array_equal(xt.grad.numpy(), np.where(inside, g, 0.0).astype(np.float32))
    d = np.where(inside, np.round(v) - v, np.where(v < lo, lo, hi))
    factor = 1.0 / np.sqrt(x.size * qmax)
    assert float(scale.grad) == pytest.approx(float((g * d).sum() * factor), rel=1e-4)
    assert 0.0 < inside.mean() < 1.0                    # both branches are exercised


def test_per_channel_lsq_gradient_sums_per_channel():
    w = torch.randn(3, 20, requires_grad=True)
    scale = torch.tensor([[0.01], [0.05], [0.2]], requires_grad=True)
    fake_quantize(w, scale, 0, -7, 7).sum().backward()
    v = w.detach().double() / scale.detach().double()
    d = torch.where(v.abs() <= 7, torch.round(v) - v, torch.sign(v) * 7)
    want = d.sum(dim=1, keepdim=True) / np.sqrt(20 * 7)
    torch.testing.assert_close(scale.grad.double(), want, rtol=1e-4, atol=1e-6)


def test_binary_weights_are_signs_with_identity_gradient():
    wq = WeightQuantizer(WeightQuant(bits=1), 4)
    w = torch.randn(4, 9, requires_grad=True)
    w_fq, scale = wq(w)
    torch.testing.assert_close(scale, w.detach().abs().mean(dim=1))
    want = torch.where(w >= 0, 1.0, -1.0) * scale[:, None]
    assert torch.equal(w_fq.detach(), want.detach())
    w_fq.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
