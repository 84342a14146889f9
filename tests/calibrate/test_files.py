"""CalibrationFiles: batches read lazily from .npy / .npz files or a folder of them."""
import numpy as np
import pytest

from eightbit.calibrate import CalibrationFiles


def test_npy_is_split_into_batches_in_order(tmp_path, rng):
    x = rng.standard_normal((70, 3, 4)).astype(np.float64)
    np.save(tmp_path / "x.npy", x)
    cal = CalibrationFiles(tmp_path / "x.npy", ["x"], batch_size=32)
    batches = list(cal)
    assert len(cal) == 3 and [b["x"].shape[0] for b in batches] == [32, 32, 6]
    assert all(b["x"].dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), x.astype(np.float32))
    assert list(cal)[1]["x"].tobytes() == batches[1]["x"].tobytes()  # iterable again


def test_npz_by_input_name_and_single_array_of_any_name(tmp_path, rng):
    a, b = rng.standard_normal((5, 2)), rng.standard_normal((5, 7))
    np.savez(tmp_path / "two.npz", b=b, a=a, extra=np.zeros(1))
    batches = list(CalibrationFiles(tmp_path / "two.npz", ["a", "b"], batch_size=2))
    assert [sorted(x) for x in batches] == [["a", "b"]] * 3
    np.testing.assert_array_equal(np.concatenate([x["b"] for x in batches]), b.astype(np.float32))
    np.savez(tmp_path / "one.npz", samples=a)
    (only,) = list(CalibrationFiles(tmp_path / "one.npz", ["x"], batch_size=8))
    np.testing.assert_array_equal(only["x"], a.astype(np.float32))


def test_folder_reads_every_file_in_name_order(tmp_path, rng):
    parts = [rng.standard_normal((n, 3)) for n in (4, 3, 5)]
    for i, p in enumerate(parts):
        if i == 1:
            np.savez(tmp_path / f"{i}.npz", x=p)
        else:
            np.save(tmp_path / f"{i}.npy", p)
    (tmp_path / "notes.txt").write_text("ignored")
    cal = CalibrationFiles(tmp_path, ["x"], batch_size=4)
    got = [b["x"] for b in cal]
    assert len(cal) == len(got) == 4                    # 4 | 3 | 4 + 1
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate(parts).astype(np.float32))


@pytest.mark.parametrize("make, inputs, match", [
    (lambda d: np.save(d / "x.npy", np.zeros((3, 2))), ["a", "b"], "one array per input"),
    (lambda d: np.savez(d / "x.npz", a=np.zeros((3, 2))), ["a", "b"], r"missing \['b'\]"),
    (lambda d: np.savez(d / "x.npz", a=np.zeros((3, 2)), b=np.zeros((4, 2))), ["a", "b"], "different sample counts"),
    (lambda d: (d / "x.npy").write_bytes(b"\x93NUMPY junk"), ["a"], "not a readable NumPy file"),
    (lambda d: (d / "x.npz").write_bytes(b"PK\x03\x04 truncated"), ["a"], "not a readable NumPy file"),
])
def test_bad_files_raise_value_error_naming_the_file(tmp_path, make, inputs, match):
    make(tmp_path)
    path = next(tmp_path.iterdir())
    with pytest.raises(ValueError, match=match) as e:
        CalibrationFiles(path, inputs)
    assert str(path) in str(e.value)


def test_bad_paths_and_batch_sizes(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CalibrationFiles(tmp_path / "missing.npy", ["x"])
    with pytest.raises(ValueError, match="holds no .npy or .npz"):
        CalibrationFiles(tmp_path, ["x"])
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(ValueError, match="expected a .npy file"):
        CalibrationFiles(tmp_path / "x.csv", ["x"])
    with pytest.raises(ValueError, match="batch_size"):
        CalibrationFiles(tmp_path, ["x"], batch_size=0)


def test_npy_is_memory_mapped_not_loaded(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.zeros((10, 2)))
    seen = []
    real_load = np.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("mmap_mode"))
        return real_load(*args, **kwargs)
    monkeypatch.setattr(np, "load", spy)
    list(CalibrationFiles(tmp_path / "x.npy", ["x"], batch_size=4))
    assert seen == ["r"]
