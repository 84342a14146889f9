"""eb.Ensemble: several models with the same inputs and output shapes, run in one call and combined.

    ens = eb.Ensemble([qm1, qm2, qm3], combine="vote")
    y = ens(x)                  # [N, classes]: each class's (weighted) share of the votes
    ens.predict(x)              # [N]: the winning class, as scikit-learn's VotingClassifier.predict
    ens.save("digits.ebe"); ens = eb.load("digits.ebe")

Members are QuantizedModels (``eb.quantize``, ``eb.load``, ``eb.compile`` for a float one), run
in one call:

- With at least as many members as eightbit's intra-op threads (``eb.set_num_threads``, more than
  one) and short runs (each under 1 ms last time), they run side by side on eightbit's thread
  pool, one thread each (``_core.run_many``: each member's run is one part of a pool job, and its
  own parallel loops run inline there).
- With fewer members than threads, or longer runs, one after another, each on every thread.
- With one intra-op thread, on Python threads (the C++ executor releases the GIL for the whole
  run) when the members' last runs took 1 ms or more together; otherwise one after another.

``parallel=False`` always runs them one after another; ``parallel=True`` forces side by side
(the pool, or Python threads with one intra-op thread). bench/ensemble_table.py measures the
choices (docs/deploy.md has the numbers).

combine:

- ``"mean"``: per output, the (weighted) mean of the members' outputs, computed in float64 and
  returned as float32.
- ``"vote"``: per output, each member votes for the argmax of its scores over the last axis; the
  result has the members' output shape and holds each class's weighted share of the votes (the
  shares of a row sum to 1). Its argmax is the majority class; a tie goes to the lowest class
  index (NumPy's argmax takes the first maximum). ``predict`` returns that argmax.
- a callable ``fn(outputs) -> array``: called once per model output with the list of the members'
  arrays for it (member order). It cannot be saved.

``weights`` (one non-negative number per member, not all zero) weigh the mean or the votes.

The ensemble file (``.ebe`` by convention) is an ``.eb`` container (docs/format.md: same header,
value tree and CRCs, read by the same hardened C++ reader) whose tree is ``{"format":
"eightbit-ensemble", "version", "producer", "combine", "weights", "names", "members"}``, each member
a uint8 array holding that member's complete ``.eb`` file, "weights" None or a list of float64.
``eb.load`` tells the two apart by the tree's "format".
"""
from __future__ import annotations

import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._version import __version__
from .model import QuantizedModel
from .model import file_format
from .model.execute import check_feeds
from .runtime import core as _core
from .runtime import cpu_info

__all__ = ["Ensemble", "ENSEMBLE_FORMAT", "load_model"]

ENSEMBLE_FORMAT = "eightbit-ensemble"
ENSEMBLE_VERSION = 1
COMBINE_RULES = ("mean", "vote")
AUTO_PARALLEL_SECONDS = 1e-3  # parallel=None: threads once the members' last runs took this long together
MAX_MEMBERS = 1024  # a file that claims more is refused before anything is built


class Ensemble:
    """Members run in one call and combined (see the module docstring). ``names``: one per member
    (default "member0", "member1", ...), used by ``eb.evaluate``'s rows. ``parallel``: run the
    members on threads (True), one after another (False), or (None, the default) on threads only
    when eightbit runs one intra-op thread (``eb.set_num_threads(1)``) and the members' last runs
    took 1 ms or more together, where the overlap outweighs the hand-off."""

    def __init__(self, members, combine="mean", *, weights=None, names=None, parallel: bool | None = None):
        if isinstance(members, QuantizedModel) or not isinstance(members, (list, tuple)):
            raise TypeError(f"members: expected a list of QuantizedModels, got {type(members).__name__}")
        if not members:
            raise ValueError("members: the list is empty; an ensemble needs at least one model")
        for i, m in enumerate(members):
            if not isinstance(m, QuantizedModel):
                raise TypeError(f"members[{i}]: expected a QuantizedModel (eb.quantize, eb.load or eb.compile), "
                                f"got {type(m).__name__}")
        _check_same_interface(members)
        if isinstance(combine, str):
            if combine not in COMBINE_RULES:
                raise ValueError(f"combine: expected one of {list(COMBINE_RULES)} or a callable, got {combine!r}")
        elif not callable(combine):
            raise TypeError(f"combine: expected one of {list(COMBINE_RULES)} or a callable, "
                            f"got {type(combine).__name__}")
        if weights is not None and not isinstance(combine, str):
            raise ValueError("weights: they weigh the 'mean' or the 'vote' rule; a callable combine gets "
                             "the members' outputs unweighted")
        if parallel is not None and not isinstance(parallel, bool):
            raise TypeError(f"parallel: expected True, False or None, got {type(parallel).__name__}")
        self.members = list(members)
        self.combine = combine
        self.weights = None if weights is None else _check_weights(weights, len(members))
        self.names = _check_names(names, len(members))
        self.parallel = parallel
        self._pool = None

    # ---- the interface of one model

    @property
    def input_names(self) -> list:
        return self.members[0].input_names

    @property
    def output_names(self) -> list:
        return self.members[0].output_names

    @property
    def size_bytes(self) -> int:
        """Bytes of all members' quantized constants."""
        return sum(int(m.size_bytes) for m in self.members)

    def member_outputs(self, feeds: dict) -> list:
        """Every member's outputs on ``feeds`` ({input name: array}), as a list of lists in the
        ensemble's output order (members may name their outputs differently)."""
        if not isinstance(feeds, dict):
            raise TypeError(f"feeds: expected {{input name: array}}, got {type(feeds).__name__}")

        def run(m):
            out = m.run(feeds)
            return [out[n] for n in m.output_names]

        if self._on_the_pool():
            for m in self.members:
                check_feeds(m.plan, feeds)
            return [list(o) for o in _core.run_many([m._executor for m in self.members],
                                                     [[feeds[n] for n in m.input_names] for m in self.members])]
        if not self._use_threads():
            return [run(m) for m in self.members]
        rest = [self._executor().submit(run, m) for m in self.members[1:]]
        first = run(self.members[0])  # the calling thread takes a member too: one hand-off fewer
        return [first] + [f.result() for f in rest]

    def _on_the_pool(self) -> bool:
        """Members side by side on eightbit's thread pool, one thread each (_core.run_many): with at
        least as many members as intra-op threads (more than one), every member in C++ and none
        monitored (a monitor times its own runs), and (unless parallel=True) short runs, under
        AUTO_PARALLEL_SECONDS each last time: longer ones use every thread as well one after
        another (measured in docs/deploy.md)."""
        threads = cpu_info()["num_threads"]
        if self.parallel is False or not 1 < threads <= len(self.members) or \
                not all(m._executor is not None and m._monitor is None for m in self.members):
            return False
        return self.parallel is True or all(m._executor.last_run_seconds < AUTO_PARALLEL_SECONDS for m in self.members)

    def _use_threads(self) -> bool:
        if len(self.members) == 1 or self.parallel is False:
            return False
        if self.parallel is True:
            return True
        # auto: with several intra-op threads the members' big kernels already fill the cores and
        # take turns on the one pool, so member threads would only oversubscribe; with one, a
        # hand-off to a thread costs ~0.05-0.15 ms (measured, docs/deploy.md), worth it only once
        # the members' last runs (timed in C++) took 1 ms or more together
        if cpu_info()["num_threads"] > 1:
            return False
        last = [m._executor.last_run_seconds if m._executor is not None else 0.0 for m in self.members]
        return sum(last) >= AUTO_PARALLEL_SECONDS

    def run(self, feeds: dict) -> dict:
        """{output name: combined array} on ``feeds`` ({input name: array})."""
        outs = self.member_outputs(feeds)
        return {name: self._combine([o[k] for o in outs], name) for k, name in enumerate(self.output_names)}

    def __call__(self, x):
        if len(self.input_names) != 1:
            raise TypeError(f"the ensemble has inputs {self.input_names}: call run({{name: array}})")
        out = self.run({self.input_names[0]: x})
        return out[self.output_names[0]] if len(out) == 1 else tuple(out[n] for n in self.output_names)

    def predict(self, x) -> np.ndarray:
        """The class index of each sample: the argmax over the last axis of the (first) combined
        output, as scikit-learn's ``VotingClassifier.predict`` (ties: the lowest index)."""
        y = self.run(x if isinstance(x, dict) else {self._single_input(): x})[self.output_names[0]]
        return np.argmax(y, axis=-1)

    def _single_input(self) -> str:
        if len(self.input_names) != 1:
            raise TypeError(f"the ensemble has inputs {self.input_names}: pass {{name: array}}")
        return self.input_names[0]

    def _combine(self, ys: list, output: str) -> np.ndarray:
        if callable(self.combine):
            return np.asarray(self.combine(ys))
        w = np.ones(len(ys)) if self.weights is None else self.weights
        if self.combine == "mean":
            total = np.zeros(np.shape(ys[0]), np.float64)
            for wi, y in zip(w, ys):
                total += wi * np.asarray(y, np.float64)
            return (total / w.sum()).astype(np.float32)
        if np.ndim(ys[0]) < 1 or np.shape(ys[0])[-1] < 1:
            raise ValueError(f"combine='vote': output {output!r} has shape {np.shape(ys[0])}; voting needs "
                             "class scores along a last axis")
        classes = np.shape(ys[0])[-1]
        votes = np.zeros(np.shape(ys[0]), np.float64)
        for wi, y in zip(w, ys):
            winner = np.argmax(y, axis=-1)
            votes += wi * (winner[..., None] == np.arange(classes))
        return (votes / w.sum()).astype(np.float32)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=len(self.members), thread_name_prefix="eightbit-ensemble")
            weakref.finalize(self, self._pool.shutdown, wait=False)
        return self._pool

    # ---- the file

    def save(self, path) -> None:
        """Write the ensemble to one file (by convention ``.ebe``; read back with ``eb.load``)."""
        if not isinstance(self.combine, str):
            raise ValueError("save: a callable combine cannot be saved; only the named rules "
                             f"{list(COMBINE_RULES)} can (build the ensemble again after loading)")
        producer = f"eightbit {__version__}"
        tree = {"format": ENSEMBLE_FORMAT, "version": ENSEMBLE_VERSION, "producer": producer,
                "combine": self.combine,
                "weights": None if self.weights is None else [float(v) for v in self.weights],
                "names": list(self.names),
                "members": [np.frombuffer(file_format.encode(m.plan, producer), np.uint8) for m in self.members]}
        with open(path, "wb") as f:
            f.write(file_format.encode_tree(tree))

    @classmethod
    def _from_tree(cls, tree: dict, max_arena_bytes=None) -> "Ensemble":
        """The ensemble of a checked ensemble-file tree; anything missing or malformed raises
        ModelFileError (a ValueError) naming the field."""
        err = file_format.ModelFileError
        version = tree.get("version")
        if version != ENSEMBLE_VERSION or isinstance(version, bool):
            raise err(f"ensemble file: version {version!r} is not supported (expected {ENSEMBLE_VERSION})")
        combine = tree.get("combine")
        if combine not in COMBINE_RULES:
            raise err(f"ensemble file: 'combine' must be one of {list(COMBINE_RULES)}, got {combine!r}")
        members = tree.get("members")
        if not isinstance(members, tuple) or not 1 <= len(members) <= MAX_MEMBERS:
            what = f"{len(members)} entries" if isinstance(members, tuple) else type(members).__name__
            raise err(f"ensemble file: 'members' must be a list of 1 to {MAX_MEMBERS} member files, got {what}")
        names = tree.get("names")
        if not isinstance(names, tuple) or len(names) != len(members) or \
                not all(isinstance(n, str) for n in names):
            raise err(f"ensemble file: 'names' must be {len(members)} strings, one per member")
        weights = tree.get("weights")
        if weights is not None and not (isinstance(weights, tuple) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in weights)):
            raise err("ensemble file: 'weights' must be None or a list of numbers")
        models = []
        for i, blob in enumerate(members):
            if not isinstance(blob, np.ndarray) or blob.dtype != np.uint8 or blob.ndim != 1:
                raise err(f"ensemble file: members[{i}] must be a 1-D uint8 array (a .eb file)")
            try:
                file, plan = file_format.read(memoryview(blob))
                models.append(QuantizedModel._from_file(file, plan, max_arena_bytes))
            except err as e:
                raise err(f"ensemble file: members[{i}]: {e}") from None
        try:
            return cls(models, combine, weights=weights, names=list(names))
        except (ValueError, TypeError) as e:
            raise err(f"ensemble file: {e}") from None

    def __repr__(self) -> str:
        rule = self.combine if isinstance(self.combine, str) else getattr(self.combine, "__name__", "callable")
        return (f"Ensemble(members={len(self.members)}, combine={rule!r}, inputs={self.input_names}, "
                f"outputs={self.output_names}, bytes={self.size_bytes})")


def load_model(path, *, max_arena_bytes: int | None = None):
    """``eb.load``: a QuantizedModel from a ``.eb`` file, or an Ensemble from an ensemble file."""
    file, tree = file_format.read_tree(path)
    if isinstance(tree, dict) and tree.get("format") == ENSEMBLE_FORMAT:
        return Ensemble._from_tree(tree, max_arena_bytes)
    return QuantizedModel._from_file(file, file_format.plan_from_tree(tree), max_arena_bytes)


# ---- checks

def _shape_text(shape) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_same_interface(members) -> None:
    """Same input names, shapes and dtypes; same number of outputs, same output shapes."""
    first = members[0]
    ins = [(n, first.plan.tensors[n]) for n in first.input_names]
    outs = [first.plan.tensors[n] for n in first.output_names]
    for i, m in enumerate(members[1:], 1):
        if sorted(m.input_names) != sorted(first.input_names):
            raise ValueError(f"members[{i}]: inputs {m.input_names} differ from members[0]'s {first.input_names}")
        for name, t in ins:
            u = m.plan.tensors[name]
            if tuple(u.shape) != tuple(t.shape) or u.dtype != t.dtype:
                raise ValueError(f"members[{i}]: input {name!r} is {u.dtype} {_shape_text(u.shape)}, members[0]'s "
                                 f"is {t.dtype} {_shape_text(t.shape)}")
        if len(m.output_names) != len(outs):
            raise ValueError(f"members[{i}]: {len(m.output_names)} outputs {m.output_names}, members[0] has "
                             f"{len(outs)} {first.output_names}")
        for k, (name, t) in enumerate(zip(m.output_names, outs)):
            u = m.plan.tensors[name]
            if tuple(u.shape) != tuple(t.shape):
                raise ValueError(f"members[{i}]: output {k} ({name!r}) has shape {_shape_text(u.shape)}, members[0]'s "
                                 f"({t.name!r}) has {_shape_text(t.shape)}")


def _check_weights(weights, n: int) -> np.ndarray:
    try:
        w = np.asarray(weights, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"weights: expected {n} numbers, one per member, got {weights!r}") from None
    if w.shape != (n,):
        raise ValueError(f"weights: expected {n} numbers, one per member, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"weights: expected finite numbers >= 0, not all zero, got {w.tolist()}")
    return w


def _check_names(names, n: int) -> list:
    if names is None:
        return [f"member{i}" for i in range(n)]
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise TypeError(f"names: expected a list of {n} strings, got {type(names).__name__}")
    names = list(names)
    if len(names) != n or not all(isinstance(s, str) and s and "/" not in s for s in names):
        raise ValueError(f"names: expected {n} non-empty strings without '/', one per member, got {names}")
    if len(set(names)) != n:
        raise ValueError(f"names: expected unique names, got {names}")
    return names
