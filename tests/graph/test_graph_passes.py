"""Passes: outputs preserved, nodes really folded / fused / removed, the input graph untouched."""
import numpy as np
import pytest

import eightbit as eb
from eightbit.graph import fold_batch_norm, fuse_activations, prepare_for_quantization, remove_identities


def ops(g):
    return [n.op for n in g.nodes]


def bn_params(rng, c):
    return (rng.standard_normal(c), rng.uniform(0.2, 3.0, c), rng.standard_normal(c), rng.standard_normal(c))


def assert_same_outputs(g, h, x):
    a, b = g.run(x), h.run(x)
    if isinstance(a, dict):
        assert list(a) == list(b)
        a, b = list(a.values()), list(b.values())
    else:
        a, b = [a], [b]
    for u, v in zip(a, b):
        np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(u).max())))


@pytest.mark.parametrize("groups, with_bias", [(1, True), (1, False), (2, True), (4, True)])
def test_fold_batch_norm_into_conv2d(rng, groups, with_bias):
    g = eb.Graph()
    x = g.input("x", (None, 4, 7, 7))
    c = g.conv2d(x, rng.standard_normal((8, 4 // groups, 3, 3)), rng.standard_normal(8) if with_bias else None,
                 stride=2, padding=1, groups=groups)
    g.output(g.relu(g.batch_norm2d(c, *bn_params(rng, 8), eps=1e-3)))
    before = ops(g)
    h = fold_batch_norm(g)
    assert ops(h) == ["conv2d", "relu"] and ops(g) == before
    assert h.outputs == g.outputs == ["relu_0"]
    assert h.nodes[0].name == "conv2d_0" and h.nodes[0].outputs == ["batch_norm2d_0"]
    assert_same_outputs(g, h, rng.standard_normal((3, 4, 7, 7)).astype(np.float32))


def test_fold_batch_norm_into_linear(rng):
    g = eb.Graph()
    x = g.input("x", (None, 6))
    g.output(g.batch_norm2d(g.linear(x, rng.standard_normal((5, 6)), rng.standard_normal(5)), *bn_params(rng, 5)))
    h = fold_batch_norm(g)
    assert ops(h) == ["linear"] and h.outputs == ["batch_norm2d_0"]
    assert_same_outputs(g, h, rng.standard_normal((4, 6)).astype(np.float32))


def test_batch_norm_over_a_non_feature_axis_of_linear_is_not_folded(rng):
    g = eb.Graph()
    x = g.input("x", (None, 3, 6))                         # BatchNorm axis 1 is not linear's output axis
    g.output(g.batch_norm2d(g.linear(x, rng.standard_normal((5, 6))), *bn_params(rng, 3)))
    assert ops(fold_batch_norm(g)) == ["linear", "batch_norm2d"]


def test_batch_norm_is_not_folded_when_the_conv_output_is_used_elsewhere(rng):
    g = eb.Graph()
    x = g.input("x", (None, 2, 5, 5))
    c = g.conv2d(x, rng.standard_normal((2, 2, 1, 1)))
    g.output(g.add(g.batch_norm2d(c, *bn_params(rng, 2)), c))
    assert ops(fold_batch_norm(g)) == ["conv2d", "batch_norm2d", "add"]


def test_batch_norm_is_not_folded_when_the_conv_output_is_a_graph_output(rng):
    g = eb.Graph()
    x = g.input("x", (None, 2, 5, 5))
    c = g.conv2d(x, rng.standard_normal((2, 2, 1, 1)))
    g.output(c)
    g.output(g.batch_norm2d(c, *bn_params(rng, 2)))
    h = fold_batch_norm(g)
    assert ops(h) == ["conv2d", "batch_norm2d"]
    assert_same_outputs(g, h, rng.standard_normal((2, 2, 5, 5)).astype(np.float32))


def test_batch_norm_after_a_non_foldable_op_stays(rng):
    g = eb.Graph()
    x = g.input("x", (None, 2, 4, 4))
    g.output(g.batch_norm2d(g.max_pool2d(x, 2), *bn_params(rng, 2)))
    assert ops(fold_batch_norm(g)) == ["max_pool2d", "batch_norm2d"]


def producer(g, kind, rng):
    x = g.input("x", (None, 3, 4, 4))
    if kind == "conv2d":
        return g.conv2d(x, rng.standard_normal((3, 3, 3, 3)), padding=1)
    if kind == "linear":
        return g.linear(x, rng.standard_normal((5, 4)), rng.standard_normal(5))
    if kind == "matmul":
        return g.matmul(x, rng.standard_normal((4, 4)))
    return g.add(x, g.mul(x, -2.0))


@pytest.mark.parametrize("kind", ["conv2d", "linear", "matmul", "add"])
@pytest.mark.parametrize("act, expected", [
    (lambda g, t: g.relu(t), "relu"),
    (lambda g, t: g.relu6(t), ("clip", 0.0, 6.0)),
    (lambda g, t: g.clip(t, -0.5, 0.75), ("clip", -0.5, 0.75)),
    (lambda g, t: g.clip(t, min=0), "relu"),
])
def test_fuse_activations_into_the_producer(rng, kind, act, expected):
    g = eb.Graph()
    g.output(act(g, producer(g, kind, rng)))
    h = fuse_activations(g)
    fused = [n for n in h.nodes if n.op == kind][-1]
    assert fused.attrs["activation"] == expected
    assert ops(h) == [op for op in ops(g) if op not in ("relu", "relu6", "clip")]
    assert h.outputs == g.outputs and fused.outputs == g.outputs
    assert all(n.attrs.get("activation") is None for n in g.nodes)        # the input graph is untouched
    assert_same_outputs(g, h, (rng.standard_normal((5, 3, 4, 4)) * 4).astype(np.float32))


def test_clip_with_an_open_bound_other_than_relu_is_not_fused(rng):
    g = eb.Graph()
    g.output(g.clip(producer(g, "conv2d", rng), max=1.0))
    assert ops(fuse_activations(g)) == ["conv2d", "clip"]


def test_activation_is_not_fused_when_the_producer_output_is_used_elsewhere(rng):
    g = eb.Graph()
    c = producer(g, "conv2d", rng)
    g.output(g.add(g.relu(c), c))
    assert ops(fuse_activations(g)) == ["conv2d", "relu", "add"]


def test_activation_is_not_fused_into_a_non_fusable_op_or_twice(rng):
    g = eb.Graph()
    x = g.input("x", (None, 2, 4, 4))
    p = g.relu(g.max_pool2d(x, 2))
    g.output(g.relu6(g.relu(g.conv2d(p, rng.standard_normal((2, 2, 1, 1))))))
    h = fuse_activations(g)
    assert ops(h) == ["max_pool2d", "relu", "conv2d", "relu6"]
    assert h.nodes[2].attrs["activation"] == "relu"
    assert_same_outputs(g, h, rng.standard_normal((2, 2, 4, 4)).astype(np.float32))


def test_remove_identities_drops_dropout_identity_and_no_op_shape_nodes(rng):
    g = eb.Graph()
    x = g.input("x", (None, 6))
    a = g.dropout(g.linear(x, rng.standard_normal((6, 6))))
    b = g.flatten(g.identity(a))                           # flatten of [N, 6] keeps the shape
    c = g.concat([g.reshape(b, (6,))], 1)
    g.output(g.relu(g.clip(c)))
    h = remove_identities(g)
    assert ops(h) == ["linear", "relu"]
    assert h.nodes[1].inputs == ["linear_0"] and h.outputs == ["relu_0"]
    assert_same_outputs(g, h, rng.standard_normal((3, 6)).astype(np.float32))


def test_remove_identities_renames_the_producer_of_a_graph_output(rng):
    g = eb.Graph()
    x = g.input("x", (None, 4))
    a = g.linear(x, rng.standard_normal((4, 4)))
    g.output(g.relu(a))                                    # another consumer of linear_0, before the dropout
    g.output(g.dropout(g.dropout(a), name="logits"))
    h = remove_identities(g)
    assert ops(h) == ["linear", "relu"]
    assert h.outputs == ["relu_0", "logits"]
    assert h.nodes[0].outputs == ["logits"] and h.nodes[1].inputs == ["logits"]
    assert_same_outputs(g, h, rng.standard_normal((2, 4)).astype(np.float32))


def test_identity_between_a_graph_input_and_a_graph_output_stays():
    g = eb.Graph()
    x = g.input("x", (None, 4))
    g.output(g.dropout(x))
    h = remove_identities(g)
    assert ops(h) == ["dropout"] and h.outputs == ["dropout_0"]


def test_prepare_for_quantization_on_a_conv_bn_relu_dropout_network(rng):
    g = eb.Graph()
    x = g.input("x", (None, 3, 8, 8))
    h = g.conv2d(x, rng.standard_normal((8, 3, 3, 3)), padding=1)
    h = g.relu6(g.batch_norm2d(g.dropout(h, 0.1), *bn_params(rng, 8)))
    h = g.conv2d(h, rng.standard_normal((8, 1, 3, 3)), stride=2, padding=1, groups=8)
    h = g.relu(g.batch_norm2d(h, *bn_params(rng, 8)))
    h = g.dropout(g.flatten(g.global_avg_pool2d(h)))
    g.output(g.linear(h, rng.standard_normal((10, 8)), rng.standard_normal(10)))
    nodes_before = list(g.nodes)
    q = prepare_for_quantization(g)
    assert q is not g and g.nodes == nodes_before
    assert ops(q) == ["conv2d", "conv2d", "global_avg_pool2d", "flatten", "linear"]
    assert [n.attrs.get("activation") for n in q.nodes[:2]] == [("clip", 0.0, 6.0), "relu"]
    assert q.inputs == g.inputs and q.outputs == g.outputs
    assert_same_outputs(g, q, rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
