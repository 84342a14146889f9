"""The float Graph IR (layer 2 of DESIGN.md): build a network from NumPy weights, run it in
float32 NumPy, and rewrite it for quantization.

    g = eb.Graph(); x = g.input("x", (None, 1, 8, 8)); g.output(g.relu(g.conv2d(x, w, b)))
    y = g.run(batch)
    q_ready = eb.graph.prepare_for_quantization(g)

ir.py: the Tensor / Node records and the op table; graph.py: Graph; builders.py: the builders;
shapes.py: shape inference; float_exec.py: the executor; passes.py: the rewrites.
"""
from __future__ import annotations

from .graph import Graph
from .ir import OPS, Node, Tensor
from .passes import fold_batch_norm, fuse_activations, prepare_for_quantization, remove_identities

__all__ = ["Graph", "Tensor", "Node", "OPS", "fold_batch_norm", "fuse_activations",
           "remove_identities", "prepare_for_quantization"]
