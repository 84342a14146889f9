"""QLinearAdd (com.microsoft, opset 1): c = quantize(dequantize(a) + dequantize(b)), exactly as
ONNX Runtime 1.32's x86 AVX2 kernel (MlasQLinearAddKernelAvx2) computes it, in float32:

    r_a = float32(a_scale / c_scale);  r_b = float32(b_scale / c_scale)
    (P, r_P, z_P), (Q, r_Q, z_Q) = (b, r_b, b_zp), (a, r_a, a_zp)   if a is constant along ORT's
                                                                      innermost broadcast span
                                   (a, r_a, a_zp), (b, r_b, b_zp)   otherwise
    fixed = float32(c_zp) - fma(r_P, z_P, float32(r_Q * z_Q))       # the compiler's contraction
    v     = fma(P, r_P, fma(Q, r_Q, fixed))                         # vfmadd: one rounding each
    c     = sat(rne(v))                                             # cvtps2dq, packs, pack(u)s

fma is the correctly rounded float32 fused multiply-add. The operand order only matters on
rare outputs next to a rounding tie; ORT swaps the roles when input 0 is broadcast along the
innermost run of its broadcast loop (its `IsInput0Scalar`), which
`eightbit.numerics.broadcast.qlinear_add_b_first` reproduces from the two shapes. eightbit
saturates where ORT's cvtps2dq overflows (|v| >= 2^31, scale ratios above ~8e6): there ORT
returns qmin.

a, b: uint8 or int8 (same dtype), numpy broadcasting; scales and zero points per-tensor.
"""
from __future__ import annotations

import numpy as np

from ..numerics.broadcast import qlinear_add_b_first
from ..numerics.checks import check_binary
from ..numerics.rounding import clamp_then_round
from ._float32 import fma32


def qlinear_add(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point) -> np.ndarray:
    """Quantized elementwise a + b; returns c_zero_point's dtype (= a's dtype)."""
    a, b, (a_s, a_zp, b_s, b_zp, c_s, c_zp) = check_binary(
        a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point)
    r_a = (a_s / c_s).astype(np.float32)
    r_b = (b_s / c_s).astype(np.float32)
    av, bv = np.broadcast_arrays(a, b)
    first, second = (av, r_a, a_zp), (bv, r_b, b_zp)
    if qlinear_add_b_first(a.shape, b.shape):
        first, second = second, first
    (p, r_p, z_p), (q, r_q, z_q) = first, second
    fixed = (np.float32(int(c_zp)) - fma32(r_p, np.float32(int(z_p)), (r_q * np.float32(int(z_q))).astype(np.float32)))
    fixed = np.float32(fixed)
    v = fma32(p.astype(np.float32), r_p, fma32(q.astype(np.float32), r_q, fixed))
    return clamp_then_round(v, np.int32(0), a.dtype)
