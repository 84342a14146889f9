"""ModelRunner: a float Graph, a QuantizedModel or a callable behind one call (eb.evaluate, eb.explain)."""
from __future__ import annotations

import numpy as np

__all__ = ["ModelRunner"]


def _fixed(shape):
    return shape[0] if shape and isinstance(shape[0], int) else None


class ModelRunner:
    """One model behind a common call: ``runner(data) -> its first output`` (an array), for an
    eb.Graph, a QuantizedModel, an eb.Ensemble or any callable; ``data`` is an array (one input) or a dict.
    ``kind``, ``inputs`` (None for a callable), ``model_bytes`` and ``fixed_batch`` (the batch
    size the model's first input requires, None for any)."""

    def __init__(self, name, model):
        from ..ensemble import Ensemble
        from ..graph import Graph
        from ..model import QuantizedModel

        self.name, self.model = name, model
        if isinstance(model, Ensemble):
            self.kind, self.inputs = "ensemble", list(model.input_names)
            self.model_bytes = int(model.size_bytes)
            first = model.output_names[0]
            self.fn = lambda d: model.run(d if isinstance(d, dict) else {self.inputs[0]: d})[first]
            self.fixed_batch = _fixed(model.members[0].plan.tensors[self.inputs[0]].shape)
        elif isinstance(model, QuantizedModel):
            self.kind, self.inputs = "quantized", list(model.plan.inputs)
            self.model_bytes = int(model.size_bytes)
            first = model.plan.outputs[0]
            self.fn = lambda d: model.run(d)[first] if isinstance(d, dict) else model.run({self.inputs[0]: d})[first]
            self.fixed_batch = _fixed(model.plan.tensors[self.inputs[0]].shape)
        elif isinstance(model, Graph):
            self.kind, self.inputs = "graph", list(model.inputs)
            self.model_bytes = int(sum(np.asarray(v).nbytes for n in model.nodes for v in n.consts.values()))
            first = model.outputs[0] if model.outputs else None
            self.fn = lambda d: _first(model.run(d), first)
            self.fixed_batch = _fixed(model.tensors[self.inputs[0]].shape) if self.inputs else None
        elif callable(model):
            self.kind, self.inputs, self.model_bytes, self.fixed_batch = "callable", None, None, None
            self.fn = lambda d: _first(model(d), None)
        else:
            raise TypeError(f"models[{name!r}]: expected an eb.Graph, a QuantizedModel or a callable "
                            "(or an eb.Ensemble), "
                            f"got {type(model).__name__}")

    def check_data(self, data) -> None:
        if self.inputs is None:
            return
        if isinstance(data, dict):
            if sorted(data) != sorted(self.inputs):
                raise ValueError(f"models[{self.name!r}]: expects inputs {self.inputs}, data has {sorted(data)}")
        elif len(self.inputs) != 1:
            raise ValueError(f"models[{self.name!r}] has inputs {self.inputs}: pass data as {{name: array}}")

    def __call__(self, data) -> np.ndarray:
        return self.fn(data)


def _first(out, name):
    """A model's first output: the array, the first of a tuple / list, or name's (first) value of a dict."""
    if isinstance(out, dict):
        if not out:
            raise ValueError("the model returned no outputs")
        out = out[name] if name in out else next(iter(out.values()))
    elif isinstance(out, (tuple, list)):
        if not out:
            raise ValueError("the model returned no outputs")
        out = out[0]
    return np.asarray(out)
