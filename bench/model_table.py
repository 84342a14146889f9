#!/usr/bin/env python3
"""Print the whole-model target table (issue 4) without pytest-benchmark.

Same models, baselines, checks and paired timing (short alternating blocks, see
_baselines.Paired) as ``pytest bench/bench_model.py --benchmark-only``; only the timer loop is a
plain one. Building the models, the checks, quantize_static and eb.quantize take ~10 s of it.

    python bench/model_table.py                  # every case, 4 s of paired timing each (<1 min)
    python bench/model_table.py --quick          # 0.5 s each, 3 cycles, 8 eval images (~15 s)
    python bench/model_table.py --cases resnet18-b1,mlp     # case ids containing these
    python bench/model_table.py --cases resnet18,mobilenetv2   # the cases with the OpenVINO column
    python bench/model_table.py --isa avx512vnni --cases resnet18,mobilenetv2   # without AMX (issue 15)

--isa NAME (avx512vnni, avxvnni, avx2, amx) runs ours with eb.set_isa(NAME) and OpenVINO under the
matching oneDNN cap (ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI / AVX2_VNNI / AVX2 / AVX512_CORE_AMX, set
in this process before OpenVINO compiles anything; avxvnni / avx2 also get OpenVINO's f32
inference precision, as on such CPUs): an AMX machine measures what a CPU without AMX would get.
ONNX Runtime has no such switch: its columns keep the default kernels (AMX here), as the table
says. The OpenVINO primitives under the table show the cap held.

The OpenVINO int8 baseline (OV i8, ResNet-18 and MobileNetV2) needs ``pip install openvino``;
without it those columns say "not run (openvino not installed)".
"""
import argparse
import os
import sys
import time

if "numpy" not in sys.modules:  # single-threaded BLAS (the float graph's executor; see conftest.py)
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:  # noqa: E402
    import threadpoolctl
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")
except ImportError:
    pass

import _baselines as B  # noqa: E402
import _model as M  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="",
                    help="comma-separated substrings of case ids: " + ", ".join(c.id for c in M.CASES))
    B.add_timing_args(ap, "case", 4.0, 0.5, quick_help="short timing, 3 cycles, smaller eval set")
    ap.add_argument("--via-onnx", action="store_true",
                    help="quantize eb.from_onnx(the exported float model) instead of the builder's graph")
    ap.add_argument("--isa", default=None, choices=sorted(M.OV_ISA_CAPS),
                    help="run ours on this eightbit ISA (eb.set_isa) and OpenVINO under the matching "
                         "oneDNN cap (ONEDNN_MAX_CPU_ISA); ORT keeps its default kernels")
    args = B.timing_defaults(ap.parse_args(argv))
    return args


def log(msg, t0):
    print(f"  [{time.perf_counter() - t0:5.1f} s] {msg}", file=sys.stderr, flush=True)


def main(argv=None):
    args = parse_args(argv)
    M.VIA_ONNX = args.via_onnx
    t0 = time.perf_counter()
    usage = B.CpuUsage()
    res = B.Results()
    eb, why = B.import_eightbit()
    res.eb_unavailable = why
    res.isas = B.available_isas(eb)
    if eb is not None:
        eb.set_num_threads(1)
    if args.isa is not None:
        try:  # before anything compiles an OpenVINO model: the oneDNN cap is read once
            M.set_isa_mode(eb, args.isa)
        except Exception as e:
            print(f"--isa {args.isa}: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
    print("\n".join(B.header_lines(eb, numpy_blas=False)))
    print("ours: eb.quantize(eb.from_onnx(<the float ONNX model ORT runs>))\n" if args.via_onnx
          else "ours: eb.quantize(<the eb.Graph built from NumPy weights>)\n")
    if not B.have_ort():
        print("onnx / onnxruntime not installed: no baselines")

    bad_export = []
    for case in M.select(M.CASES, [s for s in args.cases.split(",") if s]):
        if B.have_ort():
            ok, detail = M.check_export(case.model)
            log(f"{case.model}: {detail}", t0)
            if not ok:
                bad_export.append(f"{case.model}: {detail}")
                continue
            M.onnx_int8(case.model)
        ours = None
        if eb is not None:
            try:
                M.quantized(eb, case.model)
                if M.verify(res, eb, case, quick=args.quick):
                    ours = M.ours_fn(eb, case)
            except ImportError as e:  # eightbit.calibrate not there yet
                res.verify(case.key("ours"), None, f"eb.quantize: {type(e).__name__}: {e}")
        baselines = M.paired_baselines(case, eb if ours is not None else None)
        if ours is not None:
            B.time_paired(B.PedanticShim(), res, case.key("ours"), ours, baselines, args.time,
                          min_cycles=args.min_cycles, ours_prepare=M.warm(ours))
        else:  # baselines alone, so the table still has them
            for k, (fn, _, _) in baselines.items():
                shim = B.PedanticShim()
                B.Paired(fn, {}).run(shim, args.time, min_cycles=args.min_cycles)
                res.record(k, shim.median)
        log(f"measured {case.id}", t0)

    if eb is not None:
        try:
            fn, cxx, steps = M.overhead_fns(eb)
            B.time_paired(B.PedanticShim(), res, M.OVERHEAD_KEY, fn,
                          {} if cxx is None else {M.OVERHEAD_CXX_KEY: cxx},
                          max(args.time, 1.0), min_cycles=args.min_cycles)
            log(f"measured the Python-side overhead ({' -> '.join(steps)})", t0)
        except ImportError as e:
            res.verify(M.OVERHEAD_KEY, None, f"eb.quantize: {type(e).__name__}: {e}")

    print(M.render(res, eb))
    print(usage.line())
    print(f"total {time.perf_counter() - t0:.0f} s")
    bad = [k for k, (ok, _) in res.verified.items() if ok is False]
    for k in bad:
        print(f"WRONG RESULT {k}: {res.verified[k][1]}")
    for b in bad_export:
        print(f"EXPORT MISMATCH {b}")
    return 1 if bad or bad_export else 0


if __name__ == "__main__":
    sys.exit(main())
