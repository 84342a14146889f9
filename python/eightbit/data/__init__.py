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


def digits_train() -> tuple[np.ndarray, np.ndarray]:
    """The split the shipped models were trained on: every image of scikit-learn's bundled 8x8
    digits (``load_digits``, no download) outside the test split, as (images float32 [N, 1, 8, 8]
    = pixels / 16, labels int64 [N]). For fine-tuning (quantization-aware training) without
    touching the test split. Needs scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("digits_train needs scikit-learn (pip install scikit-learn)") from e
    with resources.files(__name__).joinpath("digits.npz").open("rb") as f:
        test_index = np.load(f)["test_index"].astype(np.int64)
    data = load_digits()
    keep = np.setdiff1d(np.arange(len(data.target)), test_index)
    images = (data.data[keep].reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    return images, data.target[keep].astype(np.int64)


def cnn_graph(weights: dict):
    """The digits CNN as an eightbit Graph: conv 3x3 (16) -> relu -> maxpool 2 -> conv 3x3 (32) ->
    relu -> maxpool 2 -> flatten -> linear 128 -> 10. Input x [N, 1, 8, 8]."""
    from ..graph import Graph

    g = Graph("digits_cnn")
    x = g.input("x", (None, 1, 8, 8))
    h = g.max_pool2d(g.relu(g.conv2d(x, weights["cnn_conv1_w"], weights["cnn_conv1_b"], padding=1)), 2)
    h = g.max_pool2d(g.relu(g.conv2d(h, weights["cnn_conv2_w"], weights["cnn_conv2_b"], padding=1)), 2)
    g.output(g.linear(g.flatten(h), weights["cnn_fc_w"], weights["cnn_fc_b"], name="logits"))
    return g


def mlp_graph(weights: dict):
    """The digits MLP as an eightbit Graph: 64 -> 64 -> 32 -> 10 with ReLUs. Input x [N, 1, 8, 8]."""
    from ..graph import Graph

    g = Graph("digits_mlp")
    x = g.input("x", (None, 1, 8, 8))
    h = g.relu(g.linear(g.flatten(x), weights["mlp_fc1_w"], weights["mlp_fc1_b"]))
    h = g.relu(g.linear(h, weights["mlp_fc2_w"], weights["mlp_fc2_b"]))
    g.output(g.linear(h, weights["mlp_fc3_w"], weights["mlp_fc3_b"], name="logits"))
    return g
