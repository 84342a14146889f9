"""Unique names for the nodes and tensors a rewrite or an exporter adds to an ONNX graph."""
from __future__ import annotations


def fresh_name(name: str, taken: set) -> str:
    """``name``, or ``name_2``, ``name_3``... if it is taken; adds the result to ``taken``."""
    out, k = name, 1
    while out in taken:
        k += 1
        out = f"{name}_{k}"
    taken.add(out)
    return out
