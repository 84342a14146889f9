"""PyTorch semantics ONNX cannot express directly, checked on small hand-computed cases."""
import numpy as np
import pytest

import eightbit as eb


def one_op(x, build):
    g = eb.Graph()
    t = g.input("x", (None,) + x.shape[1:])
    g.output(build(g, t))
    return g.run(x)


X33 = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)      # [[0 1 2] [3 4 5] [6 7 8]]
X55 = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)


def test_conv2d_same_padding_puts_the_odd_pixel_at_the_end():
    # k=2: total padding 1, none before and one after (PyTorch); each output sums a 2x2 block
    y = one_op(X33, lambda g, t: g.conv2d(t, np.ones((1, 1, 2, 2)), padding="same"))
    np.testing.assert_array_equal(y[0, 0], [[8, 12, 7], [20, 24, 13], [13, 15, 8]])


def test_conv2d_same_padding_with_dilation_pads_both_sides():
    # k=2, d=2: total padding 2, one on each side; taps at offsets -1 and +1
    y = one_op(X33, lambda g, t: g.conv2d(t, np.ones((1, 1, 2, 2)), padding="same", dilation=2))
    np.testing.assert_array_equal(y[0, 0], [[4, 8, 4], [8, 16, 8], [4, 8, 4]])


def test_conv2d_valid_padding_is_no_padding():
    y = one_op(X33, lambda g, t: g.conv2d(t, np.ones((1, 1, 2, 2)), padding="valid"))
    np.testing.assert_array_equal(y[0, 0], [[8, 12], [20, 24]])


def test_max_pool2d_ceil_mode_drops_a_window_starting_in_the_end_padding():
    # n=3, k=2, s=2, p=1: ceil((3+2-2)/2)+1 = 3 windows starting at -1, 1 and 3; the third starts
    # at n, in the end padding, so PyTorch keeps 2: rows {-1, 0} and {1, 2}
    y = one_op(X33, lambda g, t: g.max_pool2d(t, 2, 2, 1, ceil_mode=True))
    np.testing.assert_array_equal(y[0, 0], [[0, 2], [6, 8]])
    y_floor = one_op(X33, lambda g, t: g.max_pool2d(t, 2, 2, 1, ceil_mode=False))
    np.testing.assert_array_equal(y_floor, y)


def test_max_pool2d_ceil_mode_keeps_a_partial_last_window():
    y = one_op(X55, lambda g, t: g.max_pool2d(t, 2, ceil_mode=True))
    np.testing.assert_array_equal(y[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    assert one_op(X55, lambda g, t: g.max_pool2d(t, 2)).shape == (1, 1, 2, 2)


def test_max_pool2d_padding_never_wins():
    x = -1 - X33
    y = one_op(x, lambda g, t: g.max_pool2d(t, 3, 1, 1))
    np.testing.assert_array_equal(y[0, 0], [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])


@pytest.mark.parametrize("include, expected", [(True, [1.0, 3.0, 2.0]), (False, [1.5, 3.0, 4.0])])
def test_avg_pool2d_ceil_mode_divisors(include, expected):
    # x = [1 2 3 4], k=3, s=2, p=1, ceil: windows [-1, 2), [1, 4), [3, 6) -> the last is clipped to
    # the padded end 5: 2 taps with count_include_pad (4 + pad 0), else 1 tap (4)
    x = np.float32([1, 2, 3, 4]).reshape(1, 1, 1, 4)
    y = one_op(x, lambda g, t: g.avg_pool2d(t, (1, 3), (1, 2), (0, 1), ceil_mode=True, count_include_pad=include))
    np.testing.assert_allclose(y[0, 0, 0], expected, rtol=1e-6)


def test_flatten_from_dim_2_keeps_channels():
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    y = one_op(x, lambda g, t: g.flatten(t, start_dim=2))
    np.testing.assert_array_equal(y, x.reshape(1, 2, 12))


def test_leaky_relu_scales_negatives_only():
    x = np.float32([[-2, -0.5, 0, 3]])
    np.testing.assert_array_equal(one_op(x, lambda g, t: g.leaky_relu(t, 0.1)), np.float32([[-0.2, -0.05, 0, 3]]))


def test_relu6_and_hardswish_values():
    x = np.float32([[-4, -3, -1, 0, 1, 3, 7]])
    np.testing.assert_array_equal(one_op(x, lambda g, t: g.relu6(t)), np.float32([[0, 0, 0, 0, 1, 3, 6]]))
    np.testing.assert_allclose(one_op(x, lambda g, t: g.hardswish(t)),
                               np.float32([[0, 0, -1 / 3, 0, 2 / 3, 3, 7]]), rtol=1e-6)


def test_dropout_is_the_identity_at_inference():
    x = np.float32([[1, 2, 3]])
    np.testing.assert_array_equal(one_op(x, lambda g, t: g.dropout(t, 0.9)), x)


def test_global_avg_pool2d_keeps_unit_spatial_dims():
    y = one_op(X33, lambda g, t: g.global_avg_pool2d(t))
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == 4.0
