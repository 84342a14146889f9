"""The one error the ONNX front-end raises for a model it cannot read or convert."""
from __future__ import annotations


class OnnxImportError(ValueError):
    """An ONNX model that cannot be imported: not a model, truncated, invalid, with external data
    that is missing, of an unsupported opset or domain, or using operators eightbit has no
    equivalent for. The message names the file or the nodes concerned and what was expected."""


def require_onnx():
    """The ``onnx`` module, imported on first use (an optional dependency)."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError("importing ONNX models needs the onnx package: pip install 'eightbit[onnx]'") from e
    return onnx
