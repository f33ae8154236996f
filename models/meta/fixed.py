"""Mantel–Haenszel and Peto pooling from raw 2×2 counts (``metafor::rma.mh`` / ``rma.peto`` 3.8-1).

The pooled estimate uses the raw counts of every complete table (double zeros kept unless
``drop00[1]``); Q, I² and H² come from the ½-corrected per-study estimates with double zeros dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from .effect_sizes import add_to_cells, escalc, peto_terms, two_by_two
from .rma import alpha_of


@dataclass
class FixedResult:
    measure: str
    method: str
    beta: float
    se: float
    zval: float
    pval: float
    ci_lb: float
    ci_ub: float
    QE: float
    QEp: float
    I2: float
    H2: float
    k: int
    k_yi: int
    yi: np.ndarray
    vi: np.ndarray
    CMH: float | None = None
    CMHp: float | None = None
    TA: float | None = None
    TAp: float | None = None
    TA_df: int | None = None
    BD: float | None = None
    BDp: float | None = None
    warnings: list[str] = field(default_factory=list)
    tables: tuple | None = None
    options: dict = field(default_factory=dict)
    weights: np.ndarray | None = None  # percent, per complete table (metafor's weights.rma.mh / .peto)

    def refit(self, idx) -> "FixedResult":
        """The same pooling on a subset of the complete tables (positions into ``tables``)."""
        idx = np.asarray(idx)
        a, b, c, d = (x[idx] for x in self.tables)
        if self.method == "MH":
            return rma_mh(self.measure, ai=a, bi=b, ci=c, di=d, **self.options)
        return rma_peto(ai=a, bi=b, ci=c, di=d, **self.options)

    @property
    def QE_df(self) -> int:
        return max(self.k_yi - 1, 0)

    tau2 = 0.0


def _pair(x, second):
    if isinstance(x, (list, tuple)):
        if len(x) != 2:
            raise ValueError("add/to/drop00 take one or two values")
        return x[0], x[1]
    return x, second


def _q_stats(yi, vi, beta):
    ok = np.isfinite(yi) & np.isfinite(vi)
    y, v = yi[ok], vi[ok]
    k_yi = int(ok.sum())
    if k_yi > 1:
        QE = max(0.0, float(np.sum((y - beta) ** 2 / v)))
        df = k_yi - 1
        return QE, float(stats.chi2.sf(QE, df)), (0.0 if QE <= 0 else max(0.0, 100 * (QE - df) / QE)), QE / df, k_yi
    return 0.0, 1.0, 0.0, 1.0, k_yi


def _prepare(measure, ai, bi, ci, di, n1i, n2i, add, to, drop00):
    add1, add2 = _pair(add, 0.0)
    to1, to2 = _pair(to, "none")
    d1, d2 = _pair(drop00, False)
    a, b, c, d = two_by_two(ai, bi, ci, di, n1i, n2i)
    es = escalc(measure, ai=a, bi=b, ci=c, di=d, add=add1, to=to1, drop00=bool(d1))
    a, b, c, d = (np.array(x, dtype=float) for x in (a, b, c, d))
    if d2:
        id00 = ((a == 0) & (c == 0)) | ((b == 0) & (d == 0))
        for x in (a, b, c, d):
            x[id00] = np.nan
    keep = np.isfinite(a) & np.isfinite(b) & np.isfinite(c) & np.isfinite(d)
    a, b, c, d = a[keep], b[keep], c[keep], d[keep]
    raw = tuple(np.array(x, dtype=float)[keep] for x in two_by_two(ai, bi, ci, di, n1i, n2i))
    if len(a) < 1:
        raise ValueError("no complete 2x2 tables (k = 0)")
    a, b, c, d = add_to_cells(a, b, c, d, add2, to2, False)
    return es, a, b, c, d, raw


def rma_mh(measure, ai=None, bi=None, ci=None, di=None, n1i=None, n2i=None, add=(0.5, 0.0),
           to=("only0", "none"), drop00=(True, False), correct: bool = True, level: float = 95) -> FixedResult:
    """Mantel–Haenszel OR (RBG variance, CMH and Tarone tests), RR (GR) or RD (Sato/GR)."""
    measure = measure.upper()
    if measure not in ("OR", "RR", "RD"):
        raise ValueError("rma_mh supports measure OR, RR or RD")
    es, a, b, c, d, raw = _prepare(measure, ai, bi, ci, di, n1i, n2i, add, to, drop00)
    options = dict(add=add, to=to, drop00=drop00, correct=correct, level=level)
    n1, n2 = a + b, c + d
    N = n1 + n2
    crit = stats.norm.isf(alpha_of(level) / 2)
    out = dict(CMH=None, CMHp=None, TA=None, TAp=None, TA_df=None, BD=None, BDp=None)
    warnings: list[str] = []
    nan = float("nan")
    if measure == "OR":
        P = a / N + d / N
        Q = b / N + c / N
        R_i = (a / N) * d
        S_i = (b / N) * c
        R, S = R_i.sum(), S_i.sum()
        if R == 0 or S == 0:
            beta = se = nan
            warnings.append("MH odds ratio undefined (no events in one margin)")
            beta_exp = nan
        else:
            beta_exp = R / S
            beta = float(np.log(beta_exp))
            se = float(np.sqrt(0.5 * (np.sum(P * R_i) / R**2 + np.sum(P * S_i + Q * R_i) / (R * S) + np.sum(Q * S_i) / S**2)))
        xt, yt = a + c, b + d
        if xt.sum() == 0 or yt.sum() == 0:
            pass
        else:
            num = (abs(np.sum(a - (n1 / N) * xt)) - (0.5 if correct else 0.0)) ** 2
            cmh = float(num / np.sum((n1 / N) * (n2 / N) * (xt * (yt / (N - 1)))))
            out["CMH"], out["CMHp"] = cmh, float(stats.chi2.sf(cmh, 1))
        if np.isfinite(beta):
            if beta_exp == 1:
                N11 = (n1 / N) * xt
            else:
                A = beta_exp * (n1 + xt) + (n2 - xt)
                B = np.sqrt(A**2 - 4 * n1 * xt * beta_exp * (beta_exp - 1))
                N11 = (A - B) / (2 * (beta_exp - 1))
            pos = (N11 > 0) & (xt > 0) & (yt > 0)
            k_pos = int(pos.sum())
            N11 = N11[pos]
            N12 = n1[pos] - N11
            N21 = xt[pos] - N11
            N22 = N11 - n1[pos] - xt[pos] + N[pos]
            inv = 1 / N11 + 1 / N12 + 1 / N21 + 1 / N22
            BD = max(0.0, float(np.sum((a[pos] - N11) ** 2 / inv ** -1)))
            TA = max(0.0, BD - float(np.sum(a[pos] - N11) ** 2 / np.sum(inv ** -1)))
            out["BD"], out["TA"], out["TA_df"] = BD, TA, k_pos - 1
            if k_pos > 1:
                out["BDp"], out["TAp"] = float(stats.chi2.sf(BD, k_pos - 1)), float(stats.chi2.sf(TA, k_pos - 1))
    elif measure == "RR":
        R = np.sum(a * (n2 / N))
        S = np.sum(c * (n1 / N))
        if a.sum() == 0 or c.sum() == 0:
            beta = se = nan
            warnings.append("MH risk ratio undefined (no events in one group)")
        else:
            beta = float(np.log(R / S))
            se = float(np.sqrt(np.sum((n1 / N) * (n2 / N) * (a + c) - (a / N) * c) / (R * S)))
    else:
        denom = np.sum(n1 * (n2 / N))
        beta = float(np.sum(a * (n2 / N) - c * (n1 / N)) / denom)
        se = float(np.sqrt((beta * np.sum(c * (n1 / N) ** 2 - a * (n2 / N) ** 2 + (n1 / N) * (n2 / N) * (n2 - n1) / 2)
                            + np.sum(a * (n2 - c) / N + c * (n1 - a) / N) / 2) / denom**2))
    if measure == "OR":
        w = b * c / N
    elif measure == "RR":
        w = c * n1 / N
    else:
        w = n1 * n2 / N
    weights = 100 * w / w.sum() if w.sum() > 0 else None
    zval = beta / se if np.isfinite(beta) and se > 0 else nan
    pval = float(2 * stats.norm.sf(abs(zval))) if np.isfinite(zval) else nan
    QE, QEp, I2, H2, k_yi = _q_stats(es.yi, es.vi, beta)
    return FixedResult(measure, "MH", beta, se, zval, pval, beta - crit * se, beta + crit * se, QE, QEp, I2, H2,
                       len(a), k_yi, es.yi, es.vi, warnings=warnings, tables=raw, options=options,
                       weights=weights, **out)


def rma_peto(ai=None, bi=None, ci=None, di=None, n1i=None, n2i=None, add=(0.5, 0.0), to=("only0", "none"),
             drop00=(True, False), level: float = 95) -> FixedResult:
    """Peto's one-step odds ratio: Σ(O−E)/ΣV, se 1/√ΣV; Q over tables with V > 0."""
    es, a, b, c, d, raw = _prepare("PETO", ai, bi, ci, di, n1i, n2i, add, to, drop00)
    options = dict(add=add, to=to, drop00=drop00, level=level)
    o_e, V = peto_terms(a, b, c, d)
    sv = float(np.nansum(V))
    if sv == 0:
        raise ValueError("one of the two outcomes never occurred in any table; Peto's method cannot be used")
    beta = float(np.sum(o_e) / sv)
    se = float(np.sqrt(1 / sv))
    zval = beta / se
    crit = stats.norm.isf(alpha_of(level) / 2)
    pos = V > 0
    k_pos = int(pos.sum())
    QE = max(0.0, float(np.sum(o_e[pos] ** 2 / V[pos]) - np.sum(o_e) ** 2 / np.sum(V[pos])))
    k_yi = int(np.sum(np.isfinite(es.yi) & np.isfinite(es.vi)))
    if k_pos > 1:
        df = k_yi - 1
        QEp = float(stats.chi2.sf(QE, df))
        I2 = 0.0 if QE <= 0 else max(0.0, 100 * (QE - df) / QE)
        H2 = QE / df
    else:
        QEp, I2, H2 = 1.0, 0.0, 1.0
    return FixedResult("PETO", "Peto", beta, se, zval, float(2 * stats.norm.sf(abs(zval))), beta - crit * se,
                       beta + crit * se, QE, QEp, I2, H2, len(a), k_yi, es.yi, es.vi, tables=raw, options=options,
                       weights=100 * V / sv)
