"""pytest-benchmark suite: eightbit int8 GEMM against ONNX Runtime and NumPy, in the same run.

Run from the repository root (see bench/README.md):

    pytest bench/ --benchmark-only

bench/pytest.ini makes pytest collect ``bench_*.py`` / ``bench_*`` functions and sets the timing
defaults. At the end of the session the target table is printed (``pytest_terminal_summary``).
"""
from __future__ import annotations

import os
import sys

# NumPy's BLAS must be single-threaded for a fair float32 column. threadpoolctl (below) does it
# for an already-imported numpy; the variables cover the case where it is not installed and numpy
# has not been imported yet. OPENBLAS_CORETYPE is deliberately left alone (see bench/README.md).
if "numpy" not in sys.modules:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:  # noqa: E402
    import threadpoolctl
    _BLAS_LIMIT = threadpoolctl.threadpool_limits(limits=1, user_api="blas")
except ImportError:
    threadpoolctl = None

import _baselines as B  # noqa: E402

_RESULTS = pytest.StashKey()
_USAGE = pytest.StashKey()


def pytest_configure(config):
    res = B.Results()
    eb, why = B.import_eightbit()
    res.eb_unavailable = why
    res.isas = B.available_isas(eb)
    config.stash[_RESULTS] = res
    config.stash[_USAGE] = B.CpuUsage()
    config.addinivalue_line("markers", "two_threads: runs on 2 threads; ordered last")


def pytest_collection_modifyitems(session, config, items):
    # Cases on 2 threads run last, so a thread pool spinning or parked after them cannot disturb
    # the single-thread measurements.
    items.sort(key=lambda it: it.get_closest_marker("two_threads") is not None)


@pytest.fixture(scope="session")
def results(pytestconfig) -> B.Results:
    return pytestconfig.stash[_RESULTS]


@pytest.fixture(scope="session")
def eb():
    mod, why = B.import_eightbit()
    if mod is None:
        pytest.skip(f"eightbit not importable: {why}")
    mod.set_num_threads(1)
    return mod


@pytest.fixture(scope="session")
def need_ort():
    if not B.have_ort():
        pytest.skip("onnx / onnxruntime not installed")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    res = config.stash.get(_RESULTS, None)
    if res is None or not (res.times or res.verified):
        return
    tr = terminalreporter
    tr.write_sep("=", "eightbit int8 GEMM vs ONNX Runtime (same run)")
    tr.write_line(B.cpu_flags_line())
    eb, _ = B.import_eightbit()
    if eb is not None:
        try:
            tr.write_line(f"eb.cpu_info(): {eb.cpu_info()}")
        except Exception as e:
            tr.write_line(f"eb.cpu_info() failed: {e}")
    tr.write_line(B.versions_line(eb))
    tr.write_line(B.numpy_blas_line())
    usage = config.stash.get(_USAGE, None)
    if usage is not None:
        tr.write_line(usage.line())
    tr.write_line("")
    for line in res.render().splitlines():
        tr.write_line(line)
