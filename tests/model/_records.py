"""Executor steps written as raw records (the lowered form of docs/format.md) and built by the C++
model reader: for tests of the executor's own checks, which a Plan would refuse before they run."""
import numpy as np

from eightbit import _core
from eightbit.model import file_format


class Records:
    """Collects tensors and steps; every add_* builds the plan so far (its free tensors as inputs,
    the step's output as output), so a bad step raises where it is added, as the reader would."""

    def __init__(self):
        self.tensors, self.steps, self._ex = [], [], None

    def add_tensor(self, name, dtype, shape, scale=1.0, zero_point=0):
        t = {"name": name, "dtype": dtype, "shape": list(shape)}
        if dtype != "float32":
            t.update(scale=float(scale), zero_point=int(zero_point))
        self.tensors.append(t)
        return name

    def step(self, kind, xs, y, consts=None, **lowered):
        self.steps.append({"op": kind, "inputs": list(xs), "output": y, "attrs": {}, "consts": consts or {},
                           "source": "test", "lowered": {"kind": kind, **lowered}})
        produced = {s["output"] for s in self.steps}
        try:
            self.build([t["name"] for t in self.tensors if t["name"] not in produced], [y])
        except Exception:
            self.steps.pop()  # refused: the records stay as they were
            raise

    def build(self, inputs, outputs, max_arena_bytes=0):
        tree = {"format": "eightbit-plan", "producer": "test", "inputs": list(inputs), "outputs": list(outputs),
                "tensors": self.tensors, "steps": self.steps}
        self._ex = _core.build_model(file_format.encode_tree(tree), max_arena_bytes)
        return self._ex

    finalize = build

    def run(self, xs):
        return self._ex.run(xs)

    # the float steps, by their former builder names
    def add_float_transpose(self, x, y, label, perm):
        self.step("float_transpose", [x], y, perm=list(perm))

    def add_float_pad(self, x, y, label, pads, mode, value):
        self.step("float_pad", [x], y, pads=list(pads), mode=mode, value=float(value))

    def add_float_layer_norm(self, x, y, label, axes, eps, weight, bias):
        self.step("float_layer_norm", [x], y, axes=axes, eps=float(eps), weight=weight, bias=bias)

    def add_float_binary(self, xs, y, label, op, b, lo=-np.inf, hi=np.inf):
        self.step("float_binary", xs, y, fn=op, b=b, lo=float(lo), hi=float(hi))

    def add_float_unary(self, x, y, label, kind, a, b):
        self.step("float_unary", [x], y, fn=kind, a=float(a), b=float(b))

    def add_float_bmm(self, a, b, y, label):
        self.step("float_bmm", [a, b], y)
