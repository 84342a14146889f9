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


def guarded(where: str, fn, *args):
    """fn(*args), where `where` names the node being read. What a malformed node provokes in plain
    Python or NumPy (ValueError from the graph builder's checks or NumPy, TypeError, KeyError,
    IndexError, ArithmeticError, StopIteration: an attribute of the wrong type or length, a missing
    input, int() of an infinite float...) is raised as an OnnxImportError naming it, the original
    exception chained as its cause. Anything else (a bug) passes through unchanged."""
    try:
        return fn(*args)
    except OnnxImportError:
        raise
    except ValueError as e:
        raise OnnxImportError(f"{where}: {e}") from e
    except (TypeError, KeyError, IndexError, ArithmeticError, StopIteration) as e:
        raise OnnxImportError(f"{where}: {type(e).__name__}: {e}") from e
