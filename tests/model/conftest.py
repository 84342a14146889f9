"""Shared pieces of the model tests: a hand-built quantized CNN plan and its float model."""
import numpy as np
import pytest

import eightbit as eb
from eightbit.model import Plan, Step, TensorSpec

U8, F32 = np.dtype(np.uint8), np.dtype(np.float32)


def make_tiny_cnn_plan(rng):
    """x [N,3,8,8] -> conv 3x3 (8 ch, relu) -> maxpool 2 -> flatten -> linear 128->10 -> y."""
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.1, (10, 128)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 10).astype(np.float32)
    s_x, s_h, s_y = 2.0 / 255, 0.02, 0.05
    q1, ws1 = eb.numerics.qparams.quantize_weight_symmetric(w1)
    q2, ws2 = eb.numerics.qparams.quantize_weight_symmetric(w2)
    bias1 = np.round(b1 / (np.float32(s_x) * ws1)).astype(np.int32)
    bias2 = np.round(b2 / (np.float32(s_h) * ws2)).astype(np.int32)
    t = {
        "x": TensorSpec("x", F32, (None, 3, 8, 8)),
        "xq": TensorSpec("xq", U8, (None, 8, 8, 3), s_x, 128),
        "h": TensorSpec("h", U8, (None, 8, 8, 8), s_h, 0),
        "p": TensorSpec("p", U8, (None, 4, 4, 8), s_h, 0),
        "f": TensorSpec("f", U8, (None, 128), s_h, 0),
        "yq": TensorSpec("yq", U8, (None, 10), s_y, 128),
        "y": TensorSpec("y", F32, (None, 10)),
    }
    steps = [
        Step("quantize", ("x",), "xq"),
        Step("conv", ("xq",), "h", dict(strides=(1, 1), pads=(1, 1, 1, 1), activation="relu"),
             dict(w=q1, w_scale=ws1, bias=bias1), source="conv1"),
        Step("max_pool", ("h",), "p", dict(kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0))),
        Step("reshape", ("p",), "f", dict(shape=(None, 128))),
        Step("linear", ("f",), "yq", {}, dict(w=q2, w_scale=ws2, bias=bias2), source="fc"),
        Step("dequantize", ("yq",), "y"),
    ]
    plan = Plan(t, steps, ["x"], ["y"])
    return plan, (w1, b1, w2, b2)


def float_forward(x, w1, b1, w2, b2):
    n = x.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h = np.zeros((n, 8, 8, 8), np.float64)
    for i in range(3):
        for j in range(3):
            h += np.einsum("nchw,oc->nohw", xp[:, :, i:i + 8, j:j + 8], w1[:, :, i, j])
    h = np.maximum(h + b1[None, :, None, None], 0)
    p = h.reshape(n, 8, 4, 2, 4, 2).max(axis=(3, 5))
    return p.reshape(n, -1) @ w2.T + b2




@pytest.fixture
def tiny_cnn_plan():
    return make_tiny_cnn_plan


@pytest.fixture
def tiny_float_forward():
    return float_forward
