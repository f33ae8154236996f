"""Q-profile confidence intervals for τ², τ, I² and H² (``confint.rma.uni``, type "QP")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ._zeroin import R_DEFAULT_TOL, uniroot
from .estimators import q_gen
from .rma import RMAResult, alpha_of


@dataclass
class Tau2CI:
    tau2: float
    tau2_ci_lb: float
    tau2_ci_ub: float
    tau: float
    tau_ci_lb: float
    tau_ci_ub: float
    I2: float
    I2_ci_lb: float
    I2_ci_ub: float
    H2: float
    H2_ci_lb: float
    H2_ci_ub: float
    lb_note: str = ""
    ub_note: str = ""

    def as_dict(self) -> dict:
        keys = ("tau2", "tau2_ci_lb", "tau2_ci_ub", "tau", "tau_ci_lb", "tau_ci_ub",
                "I2", "I2_ci_lb", "I2_ci_ub", "H2", "H2_ci_lb", "H2_ci_ub")
        return {key: getattr(self, key) for key in keys}


def confint_tau2(res: RMAResult, level: float | None = None, tol: float | None = None) -> Tau2CI:
    """Solve Q_gen(τ²) = χ²_{k−p} quantiles with R's uniroot (tolerance from the model's control);
    a bound is 0 when Q_gen(0) is already below its target."""
    if res.k == 1:
        raise ValueError("no confidence interval for tau2 with k = 1")
    if res.is_ee:
        raise ValueError("no confidence interval for tau2 in an equal-effects model")
    y, v, X = res.yi, res.vi, res.X
    k, p = X.shape
    alpha = alpha_of(res.level if level is None else level)
    crit_u = stats.chi2.isf(alpha / 2, k - p)  # gives the lower bound
    crit_l = stats.chi2.ppf(alpha / 2, k - p)  # gives the upper bound
    t_min = min(0.0, res.tau2)
    t_max = max(100.0, res.tau2 * 10, t_min * 10)
    q = lambda t: q_gen(t, y, v, X)  # noqa: E731
    q_min, q_max = q(t_min), q(t_max)
    lb_note = ub_note = ""

    tol = (res.control.tol if res.control is not None else R_DEFAULT_TOL) if tol is None else tol

    def root(target):
        return float(uniroot(lambda t: q(t) - target, t_min, t_max, tol=tol, maxiter=1000))

    if q_min < crit_l:
        lb = ub = t_min
        lb_note = ub_note = "<"
    else:
        if q_max > crit_l:
            ub, ub_note = t_max, ">"
        else:
            ub = root(crit_l)
    if q_max > crit_u:
        lb = ub = t_max
        lb_note = ub_note = ">"
    else:
        if q_min < crit_u:
            lb = t_min
        else:
            lb = root(crit_u)
    vt = res.vt

    def i2(t):
        return 100 * t / (vt + t)

    def h2(t):
        return t / vt + 1

    return Tau2CI(
        res.tau2, lb, ub, res.tau, float(np.sqrt(lb)), float(np.sqrt(ub)),
        res.I2, i2(lb), i2(ub), res.H2, h2(lb), h2(ub), lb_note, ub_note,
    )
