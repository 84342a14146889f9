"""qlinear_conv's repeated-call path: what a call resolves (geometry, multipliers, clamp bounds) is
kept by its arguments, so a layer called again skips the Python checks. Results must stay those
of eightbit.reference whatever changes between calls, and bad arguments must still be refused."""
from __future__ import annotations

import numpy as np
import pytest

import eightbit as eb
from eightbit import reference as ref
from eightbit.ops import _CONV_CALLS


def _case(rng, oc=6, ic=4):
    x = rng.integers(0, 256, (2, ic, 7, 7), dtype=np.uint8)
    w = rng.integers(-127, 128, (oc, ic, 3, 3), dtype=np.int8)
    b = rng.integers(-2000, 2000, oc).astype(np.int32)
    return x, w, b


def test_repeated_calls_follow_every_argument(rng):
    x, w, b = _case(rng)
    packed = eb.pack_conv_weights(w)
    w_s = rng.uniform(0.002, 0.02, 6).astype(np.float32)
    base = (np.float32(0.03), np.uint8(120), packed, w_s, None, np.float32(0.2), np.uint8(7), b)
    first = eb.ops.qlinear_conv(x, *base, pads=[1, 1, 1, 1])
    assert any(k[0] == x.dtype for k in _CONV_CALLS)                   # the call was kept
    for _ in range(3):                                                 # cached: the same bytes
        np.testing.assert_array_equal(eb.ops.qlinear_conv(x, *base, pads=[1, 1, 1, 1]), first)
    want = ref.qlinear_conv(x, np.float32(0.03), np.uint8(120), w, w_s, np.int8(0), np.float32(0.2), np.uint8(7), b,
                            pads=[1, 1, 1, 1])
    np.testing.assert_array_equal(first, want)
    # each argument that changes what is resolved gives the reference's new result
    w_s2 = w_s.copy()
    w_s2[0] *= 3                                                       # a new array with other values
    changes = [
        dict(w_scale=w_s2), dict(y_scale=np.float32(0.05)), dict(x_scale=np.float32(0.01)),
        dict(x_zero_point=np.uint8(3)), dict(y_zero_point=np.int8(7)), dict(pads=[0, 0, 0, 0]),
        dict(strides=[2, 2]),
    ]
    for change in changes:
        args = dict(x_scale=np.float32(0.03), x_zero_point=np.uint8(120), w_scale=w_s, y_scale=np.float32(0.2),
                    y_zero_point=np.uint8(7), pads=[1, 1, 1, 1], strides=None)
        args.update(change)
        got = eb.ops.qlinear_conv(x, args["x_scale"], args["x_zero_point"], packed, args["w_scale"], None,
                                  args["y_scale"], args["y_zero_point"], b, pads=args["pads"], strides=args["strides"])
        want = ref.qlinear_conv(x, args["x_scale"], args["x_zero_point"], w, args["w_scale"], np.int8(0),
                                args["y_scale"], args["y_zero_point"], b, pads=args["pads"], strides=args["strides"])
        assert got.dtype == want.dtype, change
        np.testing.assert_array_equal(got, want, err_msg=str(change))
    w_s[:] = w_s2                                                      # the same array, changed in place
    got = eb.ops.qlinear_conv(x, *base, pads=[1, 1, 1, 1])
    want = ref.qlinear_conv(x, np.float32(0.03), np.uint8(120), w, w_s2, np.int8(0), np.float32(0.2), np.uint8(7), b,
                            pads=[1, 1, 1, 1])
    np.testing.assert_array_equal(got, want)


def test_activation_and_layout_are_part_of_the_call(rng):
    x, w, b = _case(rng)
    packed = eb.pack_conv_weights(w)
    args = (np.float32(0.03), np.uint8(120), packed, np.float32(0.01), None, np.float32(0.05), np.uint8(128), b)
    plain = eb.ops.qlinear_conv(x, *args, pads=[1, 1, 1, 1])
    relu = eb.ops.qlinear_conv(x, *args, pads=[1, 1, 1, 1], activation="relu")
    assert plain.min() < 128 and relu.min() == 128 and np.array_equal(np.maximum(plain, 128), relu)
    nhwc = eb.ops.qlinear_conv(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), *args, pads=[1, 1, 1, 1], layout="NHWC")
    np.testing.assert_array_equal(nhwc, plain.transpose(0, 2, 3, 1))


def test_bad_arguments_are_refused_after_a_cached_call(rng):
    x, w, b = _case(rng)
    packed = eb.pack_conv_weights(w)
    args = (np.float32(0.03), np.uint8(120), packed, np.float32(0.01), None, np.float32(0.05), np.uint8(128))
    eb.ops.qlinear_conv(x, *args, b, pads=[1, 1, 1, 1])
    with pytest.raises(TypeError, match="B"):
        eb.ops.qlinear_conv(x, *args, b.astype(np.int64), pads=[1, 1, 1, 1])
    with pytest.raises(ValueError):
        eb.ops.qlinear_conv(x, *args, b[:3], pads=[1, 1, 1, 1])
    bad_zp = (np.float32(0.03), np.uint8(120), packed, np.float32(0.01), np.int8(5), np.float32(0.05), np.uint8(128))
    with pytest.raises(ValueError, match="w_zero_point"):
        eb.ops.qlinear_conv(x, *bad_zp, b, pads=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="scale"):
        eb.ops.qlinear_conv(x, np.float32(-1.0), *args[1:], b, pads=[1, 1, 1, 1])
