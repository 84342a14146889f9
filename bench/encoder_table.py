#!/usr/bin/env python3
"""eb.compile(graph) against ONNX Runtime fp32 on a 6-layer BERT-style encoder (issue 13, item 5).

The encoder of eightbit.models.encoder (hidden 384, 12 heads, FFN 1536, erf-GELU) at 32 x 25,
1 x 128 and 32 x 128 tokens, one thread on both sides (eb.set_num_threads(1); ORT
intra_op_num_threads=1). Ours and ORT run in alternating short blocks in the same process and
each side's median is taken, so a slower stretch of a shared machine hits both; the ratio
ORT ms / ours ms (> 1: we are faster) is what counts. NumPy (graph.run) is timed once per case.
Outputs are checked against ORT (cosine, max abs diff). --profile prints the plan's per-step
profile summed per step kind (and the top steps).

    python bench/encoder_table.py                     # every case (~2 min on 2 cores)
    python bench/encoder_table.py --cases 32x25 --rounds 5 --profile
"""
import argparse
import os
import sys
import time

if "numpy" not in sys.modules:  # single-threaded BLAS for graph.run
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CASES = {"32x25": (32, 25), "1x128": (1, 128), "32x128": (32, 128)}


def cpu_line() -> str:
    name, flags = "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == "?":
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    keep = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")
            if f in flags]
    return f"{name}; {os.cpu_count()} CPUs; flags: {' '.join(keep)}"


def median_ms(ts) -> float:
    return float(np.median(ts)) * 1e3


def time_paired(ours, ort, rounds: int, block_s: float):
    """Alternating blocks of calls; per-call (wall, thread CPU) times of each side.  With one
    thread both run on the calling thread, so its CPU time leaves out the time other processes
    of a shared machine take the core from us (wall time does not)."""
    t_ours, t_ort = [], []
    for _ in range(rounds):
        for fn, out in ((ours, t_ours), (ort, t_ort)):
            end = time.perf_counter() + block_s
            while True:
                t, c = time.perf_counter(), time.thread_time()
                fn()
                out.append((time.perf_counter() - t, time.thread_time() - c))
                if t >= end:
                    break
    return np.array(t_ours), np.array(t_ort)


def profile_by_kind(m, feeds, repeats: int):
    """The plan's per-step wall times (PlanExecutor.run_profiled, as qm.profile), each step's
    minimum over the repeats (preemption only ever adds), summed per step kind."""
    ex = m._executor
    order = [feeds[n] for n in m.plan.inputs]
    ex.run_profiled(order)  # warm-up: the arena grows to this batch
    times = np.min([ex.run_profiled(order)[1] for _ in range(repeats)], axis=0) * 1e3
    kinds = {}
    for ms, step in zip(times, m.plan.steps):
        kind = (step.lowered or {}).get("kind", step.op)
        total_ms, n = kinds.get(kind, (0.0, 0))
        kinds[kind] = (total_ms + ms, n + 1)
    total = float(times.sum())
    lines = [f"    per-step profile (min of {repeats} runs per step): {total:.2f} ms in steps"]
    for kind, (ms, n) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"      {kind:<22} {n:3d} steps {ms:8.2f} ms {100 * ms / total:5.1f}%")
    lines.append("    slowest steps:")
    for i in np.argsort(-times)[:6]:
        lines.append(f"      {m.plan.steps[i].source:<58} {times[i]:7.3f} ms")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--rounds", type=int, default=7, help="alternating blocks per side")
    ap.add_argument("--block", type=float, default=0.4, help="seconds per block")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--profile", action="store_true", help="print the plan's per-step profile per case")
    ap.add_argument("--no-numpy", action="store_true", help="skip timing graph.run")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    import eightbit as eb
    from eightbit.models import encoder

    import _baselines as B

    eb.set_num_threads(1)
    info = eb.cpu_info()
    print(f"CPU: {cpu_line()}")
    print(f"eightbit isa {info['isa']} (available {', '.join(info['available'])}), 1 thread; "
          f"onnxruntime {ort.__version__}, 1 thread")
    w = encoder.synthetic_bert_weights(layers=args.layers)
    rows = []
    for case in [c for c in args.cases.split(",") if c]:
        n, T = CASES[case]
        g = encoder.bert_encoder(w, layers=args.layers, heads=12, seq_len=T, hidden=384, ffn=1536)
        x, mask = encoder.synthetic_encoder_inputs(w, n, T)
        feeds = {"x": x, "mask": mask}
        m = eb.compile(g)
        sess = B.ort_session(eb.to_onnx(g), threads=1)
        names = [o.name for o in sess.get_outputs()]
        ours = m.run(feeds)
        theirs = dict(zip(names, sess.run(None, feeds)))
        checks = []
        for name in names:
            a = np.asarray(ours[name], np.float64).ravel()
            b = np.asarray(theirs[name], np.float64).ravel()
            cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))
            checks.append((name, cos, float(np.abs(a - b).max())))
            assert cos > 0.99999, (case, name, cos)
        t_ours, t_ort = time_paired(lambda: m.run(feeds), lambda: sess.run(None, feeds), args.rounds, args.block)
        numpy_ms = float("nan")
        if not args.no_numpy:
            t = time.perf_counter()
            g.run(feeds)
            numpy_ms = (time.perf_counter() - t) * 1e3
        ours_ms, ort_ms = median_ms(t_ours[:, 1]), median_ms(t_ort[:, 1])
        wall_ours, wall_ort = median_ms(t_ours[:, 0]), median_ms(t_ort[:, 0])
        rows.append((case, ours_ms, ort_ms, numpy_ms, checks, wall_ours, wall_ort))
        print(f"{case:>7}: CPU time: eb.compile {ours_ms:8.2f} ms   ORT fp32 {ort_ms:8.2f} ms   ratio ORT/ours "
              f"{ort_ms / ours_ms:5.2f}x   (wall {wall_ours:.2f} / {wall_ort:.2f} ms: {wall_ort / wall_ours:.2f}x; "
              f"{len(t_ours)} / {len(t_ort)} calls)   NumPy {numpy_ms:8.1f} ms   "
              + "  ".join(f"{nm}: cos {c:.7f} max|d| {d:.2e}" for nm, c, d in checks), flush=True)
        if args.profile:
            print(profile_by_kind(m, feeds, repeats=10), flush=True)
    print()
    print("medians of per-call thread CPU time (wall time in brackets); ratio > 1: eb.compile is faster")
    print("| case | eb.compile ms | ORT fp32 ms | ORT / ours | wall ORT / ours | NumPy ms (wall) |")
    print("|---|---:|---:|---:|---:|---:|")
    for case, ours_ms, ort_ms, numpy_ms, _, wall_ours, wall_ort in rows:
        print(f"| {case} | {ours_ms:.2f} ({wall_ours:.2f}) | {ort_ms:.2f} ({wall_ort:.2f}) | {ort_ms / ours_ms:.2f}x | "
              f"{wall_ort / wall_ours:.2f}x | {numpy_ms:.1f} |")


if __name__ == "__main__":
    main()
