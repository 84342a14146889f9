"""Fused activation clamps (relu, relu6, clip lo/hi) at many output scales, against bounds
computed here.

A fused activation clamps the requantized output to [Q(lo), Q(hi)], Q(v) = QuantizeLinear(v,
y_scale, y_zp): rne(float32(v) / y_scale) + y_zp, saturated (docs/numerics.md, QLinearConv).
With one output scale a bound computed with floor (or ceil, or half-up) instead of rne often
agrees by luck; here every test sweeps ten output scales, asserts that floor and rne disagree on
most of them (exact .5 ties included), and asserts that the output really reaches each bound
(so the clamp is what decides the result). Bounds and requantization come from
tests/numerics/_numerics_oracles.py (Fractions, Python integers; no eightbit code).

Paths: eightbit.reference.qlinear_conv, eightbit.ops.qlinear_conv (C++, every ISA) with both
requant modes, and a hand-built plan run by the C++ plan executor, step by step with
eightbit.ops and with eightbit.reference.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import eightbit as eb
from eightbit.model import Plan, QuantizedModel, Step, TensorSpec
from eightbit.model.execute import run_plan

import _numerics_oracles as orc

F32 = np.float32
RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}

# Output scales: 6 / s has fractional part >= 0.5 on most (floor != rne for relu6), exact .5
# ties (13.5 -> 14, 11.5 -> 12, 12.5 -> 12: floor and half-up both wrong on some), and two where
# floor happens to agree (0.083, 0.1) so a "ceil" bound is caught too.
SCALES = [0.0523, 0.059, 0.0667, 0.07, 0.083, 0.1, 0.11, 6 / 13.5, 6 / 12.5, 6 / 11.5]
ZERO_POINTS = {np.dtype(np.uint8): 37, np.dtype(np.int8): -90}
CLIPS = [(-0.6, 5.05), (-0.37, 2.7), (0.3, 4.44), (-2.49, -0.6)]

# Input: every uint8 code, x_zp 128, x_scale 1 (reals -128..127); three output channels with
# fine, coarse and negative steps so every output scale sees values on both sides of each bound.
X = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
X_SCALE, X_ZP = F32(1.0), np.uint8(128)
W = np.array([1, -1, 3], np.int8).reshape(3, 1, 1, 1)
W_SCALE = F32([1 / 64, 1.0, 0.1])
ACC = (X.astype(np.int64).reshape(1, -1) - 128) * W.astype(np.int64).reshape(3, 1)   # [3, 256]


def bound(v, scale, zp, dtype, rounding=orc.round_half_even) -> int:
    qmin, qmax = RANGES[np.dtype(dtype)]
    return orc.clamp(rounding(orc.f32_div(v, scale)) + zp, qmin, qmax)


def expected_bounds(activation, scale, zp, dtype, rounding=orc.round_half_even):
    qmin, qmax = RANGES[np.dtype(dtype)]
    if activation is None:
        return qmin, qmax
    if activation == "relu":
        return max(qmin, zp), qmax
    if activation == "relu6":
        return max(qmin, zp), bound(6.0, scale, zp, dtype, rounding)
    _, lo, hi = activation
    return bound(lo, scale, zp, dtype, rounding), bound(hi, scale, zp, dtype, rounding)


_REQUANT_CACHE: dict = {}


def requantized(requant, scale, zp, dtype) -> np.ndarray:
    """[3, 256] outputs before the activation clamp, from the oracle."""
    key = (requant, scale, zp, np.dtype(dtype).str)
    if key not in _REQUANT_CACHE:
        qmin, qmax = RANGES[np.dtype(dtype)]
        out = np.empty(ACC.shape, np.int64)
        for m in range(3):
            if requant == "float":
                # float32 IEEE arithmetic in ORT's order; each step exact-rounded by numpy float32
                mult = F32(F32(X_SCALE * W_SCALE[m]) / F32(scale))
                v = (ACC[m].astype(F32) * mult).astype(F32)
                out[m] = [orc.clamp(orc.round_half_even(Fraction(float(t))) + zp, qmin, qmax) for t in v]
            else:
                real = float(X_SCALE) * float(W_SCALE[m]) / float(F32(scale))
                out[m] = [orc.requantize_fixed(int(a), real, zp, qmin, qmax) for a in ACC[m]]
        _REQUANT_CACHE[key] = out
    return _REQUANT_CACHE[key]


def _conv(impl, activation, requant, scale, zp, dtype):
    y = impl.qlinear_conv(X, X_SCALE, X_ZP, W, W_SCALE, np.zeros(3, np.int8), F32(scale), np.array(zp, dtype),
                          activation=activation, requant=requant)
    assert y.dtype == np.dtype(dtype) and y.shape == (1, 3, 16, 16)
    return y.reshape(3, 256).astype(np.int64)


def _check_power(activation, dtypes=(np.uint8, np.int8)):
    """The scales must make a floor bound differ from rne on most (scale, dtype) cases."""
    differ = total = 0
    for dtype in dtypes:
        zp = ZERO_POINTS[np.dtype(dtype)]
        for s in SCALES:
            total += 1
            differ += expected_bounds(activation, s, zp, dtype, math.floor) != \
                expected_bounds(activation, s, zp, dtype)
    assert differ >= 0.6 * total, (activation, differ, total)


ACTIVATIONS = ["relu", "relu6"] + [("clip", lo, hi) for lo, hi in CLIPS]


def _act_id(a):
    return a if isinstance(a, str) else f"clip{a[1]}_{a[2]}"


@pytest.mark.parametrize("activation", ACTIVATIONS[1:], ids=_act_id)
def test_scales_separate_rne_from_floor(activation):
    """The sweep's power: on most (scale, dtype) cases a floor or half-up bound is a different code."""
    _check_power(activation)


@pytest.mark.parametrize("requant", ["float", "fixed"])
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=_act_id)
def test_reference_qlinear_conv_clamps(activation, requant):
    _check_clamps(eb.reference, activation, requant)


@pytest.mark.parametrize("requant", ["float", "fixed"])
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=_act_id)
def test_ops_qlinear_conv_clamps(isa, activation, requant):
    _check_clamps(eb.ops, activation, requant)


def _check_clamps(impl, activation, requant):
    for dtype in (np.uint8, np.int8):
        qmin, qmax = RANGES[np.dtype(dtype)]
        zp = ZERO_POINTS[np.dtype(dtype)]
        for s in SCALES:
            lo, hi = expected_bounds(activation, s, zp, dtype)
            raw = requantized(requant, s, zp, dtype)
            want = np.clip(raw, lo, hi)
            got = _conv(impl, activation, requant, s, zp, dtype)
            where = f"{impl.__name__} {activation} {requant} scale={s} {np.dtype(dtype)} bounds=({lo}, {hi})"
            np.testing.assert_array_equal(got, want, err_msg=where)
            # the clamp decides the result: both bounds are reached, and values beyond them exist
            assert got.min() == lo and got.max() == hi, where
            if lo > qmin:
                assert raw.min() < lo, where
            if hi < qmax:
                assert raw.max() > hi, where


def test_no_activation_is_the_full_range():
    for dtype in (np.uint8, np.int8):
        qmin, qmax = RANGES[np.dtype(dtype)]
        zp = ZERO_POINTS[np.dtype(dtype)]
        for s in SCALES[:3]:
            for impl in (eb.reference, eb.ops):
                got = _conv(impl, None, "float", s, zp, dtype)
                np.testing.assert_array_equal(got, requantized("float", s, zp, dtype))
                assert got.min() == qmin and got.max() == qmax


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_relu6_bound_by_hand(dtype):
    # 6 / 0.07 = 85.714 -> 86 (floor: 85); 6 / (6 / 13.5) = 13.5 -> 14 (floor: 13);
    # 6 / (6 / 12.5) = 12.5 -> 12 (half up: 13); 6 / 0.0523 = 114.72 -> 115 (floor: 114).
    zp = ZERO_POINTS[np.dtype(dtype)]
    for s, steps in ((0.07, 86), (6 / 13.5, 14), (6 / 12.5, 12), (6 / 11.5, 12), (0.0523, 115)):
        assert expected_bounds("relu6", s, zp, dtype) == (max(RANGES[np.dtype(dtype)][0], zp), zp + steps)
        assert orc.is_tie(orc.f32_div(6.0, s)) == (s in (6 / 13.5, 6 / 12.5, 6 / 11.5))
        for impl in (eb.reference, eb.ops):
            got = _conv(impl, "relu6", "float", s, zp, dtype)
            assert got.max() == zp + steps and got.min() == zp, (impl.__name__, s)


# ---- through a plan: the C++ executor, run_steps (eightbit.ops) and reference_run ---------------------

def _plan(activation, requant, scale, zp, dtype):
    """x float [N, 3] -> quantize (scale 1, zp 128) -> linear [3 -> 3] with the activation -> dequantize."""
    dt = np.dtype(dtype)
    t = {
        "x": TensorSpec("x", np.dtype(np.float32), (None, 3)),
        "xq": TensorSpec("xq", np.dtype(np.uint8), (None, 3), 1.0, 128),
        "h": TensorSpec("h", dt, (None, 3), float(F32(scale)), int(zp)),
        "y": TensorSpec("y", np.dtype(np.float32), (None, 3)),
    }
    w = np.diag(W.reshape(3)).astype(np.int8)                  # channel m reads input m with weight W[m]
    steps = [Step("quantize", ("x",), "xq"),
             Step("linear", ("xq",), "h", {"activation": activation, "requant": requant},
                  {"w": w, "w_scale": W_SCALE.copy(), "bias": np.zeros(3, np.int32)}, source="fc"),
             Step("dequantize", ("h",), "y")]
    return Plan(t, steps, ["x"], ["y"])


@pytest.mark.parametrize("requant", ["float", "fixed"])
@pytest.mark.parametrize("activation", ["relu6", ("clip", -0.6, 5.05), ("clip", 0.3, 4.44)], ids=_act_id)
def test_plan_linear_clamps(activation, requant):
    x = np.repeat(np.arange(-128, 128, dtype=F32)[:, None], 3, axis=1)     # quantizes exactly to X
    for dtype in (np.uint8, np.int8):
        zp = ZERO_POINTS[np.dtype(dtype)]
        for s in SCALES:
            lo, hi = expected_bounds(activation, s, zp, dtype)
            want = np.clip(requantized(requant, s, zp, dtype), lo, hi).T                 # [256, 3]
            qm = QuantizedModel(_plan(activation, requant, s, zp, dtype))
            where = f"{activation} {requant} scale={s} {np.dtype(dtype)}"
            steps = qm.run_steps({"x": x}, return_all=True)["h"]
            np.testing.assert_array_equal(steps, want, err_msg="run_steps " + where)
            ref = run_plan(qm.plan, {"x": x}, eb.reference, return_all=True)["h"]
            np.testing.assert_array_equal(ref, want, err_msg="reference " + where)
            y = qm(x)                                          # the C++ plan executor, float out
            np.testing.assert_array_equal(y, ((want - zp).astype(F32) * F32(s)).astype(F32), err_msg=where)
            assert steps.max() == hi and steps.min() == lo, where
