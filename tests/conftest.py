"""Shared fixtures: run a test on every instruction-set path this CPU has."""

import numpy as np
import pytest

import eightbit as eb

AVAILABLE_ISAS = eb.cpu_info()["available"]


@pytest.fixture(params=AVAILABLE_ISAS)
def isa(request):
    """Force one kernel path for the test, then restore the default."""
    before = eb.cpu_info()["isa"]
    eb.set_isa(request.param)
    try:
        yield request.param
    finally:
        eb.set_isa(before)


@pytest.fixture
def rng():
    return np.random.default_rng(20261126)
