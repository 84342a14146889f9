"""Run a Plan step by step with an op module: ``eightbit.reference`` (the NumPy specification: what
"bit-exact" means for a whole model) or ``eightbit.ops`` (the C++ kernels, one call per step, with
the conv / linear weights packed once). Both modules have the same functions and signatures, so
one interpreter serves both; its arithmetic is entirely the module's. What each step computes is
its kind's ``run`` (the step registry, model/steps/).
"""
from __future__ import annotations

import numpy as np

from . import steps as step_kinds
from ..graph.sequence import length_of
from .plan import FLOAT, Plan


def check_feeds(plan: Plan, feeds: dict) -> dict:
    """The plan inputs as float32 arrays of the declared rank and fixed dimensions."""
    values = {}
    for name in plan.inputs:
        if name not in feeds:
            raise ValueError(f"missing input {name!r}; the model takes {plan.inputs}")
        x = np.asarray(feeds[name])
        if x.dtype != FLOAT:
            if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
                raise TypeError(f"input {name!r}: expected float32 data, got {x.dtype}")
            x = x.astype(np.float32)
        shape = plan.tensors[name].shape
        if x.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape, x.shape)):
            want = tuple("N" if d is None else d for d in shape)
            raise ValueError(f"input {name!r}: expected shape {want}, got {x.shape}")
        values[name] = x
    extra = set(feeds) - set(plan.inputs)
    if extra:
        raise ValueError(f"unknown input(s) {sorted(extra)}; the model takes {plan.inputs}")
    return values


def pack_weights(plan: Plan, ops) -> dict:
    """{step index: packed weights} for the steps with weights, as ``ops`` (eightbit.ops) takes
    them: what ``run_plan``'s ``weights`` argument wants, packed once."""
    packed = {}
    for i, step in enumerate(plan.steps):
        kind = step_kinds.REGISTRY[step.op]
        if kind.pack is not None:
            packed[i] = kind.pack(ops, step)
    return packed


def run_plan(plan: Plan, feeds: dict, module, weights: dict | None = None, return_all: bool = False) -> dict:
    """Execute every step with ``module``; ``weights`` maps a step index to the weights object its
    conv / linear call takes (packed weights for eightbit.ops, ``pack_weights``; the raw int8
    array by default). Returns {output name: float32 array}, or with ``return_all`` every plan
    tensor as the plan holds it (quantized ones as integers, 4-D ones NHWC)."""
    if plan.sequence() is not None:  # run the plan at the inputs' length
        length = length_of({n: plan.tensors[n].shape for n in plan.inputs}, feeds)
        plan = plan.at_length(length) if length is not None else plan
    values = check_feeds(plan, feeds)
    last_use = {}
    for i, step in enumerate(plan.steps):
        for name in step.inputs:
            last_use[name] = i
    for i, step in enumerate(plan.steps):
        kind = step_kinds.REGISTRY[step.op]
        ins = [plan.tensors[n] for n in step.inputs]
        w = None
        if kind.weights is not None:
            w = weights[i] if weights is not None and i in weights else kind.weights(step)
        values[step.output] = kind.run(module, step, [values[n] for n in step.inputs], ins,
                                       plan.tensors[step.output], w)
        for name in dict.fromkeys(step.inputs):  # a step may read one tensor twice (mul(x, x))
            if last_use[name] == i and name not in plan.outputs and not return_all:
                del values[name]
    return values if return_all else {name: values[name] for name in plan.outputs}
