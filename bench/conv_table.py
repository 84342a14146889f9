#!/usr/bin/env python3
"""Print the convolution target table (issue 3) without pytest-benchmark (a development aid).

Same cases, baselines, verification and paired timing (short alternating blocks, see
_baselines.Paired) as ``pytest bench/bench_conv.py --benchmark-only``; only the timer loop is a
plain one.

    python bench/conv_table.py                       # every case, ~1 s of timing each (~40 s)
    python bench/conv_table.py --quick               # 0.3 s each, no 2-thread row (~15 s)
    python bench/conv_table.py --layers 3x3,dw --batch 1    # layer ids / labels containing 3x3 or dw
    EIGHTBIT_ISA=avx512vnni python bench/conv_table.py     # + "% VNNI peak": ours against the VNNI
                                                           # throughput probe, run in this process
With eightbit's avx512vnni path active, the VNNI probe (_conv.vnni_probe_samples) runs before and
after the cases; the table's "% VNNI peak" column is our GOP/s over its peak.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _baselines as B  # noqa: E402
import _conv as C  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", default="",
                    help="comma-separated substrings of layer ids / labels: "
                         + ", ".join(layer.id for layer in C.LAYERS))
    ap.add_argument("--batch", type=int, action="append", choices=C.BATCHES,
                    help="only this batch (repeatable); default: all")
    B.add_timing_args(ap, "case", quick_help="short timing, at least 3 cycles, no 2-thread row")
    args = B.timing_defaults(ap.parse_args(argv))
    return args


def main(argv=None):
    args = parse_args(argv)
    usage = B.CpuUsage()
    res = B.Results()
    eb, why = B.import_eightbit()
    res.eb_unavailable = why
    res.isas = B.available_isas(eb)
    if eb is not None:
        eb.set_num_threads(1)
    print("\n".join(B.header_lines(eb, numpy_blas=False)) + "\n")  # no NumPy column here
    if eb is None:
        print(f"eightbit not importable ({why}): nothing to compare")
        return 1

    C.record_vnni_probe(res, "before", C.vnni_probe_samples(eb))
    if C.vnni_peak(res):
        print(C.vnni_probe_line(res) + "\n")

    cases = C.CASES + ([] if args.quick else C.THREADED_CASES)  # 2-thread case last
    layers = [s for s in args.layers.split(",") if s]
    for case in C.select(cases, layers, args.batch):
        if case.threads > B.usable_cpus():
            continue
        fn = C.conv_ours_fn(eb, case)
        with C.case_threads(eb, case):
            if not C.verify(res, case, fn):
                continue
            B.time_paired(B.PedanticShim(), res, case.key("ours"), fn,
                          C.paired_baselines(eb, case, fn), args.time, min_cycles=args.min_cycles,
                          ours_prepare=fn if case.threads > 1 else None)
        print(f"  measured {case.id}", file=sys.stderr)
    C.record_vnni_probe(res, "after", C.vnni_probe_samples(eb))

    print(C.render(res))
    print(usage.line())
    bad = [k for k, (ok, _) in res.verified.items() if ok is False]
    for k in bad:
        print(f"WRONG RESULT {k}: {res.verified[k][1]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
