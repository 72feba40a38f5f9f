#!/usr/bin/env python3
"""The [4/4] rational fit of tanh(x)/x in x² behind lib/lower/wgsl_expr.ts flex_tanh (session 9): Loeb iterations then
least squares on growing powers of the relative error (near-minimax), checked in float32 arithmetic over ±20 and down to
1e-38. flex_tanh clamps x at ±9 and the result at ±1 (the fit exceeds 1 in f32 past 8.13). Needs numpy and scipy."""
import numpy as np
from scipy.optimize import least_squares
C = 9.0
def fit(m, n):
    x = np.concatenate([np.linspace(1e-4, C, 6000), np.geomspace(1e-6, 1, 500)])
    t = x*x; f = np.tanh(x)/x
    w = np.ones_like(t)
    for it in range(30):
        # P(t) - f Q(t) = 0, Q(0)=1: unknowns p0..pm, q1..qn
        A = np.hstack([t[:,None]**np.arange(m+1), -(f*t)[:,None]**1 * t[:,None]**np.arange(n)])
        b = f
        sol = np.linalg.lstsq(A*w[:,None], b*w, rcond=None)[0]
        p = sol[:m+1]; q = np.concatenate([[1.0], sol[m+1:]])
        Q = np.polyval(q[::-1], t)
        w = 1/np.abs(f*Q)
    def res(v):
        p = v[:m+1]; q = np.concatenate([[1.0], v[m+1:]])
        return (np.polyval(p[::-1], t)/np.polyval(q[::-1], t))/f - 1
    v = np.concatenate([p, q[1:]])
    # minimax-ish: p-norm growth
    for pw in [4, 8, 16]:
        r = least_squares(lambda v: np.abs(res(v))**(pw/2)*np.sign(res(v)), v, xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=4000)
        v = r.x
    return v[:m+1], np.concatenate([[1.0], v[m+1:]])
def eval32(p, q, x):
    x = np.float32(x); xc = np.clip(x, np.float32(-C), np.float32(C)); t = xc*xc
    P = np.float32(p[-1])
    for c in p[-2::-1]: P = (P*t + np.float32(c)).astype(np.float32)
    Q = np.float32(q[-1])
    for c in q[-2::-1]: Q = (Q*t + np.float32(c)).astype(np.float32)
    return (xc*P/Q).astype(np.float32)
xs = np.concatenate([np.linspace(-20, 20, 400001), np.geomspace(1e-38, 1, 2000), -np.geomspace(1e-38, 1, 2000)]).astype(np.float32)
ref = np.tanh(xs.astype(np.float64))
for m, n in [(3,3),(4,3),(5,3),(6,3),(4,4)]:
    p, q = fit(m, n)
    y = eval32(p, q, xs).astype(np.float64)
    rel = np.abs(y-ref)/np.maximum(np.abs(ref), 1e-300)
    print(m, n, "max rel", rel.max(), "max abs", np.abs(y-ref).max(), "p", list(map(float,p)), "q", list(map(float,q)))
