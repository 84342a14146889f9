"""ONNX import and export (needs the ``onnx`` package, imported only when a function is called).

    g = eb.from_onnx("model.onnx")                    # float model -> eb.Graph
    g = eb.from_onnx(path, input_shapes={"x": (None, 3, 224, 224)})
"""
from __future__ import annotations

import os

from .errors import OnnxImportError
from .export import to_onnx
from .export_float import graph_to_onnx

__all__ = ["from_onnx", "OnnxImportError", "to_onnx", "graph_to_onnx"]


def from_onnx(model, *, input_shapes=None):
    """Import an ONNX model: ``model`` is a path (str or os.PathLike), the file's bytes or an
    ``onnx.ModelProto``. A float model becomes an ``eb.Graph`` (see onnx/import_float.py for the
    operators and rules); ``input_shapes={input name: shape}`` fixes dimensions the model leaves
    symbolic (dimension 0, the batch, may stay None). Raises ``OnnxImportError`` (a ValueError)
    for a file that cannot be read or a model that cannot be converted."""
    from .import_float import import_float
    from .load import load_model
    if not isinstance(model, (str, os.PathLike, bytes, bytearray, memoryview)):
        from .errors import require_onnx
        if not isinstance(model, require_onnx().ModelProto):
            raise TypeError(f"from_onnx: model must be a path, bytes or an onnx.ModelProto, got "
                            f"{type(model).__name__}")
    proto = load_model(model, check=False)
    from .import_quantized import import_quantized, is_quantized
    if is_quantized(proto):  # QDQ / QOperator (onnxruntime.quantization): an eb.QuantizedModel
        return import_quantized(proto)
    proto = load_model(proto)
    return import_float(proto, input_shapes=input_shapes)
