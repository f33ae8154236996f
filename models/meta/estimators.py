"""τ² estimators, one class each (the PyMARE layout), following metafor 3.8-1's definitions.

Each ``estimate(y, v, X)`` returns a :class:`Tau2Fit`. Iterative estimators follow metafor's own
algorithms (Fisher scoring, R's uniroot) under a :class:`Control`: metafor's defaults reproduce its
default output, ``Control.converged()`` the fully converged answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._projection import WeightedProjection
from ._zeroin import R_DEFAULT_TOL, UnirootError, uniroot


@dataclass
class Tau2Fit:
    tau2: float
    se_tau2: float
    converged: bool = True
    iterations: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Control:
    """Stopping rules, as metafor's ``control``: Fisher-scoring ``threshold`` (absolute change in τ²),
    ``tol`` for uniroot and the ll0 check, ``maxiter``. Defaults are metafor's."""

    threshold: float = 1e-5
    tol: float = R_DEFAULT_TOL
    maxiter: int = 100

    @classmethod
    def converged(cls, yi=None) -> "Control":
        """The reference suite's "fully converged" control: threshold 1e-11·max(1, var(yi)), tol 1e-13."""
        var = 0.0
        if yi is not None:
            y = np.asarray(yi, dtype=float)
            y = y[np.isfinite(y)]
            var = float(np.var(y, ddof=1)) if len(y) > 1 else 0.0
        return cls(threshold=1e-11 * max(1.0, var), tol=1e-13, maxiter=1000)

    @classmethod
    def of(cls, control, yi=None) -> "Control":
        if control is None:
            return cls()
        if isinstance(control, Control):
            return control
        if control == "converged":
            return cls.converged(yi)
        if isinstance(control, dict):
            return cls(**control)
        raise ValueError(f"unknown control {control!r}")


class ConvergenceError(RuntimeError):
    """An iterative estimator found no solution (metafor stops with an error here)."""


def r_mad(y: np.ndarray) -> float:
    """R's mad(): 1.4826 × median absolute deviation from the median."""
    return float(1.482602218505602 * np.median(np.abs(y - np.median(y))))


def q_gen(tau2: float, y: np.ndarray, v: np.ndarray, X: np.ndarray) -> float:
    """Generalised Q statistic at a given τ²."""
    return WeightedProjection(X, 1.0 / (v + tau2)).fit(y)[2]


def tau2_max_default(y: np.ndarray) -> float:
    return max(100.0, 10 * r_mad(y) ** 2)


class Tau2Estimator:
    name = "?"
    iterative = False

    def __init__(self, control: Control | None = None):
        self.control = control or Control()

    def estimate(self, y: np.ndarray, v: np.ndarray, X: np.ndarray) -> Tau2Fit:  # pragma: no cover
        raise NotImplementedError


class EqualEffects(Tau2Estimator):
    """EE/FE: τ² fixed at 0."""

    name = "EE"

    def estimate(self, y, v, X):
        return Tau2Fit(0.0, float("nan"))


def _moment_se(proj: WeightedProjection, k: int, p: int, tau2: float, denom: float) -> float:
    t = max(tau2, 0.0)
    return float(np.sqrt((2 * (k - p) + 4 * t * proj.tr() + 2 * t * t * proj.tr_ppd()) / denom**2))


class DerSimonianLaird(Tau2Estimator):
    name = "DL"

    def estimate(self, y, v, X):
        k, p = X.shape
        proj = WeightedProjection(X, 1 / v)
        rss = proj.fit(y)[2]
        trp = proj.tr()
        tau2 = max(0.0, (rss - (k - p)) / trp)
        return Tau2Fit(tau2, _moment_se(proj, k, p, tau2, trp))


class HunterSchmidt(Tau2Estimator):
    name = "HS"
    k_correction = False

    def estimate(self, y, v, X):
        k, p = X.shape
        w = 1 / v
        proj = WeightedProjection(X, w)
        rss = proj.fit(y)[2]
        sw = float(np.sum(w))
        if self.k_correction:
            tau2 = max(0.0, (k / (k - p) * rss - k) / sw)
            se = k / (k - p) * _moment_se(proj, k, p, tau2, sw)
        else:
            tau2 = max(0.0, (rss - k) / sw)
            se = _moment_se(proj, k, p, tau2, sw)
        return Tau2Fit(tau2, se)


class HunterSchmidtK(HunterSchmidt):
    name = "HSk"
    k_correction = True


def _hedges_raw(y, v, X):
    k, p = X.shape
    ols = WeightedProjection(X, np.ones(k))
    rss = ols.fit(y)[2]
    trpv = ols.tr(v)
    return (rss - trpv) / (k - p), ols, trpv


class Hedges(Tau2Estimator):
    """HE: unweighted method of moments."""

    name = "HE"

    def estimate(self, y, v, X):
        k, p = X.shape
        raw, ols, trpv = _hedges_raw(y, v, X)
        tau2 = max(0.0, raw)
        se = np.sqrt((2 * ols.tr_pdpd(v) + 4 * tau2 * trpv + 2 * tau2 * tau2 * (k - p)) / (k - p) ** 2)
        return Tau2Fit(tau2, float(se))


class SidikJonkman(Tau2Estimator):
    name = "SJ"

    def estimate(self, y, v, X):
        k, p = X.shape
        tau2_0 = float(np.var(y - y.mean(), ddof=1) * (k - 1) / k)
        proj = WeightedProjection(X, 1 / (v + tau2_0))
        rss = proj.fit(y)[2]
        tau2 = max(0.0, tau2_0 * rss / (k - p))
        se = np.sqrt(
            tau2_0**2
            / (k - p) ** 2
            * (2 * proj.tr_pdpd(v) + 4 * tau2 * proj.tr_ppd(v) + 2 * tau2 * tau2 * proj.tr_ppd())
        )
        return Tau2Fit(tau2, float(se))


def _pm_se(v, k, p, tau2):
    return float(np.sqrt(2 * k**2 / (k - p) / np.sum(1 / (v + tau2)) ** 2))


class PauleMandel(Tau2Estimator):
    """PM: the τ² at which the generalised Q equals k − p, found with R's uniroot as metafor does."""

    name = "PM"
    iterative = True

    def estimate(self, y, v, X):
        k, p = X.shape
        target = k - p
        upper = tau2_max_default(y)
        if q_gen(0.0, y, v, X) < target:
            tau2 = 0.0
        elif q_gen(upper, y, v, X) > target:
            raise ConvergenceError(
                f"{self.name}: Q(τ²) still above k−p at τ² = {upper:g} (metafor: 'tau2.max too low')"
            )
        else:
            try:
                tau2 = uniroot(lambda t: q_gen(t, y, v, X) - target, 0.0, upper, tol=self.control.tol,
                               maxiter=self.control.maxiter)
            except UnirootError as exc:
                raise ConvergenceError(f"{self.name}: {exc}") from None
        tau2 = max(0.0, tau2)
        return Tau2Fit(float(tau2), _pm_se(v, k, p, tau2))


class _Likelihood(Tau2Estimator):
    """ML/REML/EB by metafor's Fisher scoring: HE start, step-halving at the boundary, stop when τ²
    changes by less than ``control.threshold``; then (ML/REML) metafor's ll0 check.

    The iteration path is metafor's, so results match metafor's default output (threshold 1e-5),
    and with ``Control.converged()`` they match the fully converged answer, including estimates at
    the τ² = 0 boundary where step-halving approaches 0 from above.
    """

    iterative = True
    kind = "REML"

    def score_step(self, proj: WeightedProjection, y: np.ndarray) -> float:
        w = proj.w
        if self.kind == "REML":
            return (proj.quad2(y) - proj.tr()) / proj.tr_ppd()
        if self.kind == "ML":
            return (proj.quad2(y) - float(np.sum(w))) / float(np.sum(w * w))
        k, p = proj.X.shape
        return (proj.fit(y)[2] * k / (k - p) - k) / float(np.sum(w))

    def loglik(self, tau2, y, v, X) -> float:
        proj = WeightedProjection(X, 1 / (v + tau2))
        rss = proj.fit(y)[2]
        ll = -0.5 * np.sum(np.log(v + tau2)) - 0.5 * rss
        if self.kind == "REML":
            ll -= 0.5 * proj.logdet_A()
        return float(ll)

    def estimate(self, y, v, X):
        k, p = X.shape
        con = self.control
        tau2 = max(0.0, _hedges_raw(y, v, X)[0])
        converged = False
        it = 0
        change = con.threshold + 1
        while change > con.threshold:
            it += 1
            old = tau2
            proj = WeightedProjection(X, 1 / (v + tau2))
            adj = self.score_step(proj, y)
            if not np.isfinite(adj):
                adj = 0.0
            while tau2 + adj < 0:
                adj /= 2
            tau2 = tau2 + adj
            change = abs(old - tau2)
            if it > con.maxiter:
                break
        else:
            converged = True
        if not converged:
            raise ConvergenceError(f"{self.name}: Fisher scoring did not converge in {con.maxiter} iterations")
        warnings: list[str] = []
        if self.kind in ("ML", "REML") and np.all(v > 0):
            if self.loglik(0.0, y, v, X) - self.loglik(tau2, y, v, X) > con.tol and tau2 > con.threshold:
                warnings.append("likelihood higher at τ² = 0 (local maximum); τ² set to 0 as metafor does")
                tau2 = 0.0
        tau2 = max(0.0, tau2)
        proj = WeightedProjection(X, 1 / (v + tau2))
        if self.kind == "REML":
            se = np.sqrt(2 / proj.tr_ppd())
        elif self.kind == "ML":
            se = np.sqrt(2 / np.sum(proj.w**2))
        else:
            se = _pm_se(v, k, p, tau2)
        return Tau2Fit(float(tau2), float(se), True, it, warnings)


class EmpiricalBayes(_Likelihood):
    """EB (Morris): τ² += (k/(k−p)·Q(τ²) − k)/Σw; its fixed point is the PM root."""

    name = "EB"
    kind = "EB"


class RestrictedML(_Likelihood):
    name = "REML"
    kind = "REML"


class MaximumLikelihood(_Likelihood):
    name = "ML"
    kind = "ML"


ESTIMATORS: dict[str, type[Tau2Estimator]] = {
    "EE": EqualEffects,
    "FE": EqualEffects,
    "CE": EqualEffects,
    "DL": DerSimonianLaird,
    "HE": Hedges,
    "HS": HunterSchmidt,
    "HSK": HunterSchmidtK,
    "SJ": SidikJonkman,
    "PM": PauleMandel,
    "EB": EmpiricalBayes,
    "ML": MaximumLikelihood,
    "REML": RestrictedML,
}


def get_estimator(method: str, control: Control | None = None) -> Tau2Estimator:
    try:
        return ESTIMATORS[method.upper()](control)
    except KeyError:
        raise ValueError(f"unknown method {method!r}; known: EE, DL, HE, HS, HSk, SJ, PM, EB, ML, REML") from None
