"""Where a quantized model spends its time: ``qm.profile(x)`` runs the C++ executor with a clock
around every step (``PlanExecutor.run_profiled``; the ordinary ``run`` times nothing per step) and
returns a Profile, one row per plan step.

    prof = qm.profile(x, repeats=10)
    print(prof.table())                  # step, op, node, ms, share, GOP/s
    prof.rows[3].gops                    # 2 * MACs / seconds / 1e9 for conv / linear / dynamic_linear
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .report import _plain, format_table, write_json

__all__ = ["ProfileRow", "Profile", "step_macs", "profile_model"]

_GEMM_STEPS = ("conv", "linear", "dynamic_linear")


@dataclass
class ProfileRow:
    """One plan step: its median wall time over the repeats, its share of the sum of all steps'
    medians, and for conv / linear / dynamic_linear the multiply-accumulates of this batch and
    the throughput 2 * MACs / seconds in GOP/s (None for other steps)."""

    step: int
    op: str
    node: str
    seconds: float
    share: float
    macs: Optional[int] = None
    gops: Optional[float] = None


@dataclass
class Profile:
    """``qm.profile``'s result: ``rows`` in plan order; ``total_seconds`` is the sum of the steps'
    medians (the executor's own time, without the Python call)."""

    rows: list
    batch: int
    repeats: int
    total_seconds: float
    isa: str = ""
    threads: int = 0
    extra: dict = field(default_factory=dict)

    def table(self) -> str:
        rows = [(r.step, r.op, r.node, f"{r.seconds * 1e3:.4f}", f"{100 * r.share:.1f}%",
                 "-" if r.gops is None else f"{r.gops:.1f}") for r in self.rows]
        text = format_table(["step", "op", "node", "ms", "share", "GOP/s"], rows)
        return (text + f"\ntotal {self.total_seconds * 1e3:.4f} ms for a batch of {self.batch} "
                f"(median of {self.repeats} runs; {self.isa}, {self.threads} threads)")

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    def to_json(self, path=None) -> str:
        return write_json(self.to_dict(), path)


def step_macs(plan, step, batch: int) -> Optional[int]:
    """Multiply-accumulates of a conv / linear / dynamic_linear step for ``batch`` items (None for
    any other step): output elements times the weights each one reads."""
    if step.op not in _GEMM_STEPS:
        return None
    w = np.asarray(step.consts["w"])
    out = plan.tensors[step.output].shape[1:]
    per_output = int(np.prod(w.shape[1:]))   # conv: (C / group) * kh * kw; linear: K
    return int(batch) * int(np.prod(out, dtype=np.int64)) * per_output


def profile_model(qm, x, repeats: int = 10) -> Profile:
    """See QuantizedModel.profile."""
    from .. import runtime

    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats: expected an int >= 1, got {repeats!r}")
    if qm._executor is None:
        raise NotImplementedError("profile: this model has a step the C++ executor lacks (it runs step by step)")
    plan = qm.plan
    if isinstance(x, dict):
        missing = [n for n in plan.inputs if n not in x]
        if missing or len(x) != len(plan.inputs):
            raise ValueError(f"profile: expected inputs {plan.inputs}, got {sorted(x)}")
        feeds = [x[n] for n in plan.inputs]
    else:
        if len(plan.inputs) != 1:
            raise TypeError(f"profile: the model has inputs {plan.inputs}: pass {{name: array}}")
        feeds = [x]
    ex = qm._executor
    ex.run_profiled(feeds)  # warm-up: the arena grows to this batch, caches fill
    times = np.array([ex.run_profiled(feeds)[1] for _ in range(int(repeats))], np.float64)  # [repeats, steps]
    batch = int(np.shape(feeds[0])[0])
    median = np.median(times, axis=0)
    total = float(median.sum())
    rows = []
    for i, (step, sec) in enumerate(zip(plan.steps, median)):
        macs = step_macs(plan, step, batch)
        gops = None if macs is None or sec <= 0 else 2.0 * macs / float(sec) / 1e9
        rows.append(ProfileRow(i, step.op, step.source, float(sec), float(sec) / total if total > 0 else 0.0,
                               macs, gops))
    info = runtime.cpu_info()
    return Profile(rows, batch, int(repeats), total, info["isa"], info["num_threads"])
