#!/usr/bin/env python3
"""Fits the polynomial coefficients of the vectorised exact GELU used in
Sources/CEDKernels/gelu.h (GELU(x) = x*Phi(x), Phi the standard normal CDF, i.e.
0.5*x*(1+erf(x/sqrt(2)))).

  |x| <= 1:  Phi(x) = 0.5 + x * P(x^2)                  P of degree 6
  |x| >  1:  Phi(-t) = exp(-t^2/2) * S(w), w = 1/(1+t/2)  S of degree 8, t = |x| <= 12.5
             Phi(x) = Phi(-t) for x < 0, 1 - Phi(-t) for x > 0
  exp(r), |r| <= ln2/2:  1 + r + r^2 * E(r)              E of degree 4

Relative-error minimax by Lawson's iteration on a fine grid, reference values from
mpmath at 40 digits. Prints C initialisers (float32-rounded). Needs numpy and mpmath.
"""
import numpy as np
import mpmath as mp

mp.mp.dps = 40

def lawson(V, y, iters=60):
    wts = np.ones(len(y))
    for _ in range(iters):
        A = V / y[:, None] * wts[:, None]
        coef, *_ = np.linalg.lstsq(A, wts, rcond=None)
        err = (V @ coef - y) / y
        wts = wts * (np.abs(err) + 1e-30) ** 0.5
        wts /= wts.max()
    return coef, np.abs(err).max()

def grid(lo, hi, n=3000):
    return (np.cos(np.linspace(0, np.pi, n)) * 0.5 + 0.5) * (hi - lo) + lo

T, TMAX, C = 1.0, 12.5, 0.5

x = grid(1e-6, T)
yP = np.array([float((mp.ncdf(v) - 0.5) / v) for v in x])
cP, eP = lawson(np.vander(x * x, 7, increasing=True), yP)

w = grid(1 / (1 + C * TMAX), 1 / (1 + C * T))
t = (1 / w - 1) / C
yS = np.array([float(mp.ncdf(-v) * mp.e ** (v * v / 2)) for v in t])
cS, eS = lawson(np.vander(w, 9, increasing=True), yS)

r = grid(-0.3466, 0.3466)
r = r[np.abs(r) > 1e-4]
yE = np.array([float((mp.e ** v - 1 - v) / (v * v)) for v in r])
cE, eE = lawson(np.vander(r, 5, increasing=True), yE)

def show(name, c, e):
    print(f"// {name}: max relative fit error {e:.2e}")
    print(f"static const float {name}[{len(c)}] = {{" + ", ".join(np.format_float_scientific(np.float32(v), unique=True, exp_digits=2) + "f" for v in c) + "};")

show("ced_gelu_p", cP, eP)
show("ced_gelu_s", cS, eS)
show("ced_exp_e", cE, eE)
