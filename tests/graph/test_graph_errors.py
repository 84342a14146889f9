"""Build-time errors: one test per rule; each message names the node (or input) and the argument."""
import numpy as np
import pytest

import eightbit as eb


@pytest.fixture
def g():
    return eb.Graph()


@pytest.fixture
def x(g):
    return g.input("x", (None, 4, 6, 6))


def W(*shape):
    return np.ones(shape, np.float32)


def test_conv2d_weight_of_wrong_rank(g, x):
    with pytest.raises(ValueError, match=r"conv2d_0 \(conv2d\): weight must have rank 4"):
        g.conv2d(x, W(8, 4, 3))


def test_conv2d_channel_mismatch(g, x):
    with pytest.raises(ValueError, match=r"conv2d_0 \(conv2d\): weight has 3 input channels per group, but x has 4"):
        g.conv2d(x, W(8, 3, 3, 3))


def test_conv2d_groups_not_dividing_input_channels(g, x):
    with pytest.raises(ValueError, match=r"conv2d_0 \(conv2d\): groups=3 does not divide the 4 input channels"):
        g.conv2d(x, W(6, 1, 3, 3), groups=3)


def test_conv2d_groups_not_dividing_output_channels(g, x):
    with pytest.raises(ValueError, match=r"groups=2 does not divide the 5 output channels of weight"):
        g.conv2d(x, W(5, 2, 3, 3), groups=2)


def test_conv2d_bias_of_wrong_shape(g, x):
    with pytest.raises(ValueError, match=r"conv2d_0 \(conv2d\): bias must have shape \[8\]"):
        g.conv2d(x, W(8, 4, 3, 3), W(4))


def test_conv2d_negative_padding(g, x):
    with pytest.raises(ValueError, match=r"conv2d_0 \(conv2d\): padding must be >= 0, got \(-1, -1\)"):
        g.conv2d(x, W(8, 4, 3, 3), padding=-1)


def test_conv2d_zero_stride(g, x):
    with pytest.raises(ValueError, match=r"stride must be >= 1"):
        g.conv2d(x, W(8, 4, 3, 3), stride=(1, 0))


def test_conv2d_stride_of_wrong_type(g, x):
    with pytest.raises(TypeError, match=r"stride must be an int or a pair of ints"):
        g.conv2d(x, W(8, 4, 3, 3), stride=1.5)


def test_conv2d_same_padding_with_stride(g, x):
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1"):
        g.conv2d(x, W(8, 4, 3, 3), stride=2, padding="same")


def test_conv2d_unknown_padding_string(g, x):
    with pytest.raises(ValueError, match=r"padding must be an int, a pair, 'same' or 'valid', got 'full'"):
        g.conv2d(x, W(8, 4, 3, 3), padding="full")


def test_conv2d_kernel_larger_than_padded_input(g, x):
    with pytest.raises(ValueError, match=r"conv2d_0 \(conv2d\): kernel \(extent 9 on spatial axis 0\) is larger "
                                         r"than the padded input \(6 \+ padding 1 \+ 1\)"):
        g.conv2d(x, W(8, 4, 5, 3), padding=1, dilation=(2, 1))


def test_conv2d_input_of_wrong_rank(g):
    t = g.input("t", (None, 4, 6))
    with pytest.raises(ValueError, match=r"conv2d_0 \(conv2d\): x must be NCHW \(rank 4\), got shape \[\?, 4, 6\]"):
        g.conv2d(t, W(8, 4, 3, 3))


def test_non_finite_weights(g, x):
    w = W(8, 4, 3, 3)
    w[1, 2, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"conv2d_0 \(conv2d\): weight must be finite"):
        g.conv2d(x, w)


def test_weights_overflowing_float32(g):
    t = g.input("t", (None, 2))
    with pytest.raises(ValueError, match=r"linear_0 \(linear\): weight must be finite \(in float32\)"):
        g.linear(t, np.full((2, 2), 1e300))


def test_non_numeric_weights(g):
    t = g.input("t", (None, 2))
    with pytest.raises(TypeError, match=r"linear_0 \(linear\): weight must be a real numeric array, got dtype <U1"):
        g.linear(t, np.array([["a", "b"]]))


def test_weight_given_as_a_tensor(g, x):
    with pytest.raises(TypeError, match=r"conv2d_0 \(conv2d\): weight must be a constant NumPy array, got Tensor 'x'"):
        g.conv2d(x, x)


def test_linear_feature_mismatch(g):
    t = g.input("t", (None, 5))
    with pytest.raises(ValueError, match=r"linear_0 \(linear\): weight has 4 input features, but x has 5"):
        g.linear(t, W(3, 4))


def test_matmul_of_two_tensors(g):
    t = g.input("t", (None, 5))
    with pytest.raises(TypeError, match=r"matmul_0 \(matmul\): b must be a constant \[K, N\] array"):
        g.matmul(t, t)


def test_matmul_inner_dimension_mismatch(g):
    t = g.input("t", (None, 5))
    with pytest.raises(ValueError, match=r"matmul_0 \(matmul\): b has K=4 rows, but x has 5"):
        g.matmul(t, W(4, 2))


def test_tensor_from_another_graph(g):
    other = eb.Graph()
    t = other.input("x", (None, 4))
    g.input("x", (None, 4))
    with pytest.raises(ValueError, match=r"relu_0 \(relu\): x \(tensor 'x'\) belongs to another graph"):
        g.relu(t)


def test_input_that_is_not_a_tensor(g):
    with pytest.raises(TypeError, match=r"relu_0 \(relu\): x must be a Tensor of this graph, got ndarray"):
        g.relu(np.zeros(3))


def test_add_of_incompatible_shapes(g, x):
    y = g.input("y", (None, 4, 5, 6))
    with pytest.raises(ValueError, match=r"add_0 \(add\): shapes \[\?, 4, 6, 6\] and b \[\?, 4, 5, 6\] "
                                         r"do not broadcast"):
        g.add(x, y)


def test_mul_by_a_constant_of_incompatible_shape(g, x):
    with pytest.raises(ValueError, match=r"mul_0 \(mul\): shapes .* do not broadcast \(dimension 3: 6 vs 4\)"):
        g.mul(x, W(4))


def test_constant_spanning_a_free_batch(g, x):
    with pytest.raises(ValueError, match=r"mul_0 \(mul\): .* \(dimension 0: \? vs 2\)"):
        g.mul(x, W(2, 4, 6, 6))


def test_constant_with_more_dimensions_than_the_tensor(g, x):
    with pytest.raises(ValueError, match=r"add_0 \(add\): b .* has more dimensions than a"):
        g.add(x, W(1, 1, 4, 6, 6))


def test_binary_without_any_tensor(g):
    with pytest.raises(TypeError, match=r"add_0 \(add\): at least one of a, b must be a Tensor"):
        g.add(W(2), W(2))


def test_softmax_axis_out_of_range(g, x):
    with pytest.raises(ValueError, match=r"softmax_0 \(softmax\): axis=4 is out of range for rank 4"):
        g.softmax(x, 4)


def test_concat_along_the_batch_axis(g, x):
    with pytest.raises(ValueError, match=r"concat_0 \(concat\): axis=0 is out of range \[1, 3\]"):
        g.concat([x, x], 0)


def test_concat_of_mismatched_shapes(g, x):
    y = g.input("y", (None, 4, 5, 6))
    with pytest.raises(ValueError, match=r"concat_0 \(concat\): input 1 has shape \[\?, 4, 5, 6\]"):
        g.concat([x, y], 1)


def test_concat_of_a_single_tensor_not_in_a_list(g, x):
    with pytest.raises(TypeError, match=r"concat_0 \(concat\): ts must be a non-empty list of Tensors"):
        g.concat(x, 1)


def test_pool_padding_over_half_the_kernel(g, x):
    with pytest.raises(ValueError, match=r"max_pool2d_0 \(max_pool2d\): padding=\(2, 2\) must be at most half"):
        g.max_pool2d(x, 3, padding=2)


def test_pool_kernel_larger_than_input(g, x):
    with pytest.raises(ValueError, match=r"avg_pool2d_0 \(avg_pool2d\): kernel \(extent 7 on spatial axis 0\)"):
        g.avg_pool2d(x, 7)


def test_pool_ceil_mode_of_wrong_type(g, x):
    with pytest.raises(TypeError, match=r"max_pool2d_0 \(max_pool2d\): ceil_mode must be a bool"):
        g.max_pool2d(x, 2, ceil_mode="yes")


def test_batch_norm_channel_mismatch(g, x):
    with pytest.raises(ValueError, match=r"batch_norm2d_0 \(batch_norm2d\): mean must have shape \[4\]"):
        g.batch_norm2d(x, W(3), W(3))


def test_batch_norm_negative_variance(g, x):
    with pytest.raises(ValueError, match=r"batch_norm2d_0 \(batch_norm2d\): var must be >= 0"):
        g.batch_norm2d(x, W(4), -W(4))


def test_batch_norm_non_positive_eps(g, x):
    with pytest.raises(ValueError, match=r"batch_norm2d_0 \(batch_norm2d\): eps must be > 0"):
        g.batch_norm2d(x, W(4), W(4), eps=0)


def test_clip_with_min_above_max(g, x):
    with pytest.raises(ValueError, match=r"clip_0 \(clip\): min must be <= max, got min=2.0, max=1.0"):
        g.clip(x, 2, 1)


def test_clip_with_infinite_bound(g, x):
    with pytest.raises(ValueError, match=r"clip_0 \(clip\): max must be finite"):
        g.clip(x, 0, np.inf)


def test_gelu_unknown_approximation(g, x):
    with pytest.raises(ValueError, match=r"gelu_0 \(gelu\): approximate must be 'none' or 'tanh', got 'erf'"):
        g.gelu(x, "erf")


def test_dropout_probability_out_of_range(g, x):
    with pytest.raises(ValueError, match=r"dropout_0 \(dropout\): p must be in \[0, 1\], got 1.5"):
        g.dropout(x, 1.5)


def test_flatten_of_the_batch_dimension(g, x):
    with pytest.raises(ValueError, match=r"flatten_0 \(flatten\): start_dim=0 would merge the batch dimension"):
        g.flatten(x, 0)


def test_reshape_to_a_different_size(g, x):
    with pytest.raises(ValueError, match=r"reshape_0 \(reshape\): shape=\(10, 10\) holds 100 values per sample, "
                                         r"but x \[\?, 4, 6, 6\] has 144"):
        g.reshape(x, (10, 10))


def test_reshape_minus_one_that_does_not_divide(g, x):
    with pytest.raises(ValueError, match=r"reshape_0 \(reshape\): shape=\(7, -1\) cannot hold the 144 values"):
        g.reshape(x, (7, -1))


def test_reshape_with_two_minus_ones(g, x):
    with pytest.raises(ValueError, match=r"reshape_0 \(reshape\): shape=\(-1, -1\) may hold one -1"):
        g.reshape(x, (-1, -1))


def test_duplicate_node_name(g, x):
    g.relu(x, name="a")
    with pytest.raises(ValueError, match=r"relu: name 'a' is already used by a node"):
        g.relu(x, name="a")


def test_node_name_taken_by_an_input(g, x):
    with pytest.raises(ValueError, match=r"relu: name 'x' is already used by a tensor"):
        g.relu(x, name="x")


def test_duplicate_input_name(g, x):
    with pytest.raises(ValueError, match=r"input 'x': the name is already used by a tensor"):
        g.input("x", (None, 3))


def test_input_with_a_free_dimension_other_than_the_batch(g):
    with pytest.raises(ValueError, match=r"input 'y': shape\[1\] must be a positive int "
                                         r"\(only dimension 0 may be None\)"):
        g.input("y", (None, None, 3))


def test_input_with_a_zero_dimension(g):
    with pytest.raises(ValueError, match=r"input 'y': shape\[2\] must be a positive int"):
        g.input("y", (None, 3, 0))


def test_output_marked_twice(g, x):
    g.output(x)
    with pytest.raises(ValueError, match=r"output: tensor 'x' is already an output"):
        g.output(x)


def test_add_node_of_an_unknown_op(g, x):
    with pytest.raises(ValueError, match=r"unknown op 'swish'; known ops: add, additive_mask, avg_pool2d"):
        g.add_node("swish", [x])


def test_add_node_with_a_bad_activation(g, x):
    with pytest.raises(ValueError, match=r"n \(add\): activation must be None, 'relu' or \('clip', lo, hi\), "
                                         r"got 'relu6'"):
        g.add_node("add", [x, x], {"activation": "relu6"}, name="n")


def test_add_node_missing_a_constant(g, x):
    with pytest.raises(ValueError, match=r"conv2d_0 \(conv2d\): constant 'weight' is missing"):
        g.add_node("conv2d", [x], {"stride": (1, 1), "pads": (0,) * 4, "dilation": (1, 1), "groups": 1})


def test_add_node_with_wrong_input_count(g, x):
    with pytest.raises(ValueError, match=r"relu_0 \(relu\): expected 1 input tensor\(s\), got 2"):
        g.add_node("relu", [x, x])


def test_a_failed_builder_leaves_the_graph_unchanged(g, x):
    with pytest.raises(ValueError):
        g.conv2d(x, W(8, 3, 3, 3))
    assert g.nodes == [] and list(g.tensors) == ["x"]
    assert g.conv2d(x, W(8, 4, 3, 3)).name == "conv2d_0"
