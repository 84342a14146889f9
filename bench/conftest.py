"""pytest-benchmark suite: eightbit int8 GEMM, convolution and whole models against ONNX Runtime
(and NumPy), in the same run.

Run from the repository root (see bench/README.md):

    pytest bench/ --benchmark-only

bench/pytest.ini makes pytest collect ``bench_*.py`` / ``bench_*`` functions and sets the timing
defaults. At the end of the session the target tables are printed (``pytest_terminal_summary``):
the GEMM table, the convolution table and the whole-model table, each when some of its cases
ran.
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
import _conv as C  # noqa: E402
import _model as M  # noqa: E402

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


@pytest.fixture
def paired(benchmark, request, results):
    """paired(ours_key, fn, baselines, ours_prepare=None): time ours with pytest-benchmark and the
    baselines {key: fn | (fn, before, after)} in alternating blocks for 4 x --benchmark-max-time
    (_baselines.Paired); record the medians for the summary tables, and the baselines' paired
    medians and ratios in the benchmark's extra_info."""
    cfg = request.config

    def run(ours_key, fn, baselines, ours_prepare=None):
        ours, med = B.time_paired(benchmark, results, ours_key, fn, baselines,
                                  4.0 * float(cfg.getoption("benchmark_max_time")),
                                  min_cycles=int(cfg.getoption("benchmark_min_rounds")),
                                  warmup=bool(cfg.getoption("benchmark_warmup")),
                                  ours_prepare=ours_prepare)
        if ours is None:  # --benchmark-disable
            return
        for bk, sec in med.items():
            benchmark.extra_info[f"{bk} median s"] = sec
            benchmark.extra_info[f"ratio vs {bk}"] = sec / ours
    return run


@pytest.fixture(scope="session")
def need_ort():
    if not B.have_ort():
        pytest.skip("onnx / onnxruntime not installed")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    res = config.stash.get(_RESULTS, None)
    if res is None:
        return
    tables = []
    if res.has_gemm():
        tables.append(("eightbit int8 GEMM vs ONNX Runtime (same run)", res.render))
    if C.has_conv(res):
        tables.append(("eightbit int8 convolution vs ONNX Runtime (same run)", lambda: C.render(res)))
    if M.has_model(res):
        tables.append(("eightbit whole models vs ONNX Runtime (same run)",
                       lambda: M.render(res, B.import_eightbit()[0])))
    if not tables:
        return
    tr = terminalreporter
    eb, _ = B.import_eightbit()
    usage = config.stash.get(_USAGE, None)
    for i, (title, render) in enumerate(tables):
        tr.write_sep("=", title)
        if i == 0:  # the machine, once
            for line in B.header_lines(eb) + ([usage.line()] if usage is not None else []):
                tr.write_line(line)
        tr.write_line("")
        for line in render().splitlines():
            tr.write_line(line)
