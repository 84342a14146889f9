#!/usr/bin/env python3
"""int8 attention against float attention on the transformer table's encoder (all-MiniLM-L6-v2's
weights when installed, else synthetic), one thread, per instruction set, timed in one run.

For each case and ISA: the static-defaults model with float attention (``eb-static``) and with
int8 attention (``eb-static-attn8``), median thread CPU time per call, their ratio, and the time
of the attention steps alone (float_bmm + softmax against dynamic_bmm + softmax_bmm, from the
plan's per-step profile, each step's minimum over the repeats).

    python bench/attention_table.py                                  # 32x25,1x128,32x128; avx512vnni, amx
    python bench/attention_table.py --cases 32x25 --isas avx512vnni,amx --time 1
"""
import argparse
import os
import sys
import warnings

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import transformer_table as T  # noqa: E402

ATTENTION_KINDS = ("float_bmm", "softmax", "dynamic_bmm", "softmax_bmm")


def attention_ms(qm, feeds, repeats=5):
    """{step kind: ms} for the attention steps, each step's minimum over the repeats."""
    ex, order = qm._executor, [feeds[n] for n in qm.plan.inputs]
    ex.run_profiled(order)
    times = np.min([ex.run_profiled(order)[1] for _ in range(repeats)], axis=0) * 1e3
    out = {}
    for ms, step in zip(times, qm.plan.steps):
        kind = (step.lowered or {}).get("kind", step.op)
        if kind in ATTENTION_KINDS:
            out[kind] = out.get(kind, 0.0) + float(ms)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(T.CASES))
    ap.add_argument("--isas", default="avx512vnni,amx")
    ap.add_argument("--time", type=float, default=2.0, help="seconds of timing per model, case and ISA")
    ap.add_argument("--synthetic", action="store_true")
    args = ap.parse_args(argv)
    import eightbit as eb
    from eightbit.models import bert_encoder
    eb.set_num_threads(1)
    name, w = T.load_weights(args.synthetic)
    print(f"encoder: {name}; CPU: {eb.cpu_info()}; one thread")
    before = eb.cpu_info()["isa"]
    rows = []
    for case in args.cases.split(","):
        n, t = T.CASES[case]
        g = bert_encoder(w, seq_len=t, **T.CONFIG)
        calib = [dict(zip(("x", "mask"), T.inputs(w, name, 32, t, 1)))]
        x, mask = T.inputs(w, name, n, t, 2)
        feeds = {"x": x, "mask": mask}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models = {"float-attn": eb.quantize(g, calib), "int8-attn": eb.quantize(g, calib, attention="int8")}
        for isa in args.isas.split(","):
            try:
                eb.set_isa(isa)
            except Exception as e:  # noqa: BLE001 (an ISA this CPU lacks)
                print(f"{case} {isa}: skipped ({e})")
                continue
            try:
                times = T.time_models({k: (lambda m=m: m.run(feeds)) for k, m in models.items()}, args.time)
                att = {k: attention_ms(m, feeds) for k, m in models.items()}
            finally:
                eb.set_isa(before)
            f_ms, i_ms = times["float-attn"][1] * 1e3, times["int8-attn"][1] * 1e3
            fa, ia = sum(att["float-attn"].values()), sum(att["int8-attn"].values())
            rows.append((case, isa, f_ms, i_ms, fa, ia))
            detail = ", ".join(f"{k} {v:.2f}" for m in att.values() for k, v in m.items())
            print(f"{case} {isa}: model float-attn {f_ms:.2f} ms, int8-attn {i_ms:.2f} ms; attention steps {detail} ms",
                  flush=True)
    print("\n| case | ISA | float-attn model ms | int8-attn model ms | int8/float | float attention steps ms | "
          "int8 attention steps ms | int8/float |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for case, isa, f_ms, i_ms, fa, ia in rows:
        print(f"| {case} | {isa} | {f_ms:.2f} | {i_ms:.2f} | {i_ms / f_ms:.2f} | {fa:.2f} | {ia:.2f} | {ia / fa:.2f} |")


if __name__ == "__main__":
    main()
