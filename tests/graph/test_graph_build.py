"""Graph construction: shape inference (with a free batch dimension), names, constants, display."""
import numpy as np
import pytest

import eightbit as eb
from eightbit.graph import Node


def test_shapes_are_inferred_through_a_network_with_a_free_batch():
    g = eb.Graph()
    x = g.input("x", (None, 3, 32, 30))
    a = g.conv2d(x, np.zeros((16, 3, 3, 3)), stride=2, padding=1)
    assert a.shape == (None, 16, 16, 15)
    b = g.conv2d(a, np.zeros((16, 1, 3, 3)), padding="same", dilation=2, groups=16)
    assert b.shape == (None, 16, 16, 15)
    c = g.max_pool2d(b, 3, 2, 1, ceil_mode=True)
    assert c.shape == (None, 16, 9, 8)           # ceil((16 + 2 - 3) / 2) + 1 = 9, ceil(14 / 2) + 1 = 8
    d = g.avg_pool2d(c, 2)
    assert d.shape == (None, 16, 4, 4)
    e = g.concat([d, g.mul(d, np.ones((16, 1, 1)))], axis=-3)
    assert e.shape == (None, 32, 4, 4)
    assert g.global_avg_pool2d(e).shape == (None, 32, 1, 1)
    f = g.flatten(e)
    assert f.shape == (None, 512)
    assert g.reshape(f, (8, -1)).shape == (None, 8, 64)
    assert g.reshape(f, (None, 2, 256)).shape == (None, 2, 256)      # a leading None is the batch
    assert g.linear(f, np.zeros((10, 512))).shape == (None, 10)
    assert g.matmul(g.reshape(f, (8, 64)), np.zeros((64, 5))).shape == (None, 8, 5)
    assert g.softmax(f, -1).shape == (None, 512)


def test_broadcasting_keeps_the_free_batch_dimension():
    g = eb.Graph()
    x = g.input("x", (None, 3, 4, 4))
    one = g.input("one", (1, 3, 1, 4))
    assert g.add(x, g.input("y", (None, 3, 1, 1))).shape == (None, 3, 4, 4)
    assert g.add(x, one).shape == (None, 3, 4, 4)
    assert g.mul(one, np.ones((5, 1))).shape == (1, 3, 5, 4)


def test_fixed_batch_dimension_is_kept():
    g = eb.Graph()
    x = g.input("x", (2, 4, 6, 6))
    assert g.conv2d(x, np.zeros((8, 4, 3, 3))).shape == (2, 8, 4, 4)


def test_auto_names_count_per_op_and_explicit_names_are_used():
    g = eb.Graph()
    x = g.input("x", (None, 4))
    a = g.relu(x)
    b = g.relu(a)
    c = g.linear(b, np.zeros((3, 4)), name="head")
    d = g.relu(c)
    assert [a.name, b.name, c.name, d.name] == ["relu_0", "relu_1", "head", "relu_2"]
    assert [n.name for n in g.nodes] == ["relu_0", "relu_1", "head", "relu_2"]
    assert g.node("head").outputs == ["head"] and g.producer("head") is g.node("head")
    assert g.producer("x") is None
    assert [n.name for n in g.consumers("relu_1")] == ["head"]


def test_auto_names_skip_names_already_taken():
    g = eb.Graph()
    x = g.input("x", (None, 4))
    g.relu(x, name="relu_0")
    assert g.relu(x).name == "relu_1"


def test_nodes_are_plain_records_with_normalized_attrs():
    g = eb.Graph()
    x = g.input("x", (None, 2, 5, 5))
    g.conv2d(x, np.ones((4, 2, 3, 3)), np.zeros(4), stride=(2, 1), padding=(1, 0))
    node = g.nodes[0]
    assert isinstance(node, Node)
    assert node.op == "conv2d" and node.inputs == ["x"] and node.outputs == ["conv2d_0"]
    assert node.attrs == {"stride": (2, 1), "pads": (1, 0, 1, 0), "dilation": (1, 1), "groups": 1,
                          "activation": None}
    assert set(node.consts) == {"weight", "bias"}


def test_weights_are_copied_to_read_only_float32():
    w = np.ones((3, 4))                                  # float64, the user's array
    g = eb.Graph()
    x = g.input("x", (None, 4))
    g.output(g.linear(x, w))
    stored = g.nodes[0].consts["weight"]
    assert stored.dtype == np.float32 and stored.flags.c_contiguous and not stored.flags.writeable
    w[:] = 100.0                                          # changing the original changes nothing
    np.testing.assert_array_equal(g.run(np.ones((1, 4), np.float32)), [[4, 4, 4]])
    with pytest.raises(ValueError):
        stored[0, 0] = 1.0


def test_integer_weights_are_accepted_and_converted():
    g = eb.Graph()
    x = g.input("x", (None, 2))
    g.output(g.matmul(x, np.array([[1, 2], [3, 4]], np.int64)))
    np.testing.assert_array_equal(g.run(np.float32([[1, 1]])), [[4, 6]])


def test_summary_lists_inputs_nodes_and_outputs_with_shapes():
    g = eb.Graph("tiny")
    x = g.input("x", (None, 1, 8, 8))
    g.output(g.relu(g.conv2d(x, np.zeros((4, 1, 3, 3)), padding=1)))
    text = repr(g)
    assert text == g.summary()
    assert "Graph 'tiny'" in text
    assert "input   x [?, 1, 8, 8]" in text
    assert "conv2d(x) -> conv2d_0 [?, 4, 8, 8]" in text and "weight[4, 1, 3, 3]" in text
    assert "relu(conv2d_0) -> relu_0 [?, 4, 8, 8]" in text
    assert "output  relu_0 [?, 4, 8, 8]" in text
    assert repr(x) == "Tensor('x', [?, 1, 8, 8])"


def test_copy_is_independent_and_equal():
    g = eb.Graph()
    x = g.input("x", (None, 3))
    g.output(g.linear(x, np.eye(3), np.ones(3)))
    h = g.copy()
    h.output(h.relu(h.tensor("linear_0")))
    assert len(g.nodes) == 1 and g.outputs == ["linear_0"]
    assert h.outputs == ["linear_0", "relu_0"]
    v = np.float32([[1, -5, 2]])
    np.testing.assert_array_equal(h.run(v)["linear_0"], g.run(v))


def test_add_node_accepts_normalized_attrs_and_tensor_names():
    g = eb.Graph()
    g.input("x", (None, 4))
    t = g.add_node("clip", ["x"], {"min": 0.0, "max": 2.0}, name="c", output_name="y")
    assert t.name == "y" and g.node("c").outputs == ["y"] and t.shape == (None, 4)
    g.output(t)
    np.testing.assert_array_equal(g.run(np.float32([[-1, 1, 3, 0]])), [[0, 1, 2, 0]])
