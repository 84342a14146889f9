#!/usr/bin/env python3
"""Print the GEMM target table quickly, without pytest-benchmark (a development aid).

Same cases, same baselines, same verification and the same paired timing (short alternating
blocks, see _baselines.Paired) as the pytest-benchmark suite; only the timer loop is a plain one.

    python bench/gemm_table.py                 # all rows, ~1 s of timing per row
    python bench/gemm_table.py -k 768 -t 0.5   # rows whose label contains '768', 0.5 s each
"""
import argparse
import os
import sys

if "numpy" not in sys.modules:  # single-threaded BLAS for the NumPy column (see conftest.py)
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

try:  # noqa: E402
    import threadpoolctl
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")
except ImportError:
    pass

import _baselines as B  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default="", help="only rows whose label contains this text")
    ap.add_argument("-t", "--time", type=float, default=1.0, help="seconds of timing per row")
    ap.add_argument("--min-cycles", type=int, default=5)
    args = ap.parse_args(argv)

    usage = B.CpuUsage()
    res = B.Results()
    eb, why = B.import_eightbit()
    res.eb_unavailable = why
    res.isas = B.available_isas(eb)
    if eb is not None:
        eb.set_num_threads(1)
    print("\n".join(B.header_lines(eb)) + "\n")
    if eb is None:
        print(f"eightbit not importable ({why}): nothing to compare")
        return 1

    def run(label, ours_key, fn, baselines, ours_prepare=None):
        if args.k not in label:
            return
        B.time_paired(B.PedanticShim(), res, ours_key, fn, baselines, args.time,
                      min_cycles=args.min_cycles, ours_prepare=ours_prepare)
        print(f"  measured {label}", file=sys.stderr)

    def verify(k, fn, shape):
        ok, detail = B.check_gemm(fn(), shape)
        res.verify(k, ok, detail)
        return ok

    for shape in B.OUR_VARIANTS["1t"]:
        k = B.key("ours-1t", shape)
        fn = B.gemm_ours_fn(eb, shape)
        if args.k in B.shape_id(shape) and verify(k, fn, shape):
            run(B.shape_id(shape), k, fn, B.gemm_paired_baselines(shape))

    rows = {r.ours: r.label for r in B.table_rows()}
    for shape in B.OUR_VARIANTS["avx2"]:
        k = B.key("ours-avx2", shape)
        if "avx2" in res.isas and args.k in rows[k]:
            with B.eb_isa(eb, "avx2"):
                fn = B.gemm_ours_fn(eb, shape)
                if verify(k, fn, shape):
                    run(rows[k], k, fn, B.gemm_paired_baselines(shape))

    if args.k in rows["lin/ours"]:
        x, w, bias = B.linear_data()
        lin = eb.QuantizedLinear(w, bias)
        rel = B.linear_rel_err(lin(x), x, w, bias)
        res.verify("lin/ours", rel < B.LINEAR_TOL, f"relative L2 error vs float32 {rel:.2e}")
        if rel < B.LINEAR_TOL:
            kinds = B.LINEAR_BASELINES if B.have_ort() else ["numpy"]
            run(rows["lin/ours"], "lin/ours", lambda: lin(x),
                {f"lin/{kb}": B.linear_baseline_fn(kb) for kb in kinds})

    for shape in B.OUR_VARIANTS["2t"]:  # last: see conftest.pytest_collection_modifyitems
        k = B.key("ours-2t", shape)
        if B.usable_cpus() >= 2 and args.k in rows[k]:
            fn = B.gemm_ours_fn(eb, shape)
            with B.eb_threads(eb, 2):
                if verify(k, fn, shape):
                    baselines = {B.key("ours-1t", shape): (fn, lambda: eb.set_num_threads(1),
                                                           lambda: eb.set_num_threads(2))}
                    baselines.update(B.gemm_paired_baselines(shape, threads=2))
                    run(rows[k], k, fn, baselines, ours_prepare=fn)

    print(res.render())
    print(usage.line())
    bad = [k for k, (ok, _) in res.verified.items() if not ok]
    for k in bad:
        print(f"WRONG RESULT {k}: {res.verified[k][1]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
