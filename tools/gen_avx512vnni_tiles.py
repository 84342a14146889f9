"""Writes csrc/kernels/x86/gemm_u8s8_avx512vnni_tiles.h: the AVX-512 VNNI GEMM tiles in inline asm.

    python tools/gen_avx512vnni_tiles.py        # rewrites the header; commit it with this script

Why generated: every tile height (1-12 rows) x 1, 2 or 4 panels of 16 columns is its own
kernel, and with intrinsics GCC copies the accumulators through the stack on every iteration
(half speed; DESIGN.md, "Performance").  The loops differ only in counts, so one template
writes them all, as XNNPACK generates its micro-kernels.

Each tile: zmm accumulators acc[r][j] = zmm(r * NP + j), NP zmm of B, the remaining zmm
rotate as A broadcasts.  The k loop is unrolled twice: the scalar pointer updates and the
loop branch go to ports 0 and 5 too, where vpdpbusd runs, and halving them raised the
12 x 32 tile from ~80 % to ~95 % of the vpdpbusd throughput probe on a Sapphire Rapids core.
Rows are addressed from one pointer per 3 rows plus lda / 2 * lda, so that 12 rows need 4
pointer registers.
"""

from __future__ import annotations

import pathlib

MAX_ROWS = 12
# Direct convolution tiles: up to 9 pixels x 32 columns (GCC's limit of 30 asm operands, with
# each row pointer an in-out operand), or 6 x 64.
CONV_ROWS = 9
CONV_ROWS_4 = 6
HEADER = pathlib.Path(__file__).resolve().parents[1] / "csrc/kernels/x86/gemm_u8s8_avx512vnni_tiles.h"


def a_operand(r: int, offset: int) -> str:
    base = f"%[a{r // 3 * 3}]"
    return f"{offset}({base})" if r % 3 == 0 else f"{offset}({base},%[lda],{r % 3})"


def b_operand(j: int, offset: int) -> str:
    return [f"{offset}(%[b])", f"{offset}(%[b],%[bs],1)", f"{offset}(%[b],%[bs],2)", f"{offset}(%[b3])"][j]


def k_step(rows: int, np_: int, u: int, acc0: int, b0: int, a_regs: list[int], rot: list[int]) -> list[str]:
    """One group of 4 k: NP loads of B, per row one broadcast of A and NP vpdpbusd into acc0 + r * NP + j."""
    lines = [f"vmovdqa64 {b_operand(j, 64 * u)}, %%zmm{b0 + j}" for j in range(np_)]
    for r in range(rows):
        a = a_regs[rot[0] % len(a_regs)]
        rot[0] += 1
        lines.append(f"vpbroadcastd {a_operand(r, 4 * u)}, %%zmm{a}")
        lines += [f"vpdpbusd %%zmm{b0 + j}, %%zmm{a}, %%zmm{acc0 + r * np_ + j}" for j in range(np_)]
    return lines


def store(rows: int, np_: int, tile: str, cc: str, mult: str, out: str, rq: str = "%[rq]") -> list[str]:
    """The tile's output: with rq null, the raw sums to `tile` (register or memory operand);
    otherwise requantized in registers (TileRequant: the epilogue's kQuantFloat arithmetic, in
    the same operations as requantize_float_rows) and stored once as bytes.  cc, mult and out
    name general registers free after the k loop; rq another one, loaded from the memory
    operand %[rq] when it is not that operand itself."""
    lo, hi, zp = 29, 30, 31  # free once the k loop is done (accumulators are zmm0-23)
    lines = [] if rq == "%[rq]" else [f"mov %[rq], {rq}"]
    lines += [f"test {rq}, {rq}", "jz 4f", f"mov 0({rq}), {cc}", f"mov 8({rq}), {mult}", f"mov 16({rq}), {out}"]
    lines += [f"vbroadcastss 32({rq}), %%zmm{lo}", f"vbroadcastss 36({rq}), %%zmm{hi}",
              f"vpbroadcastd 40({rq}), %%zmm{zp}"]
    for r in range(rows):
        for j in range(np_):
            acc = f"%%zmm{r * np_ + j}"
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
        if r + 1 < rows:
            lines.append(f"add 24({rq}), {out}")
    lines += ["jmp 5f", "4:"]
    if not tile.startswith("%[tile]"):
        lines.append(f"mov %[tile], {tile}")
    lines += [f"vmovdqu32 %%zmm{r * np_ + j}, {(r * np_ + j) * 64}({tile})" for r in range(rows) for j in range(np_)]
    return lines + ["5:"]


def tile(rows: int, np_: int) -> str:
    n_acc = rows * np_
    # Fewer than 8 accumulator chains cannot hide vpdpbusd's latency: the second k of each
    # pair then goes to its own accumulators, added in at the end.
    split = n_acc < 8
    acc1 = n_acc if split else 0
    b0 = n_acc * (2 if split else 1)
    a_regs = list(range(b0 + np_, 32))
    rot = [0]
    bases = range(0, rows, 3)
    lines = [f"vpxord %%zmm{i}, %%zmm{i}, %%zmm{i}" for i in range(b0)]
    lines += ["test %[pairs], %[pairs]", "jz 3f", "1:"]
    lines += k_step(rows, np_, 0, 0, b0, a_regs, rot) + k_step(rows, np_, 1, acc1, b0, a_regs, rot)
    lines += [f"add $8, %[a{r}]" for r in bases] + ["add $128, %[b]"] + (["add $128, %[b3]"] if np_ == 4 else [])
    lines += ["dec %[pairs]", "jnz 1b", "3:", "test %[odd], %[odd]", "jz 2f"]
    lines += k_step(rows, np_, 0, 0, b0, a_regs, rot)
    lines += ["2:"]
    if split:
        lines += [f"vpaddd %%zmm{acc1 + i}, %%zmm{i}, %%zmm{i}" for i in range(n_acc)]
    lines += store(rows, np_, "%[tile]", "%[a0]", "%[b]", "%[pairs]")
    body = "\n".join(f'      "{line}\\n\\t"' for line in lines)
    outputs = [f'[a{r}] "+r"(a{r})' for r in bases] + ['[b] "+r"(b)', '[pairs] "+r"(pairs)']
    if np_ == 4:
        outputs.append('[b3] "+r"(b3)')
    inputs = ['[odd] "r"(odd)', '[tile] "r"(tile)', '[rq] "r"(rq)']
    if rows > 1:
        inputs.append('[lda] "r"(lda)')
    if np_ > 1:
        inputs.append('[bs] "r"(bstride)')
    clobbers = ['"cc"', '"memory"'] + [f'"xmm{i}"' for i in range(32)]
    decls = [f"  const uint8_t* a{r} = a + {r} * lda;" if r else "  const uint8_t* a0 = a;" for r in bases]
    if np_ == 4:
        decls.append("  const int8_t* b3 = b + 3 * bstride;")
    unused = []
    unused += [] if np_ > 1 else ["  (void)bstride;"]
    return "\n".join(
        [
            f"inline void tile_{rows}x{np_}(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b, "
            "int64_t bstride, int32_t* tile, const TileRequant* rq) {",
            *decls,
            *unused,
            "  int64_t pairs = groups / 2;",
            "  const int64_t odd = groups % 2;",
            "  __asm__ volatile(",
            body,
            f"      : {', '.join(outputs)}",
            f"      : {', '.join(inputs)}",
            f"      : {', '.join(clobbers)});",
            "}",
        ]
    )


def conv_tile(rows: int, np_: int) -> str:
    """Direct convolution tile: `rows` output pixels x NP panels, A read in place from the input.

    Row r's bytes for tap t start at rows[r] + tap_offsets[t] (the pixel's window corner plus
    the tap's offset in a padded NHWC image), cg bytes per tap, cg a multiple of 8; B is
    packed with K ordered (tap, channel), so it is read straight through.
    """
    n_acc = rows * np_
    split = n_acc < 8
    acc1 = n_acc if split else 0
    b0 = n_acc * (2 if split else 1)
    a_regs = list(range(b0 + np_, 32))
    rot = [0]

    def step(u: int, acc0: int) -> list[str]:
        lines = [f"vmovdqa64 {b_operand(j, 64 * u)}, %%zmm{b0 + j}" for j in range(np_)]
        for r in range(rows):
            a = a_regs[rot[0] % len(a_regs)]
            rot[0] += 1
            lines.append(f"vpbroadcastd {4 * u}(%[p{r}],%[off]), %%zmm{a}")
            lines += [f"vpdpbusd %%zmm{b0 + j}, %%zmm{a}, %%zmm{acc0 + r * np_ + j}" for j in range(np_)]
        return lines

    # General registers: a row pointer per row, the offset in the tap, B (and b3); the tap
    # pointer, the tap's end and the counts live in memory, so that 12 rows fit.
    lines = [f"vpxord %%zmm{i}, %%zmm{i}, %%zmm{i}" for i in range(b0)]
    lines += ["1:", "mov %[tap], %[off]", "mov (%[off]), %[off]", "addq $8, %[tap]", "add %[cg], %[off]",
              "mov %[off], %[end]", "sub %[cg], %[off]", "2:"]
    lines += step(0, 0) + step(1, acc1)
    lines += ["add $8, %[off]", "add $128, %[b]"] + (["add $128, %[b3]"] if np_ == 4 else [])
    lines += ["cmp %[end], %[off]", "jne 2b", "decq %[taps]", "jnz 1b"]
    if split:
        lines += [f"vpaddd %%zmm{acc1 + i}, %%zmm{i}, %%zmm{i}" for i in range(n_acc)]
    free = [f"%[p{r}]" for r in range(rows)] + ["%[off]", "%[b]"] + (["%[b3]"] if np_ == 4 else [])
    extra = len(free) < 4
    if extra:
        free.append("%[s0]")
    lines += store(rows, np_, free[0], free[1], free[2], free[3], rq=free[0])
    body = "\n".join(f'      "{line}\\n\\t"' for line in lines)
    outputs = [f'[p{r}] "+r"(p{r})' for r in range(rows)]
    outputs += ['[off] "=&r"(off)', '[b] "+r"(b)', '[tap] "+m"(tap_offsets)', '[taps] "+m"(taps)', '[end] "=m"(end)']
    if np_ == 4:
        outputs.append('[b3] "+r"(b3)')
    if extra:
        outputs.append('[s0] "=&r"(s0)')
    inputs = ['[cg] "m"(cg)', '[tile] "m"(tile)', '[rq] "m"(rq)']
    if np_ > 1:
        inputs.append('[bs] "r"(bstride)')
    clobbers = ['"cc"', '"memory"'] + [f'"xmm{i}"' for i in range(32)]
    return "\n".join(
        [
            # noinline: inlined into a caller that realigns its stack, the 15 general registers
            # the 12-row tiles ask for would include the frame pointer.
            f"__attribute__((noinline)) void conv_tile_{rows}x{np_}(const uint8_t* const* rows, "
            "const int64_t* tap_offsets, int64_t taps, int64_t cg, const int8_t* b, int64_t bstride, int32_t* tile, "
            "const TileRequant* rq) {",
            *[f"  const uint8_t* p{r} = rows[{r}];" for r in range(rows)],
            *(["  const int8_t* b3 = b + 3 * bstride;"] if np_ == 4 else []),
            *([] if np_ > 1 else ["  (void)bstride;"]),
            "  int64_t off, end" + (", s0;" if extra else ";"),
            "  __asm__ volatile(",
            body,
            f"      : {', '.join(outputs)}",
            f"      : {', '.join(inputs)}",
            f"      : {', '.join(clobbers)});",
            "}",
        ]
    )


def table(np_: int, max_rows: int, prefix: str = "tile", kind: str = "TileFn", name: str = "kTiles") -> str:
    names = ", ".join(f"{prefix}_{r}x{np_}" for r in range(1, max_rows + 1))
    return f"constexpr {kind} {name}{np_}[{max_rows}] = {{{names}}};"


def main() -> None:
    kernels = [tile(r, np_) for np_ in (1, 2) for r in range(1, MAX_ROWS + 1)]
    kernels += [tile(r, 4) for r in range(1, 4)]
    kernels += [conv_tile(r, np_) for np_ in (1, 2) for r in range(1, CONV_ROWS + 1)]
    kernels += [conv_tile(r, 4) for r in range(1, CONV_ROWS_4 + 1)]
    text = "\n".join(
        [
            "// Generated by tools/gen_avx512vnni_tiles.py; edit that script, not this file.",
            "//",
            "// AVX-512 VNNI GEMM tiles: rows x NP panels of raw sums S = sum_k a[m][k] * b[k][n] over the",
            "// k4n16 packed B, stored to `tile` with row stride NP * 16 int32.  Included by",
            "// gemm_u8s8_avx512vnni_12x32.cpp inside its anonymous namespace.",
            "// clang-format off",
            "#pragma once",
            "",
            "// Requantization inside the tile (kQuantFloat without row terms): col_comp and multiplier point at",
            "// the tile's first column, out at its first output byte, ldc bytes between rows.",
            "struct TileRequant {",
            "  const int32_t* col_comp;",
            "  const float* multiplier;",
            "  uint8_t* out;",
            "  int64_t ldc;",
            "  float lo, hi;  // clamp bounds minus the zero point",
            "  int32_t zp;",
            "};",
            "static_assert(offsetof(TileRequant, ldc) == 24 && offsetof(TileRequant, lo) == 32 &&",
            "              offsetof(TileRequant, hi) == 36 && offsetof(TileRequant, zp) == 40, \"the offsets the asm reads\");",
            "",
            "using TileFn = void (*)(int64_t, const uint8_t*, int64_t, const int8_t*, int64_t, int32_t*, const TileRequant*);",
            "",
            "\n\n".join(kernels),
            "",
            table(1, MAX_ROWS),
            table(2, MAX_ROWS),
            table(4, 3),
            "",
            "using ConvTileFn = void (*)(const uint8_t* const*, const int64_t*, int64_t, int64_t, const int8_t*, int64_t,",
            "                            int32_t*, const TileRequant*);",
            *[table(np_, CONV_ROWS, "conv_tile", "ConvTileFn", "kConvTiles") for np_ in (1, 2)],
            table(4, CONV_ROWS_4, "conv_tile", "ConvTileFn", "kConvTiles"),
            "// clang-format on",
            "",
        ]
    )
    HEADER.write_text(text)
    print(f"wrote {HEADER}")


if __name__ == "__main__":
    main()
