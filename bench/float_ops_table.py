"""The float32 steps that are not GEMMs (GELU, softmax, LayerNorm) against PyTorch and NumPy,
single-threaded, in one run.

    python bench/float_ops_table.py                # every case, ~1 s of timing per cell
    python bench/float_ops_table.py -t 2 --isa avx2,avx512vnni -k softmax

eightbit runs each op as a one-node ``eb.compile`` plan (the C++ step, as in a model: "eb plan"),
and as the bare kernel call through ``eightbit.runtime.core`` ("eb kernel": input checks, a fresh
output array and the kernel, as a torch call does); PyTorch
(when installed) its CPU op (``torch.nn.functional.gelu`` / ``softmax`` / ``layer_norm``) and
NumPy the float graph's executor (``graph.run``: NumPy formulas, GELU's erf in float64). All on
one thread; calls are interleaved round by round (the clock of these machines drifts; NumPy, far
slower, is timed after the others) and the best time per side is reported with the ratios (``--median`` adds the medians). Outputs are
compared first.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("EIGHTBIT_NUM_THREADS", "1")
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # no spinning BLAS threads
    os.environ.setdefault(_var, "1")

import ctypes  # noqa: E402
import ctypes.util  # noqa: E402

import numpy as np  # noqa: E402

import eightbit as eb  # noqa: E402
from eightbit.runtime import core  # noqa: E402

try:
    import torch
    import torch.nn.functional as TF
    torch.set_num_threads(1)
except ImportError:  # the table then has no torch column
    torch = None

F = np.float32


def keep_freed_memory():
    """glibc: serve large arrays from the heap and never give freed memory back, so that no side
    pays page faults for a fresh output on each call (which side does otherwise depends on the
    order of calls and their sizes, not on its kernels)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    libc = ctypes.CDLL(name)
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 62))


def cases(rng):
    """(label, x, graph builder, bare kernel call, torch call)."""
    gelu_x = rng.standard_normal((32, 25, 1536)).astype(F)
    w, b = (rng.standard_normal(384) + 1).astype(F), rng.standard_normal(384).astype(F)
    out = []
    for approx, fn in (("none", "gelu"), ("tanh", "gelu_tanh")):
        out.append((f"gelu {approx} [32,25,1536]", gelu_x, lambda g, t, a=approx: g.gelu(t, approximate=a),
                    lambda x, fn=fn: core.float_math(fn, x), lambda x, a=approx: TF.gelu(x, approximate=a)))
    for n in (25, 128):
        x = (rng.standard_normal((32, 12, n, n)) * 3).astype(F)
        out.append((f"softmax [32,12,{n},{n}]", x, lambda g, t: g.softmax(t, axis=3), lambda x: core.float_softmax(x),
                    lambda x: TF.softmax(x, dim=-1)))
    for n in (25, 128):
        x = rng.standard_normal((32, n, 384)).astype(F)
        out.append((f"layer_norm [32,{n},384]", x, lambda g, t: g.layer_norm(t, (384,), w, b),
                    lambda x: core.float_layer_norm(x, 1e-5, w, b),
                    lambda x: TF.layer_norm(x, (384,), torch.from_numpy(w), torch.from_numpy(b))))
    return out


def timed_rounds(fns, seconds):
    """Best (min) and median seconds per call of each fn, interleaved round by round; in a round
    each fn runs once untimed first (the previous fn, NumPy's above all, leaves the caches and TLB
    cold). The table shows the best: on a shared machine the median measures the neighbours."""
    times = [[] for _ in fns]
    end = time.perf_counter() + seconds * len(fns)
    while time.perf_counter() < end or len(times[0]) < 5:
        for f, t in zip(fns, times):
            f()
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
    return [float(np.min(t)) for t in times], [float(np.median(t)) for t in times]


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-t", type=float, default=1.0, help="seconds of timing per cell")
    ap.add_argument("-k", default="", help="only cases whose label contains this")
    ap.add_argument("--median", action="store_true", help="also print each cell's median")
    ap.add_argument("--isa", default="", help="comma-separated ISAs to time (default: the fastest)")
    args = ap.parse_args()
    isas = [s for s in args.isa.split(",") if s] or [eb.cpu_info()["isa"]]
    before = eb.cpu_info()["isa"]
    kept = keep_freed_memory()
    print(f"{cpu_name()}; eightbit ISAs {isas}, 1 thread; torch {torch.__version__ if torch else 'not installed'}"
          f"{'; freed memory kept (no page faults per call)' if kept else ''}")
    head = f"{'case':<26}" + "".join(f"{'eb plan ' + i:>20}" for i in isas) + f"{'eb kernel':>12}"
    head += f"{'torch':>11}{'numpy':>11}{'torch/plan':>11}{'torch/kern':>11}{'numpy/plan':>11}"
    print(head + "\n" + "-" * len(head))
    for label, x, build, kernel, torch_fn in cases(np.random.default_rng(0)):
        if args.k not in label:
            continue
        g = eb.Graph()
        g.output(build(g, g.input("x", shape=(None,) + x.shape[1:])))
        m = eb.compile(g)
        ref = g.run(x)
        fns = []
        for isa in isas:
            def run_eb(isa=isa):
                eb.set_isa(isa)
                return m(x)
            np.testing.assert_allclose(run_eb(), ref, rtol=1e-5, atol=2e-6, err_msg=f"{label} on {isa}")
            fns.append(run_eb)
        def run_kernel():
            eb.set_isa(isas[0])
            return kernel(x)
        np.testing.assert_array_equal(run_kernel(), m(x), err_msg=f"{label}: kernel and plan")
        fns.append(run_kernel)
        if torch is not None:
            xt = torch.from_numpy(x)
            np.testing.assert_allclose(torch_fn(xt).numpy(), ref, rtol=1e-5, atol=2e-6, err_msg=f"{label} torch")
            fns.append(lambda: torch_fn(xt))
        # NumPy on its own: 10-100x slower, and a neighbour of it in the rounds runs slower after it
        times, medians = timed_rounds(fns, args.t)
        np_best, np_median = timed_rounds([lambda: g.run(x)], args.t / 2)
        times, medians = times + np_best, medians + np_median
        eb.set_isa(before)
        n = len(isas)
        t_plan, t_kernel, t_np = times[0], times[n], times[-1]
        t_torch = times[n + 1] if torch is not None else float("nan")
        row = f"{label:<26}" + "".join(f"{t * 1e3:>17.3f} ms" for t in times[:n]) + f"{t_kernel * 1e3:>9.3f} ms"
        row += f"{t_torch * 1e3:>8.3f} ms{t_np * 1e3:>8.2f} ms{t_torch / t_plan:>11.2f}{t_torch / t_kernel:>11.2f}"
        row += f"{t_np / t_plan:>11.1f}"
        if args.median:
            row += "   median: " + " ".join(f"{t * 1e3:.3f}" for t in medians)
        print(row, flush=True)
    print("ratios: baseline time / eightbit time (plan: the first eb plan column; kern: the bare kernel);"
          " > 1: eightbit is faster")


if __name__ == "__main__":
    main()
