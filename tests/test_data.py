"""The shipped digits data is scikit-learn's, and its models are the trained ones."""
import numpy as np
import pytest

from eightbit.data import digits


def test_test_split_is_sklearn_digits():
    sklearn = pytest.importorskip("sklearn.datasets")
    d = sklearn.load_digits()
    import eightbit.data as data
    from importlib import resources

    with resources.files(data).joinpath("digits.npz").open("rb") as f:
        z = np.load(f)
        idx = z["test_index"].astype(np.int64)
        np.testing.assert_array_equal(z["test_pixels"], d.data[idx].astype(np.uint8))
        np.testing.assert_array_equal(z["test_labels"], d.target[idx])
    assert len(np.unique(idx)) == len(idx) == 360


def test_float_mlp_is_trained():
    """An independent NumPy forward pass of the shipped MLP classifies the test split well."""
    d = digits()
    w = d.weights
    h = d.test_images.reshape(len(d.test_images), -1)
    h = np.maximum(h @ w["mlp_fc1_w"].T + w["mlp_fc1_b"], 0)
    h = np.maximum(h @ w["mlp_fc2_w"].T + w["mlp_fc2_b"], 0)
    logits = h @ w["mlp_fc3_w"].T + w["mlp_fc3_b"]
    assert (logits.argmax(axis=1) == d.test_labels).mean() > 0.95
