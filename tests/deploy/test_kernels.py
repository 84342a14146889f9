"""eightbit.model.kernels: the kernel named per step follows conv.cpp's / dispatch.cpp's rules on
every ISA; `eightbit info MODEL` prints them for the ISA forced by EIGHTBIT_ISA."""
import os
import subprocess
import sys

import pytest

import eightbit as eb
from eightbit.model.kernels import step_kernels

AVAILABLE = eb.cpu_info()["available"]


def by_source(model, isa):
    return {r["source"]: r["kernel"] for r in step_kernels(model, isa)}


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avxvnni", "avx512vnni", "amx"])
def test_conv_paths_follow_the_rules(cnn, isa):
    k = by_source(cnn, isa)  # naming needs no CPU support: it is the rule, not a run
    gemm = {"scalar": "gemm scalar 4x16", "avx2": "gemm avx2 6x8", "avxvnni": "gemm avxvnni 6x16",
            "avx512vnni": "gemm avx512vnni 12x32", "amx": "gemm amx 32x32"}[isa]
    assert k["fc"].startswith(gemm)
    assert k["pw"].startswith("1x1 conv: " + gemm)                       # 1x1 stride 1 unpadded
    assert k["stem"].startswith("im2col + " + gemm)                     # 3 channels: 9-byte rows pad to 16 (> 1/3)
    assert k["dw"].startswith("depthwise")
    assert ("int32 scalar" in k["dw"]) == (isa == "scalar")
    # 32 channels, padded 3x3: direct on the VNNI paths; AMX needs 64-channel groups and 16-wide rows
    assert k["c3"].startswith("direct conv") == (isa in ("avxvnni", "avx512vnni"))
    if isa == "amx":
        assert "under 8 rows: avx512vnni 12x32" in k["fc"] and k["dw"] == "depthwise avx512vnni 3x3"


def test_unknown_isa_is_refused(cnn):
    with pytest.raises(ValueError, match="isa: expected one of"):
        step_kernels(cnn, "neon")


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
