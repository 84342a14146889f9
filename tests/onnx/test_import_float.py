"""eb.from_onnx on float models: every supported ONNX op and exporter pattern against ONNX Runtime
fp32, names, the batch rule, and the errors for unsupported or malformed models."""
from __future__ import annotations

import math
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import eightbit as eb
from eightbit.onnx import OnnxImportError, from_onnx

IR_VERSION = {11: 7, 12: 7, 13: 7, 14: 8, 15: 8, 16: 8, 17: 8, 18: 9, 19: 9, 20: 9, 21: 10}


# ---- helpers ------------------------------------------------------------------------------------

def make_model(nodes, inputs, outputs, inits=None, opset=17, value_inits=None):
    """A model from nodes; inputs [(name, shape)], outputs [names], inits {name: array}."""
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs]
    outs = [onnx.ValueInfoProto(name=n) for n in outputs]          # typed by shape inference below
    init = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "test", ins, outs, init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION[opset]
    return onnx.shape_inference.infer_shapes(model)


def ort_run(model, feeds):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    outs = session.run(None, feeds)
    return outs[0] if len(outs) == 1 else outs


def assert_close(ours, ref):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    err = np.abs(ours.astype(np.float64) - ref).max()
    assert err <= 1e-4 * np.abs(ref).max() + 1e-6, f"max abs error {err} vs max |ref| {np.abs(ref).max()}"


def check(model, feeds, **kwargs):
    """Import `model`, run it on `feeds` and compare with ONNX Runtime; returns the graph."""
    g = from_onnx(model, **kwargs)
    ours = g.run(feeds if len(feeds) > 1 else next(iter(feeds.values())))
    assert_close(ours, ort_run(model, feeds))
    return g


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def const_node(name, value):
    return helper.make_node("Constant", [], [name], name=f"{name}_const",
                            value=numpy_helper.from_array(np.asarray(value), name))


def ops_of(g):
    return [n.op for n in g.nodes]


# ---- convolution, Gemm, MatMul -------------------------------------------------------------------

CONV_CASES = [
    # attrs, C, M, k, HW, bias
    ({"pads": [1, 1, 1, 1]}, 3, 8, 3, (9, 9), True),
    ({"strides": [2, 2], "pads": [1, 0, 2, 1]}, 4, 6, 3, (10, 9), True),          # asymmetric pads
    ({"dilations": [2, 2], "pads": [2, 2, 2, 2]}, 3, 5, 3, (10, 10), False),
    ({"group": 4, "pads": [1, 1, 1, 1]}, 4, 4, 3, (8, 8), True),                  # depthwise
    ({"group": 2}, 4, 6, 1, (5, 5), True),
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 3, 4, 4, (9, 8), True),
    ({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, 3, 4, 4, (9, 8), True),
    ({"auto_pad": "VALID"}, 3, 4, 3, (7, 7), True),
]


@pytest.mark.parametrize("attrs, c, m, k, hw, with_bias", CONV_CASES)
def test_conv(rng, attrs, c, m, k, hw, with_bias):
    w = randn(rng, m, c // attrs.get("group", 1), k, k, scale=0.3)
    inits = {"w": w}
    inputs = ["x", "w"]
    if with_bias:
        inits["b"] = randn(rng, m)
        inputs.append("b")
    node = helper.make_node("Conv", inputs, ["y"], name="conv1", kernel_shape=[k, k], **attrs)
    model = make_model([node], [("x", ["N", c, *hw])], ["y"], inits)
    g = check(model, {"x": randn(rng, 2, c, *hw)})
    assert ops_of(g) == ["conv2d"]


def test_conv_bn_relu_names_preserved(rng):
    c, m = 3, 8
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t5"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("BatchNormalization", ["t5", "g", "beta", "mean", "var"], ["t6"], name="bn1",
                              epsilon=1e-3),
             helper.make_node("Relu", ["t6"], ["t7"], name="relu1")]
    inits = {"w": randn(rng, m, c, 3, 3, scale=0.3), "b": randn(rng, m), "g": rng.uniform(0.5, 1.5, m).astype("f"),
             "beta": randn(rng, m), "mean": randn(rng, m), "var": rng.uniform(0.5, 2, m).astype("f")}
    model = make_model(nodes, [("x", ["N", c, 8, 8])], ["t7"], inits)
    g = check(model, {"x": randn(rng, 3, c, 8, 8)})
    assert [(n.name, n.op, n.output) for n in g.nodes] == [
        ("conv1", "conv2d", "t5"), ("bn1", "batch_norm2d", "t6"), ("relu1", "relu", "t7")]
    assert g.outputs == ["t7"] and g.inputs == ["x"] and g.tensors["x"].shape == (None, c, 8, 8)


def test_conv_1d_is_refused(rng):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c1d")
    model = make_model([node], [("x", ["N", 2, 9])], ["y"], {"w": randn(rng, 3, 2, 3)})
    with pytest.raises(OnnxImportError, match="c1d.*2-D"):
        from_onnx(model)


@pytest.mark.parametrize("trans_b, alpha, beta, c_shape", [
    (1, 1.0, 1.0, (5,)), (0, 1.0, 1.0, (5,)), (1, 0.5, 2.0, (1, 5)), (0, 1.5, 0.25, ()), (1, 1.0, 1.0, None)])
def test_gemm(rng, trans_b, alpha, beta, c_shape):
    b = randn(rng, 5, 7) if trans_b else randn(rng, 7, 5)
    inits = {"B": b}
    inputs = ["a", "B"]
    if c_shape is not None:
        inits["C"] = randn(rng, *c_shape)
        inputs.append("C")
    node = helper.make_node("Gemm", inputs, ["y"], name="fc", transB=trans_b, alpha=alpha, beta=beta)
    model = make_model([node], [("a", ["N", 7])], ["y"], inits)
    g = check(model, {"a": randn(rng, 4, 7)})
    assert ops_of(g) == ["linear"] and g.nodes[0].name == "fc"


def test_matmul_with_constant(rng):
    model = make_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [("x", ["N", 6, 8])], ["y"],
                       {"W": randn(rng, 8, 4)})
    g = check(model, {"x": randn(rng, 2, 6, 8)})
    assert ops_of(g) == ["matmul"]


@pytest.mark.parametrize("bias_first", [True, False])
def test_matmul_add_on_3d_becomes_linear(rng, bias_first):
    add_in = ["bias", "mm_out"] if bias_first else ["mm_out", "bias"]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm_out"], name="/fc/MatMul"),
             helper.make_node("Add", add_in, ["h"], name="/fc/Add"),
             helper.make_node("Relu", ["h"], ["y"], name="/act/Relu")]
    model = make_model(nodes, [("x", ["N", 16, 8])], ["y"], {"W": randn(rng, 8, 12), "bias": randn(rng, 12)})
    g = check(model, {"x": randn(rng, 3, 16, 8)})
    assert [(n.name, n.op, n.output) for n in g.nodes] == [("/fc/Add", "linear", "h"), ("/act/Relu", "relu", "y")]


@pytest.mark.parametrize("sa, sb", [
    (["N", 5, 4], ["N", 4, 6]),
    (["N", 3, 5, 4], ["N", 3, 4, 5]),
    (["N", 1, 5, 4], ["N", 3, 4, 2]),
    (["N", 3, 5, 4], ["N", 1, 4, 2]),
])
def test_matmul_of_two_tensors(rng, sa, sb):
    model = make_model([helper.make_node("MatMul", ["x", "z"], ["y"], name="attn")], [("x", sa), ("z", sb)], ["y"])
    g = check(model, {"x": randn(rng, 2, *sa[1:]), "z": randn(rng, 2, *sb[1:])})
    assert [(n.name, n.op, n.inputs, n.output) for n in g.nodes] == [("attn", "bmm", ["x", "z"], "y")]


@pytest.mark.parametrize("sa, sb", [(["N", 4], ["N", 4]), (["N", 3, 4], ["N", 2, 4, 3])])
def test_matmul_of_two_tensors_of_other_ranks_is_refused(sa, sb):
    model = make_model([helper.make_node("MatMul", ["x", "z"], ["y"], name="attn")], [("x", sa), ("z", sb)], ["y"])
    with pytest.raises(OnnxImportError, match="attn.*two computed tensors needs operands of the same rank >= 3"):
        from_onnx(model)


# ---- elementwise ---------------------------------------------------------------------------------

@pytest.mark.parametrize("op, form", [(op, form) for op in ("Add", "Sub", "Mul", "Div")
                                       for form in ("x_c", "c_x", "x_x") if op != "Div" or form == "x_c"])
def test_binary(rng, op, form):
    c = (rng.uniform(0.5, 2.0, (4, 1, 1)) * rng.choice([-1, 1], (4, 1, 1))).astype(np.float32)
    inputs = {"x_c": ["x", "c"], "c_x": ["c", "x"], "x_x": ["x", "z"]}[form]
    model_inputs = [("x", ["N", 4, 5, 5])] + ([("z", ["N", 4, 5, 5])] if form == "x_x" else [])
    model = make_model([helper.make_node(op, inputs, ["y"], name="op")], model_inputs, ["y"],
                       {} if form == "x_x" else {"c": c})
    feeds = {"x": randn(rng, 2, 4, 5, 5)}
    if form == "x_x":
        feeds["z"] = randn(rng, 2, 4, 5, 5)
    g = check(model, feeds)
    assert g.nodes[-1].name == "op" and g.nodes[-1].output == "y"


@pytest.mark.parametrize("sa, sb", [(["N", 3], ["N", 3]), (["N", 4, 5], ["N", 4, 1]), (["N", 1, 5], ["N", 4, 1])])
def test_div_by_a_tensor(rng, sa, sb):
    model = make_model([helper.make_node("Div", ["x", "z"], ["y"], name="d")], [("x", sa), ("z", sb)], ["y"])
    z = rng.uniform(0.5, 2.0, [2] + sb[1:]).astype(np.float32)
    g = check(model, {"x": randn(rng, 2, *sa[1:]), "z": z})
    assert [(n.name, n.op, n.inputs) for n in g.nodes] == [("d", "div", ["x", "z"])]


def test_div_of_a_constant_by_a_tensor_is_refused():
    model = make_model([helper.make_node("Div", ["c", "z"], ["y"], name="d")], [("z", ["N", 3])], ["y"],
                       {"c": np.ones(3, np.float32)})
    with pytest.raises(OnnxImportError, match="'d' \\(Div\\): a constant divided by a computed tensor"):
        from_onnx(model)


@pytest.mark.parametrize("op, attrs, opset", [
    ("Relu", {}, 17), ("Sigmoid", {}, 17), ("Tanh", {}, 17), ("LeakyRelu", {"alpha": 0.2}, 17),
    ("LeakyRelu", {}, 17), ("HardSigmoid", {}, 17), ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, 17),
    ("HardSwish", {}, 17), ("Gelu", {}, 20), ("Gelu", {"approximate": "tanh"}, 20), ("Identity", {}, 17),
    ("Dropout", {}, 17)])
def test_unary(rng, op, attrs, opset):
    model = make_model([helper.make_node(op, ["x"], ["y"], name="u", **attrs)], [("x", ["N", 3, 7])], ["y"],
                       opset=opset)
    check(model, {"x": randn(rng, 2, 3, 7, scale=3)})


@pytest.mark.parametrize("opset", [11, 13, 17])
@pytest.mark.parametrize("lo, hi, as_constant_nodes", [
    (0.0, 6.0, False), (0.0, 6.0, True), (-1.0, None, False), (None, 0.5, True), (None, None, False)])
def test_clip_forms(rng, opset, lo, hi, as_constant_nodes):
    nodes, inits, inputs = [], {}, ["x", "", ""]
    for i, (key, v) in enumerate((("lo", lo), ("hi", hi)), start=1):
        if v is None:
            continue
        inputs[i] = key
        if as_constant_nodes:
            nodes.append(const_node(key, np.array(v, np.float32)))
        else:
            inits[key] = np.array(v, np.float32)
    while inputs and inputs[-1] == "":
        inputs.pop()
    nodes.append(helper.make_node("Clip", inputs, ["y"], name="clip"))
    model = make_model(nodes, [("x", ["N", 10])], ["y"], inits, opset=opset)
    g = check(model, {"x": randn(rng, 3, 10, scale=4)})
    assert [(n.op, n.attrs) for n in g.nodes] == [("clip", {"min": lo, "max": hi})]


# ---- normalization, pooling ----------------------------------------------------------------------

def test_batch_norm_alone(rng):
    c = 5
    inits = {"g": rng.uniform(0.5, 1.5, c).astype("f"), "b": randn(rng, c), "m": randn(rng, c),
             "v": rng.uniform(0.1, 2, c).astype("f")}
    node = helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], name="bn")
    check(make_model([node], [("x", ["N", c, 4, 4])], ["y"], inits), {"x": randn(rng, 2, c, 4, 4)})


POOL_CASES = [
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 1, 1, 0]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("MaxPool", {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER"}),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [1, 2], "pads": [1, 0, 0, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("AveragePool", {"kernel_shape": [3, 3], "auto_pad": "VALID"}),
]


@pytest.mark.parametrize("op, attrs", POOL_CASES)
def test_pools(rng, op, attrs):
    model = make_model([helper.make_node(op, ["x"], ["y"], name="pool", **attrs)], [("x", ["N", 3, 9, 8])], ["y"])
    check(model, {"x": randn(rng, 2, 3, 9, 8)})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pools(rng, op):
    model = make_model([helper.make_node(op, ["x"], ["y"], name="gp")], [("x", ["N", 4, 5, 6])], ["y"])
    check(model, {"x": randn(rng, 2, 4, 5, 6)})


# ---- shape ops -----------------------------------------------------------------------------------

@pytest.mark.parametrize("axis, shape", [(1, [3, 4, 5]), (-3, [3, 4, 5]), (2, [1, 4, 5]), (3, [1, 1, 20])])
def test_flatten(rng, axis, shape):
    model = make_model([helper.make_node("Flatten", ["x"], ["y"], name="f", axis=axis)], [("x", ["N", *shape])],
                       ["y"])
    check(model, {"x": randn(rng, 2, *shape)})


def test_flatten_merging_the_batch_is_refused():
    model = make_model([helper.make_node("Flatten", ["x"], ["y"], name="f", axis=2)], [("x", ["N", 3, 4])], ["y"])
    with pytest.raises(OnnxImportError, match="'f'.*batch"):
        from_onnx(model)


@pytest.mark.parametrize("target", [[-1, 12], [0, 3, 4], [0, -1, 2], [0, 0, 2, 2], [-1, 2, 6]])
def test_reshape_constant_target(rng, target):
    model = make_model([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")], [("x", ["N", 3, 4])], ["y"],
                       {"s": np.array(target, np.int64)})
    check(model, {"x": randn(rng, 2, 3, 4)})


def test_reshape_fixing_a_free_batch_is_refused():
    model = make_model([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")], [("x", ["N", 3, 4])], ["y"],
                       {"s": np.array([2, 12], np.int64)})
    with pytest.raises(OnnxImportError, match="'r'.*dimension 0"):
        from_onnx(model)


def test_reshape_with_a_static_batch(rng):
    model = make_model([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")], [("x", [2, 3, 4])], ["y"],
                       {"s": np.array([2, 12], np.int64)})
    g = check(model, {"x": randn(rng, 2, 3, 4)})
    assert g.tensors["x"].shape == (2, 3, 4)


def view_flatten_nodes(x, out):
    """x.view(x.size(0), -1) as torch.onnx.export writes it."""
    return [helper.make_node("Shape", [x], ["shp"], name="/Shape"),
            const_node("idx0", np.array(0, np.int64)),
            helper.make_node("Gather", ["shp", "idx0"], ["n"], name="/Gather", axis=0),
            const_node("axes0", np.array([0], np.int64)),
            helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="/Unsqueeze"),
            const_node("minus1", np.array([-1], np.int64)),
            helper.make_node("Concat", ["n1", "minus1"], ["target"], name="/Concat", axis=0),
            helper.make_node("Reshape", [x, "target"], [out], name="/Reshape")]


@pytest.mark.parametrize("batch", ["N", None, 3])
def test_shape_gather_unsqueeze_concat_reshape_flatten(rng, batch):
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="relu")] + view_flatten_nodes("h", "flat") + [
        helper.make_node("Gemm", ["flat", "W", "b"], ["y"], name="fc", transB=1)]
    model = make_model(nodes, [("x", [batch, 4, 3, 3])], ["y"], {"W": randn(rng, 5, 36), "b": randn(rng, 5)})
    g = check(model, {"x": randn(rng, 3, 4, 3, 3)})
    assert ops_of(g) == ["relu", "reshape", "linear"]
    assert g.node("/Reshape").output == "flat"


def test_shape_arithmetic_folds_with_reference_ops(rng):
    """Shape -> Slice -> ReduceProd -> Concat, Cast, Range, ConstantOfShape, Div on int64: all folded."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             const_node("st", np.array([1], np.int64)), const_node("en", np.array([4], np.int64)),
             helper.make_node("Slice", ["s", "st", "en"], ["dims"], name="slice"),
             helper.make_node("ReduceProd", ["dims"], ["prod"], name="prod", keepdims=1),
             helper.make_node("Cast", ["prod"], ["prod_f"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Cast", ["prod_f"], ["prod_i"], name="cast_back", to=TensorProto.INT64),
             const_node("two", np.array([2], np.int64)),
             helper.make_node("Div", ["prod_i", "two"], ["half"], name="half"),
             const_node("zero", np.array([0], np.int64)),
             helper.make_node("Concat", ["zero", "two", "half"], ["target"], name="cat", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["r"], name="reshape"),
             helper.make_node("ConstantOfShape", ["half"], ["ones"], name="cos",
                              value=numpy_helper.from_array(np.array([1.5], np.float32))),
             helper.make_node("Mul", ["r", "ones"], ["y"], name="scale")]
    model = make_model(nodes, [("x", ["N", 2, 3, 4])], ["y"])
    g = check(model, {"x": randn(rng, 2, 2, 3, 4)})
    assert ops_of(g) == ["reshape", "mul"]


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_forms(rng, opset):
    if opset < 13:
        nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], name="unsq", axes=[1, -1]),
                 helper.make_node("Relu", ["u"], ["r"], name="relu"),
                 helper.make_node("Squeeze", ["r"], ["y"], name="sq", axes=[1])]
        inits = {}
    else:
        nodes = [helper.make_node("Unsqueeze", ["x", "ax"], ["u"], name="unsq"),
                 helper.make_node("Relu", ["u"], ["r"], name="relu"),
                 helper.make_node("Squeeze", ["r", "ax1"], ["y"], name="sq")]
        inits = {"ax": np.array([1, -1], np.int64), "ax1": np.array([1], np.int64)}
    model = make_model(nodes, [("x", ["N", 3, 4])], ["y"], inits, opset=opset)
    g = check(model, {"x": randn(rng, 2, 3, 4)})
    assert g.tensors["u"].shape == (None, 1, 3, 4, 1) and g.tensors["y"].shape == (None, 3, 4, 1)


def test_squeeze_without_axes_keeps_the_batch(rng):
    model = make_model([helper.make_node("Squeeze", ["x"], ["y"], name="sq")], [("x", [3, 1, 4, 1])], ["y"])
    check(model, {"x": randn(rng, 3, 1, 4, 1)})


def test_squeeze_of_the_batch_is_refused():
    model = make_model([helper.make_node("Squeeze", ["x", "ax"], ["y"], name="sq")], [("x", [1, 4])], ["y"],
                       {"ax": np.array([0], np.int64)})
    with pytest.raises(OnnxImportError, match="'sq'.*batch"):
        from_onnx(model)


def test_transpose(rng):
    model = make_model([helper.make_node("Transpose", ["x"], ["y"], name="t", perm=[0, 2, 3, 1])],
                       [("x", ["N", 3, 4, 5])], ["y"])
    g = check(model, {"x": randn(rng, 2, 3, 4, 5)})
    assert ops_of(g) == ["transpose"] and g.tensors["y"].shape == (None, 4, 5, 3)


def test_transpose_moving_the_batch_is_refused():
    model = make_model([helper.make_node("Transpose", ["x"], ["y"], name="t")], [("x", ["N", 3])], ["y"])
    with pytest.raises(OnnxImportError, match="'t'.*perm"):
        from_onnx(model)


def test_concat(rng):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ra"), helper.make_node("Sigmoid", ["x"], ["b"], name="sb"),
             helper.make_node("Concat", ["a", "b", "x"], ["y"], name="cat", axis=-1)]
    check(make_model(nodes, [("x", ["N", 3, 4])], ["y"]), {"x": randn(rng, 2, 3, 4)})


@pytest.mark.parametrize("opset, axis, shape", [
    (13, -1, [3, 5]), (13, 1, [4, 5]), (11, 1, [6]), (11, 1, [3, 4]), (11, 2, [2, 3, 4]), (11, -1, [3, 4]),
    (11, 1, [5, 1])])
def test_softmax(rng, opset, axis, shape):
    model = make_model([helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=axis)], [("x", ["N", *shape])],
                       ["y"], opset=opset)
    check(model, {"x": randn(rng, 2, *shape, scale=3)})


# ---- Pad -----------------------------------------------------------------------------------------

def test_pad_folds_into_conv(rng):
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="constant"),
             helper.make_node("Conv", ["p", "w", "b"], ["y"], name="conv", pads=[1, 0, 0, 1])]
    inits = {"pads": np.array([0, 0, 2, 1, 0, 0, 1, 3], np.int64), "w": randn(rng, 4, 3, 3, 3),
             "b": randn(rng, 4)}
    g = check(make_model(nodes, [("x", ["N", 3, 7, 7])], ["y"], inits), {"x": randn(rng, 2, 3, 7, 7)})
    assert ops_of(g) == ["conv2d"] and g.nodes[0].name == "conv" and g.nodes[0].attrs["pads"] == (3, 1, 1, 4)


def test_pad_folds_into_average_pool_counting_padding(rng):
    nodes = [helper.make_node("Pad", ["x", "pads", "zero"], ["p"], name="pad"),
             helper.make_node("AveragePool", ["p"], ["y"], name="pool", kernel_shape=[3, 3], count_include_pad=1)]
    inits = {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "zero": np.array(0, np.float32)}
    g = check(make_model(nodes, [("x", ["N", 2, 6, 6])], ["y"], inits), {"x": randn(rng, 2, 2, 6, 6)})
    assert ops_of(g) == ["avg_pool2d"]


@pytest.mark.parametrize("mode, value", [("constant", 0.5), ("reflect", None), ("edge", None), ("constant", None)])
def test_pad_alone(rng, mode, value):
    inits = {"pads": np.array([0, 0, 1, 2, 0, 1, 2, 0], np.int64)}
    inputs = ["x", "pads"]
    if value is not None:
        inits["v"] = np.array(value, np.float32)
        inputs.append("v")
    nodes = [helper.make_node("Pad", inputs, ["y"], name="pad", mode=mode)]
    g = check(make_model(nodes, [("x", ["N", 2, 5, 5])], ["y"], inits), {"x": randn(rng, 2, 2, 5, 5)})
    assert ops_of(g) == ["pad"]


def test_pad_with_axes_input_opset18(rng):
    nodes = [helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], name="pad")]
    inits = {"pads": np.array([1, 2, 3, 0], np.int64), "axes": np.array([-1, 2], np.int64)}
    check(make_model(nodes, [("x", ["N", 2, 3, 4])], ["y"], inits, opset=18), {"x": randn(rng, 2, 2, 3, 4)})


def test_nonzero_pad_before_conv_stays_a_pad(rng):
    nodes = [helper.make_node("Pad", ["x", "pads", "v"], ["p"], name="pad"),
             helper.make_node("Conv", ["p", "w"], ["y"], name="conv")]
    inits = {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "v": np.array(1.0, np.float32),
             "w": randn(rng, 2, 3, 3, 3)}
    g = check(make_model(nodes, [("x", ["N", 3, 5, 5])], ["y"], inits), {"x": randn(rng, 2, 3, 5, 5)})
    assert ops_of(g) == ["pad", "conv2d"]


# ---- activation patterns -------------------------------------------------------------------------

def _erf_gelu_nodes(form):
    """PyTorch's exact GELU in several operand orders; input "h", output "y"."""
    c = [const_node("sqrt2", np.array(1.4142135, np.float32)), const_node("one", np.array(1.0, np.float32)),
         const_node("half", np.array(0.5, np.float32)), const_node("rsqrt2", np.array(0.70710677, np.float32))]
    if form == "torch":          # Div, Erf, Add, Mul x, Mul 0.5
        body = [helper.make_node("Div", ["h", "sqrt2"], ["d"], name="/act/Div"),
                helper.make_node("Erf", ["d"], ["e"], name="/act/Erf"),
                helper.make_node("Add", ["e", "one"], ["a"], name="/act/Add"),
                helper.make_node("Mul", ["h", "a"], ["m"], name="/act/Mul"),
                helper.make_node("Mul", ["m", "half"], ["y"], name="/act/Mul_1")]
    elif form == "half_first":   # (x * 0.5) * (1 + erf(x * 1/sqrt2))
        body = [helper.make_node("Mul", ["h", "half"], ["hx"], name="hx"),
                helper.make_node("Mul", ["rsqrt2", "h"], ["d"], name="scale"),
                helper.make_node("Erf", ["d"], ["e"], name="erf"),
                helper.make_node("Add", ["one", "e"], ["a"], name="plus1"),
                helper.make_node("Mul", ["a", "hx"], ["y"], name="gelu_out")]
    else:                        # x * ((erf(x / sqrt2) + 1) * 0.5)
        body = [helper.make_node("Div", ["h", "sqrt2"], ["d"], name="div"),
                helper.make_node("Erf", ["d"], ["e"], name="erf"),
                helper.make_node("Add", ["e", "one"], ["a"], name="plus1"),
                helper.make_node("Mul", ["half", "a"], ["a2"], name="halve"),
                helper.make_node("Mul", ["h", "a2"], ["y"], name="gelu_out")]
    return c + body


@pytest.mark.parametrize("form", ["torch", "half_first", "nested"])
def test_erf_gelu_pattern(rng, form):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"], name="/fc/MatMul"),
             helper.make_node("Add", ["b", "mm"], ["h"], name="/fc/Add")] + _erf_gelu_nodes(form)
    model = make_model(nodes, [("x", ["N", 4, 8])], ["y"], {"W": randn(rng, 8, 6), "b": randn(rng, 6)})
    g = check(model, {"x": randn(rng, 2, 4, 8, scale=2)})
    assert ops_of(g) == ["linear", "gelu"]
    assert g.nodes[1].attrs == {"approximate": "none"} and g.nodes[1].output == "y"
    assert g.nodes[1].name == {"torch": "/act/Mul_1"}.get(form, "gelu_out")


def test_tanh_gelu_pattern(rng):
    """GELU(approximate='tanh') as torch writes it before opset 20."""
    k = [const_node(n, np.array(v, np.float32)) for n, v in
         (("kappa", 0.044715), ("beta", math.sqrt(2 / math.pi)), ("one", 1.0), ("half", 0.5))]
    nodes = k + [helper.make_node("Mul", ["x", "x"], ["x2"], name="sq"),
                 helper.make_node("Mul", ["x", "x2"], ["x3"], name="cube"),
                 helper.make_node("Mul", ["kappa", "x3"], ["kx3"], name="k"),
                 helper.make_node("Add", ["x", "kx3"], ["inner"], name="inner"),
                 helper.make_node("Mul", ["beta", "inner"], ["bi"], name="b"),
                 helper.make_node("Tanh", ["bi"], ["t"], name="tanh"),
                 helper.make_node("Add", ["one", "t"], ["t1"], name="t1"),
                 helper.make_node("Mul", ["x", "t1"], ["xt"], name="xt"),
                 helper.make_node("Mul", ["half", "xt"], ["y"], name="gelu")]
    g = check(make_model(nodes, [("x", ["N", 33])], ["y"]), {"x": randn(rng, 3, 33, scale=3)})
    assert [(n.op, n.attrs) for n in g.nodes] == [("gelu", {"approximate": "tanh"})]


@pytest.mark.parametrize("order", [0, 1])
def test_x_times_hardsigmoid_is_hardswish(rng, order):
    mul_in = ["x", "hs"] if order == 0 else ["hs", "x"]
    nodes = [helper.make_node("HardSigmoid", ["x"], ["hs"], name="/act/HardSigmoid", alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", mul_in, ["y"], name="/act/Mul")]
    g = check(make_model(nodes, [("x", ["N", 4, 3, 3])], ["y"]), {"x": randn(rng, 2, 4, 3, 3, scale=4)})
    assert [(n.op, n.name, n.output) for n in g.nodes] == [("hardswish", "/act/Mul", "y")]


def test_x_times_other_hardsigmoid_stays_two_nodes(rng):
    nodes = [helper.make_node("HardSigmoid", ["x"], ["hs"], name="hsig"),          # ONNX's alpha 0.2
             helper.make_node("Mul", ["x", "hs"], ["y"], name="mul")]
    g = check(make_model(nodes, [("x", ["N", 9])], ["y"]), {"x": randn(rng, 2, 9, scale=4)})
    assert ops_of(g) == ["hardsigmoid", "mul"]


def test_pattern_intermediate_used_elsewhere_is_not_fused(rng):
    nodes = _erf_gelu_nodes("torch") + [helper.make_node("Add", ["y", "e"], ["z"], name="uses_erf")]
    g = check(make_model(nodes, [("h", ["N", 5])], ["z"]), {"h": randn(rng, 3, 5, scale=2)})
    assert "gelu" not in ops_of(g) and g.node("/act/Erf").op == "erf"


# ---- constants, dropout, identity, external data -------------------------------------------------

def test_constant_dropout_identity(rng):
    nodes = [const_node("c", randn(rng, 1, 6)),
             helper.make_node("Add", ["x", "c"], ["a"], name="add"),
             helper.make_node("Dropout", ["a", "ratio"], ["d", "mask"], name="drop"),
             helper.make_node("Identity", ["d"], ["y"], name="id")]
    model = make_model(nodes, [("x", ["N", 6])], ["y"], {"ratio": np.array(0.3, np.float32)})
    g = check(model, {"x": randn(rng, 2, 6)})
    assert ops_of(g) == ["add", "dropout", "identity"] and g.node("drop").attrs["p"] == pytest.approx(0.3)


def test_external_data_initializers(rng, tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    model = make_model(nodes, [("x", ["N", 64])], ["y"], {"W": randn(rng, 128, 64), "b": randn(rng, 128)})
    x = randn(rng, 3, 64)
    ref = ort_run(model, {"x": x})
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists() and path.stat().st_size < 1000
    assert_close(from_onnx(path).run(x), ref)
    assert_close(eb.from_onnx(str(path)).run(x), ref)
    with pytest.raises(OnnxImportError, match="external data"):
        from_onnx(path.read_bytes())


def test_model_as_bytes_and_path(rng, tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [("x", ["N", 3])], ["y"])
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path))
    for source in (model, model.SerializeToString(), path, str(path)):
        assert ops_of(from_onnx(source)) == ["relu"]


# ---- names, inputs, batch ------------------------------------------------------------------------

def test_unnamed_nodes_get_deterministic_names(rng):
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["a"], ["b"], name="Relu_0"),
             helper.make_node("Sub", ["b", "x"], ["y"])]
    model = make_model(nodes, [("x", ["N", 4])], ["y"])
    g1, g2 = check(model, {"x": randn(rng, 2, 4)}), from_onnx(model)
    assert [n.name for n in g1.nodes] == [n.name for n in g2.nodes]
    assert [n.name for n in g1.nodes] == ["Relu_0_1", "Relu_0", "Sub_2/neg", "Sub_2"]
    assert g1.nodes[-1].output == "y"


def test_input_shapes_fix_symbolic_dims(rng):
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [("x", ["N", "C", 4])], ["y"])
    with pytest.raises(OnnxImportError, match="input_shapes.*x dim 1 \\(C\\)"):
        from_onnx(model)
    g = from_onnx(model, input_shapes={"x": (None, 3, 4)})
    assert g.tensors["x"].shape == (None, 3, 4)
    g = from_onnx(model, input_shapes={"x": [2, 3, 4]})
    assert g.tensors["x"].shape == (2, 3, 4)
    with pytest.raises(OnnxImportError, match="names no input"):
        from_onnx(model, input_shapes={"nope": (1, 3, 4)})
    with pytest.raises(OnnxImportError, match="rank"):
        from_onnx(model, input_shapes={"x": (1, 3)})


def test_initializer_listed_as_input_is_a_constant(rng):
    nodes = [helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    model = make_model(nodes, [("x", ["N", 3]), ("c", [3])], ["y"], {"c": randn(rng, 3)})
    g = check(model, {"x": randn(rng, 2, 3)})
    assert g.inputs == ["x"]


def test_non_float_input_is_refused():
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 5])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 5])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match="'x'.*float32 inputs and int64 / int32 ids or masks, got DOUBLE"):
        from_onnx(model)


def test_integer_input_read_by_anything_but_an_embedding_or_a_mask_is_refused():
    x = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 5])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, ["N", 5])
    graph = helper.make_graph([helper.make_node("Identity", ["ids"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match="'y' is computed from the integer input 'ids' alone, but is not an "
                                              "attention mask"):
        from_onnx(model)


# ---- errors --------------------------------------------------------------------------------------

def test_unsupported_ops_are_all_listed_at_once():
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk_0", axis=-1),
             helper.make_node("Cos", ["v"], ["e1"], name="cos_a"),
             helper.make_node("Cos", ["e1"], ["e2"], name="cos_b"),
             helper.make_node("Relu", ["e2"], ["y"], name="ok"),
             helper.make_node("Sin", ["x"], ["dead"], name="not_needed")]
    model = make_model(nodes, [("x", ["N", 8])], ["y"], {"k": np.array([3], np.int64)})
    with pytest.raises(OnnxImportError) as e:
        from_onnx(model)
    assert str(e.value) == "unsupported ONNX ops: Cos (cos_a, cos_b), TopK (topk_0)"


def test_malformed_bytes_and_files(tmp_path, rng):
    with pytest.raises(OnnxImportError, match="not an ONNX model"):
        from_onnx(bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    with pytest.raises(OnnxImportError, match="empty"):
        from_onnx(b"")
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], name="fc", transB=1)], [("x", ["N", 32])],
                       ["y"], {"W": randn(rng, 16, 32)})
    data = model.SerializeToString()
    path = tmp_path / "trunc.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxImportError, match="trunc.onnx"):
        from_onnx(path)
    with pytest.raises(OnnxImportError, match="cannot be read"):
        from_onnx(tmp_path / "missing.onnx")
    with pytest.raises(TypeError):
        from_onnx(42)


def test_missing_or_truncated_external_data(tmp_path, rng):
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], name="fc", transB=1)], [("x", ["N", 32])],
                       ["y"], {"W": randn(rng, 16, 32)})
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    (tmp_path / "w.bin").write_bytes((tmp_path / "w.bin").read_bytes()[:100])
    with pytest.raises(OnnxImportError, match="truncated"):
        from_onnx(path)
    (tmp_path / "w.bin").unlink()
    with pytest.raises(OnnxImportError, match="'W'.*'w.bin'.*missing"):
        from_onnx(path)


def test_checker_failure_opset_and_domain():
    bad = make_model([helper.make_node("Relu", ["nowhere"], ["y"], name="r")], [("x", ["N", 3])], ["y"])
    with pytest.raises(OnnxImportError, match="checker"):
        from_onnx(bad)
    old = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [("x", ["N", 3])], ["y"], opset=11)
    old.opset_import[0].version = 6          # 7-10 are converted (tests/onnx/test_old_opsets.py)
    with pytest.raises(OnnxImportError, match="opset 6"):
        from_onnx(old)
    custom = make_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [("x", ["N", 3])], ["y"])
    custom.graph.node[0].op_type, custom.graph.node[0].domain = "Foo", "com.example"
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(OnnxImportError, match="com.example"):
        from_onnx(custom)


def test_constant_output_is_refused(rng):
    nodes = [const_node("c", randn(rng, 3)), helper.make_node("Relu", ["x"], ["y"], name="r")]
    model = make_model(nodes, [("x", ["N", 3])], ["y", "c"])
    with pytest.raises(OnnxImportError, match="'c' is a constant"):
        from_onnx(model)


# ---- after import: quantization -------------------------------------------------------------------

def _small_cnn(rng):
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "g", "beta", "mean", "var"], ["n1"], name="bn1"),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c2", "zero", "six"], ["r2"], name="relu6"),
             helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1)]
    inits = {"w1": randn(rng, 8, 3, 3, 3, scale=math.sqrt(2 / 27)), "b1": randn(rng, 8, scale=0.1),
             "g": rng.uniform(0.8, 1.2, 8).astype("f"), "beta": randn(rng, 8, scale=0.1),
             "mean": randn(rng, 8, scale=0.1), "var": rng.uniform(0.5, 1.5, 8).astype("f"),
             "w2": randn(rng, 16, 8, 3, 3, scale=math.sqrt(2 / 72)), "b2": randn(rng, 16, scale=0.1),
             "zero": np.array(0, np.float32), "six": np.array(6, np.float32),
             "wf": randn(rng, 10, 16, scale=0.25), "bf": randn(rng, 10, scale=0.1)}
    return make_model(nodes, [("x", ["N", 3, 16, 16])], ["y"], inits)


def _images(rng, n):
    """Smooth images (blurred noise), like natural images rather than white noise."""
    x = rng.standard_normal((n, 3, 18, 18)).astype(np.float32)
    k = np.ones(3, np.float32) / 3
    x = (x[:, :, :-2] + x[:, :, 1:-1] + x[:, :, 2:]) / 3
    x = (x[:, :, :, :-2] + x[:, :, :, 1:-1] + x[:, :, :, 2:]) / 3
    return (x * 3 * k.sum()).astype(np.float32)


def test_imported_cnn_quantizes_with_30db_sqnr(rng):
    model = _small_cnn(rng)
    g = from_onnx(model)
    x = _images(rng, 16)
    assert_close(g.run(x), ort_run(model, {"x": x}))
    qm = eb.quantize(g, [_images(rng, 8) for _ in range(4)])
    ref = g.run(x)
    y = qm(x)
    sqnr = 10 * np.log10((ref ** 2).sum() / ((y - ref) ** 2).sum())
    assert sqnr >= 30, sqnr


# ---- LayerNormalization ---------------------------------------------------------------------------

@pytest.mark.parametrize("axis, with_bias", [(-1, True), (2, False), (-2, True)])
def test_layer_normalization(rng, axis, with_bias):
    inits = {"s": randn(rng, *([4, 6][axis:] if axis < 0 else [6]))}
    inputs = ["x", "s"]
    if with_bias:
        inits["b"] = randn(rng, *inits["s"].shape)
        inputs.append("b")
    node = helper.make_node("LayerNormalization", inputs, ["y"], name="ln", axis=axis, epsilon=1e-6)
    g = check(make_model([node], [("x", ["N", 3, 4, 6])], ["y"], inits), {"x": randn(rng, 2, 3, 4, 6, scale=3)})
    assert ops_of(g) == ["layer_norm"]


# ---- the shared test models: hand-built (tests/onnx/models.py) and PyTorch-exported ---------------

DATA = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "onnx"
# what each exported file must import to: the ONNX patterns fused, every name kept
EXPORTED_OPS = {
    "flatten_by_shape": ["conv2d", "relu", "conv2d", "relu", "reshape", "linear"],
    "mlp": ["linear", "relu", "linear", "relu", "linear"],
    "transformer_ffn": ["linear", "gelu", "linear", "add"],
    "transformer_block": ["linear", "add", "layer_norm", "linear", "gelu", "linear", "add", "layer_norm"],
}


@pytest.mark.parametrize("name", sorted(p.stem for p in DATA.glob("*.onnx")))
def test_pytorch_exported_file(name):
    path = DATA / f"{name}.onnx"
    data = np.load(DATA / f"{name}.npz")
    model = onnx.load(str(path))
    g = from_onnx(path)
    assert_close(g.run(data["x"]), ort_run(model, {"x": data["x"]}))
    assert g.tensors["x"].shape[0] is None and g.outputs == [o.name for o in model.graph.output]
    if name in EXPORTED_OPS:
        assert ops_of(g) == EXPORTED_OPS[name]
    onnx_names = {n.name for n in model.graph.node}
    assert {n.name for n in g.nodes} <= onnx_names                  # no helper node was needed
    assert not any(n.op == "Erf" for n in g.nodes)


def test_builder_models_import_as_ort_runs(rng):
    models = pytest.importorskip("models")
    fused = {"mobilenet_block_hardsigmoid": "hardswish", "transformer_ffn": "gelu", "transformer_ffn_gelu20": "gelu"}
    for name, build in models.MODELS.items():
        model, inputs = build()
        feeds = inputs(rng, 3)
        g = from_onnx(model)
        assert_close(g.run(feeds["x"]), ort_run(model, feeds))
        if name in fused:
            assert fused[name] in ops_of(g) and "hardsigmoid" not in ops_of(g), (name, ops_of(g))


# ---- more batch-rule and error cases ------------------------------------------------------------

def test_reshape_by_shape_of_intermediate_with_static_batch(rng):
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="relu")] + view_flatten_nodes("h", "y")
    g = check(make_model(nodes, [("x", [2, 3, 2, 2])], ["y"]), {"x": randn(rng, 2, 3, 2, 2)})
    assert g.tensors["y"].shape == (2, 12)


def test_free_batch_moved_by_a_reshape_is_refused():
    """[N, 3] reshaped by a target built from Shape with the batch in dimension 1."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             const_node("perm_idx", np.array([1, 0], np.int64)),
             helper.make_node("Gather", ["s", "perm_idx"], ["t"], name="swap", axis=0),
             helper.make_node("Reshape", ["x", "t"], ["y"], name="r")]
    with pytest.raises(OnnxImportError, match="'r'.*moves the batch"):
        from_onnx(make_model(nodes, [("x", ["N", 3])], ["y"]))


# ---- the free batch is a symbol, not a number --------------------------------------------------------

def _shape_target(x, pieces):
    """Nodes computing Concat(pieces) from Shape(x): an int picks Shape(x)[i], a list is a constant."""
    nodes = [helper.make_node("Shape", [x], ["s"], name="shape"), const_node("ax0", np.array([0], np.int64))]
    names = []
    for k, p in enumerate(pieces):
        if isinstance(p, int):
            nodes += [const_node(f"i{k}", np.array(p, np.int64)),
                      helper.make_node("Gather", ["s", f"i{k}"], [f"g{k}"], name=f"gather{k}", axis=0),
                      helper.make_node("Unsqueeze", [f"g{k}", "ax0"], [f"u{k}"], name=f"unsqueeze{k}")]
            names.append(f"u{k}")
        else:
            nodes.append(const_node(f"c{k}", np.array(p, np.int64)))
            names.append(f"c{k}")
    return nodes + [helper.make_node("Concat", names, ["target"], name="cat", axis=0)]


def test_a_real_dimension_of_9973_next_to_a_free_batch(rng):
    """9973 was the number that stood for a free batch in shape arithmetic: a model whose real
    dimension is 9973 was refused (or misread). The batch is now a symbol."""
    nodes = _shape_target("x", [0, [1], 1]) + [helper.make_node("Reshape", ["x", "target"], ["y"], name="r")]
    g = check(make_model(nodes, [("x", ["N", 9973])], ["y"]), {"x": randn(rng, 2, 9973)})
    assert g.tensors["y"].shape == (None, 1, 9973)
    # a constant target holding 9973, and Shape(x)[1] (= 9973) used as a number
    nodes = [helper.make_node("Reshape", ["x", "t"], ["y"], name="r")]
    g = check(make_model(nodes, [("x", ["N", 9973])], ["y"], {"t": np.array([-1, 9973, 1], np.int64)}),
              {"x": randn(rng, 3, 9973)})
    assert g.tensors["y"].shape == (None, 9973, 1)
    nodes = _shape_target("x", [[-1], 1, [1]]) + [helper.make_node("Reshape", ["x", "target"], ["y"], name="r")]
    g = check(make_model(nodes, [("x", ["N", 9973])], ["y"]), {"x": randn(rng, 2, 9973)})
    assert g.tensors["y"].shape == (None, 9973, 1)


def test_a_fixed_batch_of_9973_folds_as_a_number(rng):
    nodes = _shape_target("x", [0, [-1]]) + [helper.make_node("Reshape", ["x", "target"], ["y"], name="r")]
    g = from_onnx(make_model(nodes, [("x", [9973, 2, 2])], ["y"]))
    assert g.tensors["y"].shape == (9973, 4)


def test_the_free_batch_travels_through_slice_squeeze_and_cast(rng):
    """Shape -> Slice [0:1] -> Cast int32 -> Cast int64 -> Squeeze -> Unsqueeze -> Concat [N, -1]."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             const_node("st", np.array([0], np.int64)), const_node("en", np.array([1], np.int64)),
             helper.make_node("Slice", ["s", "st", "en"], ["n1"], name="slice"),
             helper.make_node("Cast", ["n1"], ["n32"], name="cast32", to=TensorProto.INT32),
             helper.make_node("Cast", ["n32"], ["n64"], name="cast64", to=TensorProto.INT64),
             const_node("ax0", np.array([0], np.int64)),
             helper.make_node("Squeeze", ["n64", "ax0"], ["n"], name="squeeze"),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["nn"], name="unsqueeze"),
             const_node("m1", np.array([-1], np.int64)),
             helper.make_node("Concat", ["nn", "m1"], ["target"], name="cat", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"], name="r")]
    g = check(make_model(nodes, [("x", ["N", 3, 4])], ["y"]), {"x": randn(rng, 2, 3, 4)})
    assert g.tensors["y"].shape == (None, 12)


@pytest.mark.parametrize("build, node", [
    (lambda: [const_node("k", np.array(16, np.int64)),
              helper.make_node("Mul", ["n", "k"], ["nk"], name="times16"),
              helper.make_node("Unsqueeze", ["nk", "ax0"], ["t"], name="u"),
              helper.make_node("Concat", ["t", "m1"], ["target"], name="cat", axis=0),
              helper.make_node("Reshape", ["x", "target"], ["y"], name="r")], "'times16' (Mul)"),
    (lambda: [helper.make_node("Shape", ["x"], ["sx"], name="shape_again"),
              helper.make_node("ConstantOfShape", ["sx"], ["zeros"], name="zeros_like",
                               value=numpy_helper.from_array(np.array([0.0], np.float32))),
              helper.make_node("Add", ["x", "zeros"], ["y"], name="add")], "'zeros_like' (ConstantOfShape)"),
    (lambda: [helper.make_node("Size", ["x"], ["sz"], name="size"),
              helper.make_node("Unsqueeze", ["sz", "ax0"], ["t"], name="u"),
              helper.make_node("Reshape", ["x", "t"], ["y"], name="r")], "'size' (Size)"),
])
def test_computing_with_the_free_batch_is_refused_naming_the_node(build, node):
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"), const_node("i0", np.array(0, np.int64)),
             helper.make_node("Gather", ["s", "i0"], ["n"], name="gather"),
             const_node("ax0", np.array([0], np.int64)), const_node("m1", np.array([-1], np.int64))] + build()
    with pytest.raises(OnnxImportError, match=re.escape(node) + ".*(free batch|run time)"):
        from_onnx(make_model(nodes, [("x", ["N", 4])], ["y"]))
    # with the batch fixed, the same node folds (the model may still be refused further on)
    try:
        from_onnx(make_model(nodes, [("x", ["N", 4])], ["y"]), input_shapes={"x": (2, 4)})
    except OnnxImportError as e:
        assert node not in str(e), str(e)


def test_converter_errors_name_the_node(rng):
    nodes = [helper.make_node("Concat", ["x", "c"], ["y"], name="cat_with_const", axis=1)]
    with pytest.raises(OnnxImportError, match="'cat_with_const' \\(Concat\\): constant inputs"):
        from_onnx(make_model(nodes, [("x", ["N", 3])], ["y"], {"c": randn(rng, 1, 3)}))
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_bad", kernel_shape=[3, 3])]
    with pytest.raises(OnnxImportError, match="'conv_bad' \\(Conv\\).*channels"):
        from_onnx(make_model(nodes, [("x", ["N", 3, 5, 5])], ["y"], {"w": randn(rng, 2, 4, 3, 3)}))


def test_dead_nodes_and_unused_dropout_mask_are_ignored(rng):
    nodes = [helper.make_node("Dropout", ["x"], ["d", "mask"], name="drop"),
             helper.make_node("Sin", ["x"], ["dead"], name="sin_unused"),
             helper.make_node("Relu", ["d"], ["y"], name="relu")]
    model = make_model(nodes, [("x", ["N", 4])], ["y"])
    g = check(model, {"x": randn(rng, 2, 4)})
    assert ops_of(g) == ["dropout", "relu"]


def test_from_onnx_does_not_need_onnx_to_import_eightbit():
    import subprocess
    import sys
    code = "import sys, eightbit; assert 'onnx' not in sys.modules; print(eightbit.from_onnx.__doc__[:6])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("affine, opset, square", [(True, 13, "Pow"), (False, 13, "Mul"), (True, 18, "Pow")])
def test_layer_norm_written_out_is_one_node(rng, affine, opset, square):
    """LayerNorm as torch exports it before opset 17 (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div)."""
    if opset >= 18:
        rm = lambda i, o, n: helper.make_node("ReduceMean", [i, "axes"], [o], name=n)  # noqa: E731
    else:
        rm = lambda i, o, n: helper.make_node("ReduceMean", [i], [o], name=n, axes=[-1])  # noqa: E731
    nodes = [rm("x", "mean", "/ln/ReduceMean"),
             helper.make_node("Sub", ["x", "mean"], ["d"], name="/ln/Sub"),
             helper.make_node("Pow", ["d", "two"], ["sq"], name="/ln/Pow") if square == "Pow"
             else helper.make_node("Mul", ["d", "d"], ["sq"], name="/ln/Pow"),
             rm("sq", "var", "/ln/ReduceMean_1"),
             helper.make_node("Add", ["var", "eps"], ["ve"], name="/ln/Add"),
             helper.make_node("Sqrt", ["ve"], ["sd"], name="/ln/Sqrt"),
             helper.make_node("Div", ["d", "sd"], ["n" if affine else "y"], name="/ln/Div")]
    inits = {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32),
             "axes": np.array([-1], np.int64)}
    if affine:
        nodes += [helper.make_node("Mul", ["n", "gamma"], ["ng"], name="/ln/Mul"),
                  helper.make_node("Add", ["ng", "beta"], ["y"], name="/ln/Add_1")]
        inits.update(gamma=randn(rng, 8), beta=randn(rng, 8))
    g = check(make_model(nodes, [("x", ["N", 5, 8])], ["y"], inits, opset=opset), {"x": randn(rng, 2, 5, 8, scale=3)})
    assert [(n.op, n.name, n.output) for n in g.nodes] == [
        ("layer_norm", "/ln/Add_1" if affine else "/ln/Div", "y")]


def test_keep_tensors_blocks_fusions(rng):
    from eightbit.onnx.import_float import import_float
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"], name="mm"),
             helper.make_node("Add", ["mm", "b"], ["h"], name="add")] + _erf_gelu_nodes("torch")
    model = make_model(nodes, [("x", ["N", 3, 4])], ["y"], {"W": randn(rng, 4, 6), "b": randn(rng, 6)})
    assert ops_of(import_float(model)) == ["linear", "gelu"]
    kept = import_float(model, keep_tensors={"mm", "e"})
    assert ops_of(kept) == ["matmul", "add", "mul", "erf", "add", "mul", "mul"]
    assert {"mm", "e"} <= set(kept.tensors)
    model = make_model(nodes[:2], [("x", ["N", 3, 4])], ["h"], {"W": randn(rng, 4, 6), "b": randn(rng, 6)})
    g = import_float(model, keep_tensors={"mm"})
    assert [(n.name, n.op, n.output) for n in g.nodes] == [("mm", "matmul", "mm"), ("add", "add", "h")]
