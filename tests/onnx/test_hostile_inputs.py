"""Hostile ONNX models: eb.from_onnx raises OnnxImportError (a ValueError) naming the node, before
allocating anything large, reading anything outside the model's folder, or letting a KeyError /
TypeError / IndexError / NumPy error escape.

* constant folding is bounded (fold.MAX_FOLDED_BYTES per tensor, fold.MAX_TOTAL_FOLDED_BYTES in
  all): a 150-byte ConstantOfShape, Expand, Tile, Range, Pad, OneHot, broadcasting Add, sparse
  Constant or Concat chain is refused from its predicted size;
* external data must lie in the model's folder; a location outside it is refused with a message
  that says nothing about the outside file;
* a structured fuzz (mutations of valid float, QDQ, QOperator and quantize_dynamic models: deleted
  or retyped attributes, hostile attribute and initializer values, unknown input names, changed
  op types...) and the escapes it found, one by one;
* a softmax over the batch axis, a Conv with pads near 2^62, an AveragePool window wholly in
  padding without count_include_pad and a Clip with a NaN bound are refused.
"""
from __future__ import annotations

import copy
import os
import tracemalloc

import numpy as np
import onnx
import pytest
from onnx import AttributeProto, TensorProto, helper, numpy_helper

import eightbit as eb
from eightbit.onnx import OnnxImportError, fold

import models  # noqa: E402

OPSET = 17


def _model(nodes, inits=(), x_shape=("N", 8), out_shape=("N", 8), opset=OPSET):
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _import(model):
    """eb.from_onnx_quantized for a model holding quantization operators, else eb.from_onnx."""
    return eb.from_onnx_quantized(model) if eb.onnx.is_quantized(model) else eb.from_onnx(model)


def _refused(model, *match):
    with pytest.raises(OnnxImportError) as info:
        _import(model)
    for m in match:
        assert m in str(info.value), str(info.value)
    return str(info.value)


# ---- 1. constant folding is bounded ----------------------------------------------------------------

def _i64(*v):
    return np.array(v, np.int64)


# name -> (nodes writing "c" from constants, initializers); "c" is then added to x [N, 8]
BOMBS = {
    "ConstantOfShape": ([helper.make_node("ConstantOfShape", ["s"], ["c"], name="bomb")], {"s": _i64(30000, 30000)}),
    "ConstantOfShape_2^62": ([helper.make_node("ConstantOfShape", ["s"], ["c"], name="bomb")],
                             {"s": _i64(2 ** 31, 2 ** 31)}),
    "Expand": ([helper.make_node("Expand", ["one", "s"], ["c"], name="bomb")],
               {"one": np.ones((1, 1), np.float32), "s": _i64(30000, 30000)}),
    "Tile": ([helper.make_node("Tile", ["t", "r"], ["c"], name="bomb")],
             {"t": np.ones((2, 8), np.float32), "r": _i64(20000, 2000)}),
    "Range": ([helper.make_node("Range", ["a", "b", "d"], ["r"], name="bomb"),
               helper.make_node("Cast", ["r"], ["c"], name="cast", to=TensorProto.FLOAT)],
              {"a": np.array(0, np.int64), "b": np.array(2 ** 40, np.int64), "d": np.array(1, np.int64)}),
    "Pad": ([helper.make_node("Pad", ["t", "p"], ["c"], name="bomb")],
            {"t": np.ones((1, 8), np.float32), "p": _i64(0, 0, 10 ** 9, 0)}),
    "OneHot": ([helper.make_node("OneHot", ["i", "depth", "v"], ["c"], name="bomb")],
               {"i": _i64(1, 2, 3, 4, 5, 6, 7, 0), "depth": np.array(10 ** 9, np.int64),
                "v": np.array([0, 1], np.float32)}),
    "broadcast_Add": ([helper.make_node("Add", ["col", "row"], ["c"], name="bomb")],
                      {"col": np.ones((30000, 1), np.float32), "row": np.ones((1, 30000), np.float32)}),
}


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_folding_a_huge_constant_is_refused_before_allocating(bomb):
    nodes, inits = BOMBS[bomb]
    model = _model(nodes + [helper.make_node("Add", ["x", "c"], ["y"], name="add")], inits)
    tracemalloc.start()
    try:
        msg = _refused(model, "'bomb'", "MAX_FOLDED_BYTES")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"{peak} bytes allocated before refusing"   # the model's own arrays only
    assert "constant folding would produce" in msg


def test_a_sparse_constant_bomb_is_refused():
    values = numpy_helper.from_array(np.array([1.0], np.float32), "v")
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(_i64(0), "i"), [2 ** 40])
    nodes = [helper.make_node("Constant", [], ["c"], name="bomb", sparse_value=sparse),
             helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    _refused(_model(nodes, out_shape=("N", 2 ** 40)), "'bomb'", "MAX_FOLDED_BYTES")


def test_a_layer_norm_scale_broadcast_to_a_huge_shape_is_refused():
    """LayerNormalization broadcasts a scalar scale to the normalized shape (a graph constant)."""
    nodes = [helper.make_node("LayerNormalization", ["x", "s"], ["y"], name="ln", axis=-1)]
    model = _model(nodes, {"s": np.ones(1, np.float32)}, x_shape=("N", 2 ** 30), out_shape=("N", 2 ** 30))
    tracemalloc.start()
    try:
        _refused(model, "'ln'", "broadcasting its scale", "MAX_FOLDED_BYTES")
        assert tracemalloc.get_traced_memory()[1] < 64 << 20
    finally:
        tracemalloc.stop()


def test_a_concat_chain_is_refused_by_the_total_limit(monkeypatch):
    """Each Concat doubles a constant: every one stays under the per-tensor limit, together they
    pass the total one."""
    monkeypatch.setattr(fold, "MAX_FOLDED_BYTES", 4 << 20)
    monkeypatch.setattr(fold, "MAX_TOTAL_FOLDED_BYTES", 3 << 19)
    nodes, prev = [], "c0"
    for k in range(1, 9):                       # c_k is 16 KiB * 2^k: c1..c5 make 992 KiB, c6 1 MiB more
        nodes.append(helper.make_node("Concat", [prev, prev], [f"c{k}"], name=f"cat{k}", axis=0))
        prev = f"c{k}"
    nodes += [helper.make_node("ReduceSum", [prev, "ax"], ["c"], name="sum", keepdims=1),
              helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    model = _model(nodes, {"c0": np.ones((512, 8), np.float32), "ax": _i64(0)})
    _refused(model, "'cat6'", "MAX_TOTAL_FOLDED_BYTES")


def test_the_folding_limits_are_module_constants(monkeypatch):
    """The default lets ordinary folding through; a lower limit refuses the same model, naming the
    constant to raise."""
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["c"], name="zeros",
                              value=numpy_helper.from_array(np.array([0.5], np.float32))),
             helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    model = _model(nodes, {"s": _i64(64, 8)}, x_shape=("N", 64, 8), out_shape=("N", 64, 8))
    g = eb.from_onnx(model)
    x = np.ones((2, 64, 8), np.float32)
    np.testing.assert_array_equal(g.run(x), x + 0.5)
    monkeypatch.setattr(fold, "MAX_FOLDED_BYTES", 1024)
    _refused(model, "'zeros'", "2048 bytes", "MAX_FOLDED_BYTES")


def test_a_node_onnx_cannot_infer_is_not_folded():
    """An Expand with an int32 shape (ONNX wants int64) would be broadcast by the reference
    evaluator all the same: it is refused before, as ONNX shape inference refuses it."""
    nodes = [helper.make_node("Expand", ["one", "s"], ["c"], name="bad_expand"),
             helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    model = _model(nodes, {"one": np.ones((1, 1), np.float32), "s": np.array([30000, 30000], np.int32)})
    _refused(model, "'bad_expand'", "shape inference")


# ---- 2. external data stays in the model's folder --------------------------------------------------

def _external_model(tmp_path, location):
    """model/ext.onnx whose weight W is external data at `location` (as the model writes it)."""
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    w = np.ones((8, 8), np.float32)
    model = _model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], {"W": w})
    onnx.save_model(model, str(folder / "ext.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    saved = onnx.load(str(folder / "ext.onnx"), load_external_data=False)
    entry = [e for e in saved.graph.initializer[0].external_data if e.key == "location"][0]
    entry.value = location
    onnx.save(saved, str(folder / "ext.onnx"))
    return folder / "ext.onnx"


@pytest.mark.parametrize("where", ["dotdot", "absolute", "symlink", "absent"])
def test_external_data_outside_the_model_folder_is_refused_without_telling_about_it(tmp_path, where):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"s" * 12345)
    location = {"dotdot": "../secret.bin", "absolute": str(secret), "symlink": "link.bin",
                "absent": "../../nothing/here.bin"}[where]
    path = _external_model(tmp_path, location)
    if where == "symlink":
        os.symlink(secret, path.parent / "link.bin")
    msg = _refused(path, "'W'", "outside the model's folder")
    told = msg.replace(str(path), "").replace(repr(location), "")   # what the model itself says aside
    for leak in ("12345", "truncated", "missing", "secret.bin", str(tmp_path)):
        assert leak not in told, msg


def test_external_data_inside_the_folder_still_loads(tmp_path):
    path = _external_model(tmp_path, "w.bin")
    x = np.ones((2, 8), np.float32)
    np.testing.assert_allclose(eb.from_onnx(path).run(x), x @ np.ones((8, 8), np.float32))


def test_external_data_offset_that_is_not_a_number_is_refused(tmp_path):
    path = _external_model(tmp_path, "w.bin")
    saved = onnx.load(str(path), load_external_data=False)
    saved.graph.initializer[0].external_data.add(key="offset", value="twelve")
    onnx.save(saved, str(path))
    _refused(path, "'W'", "offset")


# ---- 3. malformed models: only OnnxImportError escapes ---------------------------------------------

def _sources():
    out = {name: models.MODELS[name]()[0] for name in ("mlp", "flatten_by_shape", "mobilenet_block",
                                                        "attention_block")}
    m, make_inputs = models.MODELS["resnet_block"]()
    qm = eb.quantize(eb.from_onnx(m), [make_inputs(np.random.default_rng(0), 4)])
    out["resnet_qdq"] = eb.to_onnx(qm, format="qdq")
    out["resnet_qoperator"] = eb.to_onnx(qm, format="qoperator")
    return out


_ATTR_VALUES = [0, -1, 2 ** 40, 0.5, float("nan"), "abc", [0], [], [1, 2, 3], [-5, -5], [2 ** 62] * 4, ["a"]]
_ATTR_NAMES = ["axis", "pads", "kernel_shape", "strides", "group", "perm", "to", "alpha", "auto_pad", "epsilon",
               "transB", "allowzero", "mode", "ceil_mode", "count_include_pad", "dilations", "keepdims", "axes"]
_INTS = [0, -1, 1, 3, -3, 9973, 2 ** 31 - 1, 2 ** 62, -2 ** 62]
_FLOATS = [0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e30]


def _pick(rng, seq):
    return seq[int(rng.integers(0, len(seq)))]


def _set_attr(node, name, value):
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)
    node.attribute.append(helper.make_attribute(name, value, attr_type=AttributeProto.INTS) if value == []
                          else helper.make_attribute(name, value))


def _mutate(model, rng):
    """One structured change of a valid model (many pass the ONNX checker)."""
    m = copy.deepcopy(model)
    g = m.graph
    n = _pick(rng, list(g.node))
    inits = list(g.initializer)
    kind = int(rng.integers(0, 10))
    if kind == 0 and len(n.attribute):                                       # delete an attribute
        del n.attribute[int(rng.integers(0, len(n.attribute)))]
    elif kind == 1:                                                          # any value, any type
        _set_attr(n, _pick(rng, [a.name for a in n.attribute] + _ATTR_NAMES), _pick(rng, _ATTR_VALUES))
    elif kind == 2 and len(n.attribute):                                     # same type, hostile value
        a = _pick(rng, list(n.attribute))
        if a.type == AttributeProto.INT:
            a.i = _pick(rng, _INTS)
        elif a.type == AttributeProto.FLOAT:
            a.f = _pick(rng, _FLOATS)
        elif a.type == AttributeProto.INTS:
            k = int(rng.integers(0, len(a.ints) + 2))
            del a.ints[:]
            a.ints.extend(_pick(rng, _INTS) for _ in range(k))
        elif a.type == AttributeProto.STRING:
            a.s = _pick(rng, [b"", b"SAME_UPPER", b"VALID", b"reflect", b"tanh", b"xyz"])
    elif kind == 3 and inits:                                                # another dtype
        t = _pick(rng, inits)
        dt = _pick(rng, [np.float64, np.int64, np.int32, np.uint8, np.int8, np.float16, np.bool_])
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(dt), t.name))
    elif kind == 4 and inits:                                                # another shape
        t = _pick(rng, inits)
        a = numpy_helper.to_array(t)
        s = _pick(rng, [(), (1,), (a.size,), (1, a.size), (a.size, 1), (0,)])
        t.CopyFrom(numpy_helper.from_array(np.resize(a, s).reshape(s), t.name))
    elif kind == 5 and inits:                                                # hostile values
        t = _pick(rng, inits)
        a = numpy_helper.to_array(t).copy()
        if a.size:
            vals = _FLOATS if a.dtype.kind == "f" else [v for v in _INTS if np.can_cast(np.min_scalar_type(v), a.dtype)]
            if vals:
                a.reshape(-1)[int(rng.integers(0, a.size))] = _pick(rng, vals)
                t.CopyFrom(numpy_helper.from_array(a, t.name))
    elif kind == 6 and len(n.input):                                         # an unknown or absent input
        if rng.random() < 0.5:
            n.input[int(rng.integers(0, len(n.input)))] = "no_such_tensor"
        else:
            n.input.pop()
    elif kind == 7:                                                          # another op
        n.op_type = _pick(rng, ["Conv", "Gemm", "MatMul", "Add", "Reshape", "Softmax", "Concat", "Transpose",
                                "Clip", "AveragePool", "MaxPool", "Flatten", "Unsqueeze", "Pad", "Cast",
                                "QuantizeLinear", "DequantizeLinear", "LayerNormalization", "Gather"])
    elif kind == 8 and inits:                                                # a missing initializer
        g.initializer.remove(_pick(rng, inits))
    elif kind == 9:                                                          # an extra input
        n.input.append(inits[0].name if inits else "x")
    return m


def _only_onnx_import_errors(model, what):
    try:
        _import(model)
    except OnnxImportError as e:
        assert str(e)
    except Exception as e:          # noqa: BLE001 - the point: nothing else may escape
        pytest.fail(f"{what}: {type(e).__name__} escaped: {e}")


@pytest.fixture(scope="module")
def sources():
    return _sources()


@pytest.mark.parametrize("source", ["mlp", "flatten_by_shape", "mobilenet_block", "attention_block", "resnet_qdq",
                                    "resnet_qoperator"])
def test_mutated_models_raise_only_onnx_import_error(sources, source):
    rng = np.random.default_rng(20261206)
    for i in range(150):
        m = _mutate(sources[source], rng)
        if rng.random() < 0.3:
            m = _mutate(m, rng)
        _only_onnx_import_errors(m, f"{source} mutation {i}")


def test_mutated_quantize_dynamic_models_raise_only_onnx_import_error(tmp_path):
    quantization = pytest.importorskip("onnxruntime.quantization")
    onnx.save(models.MODELS["mlp"]()[0], str(tmp_path / "f.onnx"))
    quantization.quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"),
                                  weight_type=quantization.QuantType.QInt8)
    model = onnx.load(str(tmp_path / "q.onnx"))
    rng = np.random.default_rng(7)
    for i in range(150):
        _only_onnx_import_errors(_mutate(model, rng), f"dynamic mutation {i}")


def _node(model, op):
    return next(n for n in model.graph.node if n.op_type == op)


def _init(model, name):
    return next(t for t in model.graph.initializer if t.name == name)


def _retype(t, dtype):
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(dtype), t.name))


def _escape_dq_scale_float16(m):          # was TypeError
    _retype(_init(m, _node(m, "DequantizeLinear").input[1]), np.float16)


def _escape_dq_activation_bool_zero_point(m):   # was TypeError
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in
          {t.name for t in m.graph.initializer}][0]
    _retype(_init(m, dq.input[2]), np.bool_)


def _escape_per_axis_dq_of_a_scalar(m):   # was ZeroDivisionError (axis % 0)
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and
              numpy_helper.to_array(_init(m, n.input[1])).size > 1)
    w = _init(m, dq.input[0])
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w).reshape(-1)[:1].reshape(()), w.name))


def _escape_conv_group_zero(m):           # was ZeroDivisionError in shape inference
    _set_attr(_node(m, "Conv"), "group", 0)


def _escape_qlinear_conv_empty_ints(m):   # was ValueError from onnx.helper.make_node
    _set_attr(_node(m, "QLinearConv"), "strides", [])


ESCAPES = {
    "qdq": [_escape_dq_scale_float16, _escape_dq_activation_bool_zero_point, _escape_per_axis_dq_of_a_scalar],
    "float": [_escape_conv_group_zero],
    "qoperator": [_escape_qlinear_conv_empty_ints],
}


@pytest.mark.parametrize("fmt, index", [(f, i) for f, fs in ESCAPES.items() for i in range(len(fs))])
def test_escapes_the_fuzz_found_are_onnx_import_errors(sources, fmt, index):
    source = {"qdq": "resnet_qdq", "qoperator": "resnet_qoperator", "float": "mobilenet_block"}[fmt]
    m = copy.deepcopy(sources[source])
    ESCAPES[fmt][index](m)
    with pytest.raises(OnnxImportError, match="node '"):
        _import(m)


def test_qgemm_with_a_list_trans_b_is_an_onnx_import_error():
    """A com.microsoft QGemm whose transB is a list (the checker does not know the op's schema):
    was TypeError from int(list)."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
             helper.make_node("QGemm", ["xq", "s", "z", "w", "s", "wz", "", "s", "z"], ["yq"], name="qgemm",
                              domain="com.microsoft", transB=[1, 1]),
             helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"], name="dq")]
    inits = {"s": np.float32(0.1), "z": np.uint8(128), "w": rng.integers(-5, 5, (8, 8)).astype(np.int8),
             "wz": np.int8(0)}
    model = _model(nodes, inits)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _refused(model, "'qgemm'", "transB")


def test_a_dynamic_model_with_broadcasting_weight_scales_is_an_onnx_import_error(tmp_path):
    """quantize_dynamic's weight scale of a wrong shape used to broadcast the float weights (a
    ValueError from NumPy, or a huge array)."""
    quantization = pytest.importorskip("onnxruntime.quantization")
    onnx.save(models.MODELS["mlp"]()[0], str(tmp_path / "f.onnx"))
    quantization.quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"),
                                  weight_type=quantization.QuantType.QInt8)
    model = onnx.load(str(tmp_path / "q.onnx"))
    scale = next(t for t in model.graph.initializer if t.name.endswith("scale") and
                 numpy_helper.to_array(t).dtype == np.float32)
    scale.CopyFrom(numpy_helper.from_array(np.full((1000, 1, 1), 0.01, np.float32), scale.name))
    _refused(model, "MatMulInteger", "weight scales")


# ---- 4-6. softmax over the batch, huge conv pads, empty pooling windows, NaN clip -------------------

@pytest.mark.parametrize("opset, axis, shape", [(13, -3, [4, 5]), (13, 0, [4, 5]), (11, 0, [1]), (11, -2, [1])])
def test_softmax_over_the_batch_axis_is_refused(opset, axis, shape):
    nodes = [helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=axis)]
    model = _model(nodes, x_shape=["N", *shape], out_shape=["N", *shape], opset=opset)
    _refused(model, "'sm'", "batch")


@pytest.mark.parametrize("pads", [[2 ** 62] * 4, [2 ** 62 - 1, 0, 2 ** 62, 0], [2 ** 40, 0, 0, 0], [2 ** 21] * 4])
def test_conv_with_huge_pads_is_refused(pads):
    w = np.ones((2, 2, 3, 3), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=pads)]
    model = _model(nodes, {"w": w}, x_shape=["N", 2, 4, 4], out_shape=["N", 2, None, None])
    _refused(model, "'conv'")


@pytest.mark.parametrize("pads", [[2, 0, 0, 0], [0, 0, 0, 2], [0, 3, 0, 0], [0, 0, 1, 3]])
def test_average_pool_window_wholly_in_padding_without_counting_it_is_refused(pads):
    nodes = [helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], pads=pads,
                              count_include_pad=0)]
    _refused(_model(nodes, x_shape=["N", 2, 4, 4], out_shape=["N", 2, None, None]), "'pool'", "padding")


def test_average_pool_counting_the_padding_still_imports():
    """Counting the padding, a window wholly in it has a mean (0): ONNX's reference agrees."""
    from onnx.reference import ReferenceEvaluator
    nodes = [helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], pads=[2, 0, 0, 1],
                              count_include_pad=1)]
    model = _model(nodes, x_shape=["N", 2, 4, 4], out_shape=["N", 2, None, None])
    x = np.random.default_rng(1).standard_normal((2, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(eb.from_onnx(model).run(x), ReferenceEvaluator(model).run(None, {"x": x})[0],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("which", ["min", "max"])
def test_clip_with_a_nan_bound_is_refused(which):
    lo, hi = (np.float32(np.nan), np.float32(1)) if which == "min" else (np.float32(-1), np.float32(np.nan))
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")]
    _refused(_model(nodes, {"lo": lo, "hi": hi}), "'clip'", f"{which} is NaN")
