"""QLinearConcat (com.microsoft, opset 1), as ONNX Runtime computes it.

Each input (t, t_scale, t_zp) is requantized to (y_scale, y_zp) through the identity lookup table

    table[i] = QuantizeLinear(float32(t_scale * float32(int32(q_i) - t_zp)), y_scale, y_zp)

(ORT copies an input whose scale and zero point equal the output's; the table is then the
identity, so the result is the same), and the results are concatenated along `axis`.
All tensors and zero points share one dtype (uint8 or int8); scales and zero points are scalars.
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import quant_array
from .lookup_table import lookup_table, make_lookup_table


def _identity(d):
    return d


def concat_triples(inputs, axis) -> list:
    """The (tensor, scale, zero_point) inputs as a non-empty list; axis must be an integer."""
    try:
        triples = list(inputs)
    except TypeError as exc:
        raise TypeError("inputs must be a sequence of (tensor, scale, zero_point) triples") from exc
    if not triples:
        raise ValueError("inputs must contain at least one (tensor, scale, zero_point) triple")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {type(axis).__name__}")
    return triples


def qlinear_concat(y_scale, y_zero_point, inputs, *, axis) -> np.ndarray:
    y_zp = quant_array(y_zero_point, "y_zero_point")
    triples = concat_triples(inputs, axis)
    parts = []
    for i, triple in enumerate(triples):
        if not isinstance(triple, (tuple, list)) or len(triple) != 3:
            raise ValueError(f"inputs[{i}] must be a (tensor, scale, zero_point) triple")
        t, s, zp = triple
        t = quant_array(t, f"inputs[{i}] tensor", allowed=(y_zp.dtype,))
        zp = quant_array(zp, f"inputs[{i}] zero_point", allowed=(y_zp.dtype,))
        table = make_lookup_table(_identity, s, zp, y_scale, y_zero_point, t.dtype, y_zp.dtype)
        parts.append(lookup_table(t, table))
    rank = parts[0].ndim
    if not -rank <= axis < rank:
        raise ValueError(f"axis must be in [{-rank}, {rank}) for inputs of rank {rank}, got {axis}")
    try:
        return np.concatenate(parts, axis=int(axis))
    except ValueError as exc:
        shapes = [p.shape for p in parts]
        raise ValueError(f"inputs must have equal shapes except along axis {axis}, got {shapes}") from exc
