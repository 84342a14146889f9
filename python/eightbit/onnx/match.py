"""``Match``: a set of ONNX nodes that the importer converts together (patterns.py, attention_mask.py)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Match:
    anchor: object             # the OnnxNode writing the final output
    nodes: list                # every OnnxNode of the pattern (the anchor included)
    convert: object            # convert(importer): emits the graph node(s)
