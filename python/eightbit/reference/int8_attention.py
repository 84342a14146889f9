"""int8 attention: the two batched matrix products of attention with both operands quantized at
run time, and an integer softmax producing uint8 probabilities (docs/numerics.md, "int8 attention").

``dynamic_bmm(a, b, alpha)`` (scores = Q K^T, an attention's first product):

    a [..., M, K] float32: each row (query token) DynamicQuantizeLinear  -> a_q uint8, s_a[m], z_a[m]
    b [..., K, N] float32: each column (key token) symmetric int8        -> b_q int8, s_b[n]
        amax = max_k |b[k, n]|;  s_b = amax / 127.0f (float32), 1.0 where amax == 0
        b_q  = rne(clamp(b / s_b, -127, 127))                              # float32 division
    acc[m, n] = sum_k (int32(a_q[m, k]) - z_a[m]) * int32(b_q[k, n])       # exact int32
    y[m, n]   = float32(acc) * (s_a[m] * float32(s_b[n] * alpha))          # float32, this order

Leading dimensions broadcast as NumPy's matmul does. ``alpha`` (default 1) is a folded output
scale: the lowering moves attention's 1/sqrt(d) here only when it is a power of two, where
``s_b * alpha`` is exact and y is bit for bit the unscaled product times alpha.

``softmax_bmm(x, v, mask, scale, p_scale)`` (an attention's softmax and second product, P V):

    x = x * scale + mask                                    # float32, two roundings (as the graph)
    m = max_j x[j] (per row);  d = m - x                    # float32, exact for x near m
    t = rne(min(d * 2^8, 4096))                             # int; d * 256 is exact
    e = EXP_TABLE[t]                                        # round(2^24 exp(-t / 256)), 0 at 4096
    S = sum_j e[j]                                          # int64; e = 2^24 at the max: S >= 2^24
    p_scale "row" (default):  p = (e * 255 + 2^23) >> 24                    # uint8, max -> 255
                              s_p = float32(2^24 / (255 * S))                # float64, rounded once
    p_scale "fixed":          R = (255 << 48) // S;  p = (e * R + 2^47) >> 48
                              s_p = float32(1 / 255)
    v [..., T, D] float32: each column (head channel) symmetric int8 as b above -> v_q, s_v[n]
    acc[m, n] = sum_j int32(p[m, j]) * int32(v_q[j, n])
    y[m, n]   = float32(acc) * (s_p[m] * s_v[n])

The probabilities are integers from an exactly reproducible index (one float32 subtraction and an
exact power-of-two scaling), so every path gives the same bits. Elements of -inf (a masked key)
give e = 0; a row whose every element is -inf gives p = 0 and s_p = 0 (y = 0: it attends to
nothing). NaN or +inf in x (after the mask) is refused.
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import float_array
from .dynamic_quantize_linear import dynamic_quantize_rows

EXP_FRAC_BITS = 8          # d is taken in steps of 2^-8
EXP_TABLE_SIZE = 4097      # d in [0, 16] (exp(-16) < 2^-23); the last entry, 0, for d >= 16
EXP_ONE = 1 << 24          # e at d = 0
P_SCALES = ("row", "fixed")


def exp_table() -> np.ndarray:
    """int32 [4097]: round(2^24 * exp(-t / 256)) for t < 4096, and 0."""
    t = np.arange(EXP_TABLE_SIZE - 1, dtype=np.float64)
    table = np.rint(np.exp(-t / (1 << EXP_FRAC_BITS)) * EXP_ONE).astype(np.int64)
    return np.append(table, 0).astype(np.int32)


def quantize_columns_symmetric(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """b float32 [..., K, N] -> (int8 [..., K, N], scales float32 [..., N]): each column over K."""
    amax = np.max(np.abs(b), axis=-2, initial=np.float32(0.0)).astype(np.float32)
    scale = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    v = (b / scale[..., None, :]).astype(np.float32)
    v = np.minimum(np.maximum(v, np.float32(-127.0)), np.float32(127.0))
    return np.rint(v).astype(np.int8), scale


def _finite(x: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds NaN or infinity (dynamic quantization needs finite values)")


def _check_bmm(a: np.ndarray, b: np.ndarray) -> None:
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"a [..., M, K] and b [..., K, N] do not multiply: {a.shape} and {b.shape}")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"the leading dimensions of {a.shape} and {b.shape} do not broadcast") from None


def _int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched integer product in int64, checked to fit int32 (it always does for K < 2^16)."""
    acc = np.matmul(a.astype(np.int64), b.astype(np.int64))
    if acc.size and (acc.min() < np.iinfo(np.int32).min or acc.max() > np.iinfo(np.int32).max):
        raise ValueError("the int32 accumulator would overflow (K too large)")
    return acc.astype(np.int32)


def dynamic_bmm(a, b, alpha=1.0) -> np.ndarray:
    """Q K^T with both operands quantized at run time (module docstring). float32 out."""
    a, b = float_array(a, "a"), float_array(b, "b")
    _check_bmm(a, b)
    alpha = np.float32(alpha)
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be positive and finite, got {alpha}")
    _finite(a, "a")
    _finite(b, "b")
    m, k = a.shape[-2:]
    q, s_a, z_a = dynamic_quantize_rows(a.reshape(-1, k))
    q, s_a, z_a = q.reshape(a.shape), s_a.reshape(a.shape[:-1]), z_a.reshape(a.shape[:-1])
    b_q, s_b = quantize_columns_symmetric(b)
    acc = _int_matmul(q.astype(np.int64) - z_a[..., None].astype(np.int64), b_q)
    col = (s_b * alpha).astype(np.float32)
    scale = (s_a[..., :, None] * col[..., None, :]).astype(np.float32)
    return (acc.astype(np.float32) * scale).astype(np.float32)


def softmax_u8(x) -> tuple[np.ndarray, np.ndarray]:
    """Rows of x float32 [..., T] (already scaled and masked) -> (p uint8 [..., T], s_p float32
    [...]) with p_scale "row" (module docstring)."""
    e, s_p, _ = _softmax_ints(float_array(x, "x"))
    return ((e * 255 + (1 << 23)) >> 24).astype(np.uint8), s_p


def _softmax_ints(x: np.ndarray):
    if np.any(np.isnan(x)) or np.any(x == np.inf):
        raise ValueError("the attention scores hold NaN or +infinity")
    m = x.max(axis=-1, keepdims=True)
    dead = np.isneginf(m)                                 # rows of only -inf: p = 0, s_p = 0
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.where(dead, np.float32(np.inf), (m - x).astype(np.float32))
        v = np.minimum((d * np.float32(1 << EXP_FRAC_BITS)).astype(np.float32), np.float32(EXP_TABLE_SIZE - 1))
    e = exp_table().astype(np.int64)[np.rint(v).astype(np.int64)]
    s = e.sum(axis=-1)
    live = s > 0
    s_p = np.where(live, np.float64(EXP_ONE) / (255.0 * np.maximum(s, 1)), 0.0).astype(np.float32)
    return e, s_p, s


def softmax_bmm(x, v, mask=None, scale=None, p_scale="row") -> np.ndarray:
    """softmax(x * scale + mask) V with uint8 probabilities and int8 V (module docstring)."""
    if p_scale not in P_SCALES:
        raise ValueError(f"p_scale must be one of {P_SCALES}, got {p_scale!r}")
    x, v = float_array(x, "x"), float_array(v, "v")
    _check_bmm(x, v)
    _finite(v, "v")
    if scale is not None:
        scale = np.float32(scale)
        if not np.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale}")
        x = (x * scale).astype(np.float32)
    if mask is not None:
        mask = float_array(mask, "mask")
        if mask.ndim != x.ndim or any(b not in (1, a) for a, b in zip(x.shape, mask.shape)):
            raise ValueError(f"mask {mask.shape} must broadcast to x {x.shape} (same rank, extents 1 or x's)")
        x = (x + mask).astype(np.float32)
    e, s_p, s = _softmax_ints(x)
    if p_scale == "row":
        p = (e * 255 + (1 << 23)) >> 24
    else:
        r = (np.int64(255) << 48) // np.maximum(s, 1)
        p = (e * r[..., None] + (np.int64(1) << 47)) >> 48
        s_p = np.where(s > 0, np.float32(1.0) / np.float32(255.0), np.float32(0.0)).astype(np.float32)
    v_q, s_v = quantize_columns_symmetric(v)
    acc = _int_matmul(p.astype(np.uint8), v_q)
    out_scale = (s_p[..., :, None] * s_v[..., None, :]).astype(np.float32)
    return (acc.astype(np.float32) * out_scale).astype(np.float32)
