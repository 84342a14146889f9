"""Small models for the ensemble tests (imported by conftest and the tests): MLPs on 12
features, 5 classes, of different weights, so that the members disagree on some samples."""
import numpy as np

import eightbit as eb


def mlp(seed: int, classes: int = 5, features: int = 12):
    rng = np.random.default_rng(seed)
    g = eb.Graph()
    x = g.input("x", (None, features))
    h = g.relu(g.linear(x, rng.normal(0, 0.5, (16, features)).astype(np.float32),
                        rng.normal(0, 0.1, 16).astype(np.float32)))
    g.output(g.linear(h, rng.normal(0, 0.5, (classes, 16)).astype(np.float32),
                      rng.normal(0, 0.1, classes).astype(np.float32)))
    return g


def calib(seed: int, features: int = 12):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (32, features)).astype(np.float32) for _ in range(2)]
