"""The living part of the meta-analysis, as pure functions (no Prefect, no I/O).

- `analysis_plan(config)`: the analyses review.toml declares, one `AnalysisSpec` each.
- `evidence_fingerprint(rows, plan)`: a hash of what pooling depends on; unchanged = nothing to do.
- `evidence_snapshot(rows)` / `diff_evidence(old, new)`: studies added, removed or corrected.
- `run_analysis(spec, rows)`: one analysis through the engine (`models.meta`), as plain dicts.
- `conclusion_flags(old, new, alpha)`: did estimability, direction, significance, CI/PI-null crossing
  or k change?

Evidence rows are dicts with the study's attributes (study_id, label, intervention, risk_group, ...)
and its current outcome entry (outcome, kind, events_int, n_int, ... or mean_int, sd_int, ...).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

PLAN_VERSION = "pooling-1"  # bump when the way results are computed changes: forces a new version
RATIO_MEASURES = {"OR", "RR", "PETO"}
BINARY_MEASURES = {"OR", "RR", "RD", "PETO"}
CONTINUOUS_MEASURES = {"SMD", "MD"}
MH_MEASURES = {"OR", "RR", "RD"}
RMA_METHODS = {"EE", "FE", "DL", "REML", "ML", "PM", "HE", "SJ", "EB", "HS", "HSk"}
BINARY_FIELDS = ("events_int", "n_int", "events_ctl", "n_ctl")
CONTINUOUS_FIELDS = ("mean_int", "sd_int", "n_int", "mean_ctl", "sd_ctl", "n_ctl")
STUDY_FIELDS = ("label", "intervention", "risk_group", "attachment_measure", "follow_up_months")


NUMERIC_RESULT_FIELDS = ("estimate", "se", "stat", "df", "ci_lb", "ci_ub", "pi_lb", "pi_ub", "pval", "tau2",
                         "tau2_se", "I2", "H2", "Q", "Q_df", "Qp")


class PlanError(ValueError):
    """The analyses declared in review.toml cannot be run (unknown method, MH on a continuous outcome...)."""


@dataclass(frozen=True)
class AnalysisSpec:
    """One declared analysis of one outcome (optionally split by a study attribute)."""

    analysis_id: str
    outcome: str
    outcome_label: str
    kind: str  # binary | continuous
    measure: str
    analysis: str  # 'primary' or the sensitivity analysis name
    method: str  # REML, DL, ... or MH
    test: str  # knha | z
    prediction_interval: bool
    level: float  # confidence level in percent (100 * (1 - alpha))
    subgroup_var: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def analysis_plan(config) -> list[AnalysisSpec]:
    """Every analysis review.toml declares: per outcome the primary model, each sensitivity
    analysis that applies to its kind (MH is binary-only and silently skipped for continuous
    outcomes, as the config comment says), and the primary model split by each subgroup variable."""
    pooling = config.pooling
    level = round(100.0 * (1.0 - pooling.alpha), 10)
    plan: list[AnalysisSpec] = []
    for oc in config.outcomes:
        measure = oc.measure.upper()
        allowed = BINARY_MEASURES if oc.kind == "binary" else CONTINUOUS_MEASURES
        if measure not in allowed:
            raise PlanError(f"outcome {oc.name!r}: measure {oc.measure!r} does not fit a {oc.kind} outcome "
                            f"(use one of {sorted(allowed)})")
        prim = pooling.primary
        _check_method(prim.method, f"outcome {oc.name!r} primary analysis")
        base = dict(outcome=oc.name, outcome_label=oc.label, kind=oc.kind, measure=measure, level=level)
        plan.append(AnalysisSpec(analysis_id=f"{oc.name}:primary", analysis="primary", method=prim.method.upper(),
                                 test=prim.test.lower(), prediction_interval=prim.prediction_interval, **base))
        for sens in pooling.sensitivity:
            method = sens.method.upper()
            if method == "MH":
                if oc.kind != "binary" or measure not in MH_MEASURES:
                    continue
                test = "z"
            else:
                _check_method(method, f"sensitivity analysis {sens.name!r}")
                test = sens.test.lower()
            plan.append(AnalysisSpec(analysis_id=f"{oc.name}:{sens.name}", analysis=sens.name, method=method,
                                     test=test, prediction_interval=method not in ("MH", "EE", "FE"), **base))
        for var in pooling.subgroups:
            if var not in STUDY_FIELDS:
                raise PlanError(f"subgroup variable {var!r} is not a study field; use one of {list(STUDY_FIELDS)}")
            plan.append(AnalysisSpec(analysis_id=f"{oc.name}:primary:by-{var}", analysis="primary",
                                     method=prim.method.upper(), test=prim.test.lower(),
                                     prediction_interval=prim.prediction_interval, subgroup_var=var, **base))
    return plan


def _check_method(method: str, where: str) -> None:
    if method.upper() not in RMA_METHODS:
        raise PlanError(f"{where}: unknown method {method!r}; use one of {sorted(RMA_METHODS)} (or MH for sensitivity)")


# ---------------------------------------------------------------------------------------------
# fingerprint and diff


def _clean(v: Any) -> Any:
    """JSON-stable value: NaN/None -> None, integral floats of count fields stay as given."""
    if v is None:
        return None
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return v if math.isfinite(v) else None
    if hasattr(v, "item"):  # numpy scalar
        return _clean(v.item())
    return v


def _row_values(row: dict) -> dict[str, Any]:
    fields = BINARY_FIELDS if row.get("kind") == "binary" else CONTINUOUS_FIELDS
    return {f: _clean(row.get(f)) for f in fields}


def _study_values(row: dict) -> dict[str, Any]:
    return {f: _clean(row.get(f)) for f in STUDY_FIELDS}


def evidence_snapshot(rows: Iterable[dict]) -> dict[str, dict[str, Any]]:
    """`{"study_id|outcome": {"study_id", "outcome", "data": {...}, "study": {...}}}` for diffing later."""
    snap: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = f"{r['study_id']}|{r['outcome']}"
        snap[key] = {"study_id": r["study_id"], "outcome": r["outcome"], "kind": r.get("kind"),
                     "data": _row_values(r), "study": _study_values(r)}
    return dict(sorted(snap.items()))


def evidence_fingerprint(rows: Iterable[dict], plan: Iterable[AnalysisSpec], snapshot: dict | None = None) -> str:
    """sha256 over the included studies' current data and attributes, and the analysis settings
    (pass `snapshot` = evidence_snapshot(rows) when already computed)."""
    payload = {"version": PLAN_VERSION, "evidence": snapshot if snapshot is not None else evidence_snapshot(rows),
               "plan": [s.to_dict() for s in plan]}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def diff_evidence(old: dict | None, new: dict) -> dict[str, Any]:
    """What changed between two evidence snapshots: entries added, removed, corrected (with fields),
    and the studies that newly entered or left the review altogether."""
    old = old or {}
    added, removed, corrected = [], [], []
    for key, cur in new.items():
        prev = old.get(key)
        if prev is None:
            added.append({"study_id": cur["study_id"], "outcome": cur["outcome"]})
            continue
        changes = {}
        for part in ("data", "study"):
            for f in sorted(set(cur[part]) | set(prev.get(part, {}))):
                a, b = prev.get(part, {}).get(f), cur[part].get(f)
                if a != b:
                    changes[f] = [a, b]
        if changes:
            corrected.append({"study_id": cur["study_id"], "outcome": cur["outcome"], "changes": changes})
    for key, prev in old.items():
        if key not in new:
            removed.append({"study_id": prev["study_id"], "outcome": prev["outcome"]})
    old_studies = {v["study_id"] for v in old.values()}
    new_studies = {v["study_id"] for v in new.values()}
    return {
        "studies_added": sorted(new_studies - old_studies),
        "studies_removed": sorted(old_studies - new_studies),
        "added": added,
        "removed": removed,
        "corrected": corrected,
        "n_studies": len(new_studies),
        "n_entries": len(new),
    }


def diff_summary(diff: dict) -> str:
    """One line for logs and the What's new table."""
    parts = []
    if diff.get("studies_added"):
        parts.append(f"{len(diff['studies_added'])} new stud{'y' if len(diff['studies_added']) == 1 else 'ies'} "
                     f"({', '.join(diff['studies_added'])})")
    if diff.get("studies_removed"):
        parts.append(f"{len(diff['studies_removed'])} stud{'y' if len(diff['studies_removed']) == 1 else 'ies'} "
                     f"removed ({', '.join(diff['studies_removed'])})")
    extra_added = [a for a in diff.get("added", []) if a["study_id"] not in diff.get("studies_added", [])]
    if extra_added:
        parts.append("outcome data added: " + ", ".join(f"{a['study_id']}/{a['outcome']}" for a in extra_added))
    extra_removed = [a for a in diff.get("removed", []) if a["study_id"] not in diff.get("studies_removed", [])]
    if extra_removed:
        parts.append("outcome data withdrawn: " + ", ".join(f"{a['study_id']}/{a['outcome']}" for a in extra_removed))
    if diff.get("corrected"):
        parts.append("corrected: " + ", ".join(
            f"{c['study_id']}/{c['outcome']} ({', '.join(sorted(c['changes']))})" for c in diff["corrected"]))
    return "; ".join(parts) if parts else "analysis settings changed (no study data changed)"


# ---------------------------------------------------------------------------------------------
# running one analysis


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _scalar(v: Any) -> Any:
    if hasattr(v, "shape") and getattr(v, "shape", None) not in ((), None):
        return v.reshape(-1)[0]
    return v


def _usable(row: dict, kind: str) -> bool:
    fields = BINARY_FIELDS if kind == "binary" else CONTINUOUS_FIELDS
    return all(_finite(row.get(f)) is not None for f in fields)


def _meta():
    """The engine (`models.meta`); one indirection so tests can substitute a failing model."""
    import models.meta

    return models.meta


def effect_sizes(spec: AnalysisSpec, rows: list[dict]):
    """escalc on the rows (metafor defaults: add 1/2 to zero-cell studies, double zeros kept)."""
    import numpy as np

    escalc = _meta().escalc
    if spec.kind == "binary":
        ai = np.array([r["events_int"] for r in rows], dtype=float)
        n1 = np.array([r["n_int"] for r in rows], dtype=float)
        ci = np.array([r["events_ctl"] for r in rows], dtype=float)
        n2 = np.array([r["n_ctl"] for r in rows], dtype=float)
        return escalc(spec.measure, ai=ai, bi=n1 - ai, ci=ci, di=n2 - ci), (ai, n1 - ai, ci, n2 - ci)
    arr = {f: np.array([r[f] for r in rows], dtype=float) for f in CONTINUOUS_FIELDS}
    es = escalc(spec.measure, m1i=arr["mean_int"], sd1i=arr["sd_int"], n1i=arr["n_int"],
                m2i=arr["mean_ctl"], sd2i=arr["sd_ctl"], n2i=arr["n_ctl"])
    return es, None


def run_analysis(spec: AnalysisSpec, rows: list[dict]) -> list[dict[str, Any]]:
    """Results of one declared analysis: one dict for all studies, or one per subgroup level
    (separate τ² per level, Q-between from an equal-effects model of the level estimates, as metafor).
    An outcome with no usable rows gives an empty list."""
    rows = [r for r in rows if r.get("outcome") == spec.outcome and _usable(r, spec.kind)]
    rows.sort(key=lambda r: str(r["study_id"]))
    if not rows:
        return []
    if spec.subgroup_var is None:
        res = _pool(spec, rows)
        res["subgroup"] = ""
        return [res]
    levels = sorted({str(r.get(spec.subgroup_var) or "unspecified") for r in rows})
    out = []
    for lev in levels:
        sub = [r for r in rows if str(r.get(spec.subgroup_var) or "unspecified") == lev]
        res = _pool(spec, sub)
        res["subgroup"] = lev
        out.append(res)
    qb, qb_df, qb_p = _q_between(out)
    for res in out:
        res.update(q_between=qb, q_between_df=qb_df, q_between_p=qb_p)
    return out


def _q_between(results: list[dict]) -> tuple[float | None, int | None, float | None]:
    """Wald test of the subgroup estimates (EE meta-regression on a saturated factor = their Q)."""
    from scipy import stats

    pts = [(r["estimate"], r["se"]) for r in results if r.get("estimate") is not None and r.get("se")]
    if len(pts) < 2:
        return None, None, None
    w = [1.0 / se**2 for _, se in pts]
    mean = sum(wi * y for wi, (y, _) in zip(w, pts)) / sum(w)
    q = sum(wi * (y - mean) ** 2 for wi, (y, _) in zip(w, pts))
    df = len(pts) - 1
    return float(q), df, float(stats.chi2.sf(q, df))


def _pool(spec: AnalysisSpec, rows: list[dict]) -> dict[str, Any]:
    import numpy as np

    rma = _meta().rma
    es, table = effect_sizes(spec, rows)
    yi, vi = np.asarray(es.yi, dtype=float), np.asarray(es.vi, dtype=float)
    keep = np.isfinite(yi) & np.isfinite(vi)
    notes: list[str] = []
    if not keep.all():
        dropped = [rows[i]["study_id"] for i in np.flatnonzero(~keep)]
        notes.append(f"effect size undefined for {', '.join(dropped)} (left out)")
    k = int(keep.sum())
    method, test = spec.method, spec.test
    result: dict[str, Any] = dict.fromkeys(NUMERIC_RESULT_FIELDS)
    result.update(k=k, measure=spec.measure, method=method, test=test, level=spec.level)
    converged = True
    if k == 0:
        result.update(note="; ".join(notes + ["no study with a defined effect size"]), converged=None,
                      studies=[])
        return result
    if method == "MH":
        res = _run_mh(spec, table, keep)
        test = "z"
        pi = (None, None)
    else:
        if k == 1:
            method, test = "EE", "z"
            notes.append("k = 1: a single study, its own estimate (no pooling, no heterogeneity, no PI)")
        try:
            res = rma(yi[keep], vi[keep], method=method, test=test, level=spec.level)
        except Exception as exc:  # noqa: BLE001 - a clear note instead of a crash or a NaN
            notes.append(f"{method} model could not be fitted: {exc}")
            result.update(note="; ".join(notes), converged=False, studies=[])
            return result
        converged = bool(getattr(res, "converged", True))
        if not converged:
            used = getattr(res, "fallback", None) or "DL"
            notes.append(f"{method} did not converge; τ² from {used} instead (metafor's method=c('{method}', '{used}'))")
            method = used
        for w in getattr(res, "warnings", None) or []:
            if "falling back" not in str(w) and "k = 1" not in str(w):
                notes.append(str(w))
        pi = (None, None)
        if spec.prediction_interval and method not in ("EE", "FE"):
            pi = (_finite(_scalar(getattr(res, "pi_lb", None))), _finite(_scalar(getattr(res, "pi_ub", None))))
        if k == 2 and test == "knha":
            notes.append("k = 2: Knapp-Hartung interval on 1 df, very wide")
        tau2 = _finite(getattr(res, "tau2", None))
        if k > 1 and method not in ("EE", "FE") and tau2 is not None and tau2 < 1e-5:
            notes.append("τ² estimated at (or within 1e-5 of) 0")
    est = _finite(_scalar(res.beta))
    se = _finite(_scalar(res.se))
    stat = _finite(_scalar(getattr(res, "zval", None)))
    df = getattr(res, "df", None) if test != "z" else None
    result.update(
        method=method,
        test=test,
        estimate=est,
        se=se,
        stat=stat,
        df=_finite(df),
        ci_lb=_finite(_scalar(res.ci_lb)),
        ci_ub=_finite(_scalar(res.ci_ub)),
        pi_lb=pi[0],
        pi_ub=pi[1],
        pval=_finite(_scalar(res.pval)),
        tau2=_finite(getattr(res, "tau2", None)) if method != "MH" else None,
        tau2_se=_finite(getattr(res, "tau2_se", None)) if method != "MH" else None,
        I2=_finite(getattr(res, "I2", None)),
        H2=_finite(getattr(res, "H2", None)),
        Q=_finite(getattr(res, "QE", None)),
        Q_df=_q_df(res, k, method),
        Qp=_finite(getattr(res, "QEp", None)),
        converged=converged,
    )
    if est is None or se is None:
        notes.append("the estimate is undefined for these data")
    if spec.measure in RATIO_MEASURES:
        for f in ("estimate", "ci_lb", "ci_ub", "pi_lb", "pi_ub"):
            v = result.get(f)
            result["exp_" + f] = math.exp(v) if v is not None and v < 700 else None
    weights = getattr(res, "weights", None)  # percent; MH: per measure, from rma_mh (metafor's weights.rma.mh)
    idx = np.flatnonzero(keep)
    studies = []
    for j, i in enumerate(idx):
        r = rows[i]
        w = None
        if weights is not None:
            w = _finite(np.asarray(weights, dtype=float).reshape(-1)[j])
        studies.append({"study_id": r["study_id"], "label": r.get("label") or r["study_id"],
                        "subgroup_values": {f: r.get(f) for f in ("intervention", "risk_group")},
                        "yi": float(yi[i]), "vi": float(vi[i]), "weight": w,
                        "data": _row_values(r)})
    result["studies"] = studies
    result["note"] = "; ".join(notes) or None
    return result


def _q_df(res, k: int, method: str) -> int | None:
    for name in ("QE_df", "QEdf"):
        if getattr(res, name, None) is not None:
            return int(getattr(res, name))
    if method == "MH":
        k_yi = getattr(res, "k_yi", None)
        return max(int(k_yi) - 1, 0) if k_yi is not None else None
    return max(k - 1, 0)


def _run_mh(spec: AnalysisSpec, table, keep):
    rma_mh = _meta().rma_mh
    ai, bi, ci, di = table
    return rma_mh(spec.measure, ai=ai[keep], bi=bi[keep], ci=ci[keep], di=di[keep], level=spec.level)


def funnel_extras(spec: AnalysisSpec, result: dict) -> dict[str, Any]:
    """Egger-type test and trim-and-fill for the funnel plot (k >= 3 only; errors become notes)."""
    import numpy as np

    studies = result.get("studies") or []
    if len(studies) < 3 or spec.method == "MH":
        return {"note": "funnel asymmetry not assessed (fewer than 3 studies)" if len(studies) < 3 else None}
    yi = np.array([s["yi"] for s in studies])
    vi = np.array([s["vi"] for s in studies])
    out: dict[str, Any] = {}
    method = result.get("method") or spec.method
    try:
        meta = _meta()
        rma, regtest, trimfill = meta.rma, meta.regtest, meta.trimfill
        fit = rma(yi, vi, method=method, test="z")
    except Exception as exc:  # noqa: BLE001 - extras must never block pooling
        return {"note": f"funnel extras unavailable: {exc}"}
    try:
        rt = regtest(fit)
        line = getattr(rt, "fit", None)
        b = np.asarray(getattr(line, "beta", [np.nan, np.nan]), dtype=float).reshape(-1) if line is not None else None
        out["egger"] = {"model": "rma (sei as moderator)", "zval": _finite(rt.zval), "pval": _finite(rt.pval),
                        "limit_estimate": _finite(getattr(rt, "limit_estimate", None)),
                        "intercept": _finite(b[0]) if b is not None and len(b) > 1 else None,
                        "slope": _finite(b[1]) if b is not None and len(b) > 1 else None}
    except Exception as exc:  # noqa: BLE001
        out["egger_error"] = f"{exc.__class__.__name__}: {exc}"
    try:
        tf = trimfill(fit)
        tfit = tf.fit
        out["trimfill"] = {"k0": int(tf.k0), "side": tf.side, "estimate": _finite(_scalar(tfit.beta)),
                           "ci_lb": _finite(_scalar(tfit.ci_lb)), "ci_ub": _finite(_scalar(tfit.ci_ub)),
                           "fill_yi": [float(x) for x in np.asarray(tf.fill_yi, dtype=float).reshape(-1)],
                           "fill_vi": [float(x) for x in np.asarray(tf.fill_vi, dtype=float).reshape(-1)]}
    except Exception as exc:  # noqa: BLE001
        out["trimfill_error"] = f"{exc.__class__.__name__}: {exc}"
    return out


# ---------------------------------------------------------------------------------------------
# conclusion-change flags


def _side(lb: float | None, ub: float | None, null: float) -> str | None:
    """'below', 'above' the null, or 'crosses' it (None when the interval is missing)."""
    if lb is None or ub is None:
        return None
    if ub < null:
        return "below"
    if lb > null:
        return "above"
    return "crosses"


def _sign(x: float | None, null: float) -> int | None:
    if x is None:
        return None
    return (x > null) - (x < null)


CONCLUSION_FLAGS = ("estimable", "direction", "significance", "ci_null", "pi_null")  # change the conclusion


@dataclass
class ConclusionChange:
    changed: bool
    flags: dict[str, bool] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


def conclusion_flags(old: dict | None, new: dict, alpha: float = 0.05, null: float = 0.0) -> ConclusionChange:
    """Compare a new pooled result with the previous version's (same analysis and subgroup).

    These change the conclusion:
    - estimable: an estimate appeared or disappeared (the model could not be fitted, or now can);
    - direction: the estimate moved to the other side of the null and at least one of the two CIs
      excludes the null (a sign flip with both CIs spanning the null changes nothing a reader would
      conclude; a CI that starts or stops crossing is the ci_null flag's as well);
    - significance: p < alpha on one side only;
    - ci_null: the CI now includes the null, or no longer does;
    - pi_null: the PI now includes the null, or no longer does. When only one of the two results has
      a PI (a first PI at k = 2, or the PI gone at k = 1), the other's CI stands in for it, as for an
      equal-effects model whose PI is its CI: a first PI including the null where the earlier CI
      excluded it is flagged. Results that both lack a PI (MH, EE) are judged by their CI alone.
    A change in k alone is reported but does not change the conclusion. A first estimate counts as a
    change. Estimates are on the analysis scale (log for ratios), so the null is 0.
    """
    if old is None:
        return ConclusionChange(True, {"new": True}, [f"first estimate (k = {new.get('k')})"])
    flags: dict[str, bool] = {}
    reasons: list[str] = []
    eo, en = old.get("estimate"), new.get("estimate")
    flags["estimable"] = (eo is None) != (en is None)
    if flags["estimable"]:
        reasons.append("no longer estimable" + (f" ({new['note']})" if new.get("note") else "") if en is None
                       else "now estimable (no estimate in the previous version)")
    co, cn = _side(old.get("ci_lb"), old.get("ci_ub"), null), _side(new.get("ci_lb"), new.get("ci_ub"), null)
    so, sn = _sign(eo, null), _sign(en, null)
    excludes = co in ("below", "above") or cn in ("below", "above")
    flags["direction"] = so is not None and sn is not None and so != sn and excludes
    if flags["direction"]:
        names = {1: "above the null", -1: "below the null", 0: "at the null"}
        reasons.append(f"direction changed: {names[so]} -> {names[sn]}")
    po, pn = old.get("pval"), new.get("pval")
    flags["significance"] = po is not None and pn is not None and (po < alpha) != (pn < alpha)
    if flags["significance"]:
        reasons.append(f"significance at alpha = {alpha:g} changed: p {po:.3g} -> {pn:.3g}")
    flags["ci_null"] = co is not None and cn is not None and (co == "crosses") != (cn == "crosses")
    if flags["ci_null"]:
        reasons.append("CI now crosses the null" if cn == "crosses" else "CI no longer crosses the null")
    qo, qn = _side(old.get("pi_lb"), old.get("pi_ub"), null), _side(new.get("pi_lb"), new.get("pi_ub"), null)
    note = ""
    if qo is None and qn is not None:  # a first PI: compared with the interval the previous version had
        qo, note = co, " (first prediction interval, compared with the previous CI)"
    elif qo is not None and qn is None:  # the PI is gone: the new CI is what is left
        qn, note = cn, " (no prediction interval now: judged by the CI)"
    flags["pi_null"] = qo is not None and qn is not None and (qo == "crosses") != (qn == "crosses")
    if flags["pi_null"]:
        reasons.append(("PI now crosses the null" if qn == "crosses" else "PI no longer crosses the null") + note)
    if eo is not None and en is not None and abs(eo - en) > 1e-9 * max(1.0, abs(eo)):
        ratio = new.get("measure") in RATIO_MEASURES
        fo, fn = (math.exp(eo), math.exp(en)) if ratio else (eo, en)
        reasons.append(f"{new.get('measure', 'estimate')} {fo:.3g} -> {fn:.3g}")
    flags["k"] = old.get("k") != new.get("k")
    if flags["k"]:
        reasons.append(f"k {old.get('k')} -> {new.get('k')}")
    changed = any(flags[f] for f in CONCLUSION_FLAGS)
    return ConclusionChange(changed, flags, reasons)
