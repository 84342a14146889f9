"""256-entry lookup tables for any elementwise function of a uint8 / int8 tensor (the table
builder is eightbit.numerics.tables, shared with the ops and the lowering):

    make_lookup_table(fn, x_scale, x_zp, y_scale, y_zp, x_dtype, y_dtype)[i]:
        q = the x_dtype value whose byte is i (i = 0..255; for int8, i >= 128 is i - 256)
        d = float32(x_scale * float32(int32(q) - x_zp))         # DequantizeLinear, fp32
        table[i] = QuantizeLinear(float32(fn(d)), y_scale, y_zp)   # fp32 division, rne, saturate
    lookup_table(x, table) = table[x.view(uint8)]

This is how ONNX Runtime builds the tables of QLinearLeakyRelu, QLinearSigmoid and
QLinearConcat (QlinearBuildLookupTable): `fn` is called once on the float32 array of all 256
dequantized values and must return 256 values (converted to float32). NaN from fn maps to qmin.
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import as_array, quant_array
from ..numerics.tables import make_lookup_table  # noqa: F401 - eightbit.reference.make_lookup_table


def lookup_table(x, table) -> np.ndarray:
    """table[x] with x uint8/int8 indexed by its raw byte; table has 256 uint8/int8 entries."""
    x = quant_array(x, "x")
    t = quant_array(as_array(table, "table"), "table")
    if t.shape != (256,):
        raise ValueError(f"table must have shape (256,) (one entry per input byte), got {t.shape}")
    return t[x.view(np.uint8)]
