"""Run reference cases (format: shared/data/meta/SOURCES.md) and compare them with expectations.

Pure: a case is computed from a table given as ``{column: [raw CSV strings]}``; nothing here reads
files, and ``run_case`` never looks at ``expected*`` fields.
"""

from __future__ import annotations

import math
import re

import numpy as np

from .bias import regtest, trimfill
from .effect_sizes import escalc
from .fixed import rma_mh, rma_peto
from .heterogeneity import confint_tau2
from .estimators import Control
from .rma import RMAResult, rma
from .sensitivity import cumul, leave1out
from .subgroups import factor_dummies, sorted_levels, subgroup_common, subgroup_separate

ANALYSES = ("escalc", "rma", "rma.mh", "rma.peto", "confint_tau2", "regtest", "trimfill", "leave1out",
            "cumul", "subgroup", "metareg")
INTEGER_KEYS = {"k", "df", "k0", "QE_df", "k_yi", "tarone_df", "Q_between_df", "QM_df", "p", "level_k",
                "order_rows"}
ESCALC_ARGS = ("ai", "bi", "ci", "di", "n1i", "n2i", "m1i", "sd1i", "m2i", "sd2i", "ri", "ni", "yi", "vi", "sei")


class CaseError(ValueError):
    """The case itself is malformed (unknown analysis, missing column, ...)."""


# ---------------------------------------------------------------- table helpers

def _number(s) -> float:
    if s is None:
        return math.nan
    if isinstance(s, (int, float)):
        return float(s)
    s = str(s).strip()
    if s == "" or s.upper() in ("NA", "NAN"):
        return math.nan
    try:
        return float(s)
    except ValueError:
        return math.nan


def numeric(table: dict, column: str) -> np.ndarray:
    if column not in table:
        raise CaseError(f"column {column!r} not in the data (have: {', '.join(table)})")
    return np.array([_number(x) for x in table[column]], dtype=float)


def text(table: dict, column: str) -> list:
    if column not in table:
        raise CaseError(f"column {column!r} not in the data (have: {', '.join(table)})")
    return [None if (x is None or str(x).strip() == "") else str(x) for x in table[column]]


def apply_subset(table: dict, subset: dict | None) -> dict:
    if not subset:
        return table
    col = subset.get("column")
    values = {str(v) for v in subset.get("values", [])}
    keep = [str(x) in values or _canon(x) in values for x in text(table, col)]
    return {name: [x for x, k in zip(vals, keep) if k] for name, vals in table.items()}


def _canon(x) -> str:
    """'1.0' -> '1' so numeric subset values compare like R's as.character."""
    try:
        f = float(x)
        return str(int(f)) if f.is_integer() else repr(f)
    except (TypeError, ValueError):
        return str(x)


def effect_sizes(case: dict, table: dict):
    inputs = case.get("inputs") or {}
    unknown = set(inputs) - set(ESCALC_ARGS)
    if unknown:
        raise CaseError(f"unknown input argument(s): {', '.join(sorted(unknown))}")
    args = {arg: numeric(table, col) for arg, col in inputs.items()}
    opts = (case.get("options") or {}).get("escalc") or {}
    measure = case.get("measure") or "GEN"
    if "yi" in args and "sei" in args and "vi" not in args:
        args["vi"] = args.pop("sei") ** 2
    if "yi" in args and "vi" in args:
        measure_used = "GEN"
        args = {"yi": args["yi"], "vi": args["vi"]}
    else:
        measure_used = measure
    return escalc(measure_used, add=opts.get("add", 0.5), to=opts.get("to", "only0"),
                  drop00=bool(opts.get("drop00", False)), vtype=opts.get("vtype", "LS"), **args)


def _f(x):
    """JSON-ready float: NaN/inf -> None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _fl(a):
    return [_f(x) for x in np.atleast_1d(a)]


# ---------------------------------------------------------------- output shapes

def rma_fields(res: RMAResult) -> dict:
    """Keys of an intercept-only ``rma`` case."""
    out = {"estimate": _f(res.beta), "se": _f(res.se)}
    if res.test in ("knha", "t", "adhoc"):
        out["tval"], out["df"] = _f(res.zval), int(res.df)
    else:
        out["zval"] = _f(res.zval)
    out.update(pval=_f(res.pval), ci_lb=_f(res.ci_lb), ci_ub=_f(res.ci_ub), tau2=_f(res.tau2), tau=_f(res.tau))
    if not res.is_ee and np.isfinite(res.tau2_se):
        out["se_tau2"] = _f(res.tau2_se)
    out.update(I2=_f(res.I2), H2=_f(res.H2), QE=_f(res.QE), QE_df=int(res.QE_df), QEp=_f(res.QEp), k=int(res.k))
    if not res.is_ee:
        out["pi_lb"], out["pi_ub"] = _f(res.pi_lb), _f(res.pi_ub)
    return out


def metareg_fields(res: RMAResult) -> dict:
    out = {"coef_names": list(res.coef_names), "b": _fl(res.beta), "se": _fl(res.se)}
    if res.test in ("knha", "t", "adhoc"):
        out["tval"], out["df"] = _fl(res.zval), int(res.df)
    else:
        out["zval"] = _fl(res.zval)
    out.update(pval=_fl(res.pval), ci_lb=_fl(res.ci_lb), ci_ub=_fl(res.ci_ub), tau2=_f(res.tau2))
    if not res.is_ee and np.isfinite(res.tau2_se):
        out["se_tau2"] = _f(res.tau2_se)
    out.update(I2=_f(res.I2), H2=_f(res.H2), R2=_f(res.R2), QE=_f(res.QE), QE_df=int(res.QE_df), QEp=_f(res.QEp),
               QM=_f(res.QM))
    out["QM_df"] = int(res.QM_df[0]) if len(res.QM_df) == 1 else [int(x) for x in res.QM_df]
    out.update(QMp=_f(res.QMp), QM_dist="chisq" if len(res.QM_df) == 1 else "F", k=int(res.k), p=int(res.p))
    return out


def fixed_fields(res) -> dict:
    out = {"estimate": _f(res.beta), "se": _f(res.se), "zval": _f(res.zval), "pval": _f(res.pval),
           "ci_lb": _f(res.ci_lb), "ci_ub": _f(res.ci_ub), "QE": _f(res.QE), "QE_df": int(res.QE_df),
           "QEp": _f(res.QEp), "I2": _f(res.I2), "H2": _f(res.H2), "k": int(res.k), "k_yi": int(res.k_yi)}
    if res.method == "MH" and res.measure == "OR":
        out.update(CMH=_f(res.CMH), CMHp=_f(res.CMHp), tarone=_f(res.TA), taroneP=_f(res.TAp),
                   tarone_df=None if res.TA_df is None else int(res.TA_df))
    return out


# ---------------------------------------------------------------- moderators

def parse_terms(mods: dict | str | None) -> list[dict]:
    if mods is None:
        return []
    if isinstance(mods, dict) and mods.get("terms"):
        return [{"column": t["column"], "type": t.get("type", "continuous")} for t in mods["terms"]]
    formula = mods.get("formula", "") if isinstance(mods, dict) else str(mods)
    terms = []
    for part in formula.replace("~", "").split("+"):
        part = part.strip()
        if not part or part == "1":
            continue
        m = re.fullmatch(r"factor\((.+)\)", part)
        terms.append({"column": m.group(1).strip(), "type": "factor"} if m else {"column": part, "type": "continuous"})
    if not terms:
        raise CaseError(f"no moderators in {mods!r}")
    return terms


def design_from_terms(table: dict, terms: list[dict], rows_ok=None):
    cols, names = [], []
    for term in terms:
        col = term["column"]
        if term["type"] == "factor":
            values = text(table, col)
            levels = sorted_levels([v for i, v in enumerate(values) if rows_ok is None or rows_ok[i]])
            M, nm = factor_dummies(values, levels, col)
            cols.append(M)
            names += nm
        elif term["type"] in ("continuous", "numeric"):
            cols.append(numeric(table, col).reshape(-1, 1))
            names.append(col)
        else:
            raise CaseError(f"unknown moderator type {term['type']!r}")
    return np.hstack(cols), ["intrcpt"] + names


def newmods_matrix(newmods, terms) -> np.ndarray:
    if isinstance(newmods, dict):
        cols = [np.atleast_1d(np.asarray(newmods[t["column"]], dtype=float)) for t in terms]
        return np.column_stack(cols)
    nm = np.asarray(newmods, dtype=float)
    if nm.ndim == 0:
        nm = nm.reshape(1, 1)
    if nm.ndim == 1:
        nm = nm.reshape(-1, 1) if len(terms) == 1 else nm.reshape(1, -1)
    return nm


# ---------------------------------------------------------------- the analyses

def _rma_from_case(case, table, es=None, mods=None, names=None):
    opts = case.get("options") or {}
    es = es if es is not None else effect_sizes(case, table)
    return rma(es.yi, es.vi, method=case.get("method") or "REML", test=opts.get("test", "z"),
               level=opts.get("level", 95), pi_type=opts.get("pi_type", "default"), mods=mods, coef_names=names,
               control=Control.of(case.get("_control"), es.yi))


def _tables(case, table):
    inputs = case.get("inputs") or {}
    return {arg: numeric(table, col) for arg, col in inputs.items() if arg in ("ai", "bi", "ci", "di", "n1i", "n2i")}


def _fixed_from_case(case, table):
    opts = case.get("options") or {}
    method = (case.get("method") or "").upper()
    tabs = _tables(case, table)
    kwargs = {key: opts[key] for key in ("add", "to", "drop00") if key in opts}
    level = opts.get("level", 95)
    if method == "MH":
        return rma_mh(case.get("measure", "OR"), correct=opts.get("correct", True), level=level, **kwargs, **tabs)
    return rma_peto(level=level, **kwargs, **tabs)


def _is_fixed(case) -> bool:
    return (case.get("method") or "").upper() in ("MH", "PETO") or case.get("analysis") in ("rma.mh", "rma.peto")


def run_case(case: dict, table: dict, control=None) -> dict:
    """Compute one case; returns ``{field: value}`` shaped like the case's ``expected``.

    ``control=None`` uses metafor's default stopping rules; ``"converged"`` the tight ones.
    """
    if control is not None:
        case = dict(case, _control=control)
    analysis = case.get("analysis")
    if analysis not in ANALYSES:
        raise CaseError(f"unknown analysis kind {analysis!r}")
    opts = case.get("options") or {}
    table = apply_subset(table, opts.get("subset"))

    if analysis == "escalc":
        es = effect_sizes(case, table)
        return {"yi": _fl(es.yi), "vi": _fl(es.vi)}
    if analysis == "rma":
        return rma_fields(_rma_from_case(case, table))
    if analysis in ("rma.mh", "rma.peto"):
        return fixed_fields(_fixed_from_case(case, table))
    if analysis == "confint_tau2":
        ci = confint_tau2(_rma_from_case(case, table), level=opts.get("level", 95))
        return {key: _f(val) for key, val in ci.as_dict().items()}
    if analysis == "regtest":
        es = effect_sizes(case, table)
        res = _rma_from_case(case, table, es=es)
        ni = None if es.ni is None else np.asarray(es.ni, dtype=float)[res.rows]
        rt = regtest(res, model=opts.get("model", "rma"), predictor=opts.get("predictor", "sei"), ni=ni)
        out = {}
        if rt.model == "lm" or rt.df is not None:
            out["tval"], out["df"] = _f(rt.zval), int(rt.df)
        else:
            out["zval"] = _f(rt.zval)
        out.update(pval=_f(rt.pval), limit_estimate=_f(rt.limit_estimate), limit_ci_lb=_f(rt.limit_ci_lb),
                   limit_ci_ub=_f(rt.limit_ci_ub))
        return out
    if analysis == "trimfill":
        res = _rma_from_case(case, table)
        side = opts.get("side", "auto")
        tf = trimfill(res, side=None if side in (None, "auto") else side, estimator=opts.get("estimator", "L0"))
        out = {"k0": int(tf.k0), "se_k0": _f(tf.se_k0), "side": tf.side}
        out.update(rma_fields(tf.fit))
        out["fill_yi"], out["fill_vi"] = _fl(tf.fill_yi) if len(tf.fill_yi) else [], _fl(tf.fill_vi) if len(tf.fill_vi) else []
        return out
    if analysis in ("leave1out", "cumul"):
        if _is_fixed(case):
            res = _fixed_from_case(case, table)
            used = _complete_rows(case, table)
        else:
            res = _rma_from_case(case, table)
            used = res.rows
        if analysis == "leave1out":
            return _seq_dict(leave1out(res))
        order_by = opts.get("order_by")
        keys = None
        if order_by:
            raw = numeric(table, order_by)
            keys = raw[used] if np.all(np.isfinite(raw[used])) else np.array(text(table, order_by), dtype=object)[used]
        seq = cumul(res, keys)
        out = {"order_rows": [int(used[i]) + 1 for i in seq.order]}
        out.update(_seq_dict(seq))
        return out
    if analysis == "metareg":
        es = effect_sizes(case, table)
        terms = parse_terms(opts.get("mods"))
        M, names = design_from_terms(table, terms, np.isfinite(es.yi) & np.isfinite(es.vi))
        res = _rma_from_case(case, table, es=es, mods=M, names=names)
        out = metareg_fields(res)
        if opts.get("newmods") is not None:
            pr = res.predict(newmods_matrix(opts["newmods"], terms))
            out.update(pred=_fl(pr.pred), pred_se=_fl(pr.se), pred_ci_lb=_fl(pr.ci_lb), pred_ci_ub=_fl(pr.ci_ub))
            if not res.is_ee:
                out.update(pred_pi_lb=_fl(pr.pi_lb), pred_pi_ub=_fl(pr.pi_ub))
        return out
    # subgroup
    es = effect_sizes(case, table)
    col = opts.get("subgroup")
    if not col:
        terms = parse_terms(opts.get("mods"))
        col = terms[0]["column"]
    groups = text(table, col)
    method = case.get("method") or "REML"
    test = opts.get("test", "z")
    level = opts.get("level", 95)
    approach = opts.get("approach", "common_tau2")
    if approach == "separate_tau2":
        sg = subgroup_separate(es.yi, es.vi, groups, method=method, test=test, level=level, name=col,
                               control=Control.of(case.get("_control"), es.yi))
        return {"levels": list(sg.levels), "per_level": {str(lev): rma_fields(sg.fits[lev]) for lev in sg.levels},
                "Q_between": _f(sg.Q_between), "Q_between_df": int(sg.Q_between_df), "Q_between_p": _f(sg.Q_between_p)}
    if approach != "common_tau2":
        raise CaseError(f"unknown subgroup approach {approach!r}")
    sg = subgroup_common(es.yi, es.vi, groups, method=method, test=test, level=level, name=col,
                         control=Control.of(case.get("_control"), es.yi))
    out = metareg_fields(sg.fit)
    out.update(levels=list(sg.levels), level_estimate=_fl(sg.level.pred), level_se=_fl(sg.level.se),
               level_ci_lb=_fl(sg.level.ci_lb), level_ci_ub=_fl(sg.level.ci_ub))
    if not sg.fit.is_ee:
        out.update(level_pi_lb=_fl(sg.level.pi_lb), level_pi_ub=_fl(sg.level.pi_ub))
    out["level_k"] = [int(x) for x in sg.level_k]
    return out


def _complete_rows(case, table) -> np.ndarray:
    tabs = _tables(case, table)
    ok = np.ones(len(next(iter(tabs.values()))), dtype=bool)
    for arr in tabs.values():
        ok &= np.isfinite(arr)
    return np.flatnonzero(ok)


def _seq_dict(seq) -> dict:
    return {key: _fl(val) for key, val in seq.as_dict().items()}


# ---------------------------------------------------------------- comparison

def _close(x, e, rel, abs_) -> bool:
    if e is None:
        return x is None or (isinstance(x, float) and math.isnan(x))
    if x is None:
        return False
    if isinstance(e, str) or isinstance(x, str):
        return str(x) == str(e)
    if isinstance(e, bool):
        return bool(x) == e
    try:
        xf, ef = float(x), float(e)
    except (TypeError, ValueError):
        return False
    if math.isnan(ef):
        return math.isnan(xf)
    if math.isinf(ef):
        return xf == ef
    return abs(xf - ef) <= abs_ + rel * abs(ef)


def mismatches(result: dict, expected: dict, tolerance: dict | None, path: str = "") -> list[str]:
    """Fields of ``result`` that differ from ``expected`` (isclose form; integer keys exact)."""
    tol = tolerance or {}
    rel, abs_ = float(tol.get("rel", 1e-6)), float(tol.get("abs", 1e-8))
    out = []
    for key, e in expected.items():
        name = f"{path}{key}"
        if key not in result:
            out.append(f"{name}: missing")
            continue
        x = result[key]
        if isinstance(e, dict):
            if not isinstance(x, dict):
                out.append(f"{name}: expected an object")
            else:
                out.extend(mismatches(x, e, tolerance, name + "."))
            continue
        if isinstance(e, list):
            if not isinstance(x, list) or len(x) != len(e):
                out.append(f"{name}: expected {len(e)} values, got {len(x) if isinstance(x, list) else 'a scalar'}")
                continue
            pairs = list(zip(x, e))
        else:
            if isinstance(x, list):
                out.append(f"{name}: expected a scalar, got a list")
                continue
            pairs = [(x, e)]
        for i, (xi, ei) in enumerate(pairs):
            exact = key in INTEGER_KEYS and ei is not None and not isinstance(ei, str)
            ok = (xi is not None and float(xi) == float(ei)) if exact else _close(xi, ei, rel, abs_)
            if not ok:
                where = f"{name}[{i}]" if isinstance(e, list) else name
                out.append(f"{where}: got {xi!r}, expected {ei!r}")
                break
    return out


def check_case(result: dict, case: dict) -> tuple[bool, str]:
    """Pass when every field matches ``expected`` or every field matches ``expected_converged``."""
    if "expected" not in case:
        return True, "no expectations"
    tol = case.get("tolerance")
    bad = mismatches(result, case["expected"], tol)
    if not bad:
        return True, "matches expected"
    if "expected_converged" in case:
        bad_c = mismatches(result, case["expected_converged"], tol)
        if not bad_c:
            return True, "matches expected_converged"
        if len(bad_c) < len(bad):
            bad = bad_c
    return False, "; ".join(bad[:3]) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else "")
