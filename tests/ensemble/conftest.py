"""Fixtures of the ensemble tests (the models: _ensemble_models.py)."""
import numpy as np
import pytest

import eightbit as eb
from _ensemble_models import calib, mlp


@pytest.fixture(scope="session")
def members():
    """Three int8 MLPs of different weights (same input and output shapes)."""
    return [eb.quantize(mlp(seed), calib(seed)) for seed in (1, 2, 3)]


@pytest.fixture(scope="session")
def x():
    return np.random.default_rng(99).normal(0, 1, (64, 12)).astype(np.float32)
