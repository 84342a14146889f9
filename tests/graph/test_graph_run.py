"""Graph.run: input binding and checks, results, the per-tensor callback, bounded memory, erf."""
import gc
import math
import weakref

import numpy as np
import pytest

import eightbit as eb
from eightbit.graph.float_exec import erf


def two_input_graph():
    g = eb.Graph()
    a = g.input("a", (None, 3))
    b = g.input("b", (None, 3))
    s = g.add(a, b, name="sum")
    g.output(s)
    g.output(g.mul(s, 2.0, name="twice"))
    return g


def test_single_input_and_output_take_and_return_arrays():
    g = eb.Graph()
    g.output(g.relu(g.input("x", (None, 2))))
    y = g.run(np.float32([[-1, 2]]))
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    np.testing.assert_array_equal(y, [[0, 2]])
    np.testing.assert_array_equal(g.run({"x": np.float32([[3, -3]])}), [[3, 0]])


def test_several_outputs_come_back_as_a_dict_in_output_order():
    out = two_input_graph().run({"b": np.float32([[1, 1, 1]]), "a": np.float32([[1, 2, 3]])})
    assert list(out) == ["sum", "twice"]
    np.testing.assert_array_equal(out["sum"], [[2, 3, 4]])
    np.testing.assert_array_equal(out["twice"], [[4, 6, 8]])


def test_missing_input():
    with pytest.raises(ValueError, match=r"run: missing input\(s\) \['b'\]; the graph's inputs are \['a', 'b'\]"):
        two_input_graph().run({"a": np.zeros((1, 3), np.float32)})


def test_unknown_input():
    with pytest.raises(ValueError, match=r"run: unknown input\(s\) \['c'\]"):
        two_input_graph().run({"a": np.zeros((1, 3)), "b": np.zeros((1, 3)), "c": np.zeros(1)})


def test_bare_array_for_a_graph_with_two_inputs():
    with pytest.raises(TypeError, match=r"run: the graph has 2 inputs \['a', 'b'\]; pass a dict"):
        two_input_graph().run(np.zeros((1, 3), np.float32))


def test_input_of_wrong_rank():
    with pytest.raises(ValueError, match=r"run: input 'a' must have shape \[\?, 3\], got \[3\]"):
        two_input_graph().run({"a": np.zeros(3), "b": np.zeros((1, 3))})


def test_input_of_wrong_fixed_dimension():
    with pytest.raises(ValueError, match=r"run: input 'b' must have shape \[\?, 3\], got \[2, 4\]"):
        two_input_graph().run({"a": np.zeros((2, 3)), "b": np.zeros((2, 4))})


def test_input_of_integer_dtype():
    with pytest.raises(TypeError, match=r"run: input 'a' must be a float32 array, got dtype int64"):
        two_input_graph().run({"a": np.zeros((1, 3), np.int64), "b": np.zeros((1, 3))})


def test_inputs_sharing_the_free_batch_must_agree():
    with pytest.raises(ValueError, match=r"run: inputs 'a' and 'b' share the free batch dimension but have batch "
                                         r"sizes 2 and 3"):
        two_input_graph().run({"a": np.zeros((2, 3)), "b": np.zeros((3, 3))})


def test_graph_without_outputs():
    g = eb.Graph()
    g.relu(g.input("x", (None, 2)))
    with pytest.raises(ValueError, match=r"run: graph 'graph' has no outputs"):
        g.run(np.zeros((1, 2), np.float32))


def test_float64_input_is_converted_and_not_modified():
    g = eb.Graph()
    x = g.input("x", (None, 3))
    g.output(g.relu(x))
    v = np.array([[-1.0, 0.5, 2.0]])
    y = g.run(v)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(v, [[-1.0, 0.5, 2.0]])


def test_free_batch_runs_any_batch_size_and_samples_are_independent(rng):
    g = eb.Graph()
    x = g.input("x", (None, 2, 6, 6))
    h = g.relu(g.conv2d(x, rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3), padding=1))
    g.output(g.softmax(g.linear(g.flatten(g.avg_pool2d(h, 2)), rng.standard_normal((4, 27))), -1))
    batch = rng.standard_normal((7, 2, 6, 6)).astype(np.float32)
    whole = g.run(batch)
    assert whole.shape == (7, 4)
    for n in (1, 3):
        np.testing.assert_allclose(g.run(batch[:n]), whole[:n], rtol=1e-5, atol=1e-6)


def chain():
    g = eb.Graph()
    x = g.input("x", (None, 4))
    a = g.relu(x)
    b = g.sigmoid(a)
    c = g.tanh(b)
    g.output(g.mul(c, b))
    return g


def test_on_tensor_sees_every_tensor_once_in_order_as_read_only_arrays():
    g = chain()
    seen = []

    def on_tensor(name, arr):
        assert not arr.flags.writeable
        seen.append((name, arr.copy()))

    x = np.float32([[-1, 0, 1, 2]])
    y = g.run(x, on_tensor=on_tensor)
    assert [name for name, _ in seen] == ["x", "relu_0", "sigmoid_0", "tanh_0", "mul_0"]
    every = g.run(x, return_all=True)
    assert list(every) == [name for name, _ in seen]
    for name, arr in seen:
        np.testing.assert_array_equal(arr, every[name])
    np.testing.assert_array_equal(y, every["mul_0"])


def test_intermediates_are_released_after_their_last_use():
    # While the callback sees mul_0, relu_0 (last read by sigmoid_0) is dead; mul_0's own inputs
    # are released right after it. With return_all every tensor is kept.
    for return_all, expected_dead in ((False, {"relu_0"}), (True, set())):
        refs, dead_at_end = {}, set()

        def on_tensor(name, arr):
            refs[name] = weakref.ref(arr.base)
            if name == "mul_0":
                gc.collect()
                dead_at_end.update(n for n, r in refs.items() if r() is None)

        chain().run(np.float32([[-1, 0, 1, 2]]), on_tensor=on_tensor, return_all=return_all)
        assert dead_at_end == expected_dead


def test_on_tensor_must_be_callable():
    with pytest.raises(TypeError, match=r"run: on_tensor must be callable"):
        chain().run(np.zeros((1, 4), np.float32), on_tensor="print")


def test_erf_matches_math_erf():
    xs = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 1.0, -1.0, 1e-12, 40.0, -40.0]])
    expected = np.array([math.erf(v) for v in xs])
    assert np.abs(erf(xs) - expected).max() < 1e-15


def test_gelu_exact_is_accurate_to_float32(rng):
    g = eb.Graph()
    g.output(g.gelu(g.input("x", (None, 1000))))
    x = (rng.standard_normal((1, 1000)) * 4).astype(np.float32)
    expected = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x[0].astype(np.float64)])
    np.testing.assert_allclose(g.run(x)[0], expected.astype(np.float32), rtol=2e-7, atol=1e-7)
