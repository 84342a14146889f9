"""Which kernel each plan step runs on this CPU (``eightbit info model.eb``, ``step_kernels``).

The C++ core picks kernels inside each step's run (csrc/runtime/conv.cpp ``direct_mode``,
csrc/runtime/gemm.cpp's few-rows switch, runtime/dispatch.cpp's per-ISA tables) and does not report
its choice, so this module derives the name from the same rules, written down in docs/kernels.md:
the dispatch ISA (``eb.cpu_info()["isa"]``, ``EIGHTBIT_ISA``), the step kind and, for
convolutions, the geometry, dtypes and weight zero points the plan stores. Which float steps run
in Python (host steps) is asked of the C++ builder itself. Where the choice depends on the batch
at run time (AMX sends GEMMs of fewer than 8 rows to the AVX-512 VNNI tile), the name says so.
Keep this in step with conv.cpp / dispatch.cpp: tests/deploy/test_kernels.py pins the rules.
"""
from __future__ import annotations

from ..runtime import core as _core, cpu_info

__all__ = ["step_kernels", "gemm_kernel_name"]

_GEMM_TILES = {
    "scalar": "gemm scalar 4x16",
    "avx2": "gemm avx2 6x8 (exact vpmaddwd)",
    "avxvnni": "gemm avxvnni 6x16",
    "avx512vnni": "gemm avx512vnni 12x32",
    "amx": "gemm amx 32x32 (under 8 rows: avx512vnni 12x32)",
}
_DIRECT_CONV_ISAS = ("avxvnni", "avx512vnni", "amx")  # GemmKernel::conv_block is set
_AMX_TILE_K, _AMX_SEGMENT = 64, 16                    # AMX's conv_cg_multiple and conv_segment
_UNIT_256_512 = {"scalar": "scalar", "avx2": "avx2", "avxvnni": "avx2", "avx512vnni": "avx512", "amx": "avx512"}
_CNN_UNIT = {"scalar": "scalar", "avx2": "avx2", "avxvnni": "avx2", "avx512vnni": "avx512vnni", "amx": "avx512vnni"}
_SGEMM = {"scalar": "sgemm scalar (std::fma)", "avx2": "sgemm avx2 6x16", "avx512": "sgemm avx512 12x32"}
_BLOCKWISE = {"scalar": "scalar", "avx2": "avx2", "avxvnni": "avxvnni", "avx512vnni": "avx512", "amx": "avx512"}
_FLOAT_GEMM_OPS = ("conv2d", "linear", "matmul", "bmm", "gemm")


def gemm_kernel_name(isa: str) -> str:
    return _GEMM_TILES[isa]


def step_kernels(model, isa: str | None = None) -> list:
    """One dict per plan step of a QuantizedModel: "step" (index), "op", "source" (the graph node),
    "output" and "kernel" (the kernel family, ISA path and tile it runs on ``isa``, default the
    dispatch ISA in use)."""
    info = cpu_info()
    isa = info["isa"] if isa is None else isa
    if isa not in _GEMM_TILES:
        raise ValueError(f"isa: expected one of {list(_GEMM_TILES)}, got {isa!r}")
    hosts = _host_steps(model)
    rows = []
    for i, s in enumerate(model.plan.steps):
        kernel = "host: NumPy float executor (Python)" if i in hosts else _kernel(model.plan, s, isa, info)
        rows.append({"step": i, "op": s.op, "source": s.source, "output": s.output, "kernel": kernel})
    return rows


def _host_steps(model) -> set:
    """The steps the C++ builder hands back to Python (float forms it lacks): asked of the builder
    by building the plan once more with a recording host callback."""
    if model._executor is None:
        return set(range(len(model.plan.steps)))  # the whole model runs step by step
    from . import file_format

    seen = set()

    def host(i):
        seen.add(i)
        return lambda xs: None  # never run

    _core.build_model(file_format.encode(model.plan), 0, host)
    return seen


def _kernel(plan, s, isa: str, info: dict) -> str:
    op = s.op
    if op in ("linear", "dynamic_linear"):
        return f"{'dynamic linear: ' if op == 'dynamic_linear' else ''}{_GEMM_TILES[isa]}"
    if op == "conv":
        return _conv_kernel(plan, s, isa)
    if op in ("binary_conv", "binary_linear"):
        if isa in ("avx512vnni", "amx") and info["features"].get("avx512popcnt"):
            return "binary gemm avx512 vpopcntdq 6x4 panels"
        return "binary gemm scalar" if isa == "scalar" else "binary gemm avx2 vpshufb popcount 4x8"
    if op == "blockwise_linear":
        return f"blockwise int{int(s.attrs.get('bits', 4))} {_BLOCKWISE[isa]}"
    if op in ("dynamic_bmm", "softmax_bmm"):
        gemm = _GEMM_TILES["avx512vnni" if isa == "amx" else isa]  # a head's GEMM takes AMX's few-rows kernel
        return f"int8 attention {_UNIT_256_512[isa]} + {gemm}"
    if op in ("add", "mul", "max_pool", "avg_pool", "global_avg_pool", "concat", "lut"):
        return f"cnn ops {_CNN_UNIT[isa]}"
    if op in ("quantize", "dequantize"):
        return f"{op} (elementwise, runtime/quantize.cpp)"
    if op == "reshape":
        return "reshape (copy)"
    if op == "float":
        node_op = s.attrs.get("op")
        if node_op in _FLOAT_GEMM_OPS:
            return f"float {node_op}: {_SGEMM[_UNIT_256_512[isa]]}"
        return f"float {node_op}: float math {_UNIT_256_512[isa]}"
    if op in ("softmax", "embedding"):
        return f"{op}: float math {_UNIT_256_512[isa]}"
    return f"{op} ({isa})"


def _conv_kernel(plan, s, isa: str) -> str:
    """conv.cpp's run_conv: depthwise, direct (taps or kernel rows), 1x1 GEMM in place, im2col GEMM."""
    x = plan.tensors[s.inputs[0]]
    y = plan.tensors[s.output]
    w = s.consts["w"]
    out_c, cg, kh, kw = (int(d) for d in w.shape)
    groups = int(s.attrs.get("group", 1))
    strides = tuple(s.attrs.get("strides", (1, 1)))
    pads = tuple(s.attrs.get("pads", (0, 0, 0, 0)))
    dilations = tuple(s.attrs.get("dilations", (1, 1)))
    gemm = _GEMM_TILES[isa]
    if groups > 1 and cg == 1 and out_c == groups:
        wide = _depthwise_weights_fit_int8(s)
        if isa == "scalar" or not wide:
            return f"depthwise int32 {'scalar' if isa == 'scalar' else _CNN_UNIT[isa]} {kh}x{kw}"
        unit = {"avx2": "avx2 (exact vpmaddubsw split)", "avxvnni": "avxvnni", "avx512vnni": "avx512vnni",
                "amx": "avx512vnni"}[isa]
        return f"depthwise {unit} {kh}x{kw}"
    pointwise = kh == 1 and kw == 1 and strides == (1, 1) and not any(pads)
    x_signed = x.dtype.kind == "i"
    zp_free = _weight_zero_point_is_zero(s)
    group_note = f", {groups} groups" if groups > 1 else ""
    if not x_signed and not pointwise and zp_free and isa in _DIRECT_CONV_ISAS:
        if isa == "amx":
            ow = int(y.shape[2])
            segments = -(-ow // _AMX_SEGMENT)
            amx_ok = any(pads) and 8 * ow >= 7 * _AMX_SEGMENT * segments
            multiple = _AMX_TILE_K
        else:
            amx_ok, multiple = True, 8
        if amx_ok:
            row_bytes = kw * cg
            row_k = -(-row_bytes // 8) * 8
            tile = "amx 16-pixel segments" if isa == "amx" else f"{isa} 6x64 / 9x32"
            if cg % multiple == 0:
                return f"direct conv {tile} {kh}x{kw}{group_note}"
            if groups == 1 and cg % 8 != 0 and 3 * row_k <= 4 * row_bytes and row_k % multiple == 0 and \
                    dilations[1] == 1:
                return f"direct conv (kernel rows as taps) {tile} {kh}x{kw}"
    if pointwise:
        return f"1x1 conv: {gemm} on the input in place{group_note}"
    return f"im2col + {gemm} {kh}x{kw}{group_note}"


def _weight_zero_point_is_zero(s) -> bool:
    """No shifted weight zero point (PackedB::any_zp_shifted false): int8 weights with zero point
    0, or uint8 weights with 128."""
    w = s.consts["w"]
    zp = s.consts.get("w_zero_point")
    if zp is None:
        return True
    import numpy as np

    shift = 128 if w.dtype == np.uint8 else 0
    return bool(np.all(np.asarray(zp, np.int64) == shift))


def _depthwise_weights_fit_int8(s) -> bool:
    import numpy as np

    w = np.asarray(s.consts["w"], np.int64)
    zp = s.consts.get("w_zero_point")
    if zp is not None:
        w = w - np.asarray(zp, np.int64).reshape(-1, 1, 1, 1)
    return bool(w.min(initial=0) >= -128 and w.max(initial=0) <= 127)
