"""The float32 step kernels (csrc/kernels/float_math.h) against float64 references, with the error
bounds docs/numerics.md ("Float steps") documents, and bit for bit across every instruction set
this CPU has.

Inputs: a dense strided sample of all 2^32 float32 bit patterns (every sign, exponent and
subnormal range) plus edge cases (zeros, infinities, NaN, overflow and underflow thresholds, the
kernels' branch points). tools/float_math_exhaustive.cpp checks all 2^32 inputs.
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import eightbit as eb
from eightbit.runtime import core

F = np.float32
ISAS = eb.cpu_info()["available"]

# Documented bounds (docs/numerics.md): max error in float32 ulps of the exact result.
ULP_BOUND = {"exp": 1.0, "erf": 2.5, "tanh": 1.5, "sigmoid": 2.5, "gelu": 6.0}


def on_every_isa(fn):
    """{isa: fn()} with the kernels forced onto each instruction set, then the default restored."""
    before = eb.cpu_info()["isa"]
    try:
        out = {}
        for isa in ISAS:
            eb.set_isa(isa)
            out[isa] = fn()
        return out
    finally:
        eb.set_isa(before)


def same_bits_everywhere(fn):
    """fn()'s result on every ISA, asserted bit-identical (NaN payloads included); returns one."""
    results = on_every_isa(fn)
    first = results[ISAS[0]]
    for isa, got in results.items():
        assert got.dtype == first.dtype and got.shape == first.shape
        np.testing.assert_array_equal(got.view(np.uint32), first.view(np.uint32), err_msg=f"{isa} vs {ISAS[0]}")
    return first


def whole_range_sample(stride=21481):  # ~200k bit patterns, stride prime to 2^32
    bits = np.arange(0, 2 ** 32, stride, dtype=np.uint64).astype(np.uint32)
    return bits.view(F)


def edge_cases():
    v = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 0.625, -0.625, 88.72283, 88.72284, 89.0,
         -87.33654, -87.34, -103.9, -103.98, -104.0, -105.0, 3.92, 3.83, -3.83, 9.0, 9.02, 10.5, -10.5, 14.9,
         -14.9, -20.0, 20.0, 1e-30, -1e-30, 1e-45, -1e-45, 1.1754944e-38, 3.4028235e38, -3.4028235e38]
    x = np.array(v, F)
    with np.errstate(over="ignore"):
        around = np.concatenate([np.nextafter(x, F(np.inf)), np.nextafter(x, F(-np.inf))])
    return np.concatenate([x, around[np.isfinite(around)]])


def inputs():
    return np.concatenate([whole_range_sample(), edge_cases(), np.linspace(-12, 12, 20001, dtype=F)])


def _erf64(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _gelu64(x):  # 0.5 x erfc(-x / sqrt 2): no cancellation in the negative tail
    erfc = np.vectorize(math.erfc, otypes=[np.float64])
    return 0.5 * x * erfc(-x / math.sqrt(2.0))


def _sigmoid64(x):
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


REFERENCE = {"exp": np.exp, "erf": _erf64, "tanh": np.tanh, "sigmoid": _sigmoid64, "gelu": _gelu64}


def ulp_errors(got, x, ref64):
    """Error of float32 `got` in ulps of the exact `ref64` (float32 ulp; 2^-149 below the normal
    range); special results (NaN, inf, zero) must match the float32 rounding of the reference."""
    with np.errstate(over="ignore", invalid="ignore"):
        want = ref64.astype(F)
    special = np.isnan(ref64) | ~np.isfinite(want) | (want == 0)
    nan = np.isnan(ref64)
    assert np.array_equal(np.isnan(got[nan]), np.ones(nan.sum(), bool)), "NaN in, NaN out"
    inf = np.isinf(want) & ~nan
    np.testing.assert_array_equal(got[inf], want[inf], err_msg="overflow / infinities")
    zero = (want == 0) & ~nan
    assert np.all(np.abs(got[zero].astype(np.float64)) <= 2.0 ** -149), "underflow to 0 (within one subnormal step)"
    ok = ~special
    r = ref64[ok]
    ulp = np.where(np.abs(r) >= 2.0 ** -126, 2.0 ** (np.floor(np.log2(np.abs(r))) - 23), 2.0 ** -149)
    return np.abs(got[ok].astype(np.float64) - r) / ulp, x[ok]


@pytest.mark.parametrize("fn", sorted(ULP_BOUND))
def test_function_within_bound_and_same_on_every_isa(fn):
    x = inputs()
    got = same_bits_everywhere(lambda: core.float_math(fn, x))
    with np.errstate(all="ignore"):
        ref = REFERENCE[fn](x.astype(np.float64))
    err, at = ulp_errors(got, x, ref)
    worst = int(np.argmax(err))
    assert err[worst] <= ULP_BOUND[fn], f"{fn}: {err[worst]:.2f} ulp at x={at[worst]!r}"


def test_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], F)
    f = {fn: core.float_math(fn, x) for fn in ["exp", "erf", "tanh", "sigmoid", "gelu", "gelu_tanh"]}
    np.testing.assert_array_equal(f["exp"], [1, 1, np.inf, 0, np.nan])
    np.testing.assert_array_equal(f["erf"], [0, -0.0, 1, -1, np.nan])
    np.testing.assert_array_equal(f["tanh"], [0, -0.0, 1, -1, np.nan])
    np.testing.assert_array_equal(f["sigmoid"], [0.5, 0.5, 1, 0, np.nan])
    assert np.signbit(f["erf"][1]) and np.signbit(f["tanh"][1]) and np.signbit(f["gelu"][1])
    # gelu(-inf) = -inf * 0: NaN, as the float graph's formula (graph/float_exec.py) gives
    np.testing.assert_array_equal(f["gelu"], [0, -0.0, np.inf, np.nan, np.nan])
    np.testing.assert_array_equal(f["gelu_tanh"][[0, 2, 4]], [0, np.inf, np.nan])
    assert f["exp"][3] == 0 and not np.signbit(f["exp"][3])


def _graph_unary(fn, x, a, b):  # the float graph's formulas, evaluated by NumPy
    with np.errstate(all="ignore"):
        if fn == "clip":
            return np.clip(x, F(a), F(b))
        if fn == "leaky_relu":
            return np.where(x > 0, x, x * F(a))
        if fn == "hardswish":
            return x * np.clip(x + F(3), F(0), F(6)) / F(6)
        if fn == "hardsigmoid":
            return np.clip(F(a) * x + F(b), F(0), F(1))
        if fn == "gelu_tanh":
            inner = F(math.sqrt(2 / math.pi)) * (x + F(0.044715) * x * x * x)
            return F(0.5) * x * (1 + np.tanh(inner))
    raise AssertionError(fn)


@pytest.mark.parametrize("fn,a,b", [("clip", -0.5, 0.7), ("leaky_relu", 0.2, 0.0), ("hardswish", 0, 0),
                                    ("hardsigmoid", 0.2, 0.5)])
def test_piecewise_activations_are_numpy_exact(fn, a, b):
    x = inputs()
    got = same_bits_everywhere(lambda: core.float_math(fn, x, a, b))
    np.testing.assert_array_equal(got, _graph_unary(fn, x, a, b))


def test_gelu_tanh_within_float32_rounding_of_the_graph_formula():
    x = np.concatenate([np.linspace(-12, 12, 40001, dtype=F), edge_cases()])
    got = same_bits_everywhere(lambda: core.float_math("gelu_tanh", x))
    want = _graph_unary("gelu_tanh", x, 0, 0)
    fin = np.isfinite(want)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    # the formula's own float32 roundings (tanh at ~1 ulp against NumPy's) dominate
    np.testing.assert_allclose(got[fin], want[fin], rtol=4e-7, atol=1.2e-7 * 4)


@pytest.mark.parametrize("n", [1, 3, 7, 8, 15, 16, 17, 31, 33, 100])
def test_tails_give_the_same_values_as_the_body(n):
    x = np.random.default_rng(n).standard_normal(n * 3).astype(F) * 4
    for fn in ["exp", "erf", "tanh", "sigmoid", "gelu", "gelu_tanh", "hardswish"]:
        whole = same_bits_everywhere(lambda: core.float_math(fn, x))
        parts = np.concatenate([core.float_math(fn, x[:n]), core.float_math(fn, x[n:])])
        np.testing.assert_array_equal(whole.view(np.uint32), parts.view(np.uint32), err_msg=fn)


# ------------------------------------------------------------------------------------ softmax

def _softmax64(x, axis):
    x = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)


SOFTMAX_RTOL = 1e-6  # documented: |y - exact| <= 1e-6 * exact + 1e-6 * 2^-23 max(y) for rows up to 4096


@pytest.mark.parametrize("shape,axis", [((5, 1), -1), ((4, 7), -1), ((3, 16), -1), ((3, 17), -1), ((2, 25, 25), -1),
                                        ((2, 3, 128), -1), ((1, 4096), -1), ((3, 5, 7), 1), ((2, 33, 19), 1),
                                        ((4, 9, 3), 0), ((2, 3, 40), 1)])
def test_softmax_within_bound_and_same_on_every_isa(shape, axis):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 8).astype(F)
    got = same_bits_everywhere(lambda: core.float_softmax(x, axis))
    want = _softmax64(x, axis)
    np.testing.assert_allclose(got, want, rtol=SOFTMAX_RTOL, atol=1e-12)


def test_softmax_special_rows():
    x = np.array([[0.0, -np.inf, 1.0, -np.inf],      # -inf entries: probability 0
                  [1e30, -1e30, 1e30, 0.0],          # huge values: no overflow
                  [3.0, 3.0, 3.0, 3.0],              # all equal: exactly 1/n
                  [-np.inf] * 4,                     # all -inf: NaN (NumPy: -inf - -inf)
                  [0.0, np.nan, 1.0, 2.0],           # NaN anywhere: NaN row
                  [0.0, np.inf, 1.0, 2.0],           # +inf: NaN row, as NumPy's formula
                  [-1e38, -3e38, -2e38, 3e38]], F)
    got = same_bits_everywhere(lambda: core.float_softmax(x))
    with np.errstate(invalid="ignore"):
        want = _softmax64(x, -1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[2], np.full(4, F(1) / F(4)))
    assert got[0, 1] == 0 and got[0, 3] == 0
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=SOFTMAX_RTOL, atol=1e-30)
    # the column path (softmax over a non-last axis) on the same rows, transposed
    got_t = same_bits_everywhere(lambda: core.float_softmax(np.ascontiguousarray(x.T), 0))
    np.testing.assert_array_equal(np.isnan(got_t), np.isnan(want.T))
    np.testing.assert_allclose(got_t[ok.T], want.T[ok.T], rtol=SOFTMAX_RTOL, atol=1e-30)


# ------------------------------------------------------------------------------------ layer norm

def _layer_norm64(x, eps, w=None, b=None):
    x = x.astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    y = (x - mean) / np.sqrt(np.square(x - mean).mean(-1, keepdims=True) + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def _ln_bound(x, eps, w, b):
    """Documented: one float32 rounding of the float64 formula, |y - exact| <= ulp(exact) / 2, plus
    the double-precision noise of a different summation order (1e-12 of the terms)."""
    x64 = x.astype(np.float64)
    mean = x64.mean(-1, keepdims=True)
    z = np.abs(x64 - mean) / np.sqrt(np.square(x64 - mean).mean(-1, keepdims=True) + eps)
    wa = 1.0 if w is None else np.abs(w.astype(np.float64))
    ba = 0.0 if b is None else np.abs(b.astype(np.float64))
    want = _layer_norm64(x, eps, w, b)
    return np.spacing(np.abs(want).astype(F)).astype(np.float64) / 2 + 1e-12 * (z * wa + ba)


@pytest.mark.parametrize("inner", [1, 2, 7, 16, 17, 31, 64, 384, 385, 1000])
@pytest.mark.parametrize("affine", ["none", "weight", "both", "bias"])
def test_layer_norm_within_bound_and_same_on_every_isa(inner, affine):
    rng = np.random.default_rng(inner)
    x = (rng.standard_normal((6, inner)) * 3 + rng.normal(0, 50, (6, 1))).astype(F)
    w = (rng.standard_normal(inner) + 1).astype(F) if affine in ("weight", "both") else None
    b = rng.standard_normal(inner).astype(F) if affine in ("bias", "both") else None
    got = same_bits_everywhere(lambda: core.float_layer_norm(x, 1e-5, w, b))
    want = _layer_norm64(x, 1e-5, w, b)
    assert np.all(np.abs(got - want) <= _ln_bound(x, 1e-5, w, b))
    assert np.mean(got == want.astype(F)) > 0.999  # the float64 result rounded once, but at rare ties


def test_layer_norm_constant_rows_give_the_bias():
    x = np.array([[0.1] * 24, [3e5] * 24, [-7.25] * 24, [0.0] * 24], F)
    b = np.arange(24, dtype=F) / 7
    got = same_bits_everywhere(lambda: core.float_layer_norm(x, 1e-5, None, b))
    np.testing.assert_array_equal(got, np.broadcast_to(b, x.shape))
    got = same_bits_everywhere(lambda: core.float_layer_norm(x, 1e-5))
    np.testing.assert_array_equal(got, np.zeros_like(x))


def test_layer_norm_nan_and_inf_rows():
    x = np.array([[1, 2, np.nan, 4], [1, np.inf, 3, 4], [1, 2, 3, 4]], F)
    got = same_bits_everywhere(lambda: core.float_layer_norm(x))
    assert np.isnan(got[:2]).all() and np.isfinite(got[2]).all()


# ------------------------------------------------------------------------------------ through plans

def _one_node(build, x):
    g = eb.Graph()
    t = g.input("x", shape=(None,) + x.shape[1:])
    g.output(build(g, t))
    m = eb.compile(g)
    return g, m


@pytest.mark.parametrize("op", ["add", "mul"])
@pytest.mark.parametrize("b_kind", ["tensor", "scalar", "last_axis", "middle_axis"])
def test_binary_steps_with_a_constant_are_numpy_exact(op, b_kind):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5, 37)).astype(F)
    b = {"tensor": rng.standard_normal((1, 5, 37)), "scalar": np.array(1.7), "last_axis": rng.standard_normal(37),
         "middle_axis": rng.standard_normal((5, 1))}[b_kind].astype(F)
    g, m = _one_node(lambda g, t: getattr(g, op)(t, b), x)
    got = same_bits_everywhere(lambda: m(x))
    np.testing.assert_array_equal(got, g.run(x))


@pytest.mark.parametrize("c_shape", [(3, 19), (1, 19), (3, 1), (1, 1)])
@pytest.mark.parametrize("op", ["add", "mul", "div"])
def test_binary_steps_of_two_inputs_are_numpy_exact(op, c_shape):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 19)).astype(F)
    y = rng.standard_normal((2,) + c_shape).astype(F)
    y[0, 0, 0] = 0.0  # x / 0: inf, IEEE's
    g = eb.Graph()
    a, c = g.input("a", shape=(None, 3, 19)), g.input("c", shape=(None,) + c_shape)
    g.output(g.relu(getattr(g, op)(a, c)) if op == "add" else getattr(g, op)(a, c))
    m = eb.compile(g)
    feeds = {"a": x, "c": y}
    got = same_bits_everywhere(lambda: next(iter(m.run(feeds).values())))
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got, g.run(feeds))


@pytest.mark.parametrize("build", [lambda g, t: g.gelu(t), lambda g, t: g.gelu(t, approximate="tanh"),
                                   lambda g, t: g.softmax(t, axis=2), lambda g, t: g.softmax(t, axis=1),
                                   lambda g, t: g.layer_norm(t, (23,)), lambda g, t: g.erf(t),
                                   lambda g, t: g.sigmoid(t), lambda g, t: g.tanh(t)])
def test_steps_within_float32_rounding_of_the_graph(build):
    x = (np.random.default_rng(5).standard_normal((4, 9, 23)) * 3).astype(F)
    g, m = _one_node(build, x)
    got = same_bits_everywhere(lambda: m(x))
    np.testing.assert_allclose(got, g.run(x), rtol=2e-6, atol=1e-6)


def test_eightbit_isa_environment_forces_the_float_kernels(tmp_path):
    """EIGHTBIT_ISA=scalar in a fresh process (the table is chosen at import) gives the bits this
    process gets on its fastest path."""
    x = inputs()
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, eightbit as eb; from eightbit.runtime import core; "
            "assert eb.cpu_info()['isa'] == 'scalar'; x = np.load(sys.argv[1]); "
            "np.save(sys.argv[2], np.stack([core.float_math(f, x) for f in ('exp', 'erf', 'gelu', 'tanh')]))")
    env = dict(os.environ, EIGHTBIT_ISA="scalar")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], env=env,
                   check=True)
    want = np.stack([core.float_math(f, x) for f in ("exp", "erf", "gelu", "tanh")])
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy").view(np.uint32), want.view(np.uint32))
