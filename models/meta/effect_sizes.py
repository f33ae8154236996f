"""Per-study effect sizes, as metafor 3.8-1 ``escalc`` defines them.

Undefined values (missing counts, log of zero with ``add=0``, n <= 3 for ZCOR) come back as NaN,
which every model function treats as "drop this study", exactly like metafor's NA.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import gammaln

BINARY_MEASURES = ("OR", "RR", "RD", "PETO")
CONTINUOUS_MEASURES = ("SMD", "MD")
MEASURES = BINARY_MEASURES + CONTINUOUS_MEASURES + ("ZCOR", "GEN")


@dataclass
class EffectSizes:
    """Effect sizes ``yi`` and sampling variances ``vi`` (NaN where undefined)."""

    yi: np.ndarray
    vi: np.ndarray
    measure: str
    ni: np.ndarray | None = field(default=None)

    def __len__(self) -> int:
        return len(self.yi)

    @property
    def valid(self) -> np.ndarray:
        """Rows a model would use (metafor drops rows whose yi or vi is NA)."""
        return np.isfinite(self.yi) & np.isfinite(self.vi)


def _arr(x) -> np.ndarray | None:
    if x is None:
        return None
    return np.asarray(x, dtype=float).reshape(-1)


def hedges_correction(m: np.ndarray) -> np.ndarray:
    """Exact small-sample factor J(m) = Γ(m/2) / (√(m/2) Γ((m-1)/2)); NaN for m <= 1."""
    m = np.asarray(m, dtype=float)
    out = np.full(m.shape, np.nan)
    ok = m > 1
    mm = m[ok]
    out[ok] = np.exp(gammaln(mm / 2) - np.log(np.sqrt(mm / 2)) - gammaln((mm - 1) / 2))
    return out


def two_by_two(ai=None, bi=None, ci=None, di=None, n1i=None, n2i=None):
    """Complete the four cells from events and group sizes; validate counts."""
    ai, bi, ci, di, n1i, n2i = map(_arr, (ai, bi, ci, di, n1i, n2i))
    if ai is None or ci is None:
        raise ValueError("binary measures need ai and ci (events in each group)")
    if bi is None:
        if n1i is None:
            raise ValueError("binary measures need bi or n1i")
        bi = n1i - ai
    if di is None:
        if n2i is None:
            raise ValueError("binary measures need di or n2i")
        di = n2i - ci
    if not (len(ai) == len(bi) == len(ci) == len(di)):
        raise ValueError("supplied data vectors are not all of the same length")
    with np.errstate(invalid="ignore"):
        if np.any(np.concatenate([ai, bi, ci, di]) < 0):
            raise ValueError("one or more counts are negative (events larger than group size?)")
    return ai, bi, ci, di


def add_to_cells(ai, bi, ci, di, add: float, to: str, drop00: bool):
    """metafor's zero-cell handling: drop00 first, then add ``add`` per ``to``."""
    ai, bi, ci, di = (np.array(x, dtype=float) for x in (ai, bi, ci, di))
    if to not in ("all", "only0", "if0all", "none"):
        raise ValueError(f"unknown 'to' value {to!r} (all, only0, if0all, none)")
    if drop00:
        with np.errstate(invalid="ignore"):
            id00 = ((ai == 0) & (ci == 0)) | ((bi == 0) & (di == 0))
        for x in (ai, bi, ci, di):
            x[id00] = np.nan
    if to == "all":
        ai, bi, ci, di = ai + add, bi + add, ci + add, di + add
    elif to in ("only0", "if0all"):
        with np.errstate(invalid="ignore"):
            id0 = (ai == 0) | (ci == 0) | (bi == 0) | (di == 0)
        if to == "if0all":
            id0 = np.full(ai.shape, bool(np.any(id0)))
        for x in (ai, bi, ci, di):
            x[id0] += add
    return ai, bi, ci, di


def peto_terms(ai, bi, ci, di):
    """Observed minus expected events and hypergeometric variance per table."""
    n1i, n2i = ai + bi, ci + di
    ni = n1i + n2i
    xt, yt = ai + ci, bi + di
    with np.errstate(divide="ignore", invalid="ignore"):
        ei = xt * n1i / ni
        vi = xt * yt * (n1i / ni) * (n2i / ni) / (ni - 1)
    return ai - ei, vi


def escalc(
    measure: str,
    ai=None,
    bi=None,
    ci=None,
    di=None,
    n1i=None,
    n2i=None,
    m1i=None,
    sd1i=None,
    m2i=None,
    sd2i=None,
    ri=None,
    ni=None,
    yi=None,
    vi=None,
    add: float = 0.5,
    to: str = "only0",
    drop00: bool = False,
    vtype: str = "LS",
) -> EffectSizes:
    """Compute yi/vi like ``metafor::escalc`` (ratio measures on the log scale)."""
    measure = str(measure).upper()
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; known: {', '.join(MEASURES)}")
    with np.errstate(divide="ignore", invalid="ignore"):
        if measure in BINARY_MEASURES:
            a, b, c, d = two_by_two(ai, bi, ci, di, n1i, n2i)
            n_out = a + b + c + d  # metafor's ni: unadjusted total
            a, b, c, d = add_to_cells(a, b, c, d, add, to, drop00)
            n1, n2 = a + b, c + d
            p1, p2 = a / n1, c / n2
            if measure == "OR":
                y = np.log(p1 / (1 - p1)) - np.log(p2 / (1 - p2))
                v = 1 / a + 1 / b + 1 / c + 1 / d
            elif measure == "RR":
                y = np.log(p1) - np.log(p2)
                v = 1 / a - 1 / n1 + 1 / c - 1 / n2
            elif measure == "RD":
                y = p1 - p2
                if vtype == "UB":
                    v = p1 * (1 - p1) / (n1 - 1) + p2 * (1 - p2) / (n2 - 1)
                elif vtype == "LS":
                    v = p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
                else:
                    raise ValueError("for RD, vtype must be 'LS' or 'UB'")
            else:  # PETO
                o_minus_e, var = peto_terms(a, b, c, d)
                y = o_minus_e / var
                v = 1 / var
        elif measure in CONTINUOUS_MEASURES:
            m1, s1, n1, m2, s2, n2 = map(_arr, (m1i, sd1i, n1i, m2i, sd2i, n2i))
            if any(x is None for x in (m1, s1, n1, m2, s2, n2)):
                raise ValueError(f"{measure} needs m1i, sd1i, n1i, m2i, sd2i, n2i")
            if np.any(np.concatenate([s1, s2]) < 0):
                raise ValueError("one or more standard deviations are negative")
            if np.any(np.concatenate([n1, n2]) <= 0):
                raise ValueError("one or more group sizes are <= 0")
            m = n1 + n2 - 2
            sdp = np.sqrt(((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / m)
            if measure == "MD":
                y = m1 - m2
                if vtype in ("LS", "UB"):
                    v = s1**2 / n1 + s2**2 / n2
                elif vtype == "HO":
                    v = sdp**2 * (1 / n1 + 1 / n2)
                else:
                    raise ValueError("for MD, vtype must be 'LS', 'UB' or 'HO'")
            else:
                j = hedges_correction(m)
                y = j * (m1 - m2) / sdp
                if vtype == "LS":
                    v = 1 / n1 + 1 / n2 + y**2 / (2 * (n1 + n2))
                elif vtype == "UB":
                    v = 1 / n1 + 1 / n2 + (1 - (m - 2) / (m * j**2)) * y**2
                elif vtype == "LS2":
                    v = j**2 * (1 / n1 + 1 / n2 + ((m1 - m2) / sdp) ** 2 / (2 * (n1 + n2)))
                else:
                    raise ValueError("for SMD, vtype must be 'LS', 'UB' or 'LS2'")
            n_out = n1 + n2
        elif measure == "ZCOR":
            r, n = _arr(ri), _arr(ni)
            if r is None or n is None:
                raise ValueError("ZCOR needs ri and ni")
            if np.any(np.abs(r[np.isfinite(r)]) > 1):
                raise ValueError("one or more correlations are > 1 or < -1")
            y = 0.5 * np.log((1 + r) / (1 - r))
            v = 1 / (n - 3)
            v[n <= 3] = np.nan
            n_out = n
        else:  # GEN: given yi / vi
            y, v = _arr(yi), _arr(vi)
            if y is None or v is None:
                raise ValueError("measure GEN needs yi and vi")
            if len(y) != len(v):
                raise ValueError("yi and vi differ in length")
            n_out = None
    y = np.array(y, dtype=float)
    v = np.array(v, dtype=float)
    bad = ~np.isfinite(y) | ~np.isfinite(v)
    y[bad] = np.nan
    v[bad] = np.nan
    with np.errstate(invalid="ignore"):
        v[v < 0] = np.nan
    return EffectSizes(yi=y, vi=v, measure=measure, ni=n_out)
