"""The per-process model cache of eightbit.distributed: each worker process loads a ``.eb`` once.

``cached_model(path, stamp)`` returns the QuantizedModel of ``path``, read by ``eb.load`` (the C++
reader memory-maps the file: the plan's constants are views of the mapping, shared by every
process on the machine through the page cache; only the packed weights are copied, once per
process). Entries are keyed by the absolute path and checked against the file's (mtime_ns, size)
stamp on every call: a file rewritten in place is loaded again, and a file that no longer has the
stamp the client saw when it built the task graph raises ValueError instead of mixing two models
in one result.

Threads: the first load in a Dask worker sets eightbit's C++ thread pool to the worker's thread
count (``eb.set_num_threads``, process-wide), so a worker process never runs more compute threads
than Dask gave it. Concurrent tasks on one worker do not oversubscribe either: the executor runs
one call at a time (its arena is shared) and the pool runs one job at a time.
"""
from __future__ import annotations

import os
import threading

from ..model import QuantizedModel
from ..runtime import set_num_threads

__all__ = ["cached_model", "file_stamp", "clear_cache"]

_lock = threading.Lock()
_models: dict = {}           # absolute path -> (stamp, QuantizedModel)
_threads_set = False


def file_stamp(path: str) -> tuple:
    """(mtime_ns, size) of ``path``: what a cached model is checked against."""
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def _use_worker_threads() -> None:
    global _threads_set
    if _threads_set:
        return
    _threads_set = True
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):        # not inside a Dask worker: leave the pool as it is
        return
    set_num_threads(max(1, int(worker.state.nthreads)))


def cached_model(path: str, stamp=None) -> QuantizedModel:
    """The model of ``path`` (absolute), loaded once per process; ``stamp``: the (mtime_ns, size)
    the caller expects the file to have (None: any)."""
    with _lock:
        current = file_stamp(path)
        if stamp is not None and current != tuple(stamp):
            raise ValueError(f"model_path {path!r} changed after the task graph was built (size / mtime "
                             f"{tuple(stamp)} then, {current} now); call predict again")
        entry = _models.get(path)
        if entry is None or entry[0] != current:
            _use_worker_threads()
            _models[path] = (current, QuantizedModel.load(path))
        return _models[path][1]


def clear_cache() -> None:
    """Forget every cached model (the next call loads again)."""
    with _lock:
        _models.clear()
