"""ONNX import and export (needs the ``onnx`` package, imported only when a function is called)."""
from __future__ import annotations

from .export import to_onnx
from .export_float import graph_to_onnx
