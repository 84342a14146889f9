"""Which kernel each plan step runs on this CPU (``eightbit info model.eb``, ``step_kernels``).

The names come from the C++ executor itself (``PlanExecutor.step_kernels``): each step reports
the kernel its run() takes on the active dispatch path, through the same functions run() calls
(conv.cpp's choice between depthwise, direct, 1x1 and im2col convolution; the GEMM kernel of the
path and the one it hands calls of few rows to; the binary and block-quantized kernel sets).
Steps whose kind has one loop (element-wise, pooling, quantize, reshape, float math) report
nothing there and are named by their kind and path; the steps the C++ builder hands back to
Python (float forms it lacks) are asked of the builder.
"""
from __future__ import annotations

from ..runtime import core as _core, cpu_info, set_isa

__all__ = ["step_kernels"]


def step_kernels(model, isa: str | None = None) -> list:
    """One dict per plan step of a QuantizedModel: "step" (index), "op", "source" (the graph node),
    "output" and "kernel" (what it runs on ``isa``, default the dispatch path in use; ``isa`` must
    be one this CPU runs, see ``eb.cpu_info()["available"]``)."""
    before = cpu_info()["isa"]
    isa = before if isa is None else isa
    if isa not in cpu_info()["available"]:
        raise ValueError(f"isa: expected one of {cpu_info()['available']} (the paths this CPU runs), got {isa!r}")
    hosts = _host_steps(model)
    set_isa(isa)
    try:
        names = model._executor.step_kernels() if model._executor is not None else [""] * len(model.plan.steps)
    finally:
        set_isa(before)
    if len(names) != len(model.plan.steps):
        raise RuntimeError(f"the executor has {len(names)} steps, the plan {len(model.plan.steps)}")
    rows = []
    for i, (s, name) in enumerate(zip(model.plan.steps, names)):
        if i in hosts:
            name = "host: NumPy float executor (Python)"
        elif not name:
            name = f"{s.attrs.get('op', s.op) if s.op == 'float' else s.op} loop, {isa} path"
        rows.append({"step": i, "op": s.op, "source": s.source, "output": s.output, "kernel": name})
    return rows


def _host_steps(model) -> set:
    """The steps the C++ builder hands back to Python (float forms it lacks): asked of the builder
    by building the plan once more with a recording host callback."""
    if model._executor is None:
        return set(range(len(model.plan.steps)))  # the whole model runs step by step
    from . import file_format

    seen = set()

    def host(i):
        seen.add(i)
        return lambda xs: None  # never run

    _core.build_model(file_format.encode(model.plan), 0, host)
    return seen
