"""Helpers several step kinds share: layouts, quantization parameters as the ops take them, the
fused activation's check, and the lowering's window rule."""
from __future__ import annotations

import numpy as np

from ..plan_types import TensorSpec

NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)
MS = "com.microsoft"  # the ONNX domain of ONNX Runtime's contrib ops (QLinearAdd, QGemm, ...)


# ---- reference interpretation ------------------------------------------------------------------

def qp(spec: TensorSpec):
    """(scale, zero_point) as the ops expect them: float32 and a scalar of the tensor's dtype."""
    return np.float32(spec.scale), spec.dtype.type(spec.zero_point)


def to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(NCHW_TO_NHWC)) if x.ndim == 4 else x


def to_nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(NHWC_TO_NCHW)) if x.ndim == 4 else x


# ---- schema -------------------------------------------------------------------------------------

def check_w_scale(ws: np.ndarray, o: int) -> None:
    if ws.dtype != np.float32 or ws.shape != (o,) or not np.all((ws > 0) & (ws < np.inf)):
        raise ValueError(f"w_scale must be {o} positive finite float32 values")


def check_weight_grid(step, w: np.ndarray) -> None:
    """attrs["w_bits"] (2-7, optional: int8 codes on a narrower grid, stored packed): the codes fit it."""
    bits = step.attrs.get("w_bits", 8)
    if isinstance(bits, bool) or bits not in range(2, 9):
        raise ValueError(f"w_bits must be an int from 2 to 8, got {bits!r}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if bits < 8 and w.size and (w.min() < lo or w.max() > hi):
        raise ValueError(f"w holds codes outside the {bits}-bit range [{lo}, {hi}]")


def check_activation(act) -> None:
    """None, "relu", "relu6" or ("clip", lo, hi) with finite lo <= hi: what every executor takes
    (a NaN bound would be read differently by each)."""
    if act is None or (isinstance(act, str) and act in ("relu", "relu6")):
        return
    if isinstance(act, tuple) and len(act) == 3 and act[0] == "clip" and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)
            for v in act[1:]) and act[1] <= act[2]:
        return
    raise ValueError(f"activation must be None, 'relu', 'relu6' or ('clip', lo, hi) with finite "
                     f"lo <= hi, got {act!r}")


# ---- lowering -----------------------------------------------------------------------------------

def scale_zp(spec: TensorSpec):
    """(scale, zero point) as the ops receive them: float32 and a 0-d array of the tensor's dtype."""
    return np.float32(spec.scale), np.asarray(spec.dtype.type(spec.zero_point))


def need_2d_window(op: str, ins: list) -> None:
    if len(ins[0].shape) != 4:
        raise NotImplementedError(f"{op}: only 2-D (NHWC) windows run in the C++ executor")


def softmax_record(axis, rank: int, scale=None) -> dict:
    """The executor's softmax(x * scale + mask) (a second input is the mask): the softmax step's and
    a float softmax node's."""
    return {"kind": "softmax", "axis": int(axis) % rank, "scale": None if scale is None else float(scale)}


# ---- ONNX export --------------------------------------------------------------------------------

def nchw(spec: TensorSpec) -> tuple:
    """The ONNX (NCHW) shape of a plan tensor: quantized 4-D tensors are NHWC in the plan."""
    s = spec.shape
    return (s[0], s[3], s[1], s[2]) if spec.quantized and len(s) == 4 else tuple(s)
