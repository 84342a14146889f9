"""Writes the VNNI GEMM and direct-convolution tiles in inline asm:

    csrc/kernels/x86/gemm_u8s8_avx512vnni_tiles.h   (zmm, 32 registers, requantization in the tile)
    csrc/kernels/x86/gemm_u8s8_avxvnni_tiles.h      (ymm, 16 registers, VEX-encoded vpdpbusd)

    python tools/gen_vnni_tiles.py        # rewrites both headers; commit them with this script

Why generated: every tile height x 1, 2 or 4 panels of 16 columns is its own kernel, and with
intrinsics GCC copies the accumulators through the stack on every iteration (half speed;
DESIGN.md, "Performance").  The loops differ only in counts, so one template writes them all,
as XNNPACK generates its micro-kernels.

A tile keeps acc[r][v] (row r, vector v of its NP panels) in registers, NP panels of B, and
rotates the remaining registers as A broadcasts.  The k loop is unrolled twice: the scalar
pointer updates and the loop branch go to ports 0 and 5 too, where vpdpbusd runs, and halving
them raised the 12 x 32 AVX-512 tile from ~80 % to ~95 % of the vpdpbusd throughput probe on a
Sapphire Rapids core.  With fewer than 8 accumulators the second k of each pair goes to its own
accumulators (added at the end), so that enough independent chains hide vpdpbusd's latency.

GEMM tiles address rows from one pointer per 3 rows plus lda / 2 * lda (12 rows, 4 registers).
Direct-convolution tiles read each output pixel's taps in place: a pointer per row plus the
offset in the tap; the tap pointer, the tap's end and the counts live in memory.  GCC allows 30
asm operands and counts an in-out operand twice, which bounds those tiles at 9 rows.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[1] / "csrc/kernels/x86"


@dataclass(frozen=True)
class Isa:
    name: str
    reg: str            # vector register prefix
    nregs: int          # vector registers
    halves: int         # vectors per 16-column panel (64 bytes of a k group)
    dot: str            # the u8 x s8 dot-product-accumulate instruction
    load: str           # aligned load of B
    zero: str
    store: str          # unaligned store of int32 sums
    requant: bool       # requantize in the tile (TileRequant)
    gemm_rows: dict     # NP -> max rows of the GEMM tiles
    conv_rows: dict     # NP -> max rows of the direct-convolution tiles


AVX512 = Isa("avx512vnni", "zmm", 32, 1, "vpdpbusd", "vmovdqa64", "vpxord", "vmovdqu32", True,
             {1: 12, 2: 12, 4: 3}, {1: 9, 2: 9, 4: 6})
# 16 ymm: 6 rows x 1 panel = 12 accumulators + 2 of B + 2 broadcasts.
AVXVNNI = Isa("avxvnni", "ymm", 16, 2, "%{vex%} vpdpbusd", "vmovdqa", "vpxor", "vmovdqu", False,
              {1: 6, 2: 2}, {1: 6, 2: 2})


def vec(isa: Isa, i: int) -> str:
    return f"%%{isa.reg}{i}"


def b_operand(j: int, offset: int) -> str:
    return [f"{offset}(%[b])", f"{offset}(%[b],%[bs],1)", f"{offset}(%[b],%[bs],2)", f"{offset}(%[b3])"][j]


class Layout:
    """Register assignment of one tile: accumulators, the split second set, B, A broadcasts."""

    def __init__(self, isa: Isa, rows: int, np_: int):
        self.isa, self.rows, self.np = isa, rows, np_
        self.width = np_ * isa.halves           # vectors per row
        self.n_acc = rows * self.width
        self.split = self.n_acc < 8
        self.acc1 = self.n_acc if self.split else 0
        self.b0 = self.n_acc * (2 if self.split else 1)
        self.a_regs = list(range(self.b0 + self.width, isa.nregs))
        assert len(self.a_regs) >= 1, (isa.name, rows, np_)
        self.rot = 0

    def step(self, u: int, acc0: int, a_operand) -> list[str]:
        """One group of 4 k (the u-th of the pair): B loads, per row a broadcast of A and the dots."""
        isa, lines = self.isa, []
        for j in range(self.np):
            for h in range(isa.halves):
                lines.append(f"{isa.load} {b_operand(j, 64 * u + 32 * h)}, {vec(isa, self.b0 + j * isa.halves + h)}")
        for r in range(self.rows):
            a = self.a_regs[self.rot % len(self.a_regs)]
            self.rot += 1
            lines.append(f"vpbroadcastd {a_operand(r, 4 * u)}, {vec(isa, a)}")
            lines += [f"{isa.dot} {vec(isa, self.b0 + v)}, {vec(isa, a)}, {vec(isa, acc0 + r * self.width + v)}"
                      for v in range(self.width)]
        return lines

    def merge(self) -> list[str]:
        return [f"vpaddd {vec(self.isa, self.acc1 + i)}, {vec(self.isa, i)}, {vec(self.isa, i)}"
                for i in range(self.n_acc)] if self.split else []

    def store_raw(self, tile: str) -> list[str]:
        isa, size = self.isa, 64 // self.isa.halves
        return [f"{isa.store} {vec(isa, i)}, {i * size}({tile})" for i in range(self.n_acc)]


def store(lay: Layout, tile: str, cc: str, mult: str, out: str, rq: str) -> list[str]:
    """The tile's output.  Without requantization (or with rq null) the raw sums go to `tile`;
    otherwise (TileRequant) the epilogue's kQuantFloat arithmetic runs in registers, the same
    operations as requantize_float_rows, and bytes are stored once.  cc, mult, out and rq name
    general registers free after the k loop; rq is loaded from the memory operand %[rq] unless
    it is that operand.  A raw `tile` other than %[tile] is loaded from it."""
    load_tile = [] if tile == "%[tile]" else [f"mov %[tile], {tile}"]
    if not lay.isa.requant:
        return load_tile + lay.store_raw(tile)
    lo, hi, zp = 29, 30, 31  # free once the k loop is done (accumulators are zmm0-23)
    lines = [] if rq == "%[rq]" else [f"mov %[rq], {rq}"]
    lines += [f"test {rq}, {rq}", "jz 4f", f"mov 0({rq}), {cc}", f"mov 8({rq}), {mult}", f"mov 16({rq}), {out}"]
    lines += [f"vbroadcastss 32({rq}), %%zmm{lo}", f"vbroadcastss 36({rq}), %%zmm{hi}",
              f"vpbroadcastd 40({rq}), %%zmm{zp}"]
    for r in range(lay.rows):
        for j in range(lay.np):
            acc = f"%%zmm{r * lay.np + j}"
            lines += [
                f"vpaddd {64 * j}({cc}), {acc}, {acc}",
                f"vcvtdq2ps {acc}, {acc}",
                f"vmulps {64 * j}({mult}), {acc}, {acc}",
                f"vmaxps %%zmm{lo}, {acc}, {acc}",  # max(v, lo): lo when v is NaN
                f"vminps %%zmm{hi}, {acc}, {acc}",
                f"vcvtps2dq {acc}, {acc}",  # round half to even (MXCSR default)
                f"vpaddd %%zmm{zp}, {acc}, {acc}",
                f"vpmovdb {acc}, {16 * j}({out})",  # within [qmin, qmax]: truncation is exact
            ]
        if r + 1 < lay.rows:
            lines.append(f"add 24({rq}), {out}")
    return lines + ["jmp 5f", "4:"] + load_tile + lay.store_raw(tile) + ["5:"]


def function(signature: str, decls: list[str], lines: list[str], outputs: list[str], inputs: list[str],
             isa: Isa, attributes: str = "inline") -> str:
    body = "\n".join(f'      "{line}\\n\\t"' for line in lines)
    clobbers = ['"cc"', '"memory"'] + [f'"xmm{i}"' for i in range(isa.nregs)]
    return "\n".join([f"{attributes} void {signature} {{", *decls, "  __asm__ volatile(", body,
                      f"      : {', '.join(outputs)}", f"      : {', '.join(inputs)}",
                      f"      : {', '.join(clobbers)});", "}"])


def rq_param(isa: Isa) -> str:
    return ", const TileRequant* rq" if isa.requant else ""


def gemm_tile(isa: Isa, rows: int, np_: int) -> str:
    lay = Layout(isa, rows, np_)
    bases = range(0, rows, 3)

    def a_operand(r: int, offset: int) -> str:
        base = f"%[a{r // 3 * 3}]"
        return f"{offset}({base})" if r % 3 == 0 else f"{offset}({base},%[lda],{r % 3})"

    lines = [f"{isa.zero} {vec(isa, i)}, {vec(isa, i)}, {vec(isa, i)}" for i in range(lay.b0)]
    lines += ["test %[pairs], %[pairs]", "jz 3f", "1:"]
    lines += lay.step(0, 0, a_operand) + lay.step(1, lay.acc1, a_operand)
    lines += [f"add $8, %[a{r}]" for r in bases] + ["add $128, %[b]"] + (["add $128, %[b3]"] if np_ == 4 else [])
    lines += ["dec %[pairs]", "jnz 1b", "3:", "test %[odd], %[odd]", "jz 2f"]
    lines += lay.step(0, 0, a_operand) + ["2:"] + lay.merge()
    lines += store(lay, "%[tile]", "%[a0]", "%[b]", "%[pairs]", "%[rq]")
    outputs = [f'[a{r}] "+r"(a{r})' for r in bases] + ['[b] "+r"(b)', '[pairs] "+r"(pairs)']
    outputs += ['[b3] "+r"(b3)'] if np_ == 4 else []
    inputs = ['[odd] "r"(odd)', '[tile] "r"(tile)'] + (['[rq] "r"(rq)'] if isa.requant else [])
    inputs += ['[lda] "r"(lda)'] if rows > 1 else []
    inputs += ['[bs] "r"(bstride)'] if np_ > 1 else []
    decls = [f"  const uint8_t* a{r} = a + {r} * lda;" if r else "  const uint8_t* a0 = a;" for r in bases]
    decls += ["  const int8_t* b3 = b + 3 * bstride;"] if np_ == 4 else []
    decls += [] if np_ > 1 else ["  (void)bstride;"]
    decls += [] if rows > 1 else ["  (void)lda;"]
    decls += ["  int64_t pairs = groups / 2;", "  const int64_t odd = groups % 2;"]
    signature = (f"tile_{rows}x{np_}(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b, "
                 f"int64_t bstride, int32_t* tile{rq_param(isa)})")
    return function(signature, decls, lines, outputs, inputs, isa)


def conv_tile(isa: Isa, rows: int, np_: int) -> str:
    """Direct convolution: row r's bytes for tap t start at rows[r] + tap_offsets[t] (the pixel's
    window corner plus the tap's offset in a padded NHWC image), cg bytes per tap, cg a multiple
    of 8; B is packed with K ordered (tap, channel), so it is read straight through."""
    lay = Layout(isa, rows, np_)
    lines = [f"{isa.zero} {vec(isa, i)}, {vec(isa, i)}, {vec(isa, i)}" for i in range(lay.b0)]
    lines += ["1:", "mov %[tap], %[off]", "mov (%[off]), %[off]", "addq $8, %[tap]", "add %[cg], %[off]",
              "mov %[off], %[end]", "sub %[cg], %[off]", "2:"]

    def a_operand(r: int, offset: int) -> str:
        return f"{offset}(%[p{r}],%[off])"

    lines += lay.step(0, 0, a_operand) + lay.step(1, lay.acc1, a_operand)
    lines += ["add $8, %[off]", "add $128, %[b]"] + (["add $128, %[b3]"] if np_ == 4 else [])
    lines += ["cmp %[end], %[off]", "jne 2b", "decq %[taps]", "jnz 1b"] + lay.merge()
    free = [f"%[p{r}]" for r in range(rows)] + ["%[off]", "%[b]"] + (["%[b3]"] if np_ == 4 else [])
    extra = len(free) < 4
    free += ["%[s0]"] if extra else []
    lines += store(lay, free[0], free[1], free[2], free[3], free[0])
    outputs = [f'[p{r}] "+r"(p{r})' for r in range(rows)]
    outputs += ['[off] "=&r"(off)', '[b] "+r"(b)', '[tap] "+m"(tap_offsets)', '[taps] "+m"(taps)', '[end] "=m"(end)']
    outputs += ['[b3] "+r"(b3)'] if np_ == 4 else []
    outputs += ['[s0] "=&r"(s0)'] if extra else []
    inputs = ['[cg] "m"(cg)', '[tile] "m"(tile)'] + (['[rq] "m"(rq)'] if isa.requant else [])
    inputs += ['[bs] "r"(bstride)'] if np_ > 1 else []
    decls = [f"  const uint8_t* p{r} = rows[{r}];" for r in range(rows)]
    decls += ["  const int8_t* b3 = b + 3 * bstride;"] if np_ == 4 else []
    decls += [] if np_ > 1 else ["  (void)bstride;"]
    decls += ["  int64_t off, end" + (", s0;" if extra else ";")]
    signature = (f"conv_tile_{rows}x{np_}(const uint8_t* const* rows, const int64_t* tap_offsets, int64_t taps, "
                 f"int64_t cg, const int8_t* b, int64_t bstride, int32_t* tile{rq_param(isa)})")
    # noinline: inlined into a caller that realigns its stack, the general registers these
    # tiles ask for could include the frame pointer.
    return function(signature, decls, lines, outputs, inputs, isa, "__attribute__((noinline))")


def table(kind: str, prefix: str, np_: int, max_rows: int) -> str:
    names = ", ".join(f"{prefix}_{r}x{np_}" for r in range(1, max_rows + 1))
    return f"constexpr {kind} k{'Conv' if prefix == 'conv_tile' else ''}Tiles{np_}[{max_rows}] = {{{names}}};"


def chooser(kind: str, name: str, tables: str, rows: dict) -> str:
    """The tile of np panels and `rows` rows (1 <= rows <= that table's size), one table per case:
    an indexed ?: over tables of different sizes reads as an out-of-bounds load to UBSan."""
    cases = [f"    case {np_}: return {tables}{np_}[rows - 1];" for np_ in sorted(rows, reverse=True) if np_ != 1]
    return "\n".join([f"inline {kind} {name}(int np, int rows) {{", "  switch (np) {", *cases,
                      f"    default: return {tables}1[rows - 1];", "  }", "}"])


REQUANT = """// Requantization inside the tile (kQuantFloat without row terms): col_comp and multiplier point at
// the tile's first column, out at its first output byte, ldc bytes between rows.
struct TileRequant {
  const int32_t* col_comp;
  const float* multiplier;
  uint8_t* out;
  int64_t ldc;
  float lo, hi;  // clamp bounds minus the zero point
  int32_t zp;
};
static_assert(offsetof(TileRequant, ldc) == 24 && offsetof(TileRequant, lo) == 32 &&
              offsetof(TileRequant, hi) == 36 && offsetof(TileRequant, zp) == 40, "the offsets the asm reads");
"""


def header(isa: Isa, cpp: str) -> str:
    rq = ", const TileRequant*" if isa.requant else ""
    parts = [
        "// Generated by tools/gen_vnni_tiles.py; edit that script, not this file.",
        "//",
        f"// {isa.name} tiles: rows x NP panels of raw sums S = sum_k a[m][k] * b[k][n] over the k4n16 packed B",
        "// (GEMM: A rows lda bytes apart; conv: each row's taps read in place), stored to `tile` with row",
        f"// stride NP * 16 int32{' or requantized (TileRequant)' if isa.requant else ''}.",
        f"// Included by {cpp} inside its anonymous namespace.",
        "// clang-format off",
        "#pragma once",
        "",
    ]
    parts += [REQUANT] if isa.requant else []
    parts += [f"using TileFn = void (*)(int64_t, const uint8_t*, int64_t, const int8_t*, int64_t, int32_t*{rq});",
              f"using ConvTileFn = void (*)(const uint8_t* const*, const int64_t*, int64_t, int64_t, const int8_t*, "
              f"int64_t, int32_t*{rq});", ""]
    for np_, max_rows in isa.gemm_rows.items():
        parts += [gemm_tile(isa, r, np_) + "\n" for r in range(1, max_rows + 1)]
    for np_, max_rows in isa.conv_rows.items():
        parts += [conv_tile(isa, r, np_) + "\n" for r in range(1, max_rows + 1)]
    parts += [table("TileFn", "tile", np_, m) for np_, m in isa.gemm_rows.items()]
    parts += [table("ConvTileFn", "conv_tile", np_, m) for np_, m in isa.conv_rows.items()]
    parts += ["", chooser("TileFn", "tile_for", "kTiles", isa.gemm_rows),
              chooser("ConvTileFn", "conv_tile_for", "kConvTiles", isa.conv_rows)]
    return "\n".join(parts + ["// clang-format on", ""])


def main() -> None:
    for isa, cpp in ((AVX512, "gemm_u8s8_avx512vnni_12x32.cpp"), (AVXVNNI, "gemm_u8s8_avxvnni_6x16.cpp")):
        path = ROOT / f"gemm_u8s8_{isa.name}_tiles.h"
        path.write_text(header(isa, cpp))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
