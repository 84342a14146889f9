"""QuantizeLinear / DequantizeLinear with opset 21's block_size: each scale (and zero point) covers
block_size consecutive elements along the axis; eightbit.reference and eightbit.ops agree with an
element-by-element computation; shapes that do not fit are refused."""
from __future__ import annotations

import numpy as np
import pytest

from eightbit import ops, reference

F = np.float32


@pytest.mark.parametrize("impl", [reference, ops], ids=["reference", "ops"])
@pytest.mark.parametrize("shape, axis, block", [((3, 10), 1, 4), ((6, 5), 0, 2), ((2, 7, 3), 1, 3), ((5,), 0, 5)])
def test_blocked_scales_cover_their_block(impl, shape, axis, block):
    rng = np.random.default_rng(block)
    x = rng.standard_normal(shape).astype(F) * 3
    sshape = tuple(-(-d // block) if i == axis else d for i, d in enumerate(shape))
    scale = (rng.random(sshape) + 0.05).astype(F)
    zp = rng.integers(0, 256, sshape).astype(np.uint8)
    q = impl.quantize_linear(x, scale, zp, axis=axis, block_size=block)
    deq = impl.dequantize_linear(q, scale, zp, axis=axis, block_size=block)
    for idx in np.ndindex(*shape):                  # element by element: the block's own parameters
        b = list(idx)
        b[axis] //= block
        s, z = scale[tuple(b)], int(zp[tuple(b)])
        want = int(np.clip(np.rint(F(x[idx]) / s) + z, 0, 255))
        assert q[idx] == want
        assert deq[idx] == F(F(want - z) * s)


@pytest.mark.parametrize("impl", [reference, ops], ids=["reference", "ops"])
def test_blocked_shapes_that_do_not_fit_are_refused(impl):
    x = np.ones((3, 10), F)
    with pytest.raises(ValueError, match="block_size 4"):
        impl.quantize_linear(x, np.ones((3, 2), F), np.zeros((3, 2), np.uint8), axis=1, block_size=4)
    with pytest.raises(ValueError, match="block_size"):
        impl.quantize_linear(x, np.ones((3, 3), F), None, axis=1, block_size=-1)
