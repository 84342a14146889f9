"""Calibration data from files, for the command line: ``.npy``, ``.npz`` or a folder of them.

    batches = CalibrationFiles("calib.npz", ["x"], batch_size=32)
    qm = eb.quantize(graph, batches)

* ``.npy``: one array of samples [S, ...] for a model with one input. It is memory-mapped and read
  a batch at a time, so a file larger than memory still calibrates in bounded memory.
* ``.npz``: one array per model input, named as the input (each [S, ...], the same S); a model with
  one input also takes an archive holding a single array of any name.
* a folder: every ``*.npy`` and ``*.npz`` in it, in name order, each read as above in turn.

Each batch is the next ``batch_size`` samples of the file, as a dict by input name.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

SUFFIXES = (".npy", ".npz")


class CalibrationFiles:
    """An iterable of calibration batches read lazily from ``path`` (see the module docstring);
    ``len()`` is the number of batches (for the progress bar)."""

    def __init__(self, path, input_names, batch_size: int = 32):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.path = Path(os.fspath(path))
        self.input_names = list(input_names)
        self.batch_size = batch_size
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix in SUFFIXES and p.is_file())
            if not self.files:
                raise ValueError(f"calibration folder {str(self.path)!r} holds no .npy or .npz file")
        elif self.path.suffix in SUFFIXES and self.path.is_file():
            self.files = [self.path]
        elif not self.path.exists():
            raise FileNotFoundError(f"calibration data {str(self.path)!r} does not exist")
        else:
            raise ValueError(f"calibration data {str(self.path)!r}: expected a .npy file, a .npz file or a folder")
        self._samples = [self._count(f) for f in self.files]

    def __len__(self) -> int:
        return sum(-(-s // self.batch_size) for s in self._samples)

    def __iter__(self):
        for f in self.files:
            arrays = self._load(f)
            n = self._check_counts(f, {k: a.shape for k, a in arrays.items()})
            for start in range(0, n, self.batch_size):
                yield {name: _batch(a[start:start + self.batch_size]) for name, a in arrays.items()}

    def _select(self, f: Path, keys: list) -> dict:
        """{input name: key in the file}."""
        if f.suffix == ".npy":
            if len(self.input_names) != 1:
                raise ValueError(f"calibration file {str(f)!r}: a .npy file holds one array, but the model has "
                                 f"inputs {self.input_names}; use a .npz with one array per input")
            return {self.input_names[0]: keys[0]}
        if len(self.input_names) == 1 and len(keys) == 1:
            return {self.input_names[0]: keys[0]}
        missing = [n for n in self.input_names if n not in keys]
        if missing:
            raise ValueError(f"calibration file {str(f)!r}: holds arrays {keys}; expected one named after each "
                             f"model input {self.input_names} (missing {missing})")
        return {n: n for n in self.input_names}

    def _load(self, f: Path) -> dict:
        """{input name: array of samples} of one file (a .npy is memory-mapped)."""
        try:
            if f.suffix == ".npy":
                return {n: np.load(f, mmap_mode="r", allow_pickle=False) for n in self._select(f, ["array"])}
            with np.load(f, allow_pickle=False) as archive:
                return {n: archive[k] for n, k in self._select(f, list(archive.files)).items()}
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"calibration file {str(f)!r}: not a readable NumPy file ({e})") from None

    def _count(self, f: Path) -> int:
        """Samples in one file, from the array headers only (no data read)."""
        try:
            shapes = _header_shapes(f)
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"calibration file {str(f)!r}: not a readable NumPy file ({e})") from None
        return self._check_counts(f, {n: shapes[k] for n, k in self._select(f, list(shapes)).items()})

    @staticmethod
    def _check_counts(f: Path, shapes: dict) -> int:
        counts = {n: (s[0] if len(s) else 0) for n, s in shapes.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"calibration file {str(f)!r}: the inputs have different sample counts {counts}")
        return next(iter(counts.values()))


def _header_shapes(f: Path) -> dict:
    """{array name: shape} of a .npy file ("array") or of the arrays of a .npz archive."""
    def shape(fp):
        version = np.lib.format.read_magic(fp)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return read(fp)[0]

    if f.suffix == ".npy":
        with open(f, "rb") as fp:
            return {"array": shape(fp)}
    with zipfile.ZipFile(f) as z:
        shapes = {}
        for member in z.namelist():
            if member.endswith(".npy"):
                with z.open(member) as fp:
                    shapes[member[:-4]] = shape(fp)
        return shapes


def _batch(a) -> np.ndarray:
    """Integers (token ids, attention masks) stay int64; anything else becomes float32."""
    a = np.asarray(a)
    return a.astype(np.int64) if a.dtype.kind in "iu" else a.astype(np.float32)
