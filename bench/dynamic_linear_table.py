"""run_dynamic_linear (eb.QuantizedLinear's call: per-row DynamicQuantizeLinear of the float
input, then the u8s8 GEMM with a float epilogue) and the per-row quantization alone
(_core.dynamic_quantize_rows over blocks of 64 rows), per ISA, one thread, thread CPU time,
median of interleaved rounds.

    python bench/dynamic_linear_table.py [--isa avx512vnni,avx2,amx] [--rounds 15]
    python bench/dynamic_linear_table.py --baseline /path/to/other/_core.cpython-*.so

--baseline times a second build of the extension (e.g. of another commit, built with CMake) beside
this one, each round in fresh processes, alternating (pybind11 will not load two builds into one
process); the outputs' digests are compared.  The machines' clocks drift and are shared: only
ratios taken in one run compare.  Inputs are LayerNorm-like rows (N(0, 1)), weights random.
"""
import argparse
import importlib.util
import json
import subprocess
import sys
import time

import numpy as np

SHAPES = [(800, 384, 384), (800, 384, 1536), (800, 1536, 384), (128, 384, 384)]


def load_core(path):
    if path is None:
        from eightbit import _core
        return _core
    spec = importlib.util.spec_from_file_location("_core", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def thread_time(fn, reps):
    t0 = time.thread_time_ns()
    for _ in range(reps):
        fn()
    return (time.thread_time_ns() - t0) / reps / 1e3  # microseconds


def make_cases(shapes):
    """Inputs and symmetric per-channel int8 weights, the same in every process (seeded)."""
    rng = np.random.default_rng(0)
    cases = []
    for M, K, N in shapes:
        x = rng.standard_normal((M, K), dtype=np.float32)
        w = rng.standard_normal((N, K), dtype=np.float32)
        scale = (np.abs(w).max(axis=1) / 127).astype(np.float32)
        w_q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
        cases.append(((M, K, N), x, w_q, scale, rng.standard_normal(N, dtype=np.float32)))
    return cases


def worker(args, shapes):
    """One round in this process: {key: microseconds} as JSON on stdout, and a digest of the outputs."""
    core = load_core(args.worker if args.worker != "this" else None)
    core.set_num_threads(1)
    out = {}
    for isa in args.isa.split(","):
        core.set_isa(isa)
        for (M, K, N), x, w_q, scale, bias in make_cases(shapes):
            w = core.PackedWeights(np.ascontiguousarray(w_q.T))
            lin = lambda: core.quantized_linear(x, w, scale, bias, False, False)  # noqa: E731
            blocks = [x[i:i + 64] for i in range(0, M, 64)]
            quant = lambda: [core.dynamic_quantize_rows(b) for b in blocks]  # noqa: E731
            digest = hash(lin().tobytes()) ^ hash(b"".join(q[0].tobytes() for q in quant()))
            reps = max(1, int(4e8 // (M * K * N)))
            thread_time(lin, reps), thread_time(quant, reps)  # warm
            out[f"{isa}|{M}x{K}x{N}"] = (thread_time(lin, reps), thread_time(quant, 2 * reps), digest)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--isa", default="avx512vnni,avx2,amx")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--shapes", default=None, help="MxKxN,... (default: the encoder's)")
    ap.add_argument("--baseline", default=None, help="another build's _core .so, timed beside this one")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    shapes = SHAPES if args.shapes is None else [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    if args.worker:
        return worker(args, shapes)
    import eightbit as eb

    avail = eb.cpu_info()["available"]
    args.isa = ",".join(i for i in args.isa.split(",") if i in avail)
    sides = {"this": "this"}
    if args.baseline:
        sides["baseline"] = args.baseline
    times = {}
    for _ in range(args.rounds):
        for name, path in sides.items():
            cmd = [sys.executable, __file__, "--worker", path, "--isa", args.isa, "--shapes",
                   ",".join("x".join(map(str, s)) for s in shapes)]
            for key, (t_lin, t_q, digest) in json.loads(subprocess.check_output(cmd)).items():
                times.setdefault((key, name), []).append((t_lin, t_q, digest))
    print(f"cpu: {eb.cpu_info()['features']}; one thread; median of {args.rounds} rounds, each side in its own "
          "process, alternating (thread CPU time, us)")
    if args.baseline:
        print("| ISA | M x K x N | linear before | linear after | speed-up | quantize rows before | after | speed-up "
              "| same bits |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    else:
        print("| ISA | M x K x N | linear | GOP/s | quantize rows | quantize / linear |")
        print("|---|---|---:|---:|---:|---:|")
    for key in dict.fromkeys(k for k, _ in times):
        isa, shape = key.split("|")
        M, K, N = map(int, shape.split("x"))
        lt, qt = (float(np.median([t[i] for t in times[(key, "this")]])) for i in (0, 1))
        if args.baseline:
            lb, qb = (float(np.median([t[i] for t in times[(key, "baseline")]])) for i in (0, 1))
            same = {t[2] for t in times[(key, "this")]} == {t[2] for t in times[(key, "baseline")]}
            print(f"| {isa} | {M} x {K} x {N} | {lb:.1f} | {lt:.1f} | {lb / lt:.2f} | {qb:.1f} | {qt:.1f} | "
                  f"{qb / qt:.2f} | {'yes' if same else 'NO'} |")
        else:
            print(f"| {isa} | {M} x {K} x {N} | {lt:.1f} | {2 * M * K * N / lt / 1e3:.0f} | {qt:.1f} | {qt / lt:.2f} |")


if __name__ == "__main__":
    main()
