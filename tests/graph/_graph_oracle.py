"""ONNX Runtime as an independent oracle for the float graph executor: one ONNX node per test."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def onnx_node(op_type: str, feeds: dict, consts: dict | None = None, inputs=None, opset: int = 20,
              **attrs) -> np.ndarray:
    """Run one ONNX node on float32 `feeds` (graph inputs) and `consts` (initializers).

    `inputs` lists the node's input names in order ("" for an absent optional input); by
    default the feeds, then the consts, in insertion order. Graph optimizations are off so ORT
    runs the node's own kernel.
    """
    consts = consts or {}
    inputs = list(feeds) + list(consts) if inputs is None else inputs
    node = helper.make_node(op_type, inputs, ["y"], **attrs)
    graph = helper.make_graph(
        [node], "oracle",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in feeds.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {k: np.asarray(v, np.float32) for k, v in feeds.items()})[0]


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """allclose with atol scaled by the largest |expected| (float32 sums of O(1) terms)."""
    assert actual.dtype == np.float32, actual.dtype
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)
