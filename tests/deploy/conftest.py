"""Models for the deployment tests: a CNN whose convolutions take each kernel path (depthwise, 1x1,
direct with 16 channels, im2col with 3 channels), and an MLP."""
import numpy as np
import pytest

import eightbit as eb


def cnn_graph(seed: int = 0):
    rng = np.random.default_rng(seed)

    def w(*shape):
        return rng.normal(0, 0.3, shape).astype(np.float32)

    g = eb.Graph()
    x = g.input("x", (None, 3, 16, 16))
    h = g.relu(g.conv2d(x, w(16, 3, 3, 3), w(16), padding=1, name="stem"))             # 3 channels: im2col
    h = g.relu(g.conv2d(h, w(16, 1, 3, 3), w(16), padding=1, groups=16, name="dw"))    # depthwise
    h = g.relu(g.conv2d(h, w(32, 16, 1, 1), w(32), name="pw"))                         # 1x1: GEMM in place
    h = g.relu(g.conv2d(h, w(32, 32, 3, 3), w(32), padding=1, name="c3"))              # 32 channels: direct
    h = g.flatten(g.global_avg_pool2d(h))
    g.output(g.linear(h, w(10, 32), w(10), name="fc"))
    return g


@pytest.fixture(scope="session")
def cnn():
    rng = np.random.default_rng(1)
    calib = [rng.uniform(-1, 1, (8, 3, 16, 16)).astype(np.float32) for _ in range(2)]
    return eb.quantize(cnn_graph(), calib)


@pytest.fixture(scope="session")
def mlp():
    rng = np.random.default_rng(2)
    g = eb.Graph()
    x = g.input("x", (None, 8))
    h = g.relu(g.linear(x, rng.normal(0, 0.5, (16, 8)).astype(np.float32), np.zeros(16, np.float32)))
    g.output(g.linear(h, rng.normal(0, 0.5, (4, 16)).astype(np.float32), np.zeros(4, np.float32)))
    return eb.quantize(g, [rng.uniform(-1, 1, (64, 8)).astype(np.float32)])


@pytest.fixture
def restore_settings():
    before = eb.cpu_info()
    yield
    eb.set_isa(before["isa"])
    eb.set_num_threads(before["num_threads"])
