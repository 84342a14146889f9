"""A ``float`` step's node as a one-node float Graph: what validates it (Plan.validate), runs it
(the reference interpreter and the host callback of the C++ executor) and re-infers its shape."""
from __future__ import annotations

from ..graph import Graph
from .plan_types import Step


def float_node_graph(step: Step, ins: list):
    """A float step's node as a one-node float Graph with inputs in0, in1, ... (``ins``: their
    TensorSpecs)."""
    g = Graph("float step")
    inputs = [g.input(f"in{i}", spec.shape) for i, spec in enumerate(ins)]
    g.output(g.add_node(step.attrs["op"], inputs, step.attrs["attrs"], step.consts, name=step.source or "node"))
    return g
