"""Small-study effects: Egger-type regression test and trim-and-fill (metafor 3.8-1 definitions)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from ._projection import WeightedProjection
from .rma import RMAResult, alpha_of, rma


@dataclass
class RegtestResult:
    model: str
    predictor: str
    zval: float
    pval: float
    df: int | None
    limit_estimate: float | None
    limit_ci_lb: float | None
    limit_ci_ub: float | None
    fit: object = None

    @property
    def uses_t(self) -> bool:
        return self.df is not None


def _predictor(v, predictor, ni=None):
    if predictor == "sei":
        return np.sqrt(v)
    if predictor == "vi":
        return v
    if ni is None:
        raise ValueError(f"predictor {predictor!r} needs sample sizes")
    ni = np.asarray(ni, dtype=float)
    return {"ni": ni, "ninv": 1 / ni, "sqrtni": np.sqrt(ni), "sqrtninv": 1 / np.sqrt(ni)}[predictor]


def regtest(res: RMAResult, model: str = "rma", predictor: str = "sei", ni=None) -> RegtestResult:
    """Test of funnel asymmetry: the model refitted with ``predictor`` as moderator.

    ``model="rma"`` (metafor's default) keeps the fitted model's τ² method and test; ``model="lm"`` is
    classical Egger: weighted least squares (weights 1/vi) with a multiplicative dispersion and t(k−2).
    """
    if not res.int_only:
        raise ValueError("regtest here supports intercept-only models")
    y, v = res.yi, res.vi
    x = _predictor(v, predictor, ni)
    alpha = alpha_of(res.level)
    limit = predictor in ("sei", "vi", "ninv", "sqrtninv")
    if model == "rma":
        fit = rma(y, v, method=res.method, test=res.test, mods=x, level=res.level, compute_r2=False,
                  control=res.control)
        zval, pval = float(fit.zval[1]), float(fit.pval[1])
        df = fit.df
        est = float(fit.beta[0]) if limit else None
        lb = float(fit.ci_lb[0]) if limit else None
        ub = float(fit.ci_ub[0]) if limit else None
    elif model == "lm":
        k = len(y)
        X = np.column_stack([np.ones(k), x])
        if k <= 2:
            raise ValueError("classical Egger test needs k >= 3")
        proj = WeightedProjection(X, 1 / v)
        beta, resid, rss = proj.fit(y)
        df = k - 2
        sigma2 = rss / df
        se = np.sqrt(np.diag(proj.Ainv) * sigma2)
        tvals = beta / se
        zval = float(tvals[1])
        pval = float(2 * stats.t.sf(abs(zval), df))
        crit = stats.t.isf(alpha / 2, df)
        est = float(beta[0]) if limit else None
        lb = float(beta[0] - crit * se[0]) if limit else None
        ub = float(beta[0] + crit * se[0]) if limit else None
        fit = None
    else:
        raise ValueError("regtest model must be 'rma' or 'lm'")
    return RegtestResult(model, predictor, zval, pval, df, est, lb, ub, fit)


@dataclass
class TrimfillResult:
    k0: int
    se_k0: float
    side: str
    fit: RMAResult
    fill_yi: np.ndarray
    fill_vi: np.ndarray
    iterations: int = 0
    warnings: list[str] = field(default_factory=list)


def trimfill(res: RMAResult, side: str | None = None, estimator: str = "L0", maxiter: int = 100) -> TrimfillResult:
    """Duval & Tweedie trim-and-fill as metafor: side from the sign of the yi ~ √vi slope, iterate
    k0 on the trimmed set, mirror the k0 most extreme studies about the trimmed estimate, refit
    the augmented data with a z-test (when k0 = 0 the original fit is returned unchanged)."""
    if not res.int_only:
        raise ValueError("trimfill needs an intercept-only model")
    if res.k == 1:
        raise ValueError("trimfill needs k > 1")
    estimator = estimator.upper()
    if estimator not in ("L0", "R0", "Q0"):
        raise ValueError("estimator must be L0, R0 or Q0")
    yi, vi = res.yi.copy(), res.vi.copy()
    method = res.method
    if side is None or side == "auto":
        slope = rma(yi, vi, method=method, mods=np.sqrt(vi), compute_r2=False, control=res.control).beta[1]
        side = "right" if slope < 0 else "left"
    elif side not in ("left", "right"):
        raise ValueError("side must be 'left', 'right' or None/'auto'")
    y = -yi if side == "right" else yi
    ix = np.argsort(y, kind="stable")
    y, v = y[ix], vi[ix]
    k = len(y)
    k0_prev, k0, it = -1, 0, 0
    se_k0 = float("nan")
    beta = float("nan")
    while k0 != k0_prev:
        k0_prev = k0
        it += 1
        if it > maxiter:
            raise RuntimeError("trim and fill did not converge")
        trimmed = rma(y[: k - k0], v[: k - k0], method=method, compute_r2=False, control=res.control)
        beta = float(trimmed.beta)
        yc = y - beta
        ranks = stats.rankdata(np.abs(yc), method="ordinal")
        signed = np.sign(yc) * ranks
        if estimator == "R0":
            neg = signed[signed < 0]
            k0f = (k - (np.max(-neg) if len(neg) else 0)) - 1
            se = np.sqrt(2 * max(0, k0f) + 2)
        else:
            Sr = float(np.sum(signed[signed > 0]))
            if estimator == "L0":
                k0f = (4 * Sr - k * (k + 1)) / (2 * k - 1)
            else:
                k0f = k - 0.5 - np.sqrt(2 * k**2 - 4 * Sr + 0.25)
            var_sr = (k * (k + 1) * (2 * k + 1) + 10 * k0f**3 + 27 * k0f**2 + 17 * k0f - 18 * k * k0f**2
                      - 18 * k * k0f + 6 * k**2 * k0f) / 24
            root = np.sqrt(var_sr) if var_sr >= 0 else float("nan")  # negative variance: undefined, as in R
            if estimator == "L0":
                se = 4 * root / (2 * k - 1)
            else:
                den = (k - 0.5) ** 2 - k0f * (2 * k - k0f - 1)
                se = 2 * root / np.sqrt(den) if den > 0 else float("nan")
        k0 = max(0, int(_r_round(k0f)))
        se_k0 = float(se) if np.isnan(se) else max(0.0, float(se))  # R: max(0, NaN) is NaN
    if k0 > 0:
        # mirror about the trimmed estimate (2β − y), then undo the flip for side "right"
        if side == "right":
            fill_y = -(2 * beta - y[k - k0:])
        else:
            fill_y = 2 * beta - y[k - k0:]
        fill_v = v[k - k0:]
        fit = rma(np.concatenate([res.yi, fill_y]), np.concatenate([res.vi, fill_v]), method=method, test="z",
                  level=res.level, pi_type=res.pi_type, control=res.control)
    else:
        fill_y = np.array([])
        fill_v = np.array([])
        fit = res
    return TrimfillResult(k0, se_k0, side, fit, fill_y, fill_v, it)


def _r_round(x: float) -> float:
    """R's round(): half to even, like numpy."""
    return float(np.round(x))
