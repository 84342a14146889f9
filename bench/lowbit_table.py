#!/usr/bin/env python3
"""Print the 4-bit (block-quantized weights) target table of issue 16: eightbit's
lowbit.blockwise_linear against eightbit's own int8 QuantizedLinear and ONNX Runtime's
com.microsoft.MatMulNBits on the same weights, one thread.

A plain script (no pytest-benchmark); the paired timing (short alternating blocks, see
_baselines.Paired) and the machine description come from _baselines.py.

    python bench/lowbit_table.py                 # every case and ISA row, ~1 s of timing each (~40 s)
    python bench/lowbit_table.py --quick         # 0.3 s each (~20 s)
    python bench/lowbit_table.py -k "1x4096"     # cases whose label ("1x4096x4096 b32") contains this
    python bench/lowbit_table.py --isa avx512vnni    # only these ISAs (comma-separated eb.set_isa names)
    python bench/lowbit_table.py --no-acc0       # without the informative ORT accuracy_level=0 column

Weights w float32 [N, K] = [4096, 4096] (PyTorch layout), N(0, 0.02); inputs x float32 [M, K], N(0, 1).
  ours  w4 = lowbit.pack_int4_weights(w, block_size=B) once; timed lowbit.blockwise_linear(x, w4):
        x's rows quantized to symmetric int8 inside the call (part of the timed time).
  int8  lin = eb.QuantizedLinear(w) once (int8 per-channel weights); timed lin(x) (x's rows
        quantized to uint8 per row inside the call).
  ORT   a one-node com.microsoft.MatMulNBits model: A float32 ["M", K] input; B uint8 [N, K/B, B/2]
        and scales float32 [N * K/B] initializers holding eightbit's very codes and scales
        (u = code + 8, two a byte, low nibble first; no zero_points input = the default 8);
        K, N, bits=4, block_size=B; accuracy_level=4 (A quantized to int8 per block, ORT's int8
        kernels: the target baseline) and, informative, accuracy_level=0 (float). Session as in
        gemm_table.py: 1 intra-op thread, sequential, ORT_ENABLE_ALL; timed session.run(None, feed).
Rows: eightbit's default ISA, then avx512vnni when the default is amx (eb.set_isa, both eightbit
sides; ORT keeps its own dispatch).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _baselines as B  # noqa: E402
import _conv as C  # noqa: E402

N = K = 4096
W_STD = 0.02
# (M, block size): GEMV at two block sizes, small batches, and the 32-row batch at three
CASES = [(1, 32), (1, 128), (2, 32), (8, 32), (32, 32), (32, 64), (32, 128)]
TARGETS = {1: [("int8", 1.5), ("ORT", 1.0)],      # GEMV: >= 1.5x int8 and >= 1.0x ORT MatMulNBits
           32: [("int8", 0.9)]}                   # 32x4096x4096: >= 0.9x int8; M = 2, 8: informative
ERR_MAX = 0.02              # relative L2 error vs the float product, each side (int8 / int4 noise ~1 %)
AGREE_MAX = 0.02            # relative L2 distance between ours and ORT accuracy_level=4

HEADERS = ["case", "block", "ISA (ours / int8)", "ours us", "int8 us", "x int8", "ORT MatMulNBits us",
           "x ORT", "ORT acc0 us", "weight MB ours / int8", "check", "target", "result"]


def label(m):
    return f"{m}x{K}x{N}"


# --------------------------------------------------------------------------------------------
# Data, weights, references (cached)
# --------------------------------------------------------------------------------------------

_cache = {}


def weights():
    if "w" not in _cache:
        rng = np.random.default_rng(16)
        _cache["w"] = rng.standard_normal((N, K), dtype=np.float32) * np.float32(W_STD)
    return _cache["w"]


def inputs(m):
    k = ("x", m)
    if k not in _cache:
        _cache[k] = np.random.default_rng([16, m]).standard_normal((m, K), dtype=np.float32)
    return _cache[k]


def int4_weights(block):
    k = ("w4", block)
    if k not in _cache:
        from eightbit import lowbit as L
        _cache[k] = L.pack_int4_weights(weights(), block_size=block)
    return _cache[k]


def int8_linear(eb):
    if "lin" not in _cache:
        _cache["lin"] = eb.QuantizedLinear(weights())
    return _cache["lin"]


def dequantized(block):
    k = ("deq", block)
    if k not in _cache:
        w4 = int4_weights(block)
        _cache[k] = (w4.codes.astype(np.float32).reshape(N, K // block, block)
                     * w4.scales[:, :, None]).reshape(N, K)
    return _cache[k]


def float_product(m, block):
    """x @ dequantized(w).T in float64: what every side approximates."""
    k = ("float", m, block)
    if k not in _cache:
        _cache[k] = inputs(m).astype(np.float64) @ dequantized(block).astype(np.float64).T
    return _cache[k]


def float_product_w(m):
    """x @ w.T in float64 with the original float weights: what the int8 layer approximates."""
    k = ("float_w", m)
    if k not in _cache:
        _cache[k] = inputs(m).astype(np.float64) @ weights().astype(np.float64).T
    return _cache[k]


def reference(m, block):
    """eightbit.reference.blockwise.blockwise_linear on the same codes and scales (all M rows)."""
    k = ("ref", m, block)
    if k not in _cache:
        from eightbit.reference import blockwise as RB
        w4 = int4_weights(block)
        _cache[k] = RB.blockwise_linear(inputs(m), w4.codes, w4.scales, block)
    return _cache[k]


def matmulnbits_b(block):
    """eightbit's codes in MatMulNBits's layout: u = q + 8, B[n, blk, j] = u[2j] | u[2j + 1] << 4."""
    u = (int4_weights(block).codes.astype(np.int16) + 8).astype(np.uint8).reshape(N, K // block, block)
    return np.ascontiguousarray(u[:, :, 0::2] | (u[:, :, 1::2] << 4))


def ort_matmulnbits(block, accuracy_level):
    """A one-node com.microsoft.MatMulNBits session over eightbit's codes (None without ORT)."""
    k = ("ort", block, accuracy_level)
    if k not in _cache:
        if not B.have_ort():
            return None
        from onnx import TensorProto, helper, numpy_helper
        node = helper.make_node("MatMulNBits", ["A", "B", "scales"], ["Y"], domain="com.microsoft",
                                K=K, N=N, bits=4, block_size=block, accuracy_level=accuracy_level)
        model = B.one_node_model(
            node,
            [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", K])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", N])],
            [numpy_helper.from_array(matmulnbits_b(block), "B"),
             numpy_helper.from_array(np.ascontiguousarray(int4_weights(block).scales.reshape(-1)), "scales")],
            domains=(("", 17), ("com.microsoft", 1)),
        )
        _cache[k] = B.ort_session(model, 1)
    return _cache[k]


def rel_err(y, ref):
    return float(np.linalg.norm(y.astype(np.float64) - ref) / np.linalg.norm(ref))


def fmt_err(e):
    return f"{100 * e:.3f}%" if e >= 1e-5 else f"{100 * e:.1e}%"


def mismatch(out, ref):
    if out.shape != ref.shape or out.dtype != ref.dtype:
        return f"got {out.dtype}{out.shape}, want {ref.dtype}{ref.shape}"
    bad = np.argwhere(out.view(np.uint32) != ref.view(np.uint32))
    if len(bad) == 0:
        return ""
    first = tuple(int(i) for i in bad[0])
    return f"{len(bad)} of {out.size} differ; first at {first}: {out[first]!r} != {ref[first]!r}"


# --------------------------------------------------------------------------------------------
# One row
# --------------------------------------------------------------------------------------------

def build(eb, m, block, acc0):
    """(ours, {baseline name: call}, verdict (ok, detail), errors {side: rel err}).

    ok: False when ours is not bit-exact with the reference; detail also names a side whose output
    is farther than ERR_MAX from its float product (ours and ORT: x @ dequantized(w).T, the same
    int4 weights; int8: x @ w.T, its own weights) or ORT farther than AGREE_MAX from ours."""
    from eightbit import lowbit as L
    x, w4, lin = inputs(m), int4_weights(block), int8_linear(eb)
    blockwise = L.blockwise_linear
    ours = lambda: blockwise(x, w4)  # noqa: E731
    base = {"int8": lambda: lin(x)}
    y = ours()
    fp = float_product(m, block)
    errs = {"ours": rel_err(y, fp), "int8": rel_err(lin(x), float_product_w(m))}
    problems, notes = [], []
    bad = mismatch(y, reference(m, block))
    if bad:
        problems.append(f"ours vs eightbit.reference.blockwise: {bad}")
    for level, name in ((4, "ORT"), (0, "ORT acc0")):
        if level == 0 and not acc0:
            continue
        sess = ort_matmulnbits(block, level)
        if sess is None:
            continue
        feed = {"A": x}
        base[name] = B.ort_call(sess, feed)
        yo = sess.run(None, feed)[0]
        errs[name] = rel_err(yo, fp)
        if level == 4:
            errs["ours vs ORT"] = rel_err(y, yo.astype(np.float64))
            if errs["ours vs ORT"] > AGREE_MAX:
                notes.append(f"ORT accuracy_level=4 is {errs['ours vs ORT']:.2%} from ours (> {AGREE_MAX:.0%})")
    for side in ("ours", "int8", "ORT", "ORT acc0"):
        if side in errs and errs[side] > ERR_MAX:
            notes.append(f"{side} is {errs[side]:.2%} from the float product (> {ERR_MAX:.0%})")
    if problems:
        return ours, base, (False, "; ".join(problems + notes)), errs
    return ours, base, (True, "; ".join(notes)), errs


def blockwise_kernel(isa, m):
    """The blockwise kernel eightbit's dispatch picks for an ISA (csrc/runtime/dispatch.cpp) and m
    rows: AMX takes 16 rows and more, fewer stay on AVX-512."""
    if isa == "amx":
        return "amx" if m >= 16 else "avx512vnni"
    return isa if isa in ("avx512vnni", "avxvnni", "avx2") else "portable"


def default_isas(eb):
    info = eb.cpu_info()
    isas = [info["isa"]]
    if info["isa"] == "amx" and "avx512vnni" in info["available"]:
        isas.append("avx512vnni")      # both sides without AMX (issue 15's CPUs, Zen)
    return isas


def table_row(m, block, isa_label, t_ours, med, verdict, nbytes):
    ok, detail = verdict
    t8, t_ort, t_ort0 = med.get("int8"), med.get("ORT"), med.get("ORT acc0")
    ratios = {"int8": t8 / t_ours if t8 else None, "ORT": t_ort / t_ours if t_ort else None}
    targets = TARGETS.get(m, [])
    target = ", ".join(f">={t:g}x {c}" for c, t in targets) or "informative"
    if ok is False:
        result = "WRONG"
    elif not targets:
        result = "-"
    elif any(ratios[c] is None for c, _ in targets):
        result = "incomplete"
    else:
        result = "PASS" if all(ratios[c] >= t for c, t in targets) else "FAIL"
    if ok is not False and detail:
        result += " (baseline check)"
    check = "exact" if ok else "WRONG"
    return [label(m), str(block), isa_label, B.fmt_us(t_ours), B.fmt_us(t8), B.fmt_ratio(ratios["int8"]),
            B.fmt_us(t_ort), B.fmt_ratio(ratios["ORT"]), B.fmt_us(t_ort0),
            f"{nbytes[0] / 1e6:.1f} / {nbytes[1] / 1e6:.1f}", check, target, result]


EXPLANATION = [
    "x int8 = int8 QuantizedLinear time / ours; x ORT = ORT MatMulNBits (accuracy_level=4) time / "
    "ours (higher is better); ORT acc0 = MatMulNBits accuracy_level=0 (float compute), "
    "informative; times are medians over the same cycles (~20 ms blocks of each, alternating), "
    "1 thread, all sides on the same x (float32, quantized inside each call). ISA: the "
    "blockwise kernel eightbit dispatches to / eightbit's int8 ISA (eb.set_isa); ORT uses its own "
    "dispatch in every row. weight MB: Int4Weights.nbytes (half a byte per weight + one float32 "
    "scale per block) / QuantizedLinear.nbytes (int8 weights + per-channel scales). check: ours "
    "bit-exact with eightbit.reference.blockwise.blockwise_linear on w4.codes / w4.scales (all M "
    "rows). Targets: GEMV (M=1) >= 1.5x int8 and >= 1.0x ORT; 32x4096x4096 >= 0.9x int8; "
    "M = 2 and 8 informative.",
]


def probe_lines(eb, vnni_rows) -> str:
    """The forced avx512vnni rows as a share of eightbit's VNNI throughput probe, timed in this
    process after the cases (2 ops per MAC; DESIGN.md, Performance): what a CPU without AMX gets."""
    if not vnni_rows:
        return ""
    with B.eb_isa(eb, "avx512vnni"):
        samples = C.vnni_probe_samples(eb)
    if not samples:
        return ""
    peak = max(samples)
    out = [f"VNNI probe (this process, after the cases): max {peak / 1e9:.0f} GOP/s of {len(samples)}; "
           "avx512vnni rows as a share of it (int8 ops = 2 per MAC of the same shape):"]
    for case, block, t4, t8 in vnni_rows:
        m = int(case.split("x")[0])
        ops = 2.0 * m * K * N
        share8 = f", int8 {100 * ops / t8 / peak:.0f}%" if t8 else ""
        out.append(f"  {case} b{block}: int4 {100 * ops / t4 / peak:.0f}%{share8}")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default="", help="only cases whose label ('1x4096x4096 b32') contains this")
    ap.add_argument("--isa", default="", help="comma-separated ISAs (eb.set_isa names); default: "
                    "the active one, and avx512vnni if that is amx")
    B.add_timing_args(ap)
    ap.add_argument("--no-acc0", action="store_true",
                    help="skip ORT MatMulNBits accuracy_level=0 (the informative float column)")
    args = B.timing_defaults(ap.parse_args(argv))

    usage = B.CpuUsage()
    eb, why = B.import_eightbit()
    if eb is not None:
        eb.set_num_threads(1)
    print("\n".join(B.header_lines(eb, numpy_blas=False)) + "\n", flush=True)
    if eb is None:
        print(f"eightbit not importable ({why}): nothing to measure")
        return 1
    if not B.have_ort():
        print("onnx / onnxruntime not installed: the ORT columns are empty")

    avail = set(eb.cpu_info()["available"])
    isas = [s for s in args.isa.split(",") if s] or default_isas(eb)
    cases = [(m, b) for m, b in CASES if args.k in f"{label(m)} b{b}"]
    res = B.Results()
    rows, bad, notes, err_rows = [], [], [], {}
    vnni_rows = []
    for isa in isas:
        if isa not in avail:
            print(f"  skipped isa={isa}: not available here ({sorted(avail)})", file=sys.stderr)
            continue
        with B.eb_isa(eb, isa):
            for m, block in cases:
                isa_label = f"{blockwise_kernel(isa, m)} / {eb.cpu_info()['isa']}"
                ours, base, verdict, errs = build(eb, m, block, not args.no_acc0)
                nbytes = (int4_weights(block).nbytes, int8_linear(eb).nbytes)
                err_rows[(m, block, isa)] = errs
                k = f"lowbit/{label(m)}/b{block}/{isa}"
                if verdict[0] is False:
                    bad.append(f"{label(m)} b{block} [{isa}]: {verdict[1]}")
                    rows.append(table_row(m, block, isa_label, 1.0, {}, verdict, nbytes))
                    continue
                if verdict[1]:
                    notes.append(f"{label(m)} b{block} [{isa}]: {verdict[1]}")
                t, med = B.time_paired(B.PedanticShim(), res, k, ours,
                                       {f"{k}/{n}": fn for n, fn in base.items()},
                                       args.time, min_cycles=args.min_cycles)
                med = {n: med[f"{k}/{n}"] for n in base}
                rows.append(table_row(m, block, isa_label, t, med, verdict, nbytes))
                if isa == "avx512vnni":
                    vnni_rows.append((label(m), block, t, med.get("int8")))
                print(f"  measured {label(m)} b{block} [{isa}]", file=sys.stderr)

    print("\n".join(B.format_table(HEADERS, rows, left=(0, 2, -3, -2, -1))))
    print("\n".join(EXPLANATION))
    print(probe_lines(eb, vnni_rows))

    print("\nrelative L2 errors (float64 norms): ours, ORT acc4 and ORT acc0 against the float product "
          "x @ dequantized(w4).T (the same int4 codes and scales); int8 against x @ w.T (its own "
          "weights are int8 per channel of the original w); ours vs ORT acc4: the distance between "
          "the two int4 outputs, which differ by the activation quantization only (ours int8 per "
          f"row, ORT int8 per block of A). Limits: {ERR_MAX:.0%} each, {AGREE_MAX:.0%} ours vs ORT.")
    eh = ["case", "block", "eightbit ISA", "ours", "ORT acc4", "ORT acc0", "int8", "ours vs ORT"]
    er = [[label(m), str(b), isa] + [fmt_err(e[s]) if s in e else "-"
                                     for s in ("ours", "ORT", "ORT acc0", "int8", "ours vs ORT")]
          for (m, b, isa), e in err_rows.items()]
    print("\n".join(B.format_table(eh, er, left=(0, 2))))
    print(usage.line())
    for n in notes:
        print(f"note: {n}")
    for b in bad:
        print(f"WRONG RESULT {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
