"""Package surface: version, CPU info, ISA and thread control, PackedWeights rules, CLI."""

import os
import subprocess
import sys

import numpy as np
import pytest

import eightbit as eb


def test_version_and_cpu_info():
    assert isinstance(eb.__version__, str) and eb.__version__.count(".") >= 1
    info = eb.cpu_info()
    assert info["isa"] in info["available"]
    assert info["available"][0] == "scalar"
    assert set(info["available"]) <= {"scalar", "avx2", "avxvnni", "avx512vnni", "amx"}
    assert info["num_threads"] >= 1
    # The default is the fastest path the CPU has, unless EIGHTBIT_ISA forces one.
    forced = os.environ.get("EIGHTBIT_ISA")
    assert info["isa"] == (forced if forced else info["available"][-1])


def test_set_isa_rejects_unknown_and_unsupported():
    with pytest.raises(ValueError, match="unknown isa 'sse9'.*scalar"):
        eb.set_isa("sse9")
    with pytest.raises(TypeError, match="name"):
        eb.set_isa(3)
    missing = [n for n in ("avx2", "avxvnni", "avx512vnni", "amx") if n not in eb.cpu_info()["available"]]
    for name in missing:
        with pytest.raises(ValueError, match="not supported by this CPU"):
            eb.set_isa(name)


def test_set_num_threads_validates():
    before = eb.cpu_info()["num_threads"]
    try:
        eb.set_num_threads(1)
        assert eb.cpu_info()["num_threads"] == 1
        eb.set_num_threads(3)
        assert eb.cpu_info()["num_threads"] == 3
    finally:
        eb.set_num_threads(before)
    with pytest.raises(ValueError, match="num_threads"):
        eb.set_num_threads(0)
    with pytest.raises(TypeError):
        eb.set_num_threads(1.5)


def _run(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env)


def test_environment_variables():
    out = _run("import eightbit as eb; i = eb.cpu_info(); print(i['isa'], i['num_threads'])",
               EIGHTBIT_ISA="scalar", EIGHTBIT_NUM_THREADS="3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["scalar", "3"]
    bad = _run("import eightbit", EIGHTBIT_ISA="mmx")
    assert bad.returncode != 0 and "EIGHTBIT_ISA" in bad.stderr and "unknown isa" in bad.stderr
    bad = _run("import eightbit", EIGHTBIT_NUM_THREADS="many")
    assert bad.returncode != 0 and "EIGHTBIT_NUM_THREADS" in bad.stderr


def test_packed_weights_zero_point_rules(rng):
    b = rng.integers(0, 256, (40, 24), dtype=np.uint8)
    a = rng.integers(0, 256, (5, 40), dtype=np.uint8)
    zp = np.uint8(131)
    pw = eb.pack_weights(b, zp)
    assert pw.shape == (40, 24) and pw.dtype == np.uint8 and pw.zero_point == 131 and not pw.per_column
    expected = eb.reference.matmul_integer(a, b, np.uint8(7), zp)
    np.testing.assert_array_equal(eb.ops.matmul_integer(a, pw, np.uint8(7)), expected)        # omitted
    np.testing.assert_array_equal(eb.ops.matmul_integer(a, pw, np.uint8(7), zp), expected)    # same
    with pytest.raises(ValueError, match="b_zero_point"):
        eb.ops.matmul_integer(a, pw, np.uint8(7), np.uint8(130))                                # different
    with pytest.raises(TypeError, match="b_zero_point"):
        eb.ops.matmul_integer(a, pw, np.uint8(7), np.int8(3))
    per_col = rng.integers(0, 256, 24, dtype=np.uint8)
    pc = eb.pack_weights(b, per_col)
    assert pc.per_column and np.array_equal(pc.zero_point, per_col)
    np.testing.assert_array_equal(eb.ops.matmul_integer(a, pc), eb.reference.matmul_integer(a, b, None, per_col))
    assert "PackedWeights" in repr(pw) and pw.nbytes >= 40 * 24


def test_cli_info_and_demo():
    info = subprocess.run([sys.executable, "-m", "eightbit", "info"], capture_output=True, text=True)
    assert info.returncode == 0 and "isa in use" in info.stdout
    demo = subprocess.run([sys.executable, "-m", "eightbit", "demo"], capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr
    for method in ("minmax", "moving_average", "percentile", "entropy", "mse"):
        assert f"int8 {method}" in demo.stdout
    assert "accuracy" in demo.stdout and "x smaller" in demo.stdout and "latency" in demo.stdout


def test_readme_example_runs():
    """The README's example is executed as written, so it stays true."""
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    code = re.search(r"```python\n(.*?)```", readme.read_text(), re.S).group(1)
    namespace = {}
    exec(compile(code, str(readme), "exec"), namespace)
    assert namespace["acc"].shape == (64, 3072) and namespace["acc"].dtype == np.int32
    assert namespace["yc"].shape == (1, 32, 28, 28)
