"""ONNX import and export (needs the ``onnx`` package, imported only when a function is called).

    g = eb.from_onnx("model.onnx")                    # a float model -> eb.Graph
    g = eb.from_onnx(path, input_shapes={"x": (None, 3, 224, 224)})
    g = eb.from_onnx("bert.onnx", dims={"sequence": 128})   # int64 ids; one import per length
    qm = eb.from_onnx_quantized("model.int8.onnx")    # an already quantized model -> eb.QuantizedModel

Each import function returns one kind of object; ``is_quantized(model)`` says which one a model
needs (the command line uses it to take either kind of file).
"""
from __future__ import annotations

import os

from .errors import OnnxImportError
from .export import to_onnx
from .export_float import graph_to_onnx

__all__ = ["from_onnx", "from_onnx_quantized", "is_quantized", "OnnxImportError", "to_onnx", "graph_to_onnx"]


def _load_unchecked(model, caller: str):
    """The ModelProto of a path, bytes or ModelProto (external data loaded), not yet checked."""
    from .load import load_model
    if not isinstance(model, (str, os.PathLike, bytes, bytearray, memoryview)):
        from .errors import require_onnx
        if not isinstance(model, require_onnx().ModelProto):
            raise TypeError(f"{caller}: model must be a path, bytes or an onnx.ModelProto, got "
                            f"{type(model).__name__}")
    return load_model(model, check=False)


def is_quantized(model) -> bool:
    """Whether an ONNX model (a path, bytes or an ``onnx.ModelProto``) holds quantization
    operators (QDQ, QOperator or dynamic, as onnxruntime.quantization writes them): then
    ``from_onnx_quantized`` imports it, else ``from_onnx``."""
    from .import_quantized import is_quantized as _holds_quantization_ops
    return _holds_quantization_ops(_load_unchecked(model, "is_quantized"))


def from_onnx(model, *, input_shapes=None, dims=None, max_folded_bytes=None, max_total_folded_bytes=None):
    """Import a float ONNX model as an ``eb.Graph``: ``model`` is a path (str or os.PathLike), the
    file's bytes or an ``onnx.ModelProto`` (see onnx/import_float.py for the operators and
    rules); ``input_shapes={input name: shape}`` fixes dimensions the model leaves symbolic
    (dimension 0, the batch, may stay None); ``dims={dimension name: size}`` fixes every input
    dimension the model names so (``dims={"sequence": 128}`` for a BERT exported with a symbolic
    "sequence" axis: the graph then runs that sequence length; import once per length).
    ``max_folded_bytes`` (one constant) and
    ``max_total_folded_bytes`` (all of them) bound the constants folded at import (None: the
    defaults, 256 MiB and 1 GiB, ``eightbit.onnx.fold.MAX_FOLDED_BYTES`` / ``MAX_TOTAL_FOLDED_BYTES``);
    raise them to import knowingly a model whose weights are computed, e.g. by ConstantOfShape.
    Opsets 7-10 are converted to opset 11 first (onnx.version_converter). Always returns a Graph: a model that is already
    quantized raises ``OnnxImportError`` pointing to ``from_onnx_quantized``. Raises
    ``OnnxImportError`` (a ValueError) for a file that cannot be read or a model that cannot be
    converted."""
    from .import_float import import_float
    from .import_quantized import is_quantized as _holds_quantization_ops
    from .load import load_model
    proto = _load_unchecked(model, "from_onnx")
    if _holds_quantization_ops(proto):
        raise OnnxImportError("the model is already quantized (it holds QuantizeLinear / DequantizeLinear or "
                              "QLinear* operators): import it with eb.from_onnx_quantized, which keeps its own "
                              "scales and zero points; eb.from_onnx takes float models")
    return import_float(load_model(proto), input_shapes=input_shapes, dims=dims, max_folded_bytes=max_folded_bytes,
                        max_total_folded_bytes=max_total_folded_bytes)


def from_onnx_quantized(model):
    """Import an ONNX model quantized by another tool (QDQ, QOperator or ``quantize_dynamic``, as
    onnxruntime.quantization writes them) as an ``eb.QuantizedModel`` that keeps the model's own
    scales, zero points and int32 biases, so its outputs are ONNX Runtime's (onnx/import_quantized.py).
    ``model`` is a path, bytes or an ``onnx.ModelProto``. A float model raises ``OnnxImportError``
    pointing to ``from_onnx``; so does anything that cannot be read or run."""
    from .import_quantized import import_quantized
    from .import_quantized import is_quantized as _holds_quantization_ops
    proto = _load_unchecked(model, "from_onnx_quantized")
    if not _holds_quantization_ops(proto):
        raise OnnxImportError("the model holds no quantization operators (a float model): import it with "
                              "eb.from_onnx and quantize it with eb.quantize")
    return import_quantized(proto)
