"""Dynamic quantized linear layer (eb.QuantizedLinear): input quantization at run time.

    x_q[m], s_a[m], z_a[m] = DynamicQuantizeLinear(x[m, :])        # each row independently
                             (granularity="tensor": DynamicQuantizeLinear(x), one s_a / z_a for
                             all rows: what ONNX Runtime's quantize_dynamic models compute)
    acc[m, n] = sum_k (int32(x_q[m, k]) - z_a[m]) * int32(w_q[n, k])   # exact int32
    y[m, n]   = float32(acc) * float32(s_a[m] * s_w[n]) + bias[n]    # float32, this order, no FMA
    y         = y + x[m, c_j] * w_out[n, j]   for j = 0, 1, ... in order  # outlier columns c_j:
                                                    # float32, one rounding per multiply and add
    y         = y if y > 0 else +0.0                                  # activation="relu"

Outlier columns (``outlier_cols`` c_j ascending, ``outlier_w`` float32 [N, J]): input columns that
run in float32 (LLM.int8()'s decomposition). They are zeroed in x before the quantization above
(so their values set no row's scale: zero is always inside a row's range) and ``w_q`` is 0 there.
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import check_outliers, float_array, positive_scale, quant_array, scalar_or_vector
from .dynamic_quantize_linear import dynamic_quantize_linear, dynamic_quantize_rows
from .matmul_integer import matmul_integer

_ACTIVATIONS = (None, "relu")


def quantized_linear(x_f32, w_q_int8, w_scale_f32, bias_f32=None, activation=None, granularity="row",
                     outlier_cols=None, outlier_w=None) -> np.ndarray:
    """y = x @ dequant(w_q).T + bias with x quantized per row (or per tensor); x [..., K], w_q int8
    [N, K], w_scale float32 [N] or scalar, bias float32 [N] or None; ``outlier_cols`` (J distinct
    ascending column indices) with ``outlier_w`` float32 [N, J]: columns computed in float32 (module
    docstring). Returns float32 [..., N]."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    if granularity not in ("row", "tensor"):
        raise ValueError(f"granularity must be 'row' or 'tensor', got {granularity!r}")
    x = float_array(x_f32, "x_f32")
    w_q = quant_array(w_q_int8, "w_q_int8", allowed=(np.dtype(np.int8),))
    if w_q.ndim != 2:
        raise ValueError(f"w_q_int8 must be 2-D [N, K], got shape {w_q.shape}")
    n, k = w_q.shape
    if x.ndim < 1 or x.shape[-1] != k:
        raise ValueError(f"x_f32 must have shape [..., {k}] (K of w_q_int8), got {x.shape}")
    w_scale = scalar_or_vector(positive_scale(w_scale_f32, "w_scale_f32"), "w_scale_f32", n,
                               "output channel (N)")
    bias = None
    if bias_f32 is not None:
        bias = float_array(bias_f32, "bias_f32")
        if bias.shape != (n,):
            raise ValueError(f"bias_f32 must have shape ({n},), got {bias.shape}")
    rows = x.reshape(int(np.prod(x.shape[:-1], dtype=np.int64)), k)
    cols, w_out = check_outliers(outlier_cols, outlier_w, n, k)
    if cols.size:
        if not np.all(np.isfinite(rows[:, cols])):
            raise ValueError("x_f32 holds NaN or infinity (dynamic quantization needs finite values)")
        kept = rows
        rows = rows.copy()
        rows[:, cols] = 0.0
    if granularity == "row":
        x_q, s_a, z_a = dynamic_quantize_rows(rows)
    else:
        x_q, s, z = dynamic_quantize_linear(rows)
        s_a, z_a = np.full(len(rows), s, np.float32), np.full(len(rows), z, np.uint8)
    acc = matmul_integer(x_q, w_q.T, z_a, None)                              # int32 [M, N]
    scale = (s_a[:, None] * w_scale.reshape(1, -1)).astype(np.float32)      # float32 [M, N]
    y = (acc.astype(np.float32) * scale).astype(np.float32)
    if bias is not None:
        y = (y + bias).astype(np.float32)
    for j, c in enumerate(cols):
        y = (y + kept[:, c:c + 1] * w_out[:, j]).astype(np.float32)
    if activation == "relu":
        y = np.where(y > 0, y, np.float32(0.0)).astype(np.float32)
    return y.reshape(x.shape[:-1] + (n,))

