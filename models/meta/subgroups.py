"""Subgroup analyses: one τ² shared by all levels (factor meta-regression) or one τ² per level."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rma import Prediction, RMAResult, rma


def sorted_levels(groups) -> list:
    """Distinct levels in R's factor order: numeric order when every level is a number, else sorted text."""
    values = [g for g in groups if g is not None and not (isinstance(g, float) and np.isnan(g))]
    distinct = list(dict.fromkeys(values))
    try:
        return sorted(distinct, key=float)
    except (TypeError, ValueError):
        return sorted(distinct, key=str)


def factor_dummies(groups, levels, name: str):
    """Treatment-coded dummies (reference = first level); NaN rows where the level is missing."""
    groups = list(groups)
    M = np.zeros((len(groups), max(len(levels) - 1, 0)))
    for i, g in enumerate(groups):
        if g not in levels:
            M[i, :] = np.nan
            continue
        j = levels.index(g)
        if j > 0:
            M[i, j - 1] = 1.0
    return M, [f"factor({name}){lev}" for lev in levels[1:]]


def _with_levels(yi, vi, groups):
    """Inputs as arrays, the rows with data, and their levels; at least two levels are needed."""
    groups = list(groups)
    y = np.asarray(yi, dtype=float)
    v = np.asarray(vi, dtype=float)
    ok = np.isfinite(y) & np.isfinite(v)
    levels = sorted_levels([g for g, keep in zip(groups, ok) if keep])
    if len(levels) < 2:
        raise ValueError("subgroup analysis needs at least two levels with data")
    return groups, y, v, ok, levels


@dataclass
class CommonTau2Subgroups:
    fit: RMAResult
    levels: list
    level_k: list[int]
    level: Prediction


def subgroup_common(yi, vi, groups, method="REML", test="z", level=95, name="group",
                    control=None) -> CommonTau2Subgroups:
    """Levels as a factor moderator (shared τ², QM = test of subgroup differences)."""
    groups, y, v, _, levels = _with_levels(yi, vi, groups)
    M, names = factor_dummies(groups, levels, name)
    fit = rma(y, v, method=method, test=test, mods=M, level=level, coef_names=["intrcpt"] + names, control=control)
    used = [groups[r] for r in fit.rows]
    level_k = [sum(1 for g in used if g == lev) for lev in levels]
    newmods = np.vstack([np.zeros(len(levels) - 1), np.eye(len(levels) - 1)])
    return CommonTau2Subgroups(fit, levels, level_k, fit.predict(newmods))


@dataclass
class SeparateTau2Subgroups:
    levels: list
    fits: dict
    Q_between: float
    Q_between_df: int
    Q_between_p: float


def subgroup_separate(yi, vi, groups, method="REML", test="z", level=95, name="group",
                      control=None) -> SeparateTau2Subgroups:
    """A separate random-effects model per level; Q_between from an EE meta-regression of their estimates."""
    groups, y, v, ok, levels = _with_levels(yi, vi, groups)
    fits = {}
    for lev in levels:
        mask = np.array([g == lev for g in groups]) & ok
        fits[lev] = rma(y[mask], v[mask], method=method, test=test, level=level, control=control)
    est = np.array([fits[lev].beta for lev in levels])
    var = np.array([fits[lev].se ** 2 for lev in levels])
    M, _ = factor_dummies(levels, levels, name)
    between = rma(est, var, method="EE", mods=M, compute_r2=False)
    return SeparateTau2Subgroups(levels, fits, between.QM, len(levels) - 1, between.QMp)
