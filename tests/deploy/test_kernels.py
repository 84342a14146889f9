"""eightbit.model.kernels: the kernel each step reports (the C++ executor's own choice) on every
ISA this CPU runs; `eightbit info MODEL` prints them for the ISA forced by EIGHTBIT_ISA."""
import os
import subprocess
import sys

import numpy as np
import pytest

import eightbit as eb
from eightbit.model.kernels import step_kernels
from conftest import cnn_graph

AVAILABLE = eb.cpu_info()["available"]


def by_source(model, isa):
    return {r["source"]: r["kernel"] for r in step_kernels(model, isa)}


TILE_ROWS = {"scalar": 4, "avx2": 6, "avxvnni": 6, "avx512vnni": 12, "amx": 32}


@pytest.mark.parametrize("isa", AVAILABLE)
def test_conv_paths_follow_the_rules(cnn, isa):
    """The executor reports what conv.cpp chooses: 1x1 unpadded convolutions read x in place, the
    3-channel stem goes through im2col, the depthwise kernel, and the padded 3x3 on 32 channels
    is direct on the VNNI paths (AMX's direct tiles want 64-channel groups)."""
    k = by_source(cnn, isa)
    gemm = f"int8 gemm {isa} {TILE_ROWS[isa]}-row tiles"
    assert k["fc"].startswith(gemm)
    assert k["pw"] == "1x1 conv, x read in place: " + k["fc"]
    assert k["stem"] == "im2col + " + k["fc"]
    assert k["dw"] == f"depthwise conv, {isa} path"
    assert k["c3"].startswith(f"direct conv {isa}") == (isa in ("avxvnni", "avx512vnni"))
    assert ("under 8 rows: avx512vnni" in k["fc"]) == (isa == "amx")


@pytest.mark.parametrize("isa", [i for i in ("avxvnni", "avx512vnni") if i in AVAILABLE])
def test_int8_activations_leave_the_direct_convolution(isa):
    """The direct tiles read uint8 x in place; with int8 activations the same 3x3 layer takes im2col."""
    rng = np.random.default_rng(1)
    calib = [rng.uniform(-1, 1, (8, 3, 16, 16)).astype(np.float32) for _ in range(2)]
    signed = eb.quantize(cnn_graph(), calib, activation_dtype="int8")
    assert by_source(signed, isa)["c3"].startswith("im2col + int8 gemm")


def test_loops_are_named_by_kind_and_path(cnn):
    isa = eb.cpu_info()["isa"]
    k = {r["op"]: r["kernel"] for r in step_kernels(cnn)}
    assert k["quantize"] == f"quantize loop, {isa} path" and k["global_avg_pool"] == f"global_avg_pool loop, {isa} path"


def test_unknown_isa_is_refused(cnn):
    with pytest.raises(ValueError, match="isa: expected one of"):
        step_kernels(cnn, "neon")       # an aarch64 path: never available on x86
    assert eb.cpu_info()["isa"] == AVAILABLE[-1] or "EIGHTBIT_ISA" in os.environ


def test_host_steps_are_asked_of_the_builder(cnn):
    # every step of this model runs in C++: none is reported as a host step
    assert not any(r["kernel"].startswith("host") for r in step_kernels(cnn))


@pytest.mark.parametrize("isa", AVAILABLE)
def test_info_prints_the_kernels_of_the_forced_isa(cnn, tmp_path, isa):
    path = tmp_path / "cnn.eb"
    cnn.save(path)
    env = dict(os.environ, EIGHTBIT_ISA=isa)
    out = subprocess.run([sys.executable, "-m", "eightbit", "info", str(path)], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert f"isa in use:   {isa}" in out and f"kernels on {isa}" in out
    for kernel in by_source(cnn, isa).values():
        assert kernel in out
