"""The user's journey of DESIGN.md: a small CNN built from NumPy weights, run at several batch sizes."""
import numpy as np
import pytest

import eightbit as eb


def direct_reference(x, w1, b1, w2, b2):
    """conv 3x3 pad 1 -> relu -> max pool 2 -> flatten -> linear, with explicit loops in float64."""
    n, _, h, w = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((n, w1.shape[0], h, w))
    for i in range(h):
        for j in range(w):
            patch = xp[:, :, i:i + 3, j:j + 3]                              # [N, C, 3, 3]
            conv[:, :, i, j] = np.einsum("nckl,mckl->nm", patch, w1) + b1
    act = np.maximum(conv, 0)
    pooled = act.reshape(n, w1.shape[0], h // 2, 2, w // 2, 2).max(axis=(3, 5))
    return pooled.reshape(n, -1) @ w2.T + b2


@pytest.fixture
def digits_net(rng):
    w1 = (rng.standard_normal((4, 1, 3, 3)) / 3).astype(np.float32)
    b1 = rng.standard_normal(4).astype(np.float32) * 0.1
    w2 = (rng.standard_normal((10, 64)) / 8).astype(np.float32)
    b2 = rng.standard_normal(10).astype(np.float32) * 0.1
    g = eb.Graph()
    x = g.input("x", shape=(None, 1, 8, 8))
    h = g.relu(g.conv2d(x, w1, b1, padding=1))
    h = g.flatten(g.max_pool2d(h, 2))
    g.output(g.linear(h, w2, b2))
    return g, (w1, b1, w2, b2)


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_user_journey_cnn_matches_a_direct_computation(rng, digits_net, batch):
    g, weights = digits_net
    x = rng.uniform(0, 16, (batch, 1, 8, 8)).astype(np.float32)
    y = g.run(x)
    assert y.shape == (batch, 10) and y.dtype == np.float32
    np.testing.assert_allclose(y, direct_reference(x, *weights), rtol=1e-5, atol=1e-4)


def test_user_journey_cnn_after_prepare_for_quantization(rng, digits_net):
    g, weights = digits_net
    q = eb.graph.prepare_for_quantization(g)
    assert [n.op for n in q.nodes] == ["conv2d", "max_pool2d", "flatten", "linear"]
    assert q.nodes[0].attrs["activation"] == "relu"
    x = rng.uniform(0, 16, (3, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(q.run(x), direct_reference(x, *weights), rtol=1e-5, atol=1e-4)
