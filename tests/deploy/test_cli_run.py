"""`eightbit run MODEL INPUT --isa --threads --batch` and `eightbit info` (in-process: cli.main)."""
import numpy as np
import pytest

import eightbit as eb
from eightbit.cli import main


@pytest.fixture
def files(tmp_path, cnn):
    x = np.random.default_rng(3).uniform(-1, 1, (23, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    cnn.save(tmp_path / "cnn.eb")
    return tmp_path, x


@pytest.mark.parametrize("batch", [None, 1, 5, 23, 100])
def test_run_in_batches_equals_one_call(files, cnn, capsys, restore_settings, batch):
    tmp, x = files
    args = ["run", str(tmp / "cnn.eb"), str(tmp / "x.npy"), "--output", str(tmp / "y.npy"), "--threads", "1"]
    if batch is not None:
        args += ["--batch", str(batch)]
    before = eb.cpu_info()
    assert main(args) == 0
    np.testing.assert_array_equal(np.load(tmp / "y.npy"), cnn(x))  # batches are independent rows
    out = capsys.readouterr().out
    if batch is not None:
        n_batches = -(-23 // batch)
        assert f"23 samples in {n_batches} batches of up to {batch}" in out and "samples/s" in out and "p99" in out
    else:
        assert "samples/s" not in out
    assert eb.cpu_info()["num_threads"] == before["num_threads"]  # restored


@pytest.mark.parametrize("isa", eb.cpu_info()["available"])
def test_run_on_each_isa_is_bit_identical(files, cnn, isa, restore_settings):
    tmp, x = files
    assert main(["run", str(tmp / "cnn.eb"), "--input", str(tmp / "x.npy"), "--isa", isa, "--batch", "8",
                 "--output", str(tmp / f"y_{isa}.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp / f"y_{isa}.npy"), cnn(x))


def test_run_ensemble_file(files, cnn, tmp_path):
    tmp, x = files
    ens = eb.Ensemble([cnn, cnn], "mean")
    ens.save(tmp / "e.ebe")
    assert main(["run", str(tmp / "e.ebe"), str(tmp / "x.npy"), "--output", str(tmp / "ye.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp / "ye.npy"), ens(x))


@pytest.mark.parametrize("extra, match", [
    (["--isa", "neon"], "expected one of scalar, avx2"),
    (["--batch", "0"], "--batch must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_run_bad_options(files, extra, match, restore_settings):
    tmp, _ = files
    with pytest.raises(SystemExit, match=match):
        main(["run", str(tmp / "cnn.eb"), str(tmp / "x.npy")] + extra)


def test_run_refuses_an_isa_this_cpu_lacks(files, monkeypatch):
    tmp, _ = files
    real = eb.cpu_info
    monkeypatch.setattr(eb, "cpu_info", lambda: dict(real(), available=["scalar"]))
    with pytest.raises(SystemExit, match="this CPU cannot run it; it runs scalar"):
        main(["run", str(tmp / "cnn.eb"), str(tmp / "x.npy"), "--isa", "avx2"])


def test_run_needs_one_input(files):
    tmp, _ = files
    with pytest.raises(SystemExit, match="give the input once"):
        main(["run", str(tmp / "cnn.eb")])


def test_plain_info_still_works(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "isa in use:" in out and "kernels on" not in out


def test_info_of_an_ensemble_lists_each_member(files, cnn, capsys, restore_settings):
    tmp, _ = files
    eb.Ensemble([cnn, cnn], "vote", names=["a", "b"]).save(tmp / "e.ebe")
    assert main(["info", "--model", str(tmp / "e.ebe"), "--isa", "scalar"]) == 0
    out = capsys.readouterr().out
    assert "member 0 (a): kernels on scalar" in out and "member 1 (b): kernels on scalar" in out
    assert out.count("depthwise conv, scalar path") == 2
