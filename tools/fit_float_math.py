"""Fits the polynomial coefficients of csrc/kernels/float_math.h (exp, erf, erfc, tanh) and prints
them as float32 literals, highest degree first (Horner order).

    python tools/fit_float_math.py          # needs NumPy and SciPy (scipy.special.erf, erfcx)

Near-minimax fits by Lawson's algorithm (iteratively reweighted least squares on Chebyshev
nodes), in float64, then rounded to float32; the error of the float32 evaluation (roundings and
range reduction included) is what tools/float_math_exhaustive.cpp measures over all 2^32 inputs.
"""
import numpy as np
from scipy.special import erf, erfcx


def lawson(f, degree, lo, hi, weight, start=0, var=lambda t: t, iters=40, points=4000):
    """Coefficients c[start..degree] minimising max |weight * (f - sum c_k var^k)| on [lo, hi]."""
    t = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.linspace(0, np.pi, points))
    basis = np.stack([var(t) ** k for k in range(start, degree + 1)], 1)
    a, b = basis * weight(t)[:, None], f(t) * weight(t)
    w = np.full(points, 1.0 / points)
    for _ in range(iters):
        c, *_ = np.linalg.lstsq(a * np.sqrt(w)[:, None], b * np.sqrt(w), rcond=None)
        e = np.abs(a @ c - b)
        w = w * e / np.sum(w * e)
    return c, float(np.max(np.abs(a @ c - b)))


def show(name, c, err):
    print(f"{name}: max weighted error {err:.3g} ({err / 2.0 ** -24:.3f} ulp of 1)")
    print("  " + ", ".join(f"{np.float32(v):.9e}f" for v in c[::-1]))


def main():
    one = np.ones_like
    # exp: e^r = 1 + r + r^2 q(r), |r| <= ln2 / 2 (+ slack for the rounded n); q of degree 4
    q = lambda r: np.where(r == 0, 0.5, (np.expm1(r) - r) / np.where(r == 0, 1, r * r))  # noqa: E731
    show("exp q(r), c6..c2", *lawson(q, 4, -0.3467, 0.3467, lambda r: r * r / np.exp(r)))
    # erf(x) = x P(x^2), |x| < 0.5, relative
    p = lambda t: np.where(t == 0, 2 / np.sqrt(np.pi), erf(np.sqrt(t)) / np.sqrt(np.maximum(t, 1e-300)))  # noqa: E731
    show("erf small P(x^2)", *lawson(p, 5, 0.0, 0.25, lambda t: one(t) * np.sqrt(np.pi) / 2))
    # erfc(t) = tau e^(-t^2 + P(tau)), tau = 1 / (1 + 0.6 t), t in [0, 10.5]: P's absolute error is
    # the relative error of erfc
    k = float(np.float32(0.6))
    show("erfc P(tau)", *lawson(lambda tau: np.log(erfcx((1 / tau - 1) / k) / tau), 10, 1 / (1 + k * 10.5),
                                1 - 1e-9, one))
    # tanh(x) = x + x^3 P(x^2), |x| < 0.625, relative
    r = lambda t: (np.tanh(np.sqrt(t)) - np.sqrt(t)) / np.maximum(t, 1e-30) ** 1.5  # noqa: E731
    show("tanh small P(x^2)", *lawson(r, 5, 1e-6, 0.625 ** 2, lambda t: t / (np.tanh(np.sqrt(t)) / np.sqrt(t))))


if __name__ == "__main__":
    main()
