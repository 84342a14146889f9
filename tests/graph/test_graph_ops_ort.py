"""Every op of the float graph executor against the equivalent one-node ONNX model in ONNX Runtime."""
import numpy as np
import pytest
from _graph_oracle import assert_close, onnx_node

import eightbit as eb


def run_one(x, build, *more_inputs):
    """Build a one-op graph on input "x" (free batch dimension) and run it on x."""
    g = eb.Graph()
    t = g.input("x", (None,) + x.shape[1:])
    extra = [g.input(name, (None,) + a.shape[1:]) for name, a in more_inputs]
    g.output(build(g, t, *extra))
    feeds = {"x": x, **dict(more_inputs)}
    return g.run(feeds)


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


CONV_CASES = [
    # C, M, (kh, kw), stride, padding, dilation, groups, (H, W), bias
    (3, 8, (3, 3), 1, 1, 1, 1, (8, 8), True),
    (4, 6, (3, 3), 2, 1, 1, 1, (9, 7), True),
    (3, 5, (3, 3), 1, 2, 2, 1, (10, 9), False),
    (4, 6, (3, 3), 1, 1, 1, 2, (6, 6), True),
    (4, 4, (3, 3), 2, 1, 1, 4, (7, 8), True),          # depthwise
    (3, 6, (5, 5), 1, 2, 1, 3, (8, 8), True),          # depthwise, channel multiplier 2
    (3, 3, (3, 3), 2, 2, 2, 3, (11, 9), False),        # depthwise, dilated and strided
    (8, 16, (1, 1), 1, 0, 1, 1, (5, 5), True),         # pointwise
    (2, 3, (3, 1), (2, 1), (1, 0), 1, 1, (7, 5), True),  # non-square kernel, stride and padding
    (1, 4, (7, 7), 2, 3, 1, 1, (16, 16), True),        # stem-like
]


@pytest.mark.parametrize("c, m, k, stride, padding, dilation, groups, hw, with_bias", CONV_CASES)
def test_conv2d_matches_onnx_conv(rng, c, m, k, stride, padding, dilation, groups, hw, with_bias):
    x = randn(rng, 2, c, *hw)
    w = randn(rng, m, c // groups, *k, scale=1 / np.sqrt(c // groups * k[0] * k[1]))
    b = randn(rng, m) if with_bias else None
    y = run_one(x, lambda g, t: g.conv2d(t, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups))
    pair = lambda v: [v, v] if isinstance(v, int) else list(v)
    consts = {"w": w, **({"b": b} if with_bias else {})}
    ref = onnx_node("Conv", {"x": x}, consts, kernel_shape=list(k), strides=pair(stride), pads=pair(padding) * 2,
                    dilations=pair(dilation), group=groups)
    assert_close(y, ref)


def test_conv2d_same_padding_even_kernel_matches_onnx_with_end_heavy_pads(rng):
    # PyTorch's padding="same": total d*(k-1) = 3, one before and two after (ONNX SAME_UPPER here)
    x, w = randn(rng, 2, 2, 6, 5), randn(rng, 3, 2, 4, 4)
    y = run_one(x, lambda g, t: g.conv2d(t, w, padding="same"))
    assert_close(y, onnx_node("Conv", {"x": x}, {"w": w}, kernel_shape=[4, 4], pads=[1, 1, 2, 2]))
    assert y.shape == (2, 3, 6, 5)


def test_linear_matches_onnx_gemm(rng):
    x, w, b = randn(rng, 3, 20), randn(rng, 7, 20), randn(rng, 7)
    y = run_one(x, lambda g, t: g.linear(t, w, b))
    assert_close(y, onnx_node("Gemm", {"x": x}, {"w": w, "b": b}, transB=1))


def test_linear_on_rank3_input_matches_onnx_matmul(rng):
    x, w = randn(rng, 2, 5, 12), randn(rng, 4, 12)
    y = run_one(x, lambda g, t: g.linear(t, w))
    assert_close(y, onnx_node("MatMul", {"x": x}, {"wt": np.ascontiguousarray(w.T)}))


def test_matmul_matches_onnx_matmul(rng):
    x, b = randn(rng, 2, 5, 6), randn(rng, 6, 3)
    y = run_one(x, lambda g, t: g.matmul(t, b))
    assert_close(y, onnx_node("MatMul", {"x": x}, {"b": b}))


def test_batch_norm2d_matches_onnx(rng):
    x = randn(rng, 2, 3, 4, 5, scale=3)
    mean, var = randn(rng, 3), rng.uniform(0.1, 2.0, 3).astype(np.float32)
    gamma, beta = randn(rng, 3), randn(rng, 3)
    y = run_one(x, lambda g, t: g.batch_norm2d(t, mean, var, gamma, beta, eps=1e-3))
    ref = onnx_node("BatchNormalization", {"x": x}, {"s": gamma, "b": beta, "m": mean, "v": var}, epsilon=1e-3)
    assert_close(y, ref)


@pytest.mark.parametrize("k, s, p, ceil, hw", [
    (2, 2, 0, False, (8, 8)), (3, 2, 1, False, (9, 7)), (3, 2, 1, True, (8, 8)),
    (2, 2, 1, True, (3, 3)),               # ceil would add a window starting in the end padding: dropped
    (3, 3, 1, True, (7, 10)), ((3, 2), (2, 1), (1, 0), True, (6, 5)),
])
def test_max_pool2d_matches_onnx_maxpool(rng, k, s, p, ceil, hw):
    x = randn(rng, 2, 3, *hw)
    y = run_one(x, lambda g, t: g.max_pool2d(t, k, s, p, ceil_mode=ceil))
    pair = lambda v: [v, v] if isinstance(v, int) else list(v)
    ref = onnx_node("MaxPool", {"x": x}, kernel_shape=pair(k), strides=pair(s), pads=pair(p) * 2, ceil_mode=int(ceil))
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("k, s, p, ceil, include", [
    (2, 2, 0, False, True), (3, 2, 1, False, True), (3, 2, 1, False, False), (3, 1, 1, False, False),
    (3, 2, 1, True, True), (3, 2, 1, True, False), (2, 2, 1, True, True),
])
def test_avg_pool2d_matches_onnx_averagepool(rng, k, s, p, ceil, include):
    x = randn(rng, 2, 3, 8, 7)
    y = run_one(x, lambda g, t: g.avg_pool2d(t, k, s, p, ceil_mode=ceil, count_include_pad=include))
    ref = onnx_node("AveragePool", {"x": x}, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4,
                    ceil_mode=int(ceil), count_include_pad=int(include))
    assert_close(y, ref)


def test_global_avg_pool2d_matches_onnx(rng):
    x = randn(rng, 2, 5, 7, 6)
    y = run_one(x, lambda g, t: g.global_avg_pool2d(t))
    assert_close(y, onnx_node("GlobalAveragePool", {"x": x}))


UNARY = [
    ("relu", lambda g, t: g.relu(t), "Relu", {}, {}),
    ("relu6", lambda g, t: g.relu6(t), "Clip", {"lo": np.float32(0), "hi": np.float32(6)}, {}),
    ("clip", lambda g, t: g.clip(t, -0.5, 1.25), "Clip", {"lo": np.float32(-0.5), "hi": np.float32(1.25)}, {}),
    ("leaky_relu", lambda g, t: g.leaky_relu(t, 0.2), "LeakyRelu", {}, {"alpha": 0.2}),
    ("leaky_relu_default", lambda g, t: g.leaky_relu(t), "LeakyRelu", {}, {"alpha": 0.01}),
    ("sigmoid", lambda g, t: g.sigmoid(t), "Sigmoid", {}, {}),
    ("tanh", lambda g, t: g.tanh(t), "Tanh", {}, {}),
    ("hardswish", lambda g, t: g.hardswish(t), "HardSwish", {}, {}),
    ("gelu", lambda g, t: g.gelu(t), "Gelu", {}, {}),
    ("gelu_tanh", lambda g, t: g.gelu(t, approximate="tanh"), "Gelu", {}, {"approximate": "tanh"}),
]


@pytest.mark.parametrize("label, build, op, consts, attrs", UNARY, ids=[u[0] for u in UNARY])
def test_elementwise_matches_onnx(rng, label, build, op, consts, attrs):
    # wide range: exercises clipping, the sigmoid / tanh tails and both erf branches
    x = np.concatenate([randn(rng, 2, 3, 40, scale=4), np.float32([-60, -9, -3, -1, 0, 1, 3, 9, 60])
                        .reshape(1, 1, 9).repeat(2, 0).repeat(3, 1)], axis=2)
    y = run_one(x, build)
    assert_close(y, onnx_node(op, {"x": x}, consts, **attrs), rtol=2e-6, atol=2e-6)


def test_clip_with_one_bound_matches_onnx(rng):
    x = randn(rng, 2, 10)
    y = run_one(x, lambda g, t: g.clip(t, max=0.3))
    assert_close(y, onnx_node("Clip", {"x": x}, {"hi": np.float32(0.3)}, inputs=["x", "", "hi"]))


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_softmax_matches_onnx(rng, axis):
    x = randn(rng, 2, 4, 6, scale=5)
    y = run_one(x, lambda g, t: g.softmax(t, axis))
    assert_close(y, onnx_node("Softmax", {"x": x}, axis=axis), rtol=1e-6, atol=1e-6)


def test_concat_matches_onnx(rng):
    a, b = randn(rng, 2, 3, 4, 4), randn(rng, 2, 5, 4, 4)
    y = run_one(a, lambda g, t, u: g.concat([t, u, t], 1), ("b", b))
    np.testing.assert_array_equal(y, onnx_node("Concat", {"x": a, "b": b}, inputs=["x", "b", "x"], axis=1))


def test_flatten_matches_onnx(rng):
    x = randn(rng, 2, 3, 4, 5)
    y = run_one(x, lambda g, t: g.flatten(t))
    np.testing.assert_array_equal(y, onnx_node("Flatten", {"x": x}, axis=1))


def test_reshape_matches_onnx(rng):
    x = randn(rng, 2, 48)
    y = run_one(x, lambda g, t: g.reshape(t, (3, -1, 4)))
    np.testing.assert_array_equal(y, onnx_node("Reshape", {"x": x}, {"s": np.array([0, 3, -1, 4], np.int64)}))


@pytest.mark.parametrize("op, onnx_op", [("add", "Add"), ("mul", "Mul")])
def test_binary_of_two_tensors_matches_onnx(rng, op, onnx_op):
    a, b = randn(rng, 2, 3, 4, 5), randn(rng, 2, 3, 1, 5)
    y = run_one(a, lambda g, t, u: getattr(g, op)(t, u), ("b", b))
    assert_close(y, onnx_node(onnx_op, {"x": a, "b": b}))


@pytest.mark.parametrize("op, onnx_op", [("add", "Add"), ("mul", "Mul")])
@pytest.mark.parametrize("const_shape", [(), (5,), (3, 1, 1), (1, 3, 4, 1)])
def test_binary_with_constant_matches_onnx(rng, op, onnx_op, const_shape):
    a, c = randn(rng, 2, 3, 4, 5), randn(rng, *const_shape)
    y = run_one(a, lambda g, t: getattr(g, op)(t, c))
    assert_close(y, onnx_node(onnx_op, {"x": a}, {"c": c}))
    y_swapped = run_one(a, lambda g, t: getattr(g, op)(c, t))       # constant first: same result
    np.testing.assert_array_equal(y_swapped, y)
