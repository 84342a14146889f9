"""MatMulInteger (ONNX opset 10): exact integer matrix product with zero points.

    y[..., m, n] = wrap_int32( sum_k (int64(a[..., m, k]) - a_zp[m]) * (int64(b[..., k, n]) - b_zp[n]) )

a_zp is a scalar or one per row of A; b_zp a scalar or one per column of B. Batch dimensions
broadcast as numpy.matmul / ONNX MatMul, including a 1-D a ([K] -> [1, K], M dropped) or a
1-D b ([K] -> [K, 1], N dropped). wrap_int32 is two's complement, as int32 accumulation wraps.

The sum is computed by a float64 matmul of the zero-point-shifted operands: every term is an
integer of magnitude <= 255 * 255 < 2^16 and every partial sum an integer < 2^53 for K < 2^37,
so each float64 operation is exact whatever order or FMA the BLAS uses.
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import as_array, quant_array, scalar_or_vector

_TWO32 = np.int64(1 << 32)
_TWO31 = np.int64(1 << 31)


def wrap_int32(v: np.ndarray) -> np.ndarray:
    """int64 -> int32 modulo 2^32 (two's complement)."""
    return (((v.astype(np.int64) + _TWO31) % _TWO32) - _TWO31).astype(np.int32)


def _zero_point(zp, operand: np.ndarray, name: str, length: int, what: str) -> np.ndarray:
    if zp is None:
        return np.zeros((), dtype=np.int64)
    zp_arr = quant_array(as_array(zp, name), name, allowed=(operand.dtype,))
    return scalar_or_vector(zp_arr, name, length, what).astype(np.int64)


def check_operands(a, b) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Validate dtypes and ranks; return (a, b, M, N) with M/N = 1 for a 1-D operand."""
    a = quant_array(a, "a")
    b = quant_array(b, "b")
    if a.ndim < 1 or b.ndim < 1:
        raise ValueError(f"a and b must have at least 1 dimension, got shapes {a.shape} and {b.shape}")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"inner dimensions differ: a has K={k_a} (shape {a.shape}), "
                         f"b has K={k_b} (shape {b.shape})")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError as exc:
        raise ValueError(f"batch dimensions of a {a.shape} and b {b.shape} do not broadcast") from exc
    m = 1 if a.ndim == 1 else a.shape[-2]
    n = 1 if b.ndim == 1 else b.shape[-1]
    return a, b, m, n


def matmul_integer(a, b, a_zero_point=None, b_zero_point=None) -> np.ndarray:
    """int32 product of (a - a_zero_point) and (b - b_zero_point); a, b each uint8 or int8,
    zero points of the operand's dtype."""
    a, b, m, n = check_operands(a, b)
    a_zp = _zero_point(a_zero_point, a, "a_zero_point", m, "row of a (M)")
    b_zp = _zero_point(b_zero_point, b, "b_zero_point", n, "column of b (N)")
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    b2 = b.reshape(-1, 1) if b.ndim == 1 else b
    a_shifted = (a2.astype(np.int64) - a_zp.reshape(-1, 1)).astype(np.float64)   # [..., M, K]
    b_shifted = (b2.astype(np.int64) - b_zp.reshape(1, -1)).astype(np.float64)   # [..., K, N]
    exact = np.matmul(a_shifted, b_shifted).astype(np.int64)                     # [..., M, N]
    y = wrap_int32(exact)
    if a.ndim == 1:
        y = y[..., 0, :]
    if b.ndim == 1:
        y = y[..., 0]
    return y
