"""Random/equal-effects models and meta-regression, as ``metafor::rma.uni`` (3.8-1) defines them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from ._projection import WeightedProjection
from .estimators import ConvergenceError, Control, Tau2Fit, get_estimator

EE_METHODS = ("EE", "FE", "CE")
T_TESTS = ("knha", "t", "adhoc")


def alpha_of(level: float) -> float:
    """metafor's .level(): 95 -> 0.05, 0.95 -> 0.05."""
    level = float(level)
    return (100 - level) / 100 if level > 1 else (1 - level if level > 0.5 else level)


def _scalar(a):
    a = np.asarray(a, dtype=float)
    return float(a[0]) if a.size == 1 else a


@dataclass
class Prediction:
    pred: np.ndarray
    se: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    pi_lb: np.ndarray | None
    pi_ub: np.ndarray | None

    def scalar(self) -> "Prediction":
        f = lambda a: None if a is None else _scalar(a)  # noqa: E731
        return Prediction(f(self.pred), f(self.se), f(self.ci_lb), f(self.ci_ub), f(self.pi_lb), f(self.pi_ub))


@dataclass
class RMAResult:
    """Fitted model; scalars when intercept-only, arrays (one per coefficient) otherwise."""

    beta: float | np.ndarray
    se: float | np.ndarray
    zval: float | np.ndarray
    pval: float | np.ndarray
    ci_lb: float | np.ndarray
    ci_ub: float | np.ndarray
    vb: np.ndarray
    tau2: float
    tau2_se: float
    tau: float
    I2: float
    H2: float
    QE: float
    QEp: float
    QM: float
    QMp: float
    QM_df: tuple
    k: int
    p: int
    df: float | None
    method: str
    test: str
    level: float
    weights: np.ndarray
    converged: bool
    coef_names: list[str]
    yi: np.ndarray
    vi: np.ndarray
    X: np.ndarray
    rows: np.ndarray
    vt: float
    pi_type: str = "default"
    R2: float | None = None
    warnings: list[str] = field(default_factory=list)
    fallback: str | None = None
    pi_lb: float | None = None
    pi_ub: float | None = None
    control: Control | None = None

    def refit(self, idx) -> "RMAResult":
        """The same model on a subset of the studies used (positions into ``yi``)."""
        idx = np.asarray(idx)
        mods = None if self.int_only else self.X[idx, 1:]
        return rma(self.yi[idx], self.vi[idx], method=self.method, test=self.test, mods=mods, level=self.level,
                   pi_type=self.pi_type, compute_r2=False, control=self.control)

    @property
    def int_only(self) -> bool:
        return self.p == 1 and self.coef_names[0] == "intrcpt"

    @property
    def QE_df(self) -> int:
        return self.k - self.p

    @property
    def is_ee(self) -> bool:
        return self.method in EE_METHODS

    @property
    def parms(self) -> int:
        return self.p + (0 if self.is_ee else 1)

    def predict(self, newmods=None, transf=None, pi_type: str | None = None) -> Prediction:
        """Predicted effects (with CI and PI) at ``newmods`` (rows of moderator values, no intercept)."""
        pi_type = pi_type or self.pi_type
        if newmods is None:
            if not self.int_only:
                Xn = self.X
            else:
                Xn = np.ones((1, 1))
        else:
            nm = np.asarray(newmods, dtype=float)
            if self.p - 1 == 1 and nm.ndim == 1:
                nm = nm.reshape(-1, 1)
            nm = np.atleast_2d(nm)
            Xn = np.column_stack([np.ones(nm.shape[0]), nm])
            if Xn.shape[1] != self.p:
                raise ValueError(f"newmods has {Xn.shape[1] - 1} columns; the model has {self.p - 1} moderators")
        beta = np.atleast_1d(self.beta)
        pred = Xn @ beta
        vpred = np.einsum("ij,jk,ik->i", Xn, self.vb, Xn)
        se = np.sqrt(np.maximum(vpred, 0))
        alpha = alpha_of(self.level)
        ddf = self.k - self.p
        if self.test in T_TESTS:
            crit = stats.t.isf(alpha / 2, ddf) if ddf > 0 else np.nan
        else:
            crit = stats.norm.isf(alpha / 2)
        ci_lb, ci_ub = pred - crit * se, pred + crit * se
        pi_crit = crit
        if pi_type in ("riley", "t"):
            pi_ddf = ddf - self.parms + self.p if pi_type == "riley" else ddf
            pi_ddf = max(pi_ddf, 1)
            pi_crit = stats.t.isf(alpha / 2, pi_ddf)
        elif pi_type == "simple":
            pi_crit = stats.norm.isf(alpha / 2)
            vpred = np.zeros_like(vpred)
        pi_sd = np.sqrt(vpred + self.tau2)
        pi_lb, pi_ub = pred - pi_crit * pi_sd, pred + pi_crit * pi_sd
        if transf is not None:
            pred, ci_lb, ci_ub, pi_lb, pi_ub = (transf(a) for a in (pred, ci_lb, ci_ub, pi_lb, pi_ub))
            se = np.full_like(se, np.nan)
        return Prediction(pred, se, ci_lb, ci_ub, pi_lb, pi_ub)


def _design(mods, k: int, intercept: bool = True):
    if mods is None:
        return np.ones((k, 1)), ["intrcpt"]
    M = np.asarray(mods, dtype=float)
    if M.ndim == 1:
        M = M.reshape(-1, 1)
    if M.shape[0] != k:
        raise ValueError(f"mods has {M.shape[0]} rows for {k} studies")
    names = [f"X{j + 1}" for j in range(M.shape[1])]
    if intercept:
        return np.column_stack([np.ones(k), M]), ["intrcpt"] + names
    return M, names


def rma(
    yi,
    vi,
    method: str = "REML",
    test: str = "z",
    mods=None,
    level: float = 95,
    pi_type: str = "default",
    coef_names: list[str] | None = None,
    intercept: bool = True,
    fallback: str | None = "DL",
    compute_r2: bool = True,
    control=None,
) -> RMAResult:
    """Fit ``rma(yi, vi, mods, method, test)``; rows with missing yi/vi/mods are dropped.

    ``mods`` is an n×m array of moderators (no intercept column; one is added). When an iterative
    estimator cannot converge the result says so (``converged=False``) and τ² comes from
    ``fallback`` (metafor's ``method=c("REML","DL")`` behaviour); with ``fallback=None`` it raises.
    ``control`` (a :class:`Control`, a dict of its fields, or ``"converged"``) sets the stopping
    rules of the iterative estimators; the default is metafor's.
    """
    method = {"HSK": "HSk"}.get(str(method).upper(), str(method).upper())
    control = Control.of(control, yi)
    if test not in ("z", "knha", "t", "adhoc"):
        raise ValueError(f"unknown test {test!r} (z, knha, t, adhoc)")
    y_all = np.asarray(yi, dtype=float).reshape(-1)
    v_all = np.asarray(vi, dtype=float).reshape(-1)
    if len(y_all) != len(v_all):
        raise ValueError("yi and vi differ in length")
    X_all, names = _design(mods, len(y_all), intercept)
    if coef_names is not None:
        names = list(coef_names)
    ok = np.isfinite(y_all) & np.isfinite(v_all) & np.all(np.isfinite(X_all), axis=1)
    rows = np.flatnonzero(ok)
    y, v, X = y_all[ok], v_all[ok], X_all[ok]
    k = len(y)
    if k < 1:
        raise ValueError("no studies with a defined effect size (k = 0)")
    p = X.shape[1]
    if np.linalg.matrix_rank(X) < p:
        raise ValueError("model matrix not of full rank (a moderator is constant or redundant)")
    is_ee = method in EE_METHODS
    int_only = p == 1 and names[0] == "intrcpt"
    warnings: list[str] = []
    if k == 1 and test != "z":
        warnings.append('test set to "z" since k = 1')
        test = "z"
    if not (int_only and k == 1):
        if (p > k) if is_ee else (p + 1 > k):
            raise ValueError(f"too few studies (k = {k}) for {p} coefficients{'' if is_ee else ' plus tau2'}")
    if np.any(v <= 0):
        # metafor sets negative ones to 0 and then stops on the infinite inverse-variance weight
        raise ValueError(f"non-positive sampling variances in {int(np.sum(v <= 0))} of {k} studies: inverse-variance "
                         "weights are undefined; check the data")

    converged, used_fallback = True, None
    if k == 1:
        fit = Tau2Fit(0.0, float("nan"))
    else:
        estimator = get_estimator(method, control)
        try:
            fit = estimator.estimate(y, v, X)
        except ConvergenceError as exc:
            if fallback is None:
                raise
            converged, used_fallback = False, fallback
            warnings.append(f"{exc}; falling back to {fallback}")
            fit = get_estimator(fallback, control).estimate(y, v, X)
        warnings.extend(fit.warnings)
    tau2 = 0.0 if is_ee else fit.tau2

    w = 1 / (v + tau2)
    proj = WeightedProjection(X, w)
    beta, resid, rss_re = proj.fit(y)
    vb = proj.Ainv.copy()
    if test in ("knha", "adhoc"):
        s2w = 0.0 if rss_re <= np.finfo(float).eps else rss_re / (k - p)
        if s2w == 0.0:
            warnings.append("Knapp-Hartung scale is 0 (effects fit exactly): se = 0, as in metafor")
        if test == "adhoc":
            s2w = max(s2w, 1.0)
        vb = vb * s2w
    se = np.sqrt(np.diag(vb))
    with np.errstate(divide="ignore", invalid="ignore"):
        zval = beta / se
    alpha = alpha_of(level)
    m = p - 1 if (names[0] == "intrcpt" and p > 1) else p
    btt = slice(1, p) if (names[0] == "intrcpt" and p > 1) else slice(0, p)
    b_t = beta[btt]
    try:
        QM = float(b_t @ np.linalg.solve(vb[btt, btt], b_t))
    except np.linalg.LinAlgError:
        QM = float("nan")
    if test in T_TESTS:
        ddf = k - p
        QM = QM / m
        QM_df = (m, ddf)
        QMp = float(stats.f.sf(QM, m, ddf)) if ddf > 0 else float("nan")
        pval = 2 * stats.t.sf(np.abs(zval), ddf) if ddf > 0 else np.full(p, np.nan)
        crit = stats.t.isf(alpha / 2, ddf) if ddf > 0 else np.nan
        df = ddf
    else:
        QM_df = (m,)
        QMp = float(stats.chi2.sf(QM, m))
        pval = 2 * stats.norm.sf(np.abs(zval))
        crit = stats.norm.isf(alpha / 2)
        df = None
    ci_lb, ci_ub = beta - crit * se, beta + crit * se

    # heterogeneity from FE weights
    if np.all(v > 0):
        if k > p:
            fe = WeightedProjection(X, 1 / v)
            QE = max(0.0, fe.fit(y)[2])
            QEp = float(stats.chi2.sf(QE, k - p))
            vt = (k - p) / fe.tr()
            if is_ee:
                I2 = 0.0 if QE <= 0 else max(0.0, 100 * (QE - (k - p)) / QE)
                H2 = QE / (k - p)
            else:
                I2 = 100 * tau2 / (vt + tau2)
                H2 = tau2 / vt + 1
        else:
            QE, QEp, I2, H2, vt = 0.0, 1.0, 0.0, 1.0, 0.0
    else:
        QE = QEp = I2 = H2 = vt = float("nan")

    scal = _scalar if int_only else (lambda a: np.asarray(a, dtype=float))
    res = RMAResult(
        beta=scal(beta), se=scal(se), zval=scal(zval), pval=scal(pval), ci_lb=scal(ci_lb), ci_ub=scal(ci_ub),
        vb=vb, tau2=float(tau2), tau2_se=float("nan") if is_ee else float(fit.se_tau2),
        tau=float(np.sqrt(tau2)), I2=float(I2), H2=float(H2), QE=float(QE), QEp=float(QEp),
        QM=QM, QMp=QMp, QM_df=QM_df, k=k, p=p, df=df, method=method, test=test, level=level,
        weights=100 * w / np.sum(w), converged=converged, coef_names=names, yi=y, vi=v, X=X, rows=rows,
        vt=float(vt), pi_type=pi_type, warnings=warnings, fallback=used_fallback, control=control,
    )
    if int_only:
        pr = res.predict()
        res.pi_lb, res.pi_ub = float(pr.pi_lb[0]), float(pr.pi_ub[0])
    elif compute_r2 and names[0] == "intrcpt":
        res.R2 = _r2(res, y, v, X, method, test, control)
    return res


def _r2(res: RMAResult, y, v, X, method, test, control) -> float | None:
    """Pseudo-R² as metafor: proportional reduction of τ² against the intercept-only fit."""
    k, p = X.shape
    if method in EE_METHODS:
        if np.var(y) == 0:
            return 0.0
        w = 1 / v
        proj = WeightedProjection(X, w)
        rss = proj.fit(y)[2]
        ybar = np.sum(w * y) / np.sum(w)
        tss = float(np.sum(w * (y - ybar) ** 2))
        r2 = 1 - rss / tss
        adj = 1 - (1 - r2) * (k - 1) / (k - p)
        return max(0.0, 100 * adj)
    try:
        base = rma(y, v, method=method, test=test, compute_r2=False, control=control)
    except Exception:
        return None
    if base.tau2 == 0:
        return 0.0
    return max(0.0, 100 * (base.tau2 - res.tau2) / base.tau2)


__all__ = ["rma", "RMAResult", "Prediction", "alpha_of", "Control"]
