#!/usr/bin/env python3
"""Print the binary (1-bit) target table of issue 16: eightbit's binary GEMM and binary 3x3
convolution against eightbit's own int8 GEMM / convolution on the same shapes, one thread.

A plain script (no pytest-benchmark); the paired timing (short alternating blocks, see
_baselines.Paired) and the machine description come from _baselines.py, the int8 convolution
layer and its call from _conv.py.

    python bench/binary_table.py                 # every case and ISA row, ~1 s of timing each (~15 s)
    python bench/binary_table.py --quick         # 0.3 s each (~7 s)
    python bench/binary_table.py -k conv         # cases whose label contains 'conv'
    python bench/binary_table.py --isa avx2      # only these ISAs (comma-separated eb.set_isa names)

Cases (one thread, eb.set_num_threads(1)):
  gemm  M=1024, N=1024, K=4096:  binary B.binary_matmul(a_bits, w) on pre-packed a_bits uint64
        [1024, 64] and w = B.pack_binary_weights(float [1024, 4096]), int32 out; int8
        eb.ops.matmul_integer(a_u8 [1024, 4096], eb.pack_weights(b_s8 [4096, 1024]), 119), as in
        gemm_table.py.
  conv  3x3 256->256 @14x14, pad 1, batch 1 and 8: binary B.binary_conv2d(x_f32_nhwc, wc,
        pads=(1,1,1,1), layout="NHWC") with wc = B.pack_binary_conv_weights(float [256,256,3,3]),
        the activations' sign packing included (the API has no pre-packed activation entry);
        int8 eb.ops.qlinear_conv with pre-packed weights, NHWC, exactly _conv.conv_ours_fn on its
        3x3-256-14 layer (uint8 in, requantized uint8 out).
Rows: eightbit's default ISA, then (when the CPU has more) avx512vnni if the default is amx,
and avx2, both sides switched with eb.set_isa (a CPU without AMX / without VPOPCNTDQ).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _baselines as B  # noqa: E402
import _conv as C  # noqa: E402

GEMM_M, GEMM_N, GEMM_K = 1024, 1024, 4096
CONV_LAYER = next(layer for layer in C.LAYERS if layer.id == "3x3-256-14")
CONV_BATCHES = (1, 8)
CONV_CHECK_BATCH = 2          # the reference conv (NumPy) runs on the first images only
TARGET = 5.0                  # issue 16: binary ops/s >= 5x int8 ops/s (binary MAC = 1 op)
EXTRA_FLAGS = ("avx512_vpopcntdq",)   # beside _baselines.RELEVANT_FLAGS: the binary AVX-512 kernel

HEADERS = ["case", "ISA (binary / int8)", "binary us", "binary Gop/s", "int8 us", "int8 GOP/s",
           "time ratio", "ops ratio", "check", "target", "result"]


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

class Case:
    def __init__(self, kind, label, macs, batch=None):
        self.kind, self.label, self.macs, self.batch = kind, label, float(macs), batch


def cases():
    out = [Case("gemm", f"gemm {GEMM_M}x{GEMM_N}x{GEMM_K}b", GEMM_M * GEMM_N * GEMM_K)]
    L = CONV_LAYER
    per_image = L.c_out * L.out_hw ** 2 * L.c_in * L.k ** 2
    for b in CONV_BATCHES:
        out.append(Case("conv", f"conv {L.label} b{b}", per_image * b, batch=b))
    return out


_cache = {}


def gemm_binary_data():
    if "gemm" not in _cache:
        rng = np.random.default_rng(16)
        a = rng.standard_normal((GEMM_M, GEMM_K), dtype=np.float32)
        w = rng.standard_normal((GEMM_N, GEMM_K), dtype=np.float32)
        _cache["gemm"] = (a, w)
    return _cache["gemm"]


def conv_binary_data(batch):
    k = ("conv", batch)
    if k not in _cache:
        L = CONV_LAYER
        rng = np.random.default_rng([16, batch])
        x = rng.standard_normal((batch, L.hw, L.hw, L.c_in), dtype=np.float32)   # NHWC
        w = rng.standard_normal((L.c_out, L.c_in, L.k, L.k), dtype=np.float32)
        _cache[k] = (x, w)
    return _cache[k]


def gemm_reference():
    """eightbit.reference.binary.binary_matmul on the same packed inputs (in row chunks: its
    [M, N, W] XOR temporary would be 512 MB at once)."""
    if "gemm_ref" not in _cache:
        from eightbit import binary as BIN
        from eightbit.reference import binary as RB
        a, w = gemm_binary_data()
        a_bits, w_bits = BIN.pack_signs(a), BIN.pack_signs(w)
        _cache["gemm_ref"] = np.concatenate(
            [RB.binary_matmul(a_bits[i:i + 64], w_bits, GEMM_K) for i in range(0, GEMM_M, 64)])
    return _cache["gemm_ref"]


def conv_reference(batch, scale):
    """eightbit.reference.binary.binary_conv2d (NCHW, NumPy) on the first images, as NHWC."""
    k = ("conv_ref", batch)
    if k not in _cache:
        from eightbit.reference import binary as RB
        x, w = conv_binary_data(batch)
        n = min(batch, CONV_CHECK_BATCH)
        y = RB.binary_conv2d(x[:n].transpose(0, 3, 1, 2), w, scale, pads=CONV_LAYER.pads)
        _cache[k] = np.ascontiguousarray(y.transpose(0, 2, 3, 1))
    return _cache[k]


def _mismatch(out, ref, what):
    if out.shape != ref.shape or out.dtype != ref.dtype:
        return f"{what}: got {out.dtype}{out.shape}, want {ref.dtype}{ref.shape}"
    bad = np.argwhere(out != ref)
    if len(bad) == 0:
        return ""
    first = tuple(int(i) for i in bad[0])
    return f"{what}: {len(bad)} of {out.size} differ; first at {first}: {out[first]} != {ref[first]}"


def build(eb, case):
    """(binary call, int8 call, (ok, detail)): weights packed outside the timed calls; both
    results checked once (binary against eightbit.reference.binary, int8 as gemm_table.py /
    conv_table.py check it)."""
    from eightbit import binary as BIN
    problems, unverified = [], []
    if case.kind == "gemm":
        a, w = gemm_binary_data()
        a_bits, wp = BIN.pack_signs(a), BIN.pack_binary_weights(w)
        matmul = BIN.binary_matmul
        binary = lambda: matmul(a_bits, wp)  # noqa: E731
        problems.append(_mismatch(binary(), gemm_reference(), "binary vs reference"))
        shape = (GEMM_M, GEMM_K, GEMM_N)          # _baselines' (M, K, N)
        int8 = B.gemm_ours_fn(eb, shape)
        ok8, detail8 = B.check_gemm(int8(), shape)
    else:
        x, w = conv_binary_data(case.batch)
        wc = BIN.pack_binary_conv_weights(w)
        conv = BIN.binary_conv2d
        pads = tuple(CONV_LAYER.pads)
        binary = lambda: conv(x, wc, pads=pads, layout="NHWC")  # noqa: E731
        ref = conv_reference(case.batch, wc.scale)
        problems.append(_mismatch(binary()[:len(ref)], ref, "binary vs reference"
                                  + (f" (first {len(ref)} images)" if len(ref) < case.batch else "")))
        c8 = C.Case(CONV_LAYER, case.batch)
        int8 = C.conv_ours_fn(eb, c8)
        ok8, detail8 = C.check_conv(int8(), c8)
    if ok8 is False:
        problems.append(f"int8: {detail8}")
    elif ok8 is None:
        unverified.append(f"int8 {detail8}")
    problems = [p for p in problems if p]
    if problems:
        return binary, int8, (False, "; ".join(problems))
    return binary, int8, ((None, "; ".join(unverified)) if unverified else (True, ""))


# --------------------------------------------------------------------------------------------
# ISAs
# --------------------------------------------------------------------------------------------

def binary_kernel(eb, isa):
    """The binary kernel eightbit's dispatch picks for an ISA (csrc/runtime/dispatch.cpp)."""
    if isa in ("avx512vnni", "amx"):
        return "avx512" if eb.cpu_info()["features"].get("avx512popcnt") else "avx2"
    return "avx2" if isa in ("avx2", "avxvnni") else isa


def default_isas(eb):
    info = eb.cpu_info()
    active, avail = info["isa"], set(info["available"])
    isas = [active]
    if active == "amx" and "avx512vnni" in avail:
        isas.append("avx512vnni")      # int8 without AMX (issue 15's CPUs); binary unchanged
    if active not in ("avx2", "scalar") and "avx2" in avail:
        isas.append("avx2")            # a CPU without AVX-512 (no VPOPCNTDQ)
    return isas


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

def row(case, isa_label, t_bin, t_i8, verdict):
    ok, detail = verdict
    bin_ops = case.macs / t_bin            # one binary MAC = one op
    i8_ops = 2.0 * case.macs / t_i8        # the repo's convention: 2 ops per int8 MAC
    ops_ratio = bin_ops / i8_ops
    check = {True: "exact", False: "WRONG", None: "unverified"}[ok]
    result = ("WRONG" if ok is False else "PASS" if ops_ratio >= TARGET else "FAIL")
    return [case.label, isa_label, B.fmt_us(t_bin), f"{bin_ops / 1e9:.0f}", B.fmt_us(t_i8),
            f"{i8_ops / 1e9:.0f}", B.fmt_ratio(t_i8 / t_bin), B.fmt_ratio(ops_ratio), check,
            f">={TARGET:g}x ops", result]


EXPLANATION = [
    "binary Gop/s = MACs / binary time (one binary MAC, an XOR-popcount sign pair, = one op); "
    "int8 GOP/s = 2*MACs / int8 time; time ratio = int8 time / binary time (the speed-up on the "
    "same shape); ops ratio = binary ops/s / int8 ops/s = time ratio / 2 (issue 16's measure, "
    "target >= 5x); times are medians over the same cycles (~20 ms blocks of each, alternating), "
    "1 thread. ISA: eightbit's active ISA (eb.set_isa) and the binary kernel it dispatches to "
    "(avx512 = the VPOPCNTDQ kernel).",
    "ceiling: AVX-512 binary: per 512 sign pairs one vpxorq + one vpopcntq + one vpaddq, 3 uops "
    "on the two 512-bit ports = ~1.5 cycles, ~341 binary MAC/cycle; AVX-512 VNNI int8: 2 "
    "vpdpbusd/cycle x 64 MACs = 128 MAC/cycle = 256 ops/cycle. So with both sides at their "
    "ceilings on such cores the ops ratio is bounded near 341/256 = 1.3x and the time ratio near "
    "341/128 = 2.7x: the 5x ops target is out of reach of the instruction set, not of the kernel. "
    "Against "
    "AMX int8 (TDPBUSD, 1024 MAC/cycle) binary cannot win at all (time ratio bound ~0.33x). "
    "AVX2 (no vector popcount): the binary kernel's vpshufb nibble count is 8 uops per 256 sign "
    "pairs on 3 ports, ~96 MAC/cycle; eightbit's exact AVX2 int8 (26 uops per 12 vpmaddwd of 16 "
    "MACs) ~22 MAC/cycle = 44 ops/cycle: ops ratio bound ~2.2x, time ratio ~4.4x. A measured "
    "ratio above its bound means the int8 side ran below its own ceiling.",
    "note: larq compute engine's published binary conv figures are for ARM64 (Raspberry Pi 4, "
    "Pixel phones); there is no like-for-like x86 shape to compare with, so no LCE column "
    "(no numbers invented).",
]


def probe_line(eb, rows_bin_best):
    """The VNNI throughput probe (_conv.vnni_probe_samples, avx512vnni path, this process) as a
    clock estimate, and the AVX-512 binary ceiling at that clock."""
    info = eb.cpu_info()
    if "avx512vnni" not in info["available"] or not info["features"].get("avx512popcnt"):
        return ""
    with B.eb_isa(eb, "avx512vnni"):
        samples = C.vnni_probe_samples(eb)
    if not samples:
        return ""
    peak = max(samples)
    ghz = peak / 256 / 1e9
    ceiling = 341.3 * ghz * 1e9
    line = (f"VNNI probe (12 independent vpdpbusd zmm, this process): max {peak / 1e9:.0f} GOP/s of "
            f"{len(samples)} = 256 ops/cycle at ~{ghz:.2f} GHz; at that clock the AVX-512 binary "
            f"ceiling is ~{ceiling / 1e9:.0f} G binary MAC/s, ops ratio at both ceilings "
            f"{ceiling / peak:.2f}x")
    if rows_bin_best:
        line += (f"; best binary row measured {rows_bin_best / 1e9:.0f} Gop/s = "
                 f"{100 * rows_bin_best / ceiling:.0f}% of that ceiling")
    return line


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default="", help="only cases whose label contains this text")
    ap.add_argument("--isa", default="", help="comma-separated ISAs (eb.set_isa names); default: "
                    "the active one, avx512vnni if that is amx, and avx2")
    B.add_timing_args(ap)
    args = B.timing_defaults(ap.parse_args(argv))

    usage = B.CpuUsage()
    eb, why = B.import_eightbit()
    if eb is not None:
        eb.set_num_threads(1)
    print("\n".join(B.header_lines(eb, numpy_blas=False)))
    flags = B.cpu_flags()
    print("also: " + " ".join(f"{fl}={'yes' if fl in flags else 'no'}" for fl in EXTRA_FLAGS) + "\n",
          flush=True)
    if eb is None:
        print(f"eightbit not importable ({why}): nothing to measure")
        return 1

    avail = set(eb.cpu_info()["available"])
    isas = [s for s in args.isa.split(",") if s] or default_isas(eb)
    res = B.Results()
    rows, bad, best_avx512 = [], [], 0.0
    for isa in isas:
        if isa not in avail:
            print(f"  skipped isa={isa}: not available here ({sorted(avail)})", file=sys.stderr)
            continue
        with B.eb_isa(eb, isa):
            label = f"{binary_kernel(eb, isa)} / {eb.cpu_info()['isa']}"
            for case in cases():
                if args.k not in case.label:
                    continue
                binary, int8, verdict = build(eb, case)
                k = f"binary/{case.label}/{isa}"
                if verdict[0] is False:
                    bad.append(f"{case.label} [{isa}]: {verdict[1]}")
                    rows.append([case.label, label] + ["-"] * 6 + ["WRONG", f">={TARGET:g}x ops", "WRONG"])
                    continue
                t_bin, med = B.time_paired(B.PedanticShim(), res, k, binary, {k + "/int8": int8},
                                           args.time, min_cycles=args.min_cycles)
                rows.append(row(case, label, t_bin, med[k + "/int8"], verdict))
                if label.startswith("avx512"):
                    best_avx512 = max(best_avx512, case.macs / t_bin)
                if verdict[0] is None:
                    print(f"  {case.label} [{isa}]: {verdict[1]}", file=sys.stderr)
                print(f"  measured {case.label} [{isa}]", file=sys.stderr)

    print("\n".join(B.format_table(HEADERS, rows, left=(0, 1, -3, -2, -1))))
    print("\n".join(EXPLANATION[:2]))
    probe = probe_line(eb, best_avx512)
    if probe:
        print(probe)
    print("\n".join(EXPLANATION[2:]))
    print(usage.line())
    for b in bad:
        print(f"WRONG RESULT {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
