"""R's ``uniroot`` (Brent's zeroin, R_zeroin2 in src/library/stats/src/zeroin.c), step for step.

metafor finds PM and the Q-profile bounds with ``uniroot(tol = .Machine$double.eps^0.25)``; at that
tolerance the answer depends on the exact iteration path, so the path is reproduced here.
"""

from __future__ import annotations

import sys

EPSILON = sys.float_info.epsilon
R_DEFAULT_TOL = EPSILON**0.25


class UnirootError(RuntimeError):
    pass


def uniroot(f, lower: float, upper: float, tol: float = R_DEFAULT_TOL, maxiter: int = 1000) -> float:
    fa, fb = f(lower), f(upper)
    if fa * fb > 0:
        raise UnirootError("f() values at end points not of opposite sign")
    return zeroin2(f, lower, upper, fa, fb, tol, maxiter)


def zeroin2(f, ax: float, bx: float, fa: float, fb: float, tol: float, maxit: int) -> float:
    a, b = ax, bx
    c, fc = a, fa
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    count = maxit + 1
    while count:
        count -= 1
        prev_step = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * EPSILON * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0.0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2) and p < abs(prev_step * q / 2):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    raise UnirootError("uniroot did not converge")
