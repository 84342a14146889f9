"""Data shipped with eightbit: two small float models trained on scikit-learn's 8x8 digits, with
a calibration split and the test split (tools/train_digits.py writes ``digits.npz``)."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np


@dataclass(frozen=True)
class Digits:
    weights: dict            # name -> float32 array (PyTorch layouts): cnn_* and mlp_*
    calib_images: np.ndarray  # float32 [256, 1, 8, 8], pixels / 16
    test_images: np.ndarray   # float32 [360, 1, 8, 8]
    test_labels: np.ndarray   # int64 [360]


def digits() -> Digits:
    with resources.files(__name__).joinpath("digits.npz").open("rb") as f:
        z = np.load(f)
        arrays = {k: z[k] for k in z.files}
    images = lambda p: (p.reshape(-1, 1, 8, 8) / np.float32(16)).astype(np.float32)  # noqa: E731
    weights = {k: v for k, v in arrays.items() if k.startswith(("cnn_", "mlp_"))}
    return Digits(weights, images(arrays["calib_pixels"]), images(arrays["test_pixels"]),
                  arrays["test_labels"].astype(np.int64))
