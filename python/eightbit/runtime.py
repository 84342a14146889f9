"""The only importer of the C++ core, and its CPU dispatch and thread settings.

Every other module takes the pybind11 module from here (``from .runtime import core``), so the
environment below is applied before any kernel runs, whichever module is imported first.

Environment variables, read once at import:

- ``EIGHTBIT_ISA``: force an instruction-set path (``scalar``, ``avx2``,
  ``avxvnni``, ``avx512vnni``, ``amx``); a name this CPU cannot run is an error.
- ``EIGHTBIT_NUM_THREADS``: size of the C++ thread pool (default: all cores).
"""

from __future__ import annotations

import os

from . import _core as core

ISAS = ("scalar", "avx2", "avxvnni", "avx512vnni", "amx")


def cpu_info() -> dict:
    """What the C++ core runs on.

    Returns a dict with ``isa`` (the path in use), ``available`` (every path
    this CPU can run, slowest first), ``num_threads`` and ``features`` (the
    detected instruction-set flags).
    """
    return core.cpu_info()


def set_isa(name: str) -> None:
    """Force the kernels of one instruction set (``eb.cpu_info()["available"]``).

    Raises ValueError for an unknown name or one this CPU lacks.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    core.set_isa(name)


def set_num_threads(n: int) -> None:
    """Set the number of threads the kernels use (>= 1)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    core.set_num_threads(n)


def _apply_environment() -> None:
    isa = os.environ.get("EIGHTBIT_ISA")
    if isa:
        try:
            set_isa(isa.strip())
        except ValueError as e:
            raise ValueError(f"EIGHTBIT_ISA: {e}") from None
    threads = os.environ.get("EIGHTBIT_NUM_THREADS")
    if threads:
        try:
            n = int(threads)
        except ValueError:
            raise ValueError(f"EIGHTBIT_NUM_THREADS: expected a positive integer, got {threads!r}") from None
        set_num_threads(n)


_apply_environment()


def c_library() -> dict:
    """Where the C library that ships with this package lies (docs/c_api.md): ``include`` (the
    directory holding ``eightbit/eightbit.h``), ``lib`` (the directory of ``libeightbit.so``) and
    ``flags`` (compiler and linker flags for a C program, the rpath included)."""
    root = os.path.dirname(os.path.abspath(core.__file__))
    include, lib = os.path.join(root, "include"), os.path.join(root, "lib")
    if not os.path.isfile(os.path.join(include, "eightbit", "eightbit.h")):
        raise FileNotFoundError(f"the C library is not installed next to {core.__file__}")
    return {"include": include, "lib": lib,
            "flags": f"-I{include} -L{lib} -Wl,-rpath,{lib} -leightbit"}
