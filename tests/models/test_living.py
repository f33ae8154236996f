"""models.living: plan from config, fingerprint, diff, conclusion flags, degenerate analyses.

Numbers used here are invented (synthetic rows), never evidence.
"""

from __future__ import annotations

import math

import pytest

from living_review.config import load_review
from models.living import (AnalysisSpec, PlanError, analysis_plan, conclusion_flags, diff_evidence,
                           evidence_fingerprint, evidence_snapshot, run_analysis)
from support.pooling import REPO, read_rows


@pytest.fixture(scope="module")
def config():
    return load_review(REPO / "review.toml")


def _rows(outcome: str = "secure") -> list[dict]:
    """The invented trials as evidence rows (study attributes + current entry)."""
    studies = {s["study_id"]: s for s in read_rows("synthetic_studies.csv")}
    out = []
    for r in read_rows("synthetic_outcomes.csv"):
        if r["outcome"] != outcome:
            continue
        row = {"study_id": r["study_id"], "outcome": outcome, "label": studies[r["study_id"]]["label"],
               "intervention": studies[r["study_id"]]["intervention"],
               "risk_group": studies[r["study_id"]]["risk_group"]}
        if r["events_int"]:
            row.update(kind="binary", **{f: int(r[f]) for f in ("events_int", "n_int", "events_ctl", "n_ctl")})
        else:
            row.update(kind="continuous", n_int=int(r["n_int"]), n_ctl=int(r["n_ctl"]),
                       **{f: float(r[f]) for f in ("mean_int", "sd_int", "mean_ctl", "sd_ctl")})
        out.append(row)
    return out


def _spec(**kw) -> AnalysisSpec:
    base = dict(analysis_id="secure:primary", outcome="secure", outcome_label="Secure", kind="binary", measure="OR",
                analysis="primary", method="REML", test="knha", prediction_interval=True, level=95.0)
    base.update(kw)
    return AnalysisSpec(**base)


# --- plan ----------------------------------------------------------------------------------------

def test_plan_declares_primary_sensitivity_and_subgroups_per_outcome(config):
    plan = {s.analysis_id: s for s in analysis_plan(config)}
    assert set(plan) == {
        "secure:primary", "secure:DL", "secure:MH", "secure:primary:by-intervention",
        "disorganised:primary", "disorganised:DL", "disorganised:MH", "disorganised:primary:by-intervention",
        "sensitivity:primary", "sensitivity:DL", "sensitivity:primary:by-intervention",  # no MH: continuous
    }
    p = plan["secure:primary"]
    assert (p.method, p.test, p.prediction_interval, p.level, p.measure) == ("REML", "knha", True, 95.0, "OR")
    assert (plan["secure:DL"].method, plan["secure:DL"].test) == ("DL", "z")
    assert plan["sensitivity:primary:by-intervention"].subgroup_var == "intervention"


def test_plan_rejects_unknown_method_and_mismatched_measure(config):
    bad = config.model_copy(deep=True)
    bad.pooling.primary.method = "REMLX"
    with pytest.raises(PlanError, match="unknown method"):
        analysis_plan(bad)
    bad = config.model_copy(deep=True)
    bad.outcomes[0].measure = "SMD"  # 'secure' is binary
    with pytest.raises(PlanError, match="does not fit a binary outcome"):
        analysis_plan(bad)


# --- fingerprint and diff --------------------------------------------------------------------------

def test_fingerprint_ignores_row_order_but_not_values_or_settings(config):
    rows, plan = _rows(), analysis_plan(config)
    fp = evidence_fingerprint(rows, plan)
    assert evidence_fingerprint(list(reversed(rows)), plan) == fp
    changed = [dict(r) for r in rows]
    changed[0]["events_int"] += 1
    assert evidence_fingerprint(changed, plan) != fp
    relabelled = [dict(r) for r in rows]
    relabelled[0]["intervention"] = "group"  # moves a study between subgroups
    assert evidence_fingerprint(relabelled, plan) != fp
    other = config.model_copy(deep=True)
    other.pooling.alpha = 0.1
    assert evidence_fingerprint(rows, analysis_plan(other)) != fp


def test_diff_lists_added_removed_and_corrected_with_fields():
    rows = _rows()
    old = evidence_snapshot(rows[:-1])
    new_rows = [dict(r) for r in rows[1:]]
    new_rows[0]["n_ctl"] += 2
    diff = diff_evidence(old, evidence_snapshot(new_rows))
    assert diff["studies_added"] == [rows[-1]["study_id"]]
    assert diff["studies_removed"] == [rows[0]["study_id"]]
    assert diff["corrected"] == [{"study_id": rows[1]["study_id"], "outcome": "secure",
                                  "changes": {"n_ctl": [rows[1]["n_ctl"], rows[1]["n_ctl"] + 2]}}]
    assert diff_evidence(old, old)["corrected"] == [] and diff_evidence(old, old)["added"] == []
    first = diff_evidence(None, old)
    assert len(first["studies_added"]) == len(rows) - 1 and first["removed"] == []


# --- conclusion flags ------------------------------------------------------------------------------

BASE = dict(measure="OR", k=10, estimate=0.3, pval=0.01, ci_lb=0.1, ci_ub=0.5, pi_lb=0.05, pi_ub=0.55)


@pytest.mark.parametrize("change, flag", [
    (dict(estimate=-0.1, ci_lb=-0.3, ci_ub=0.1, pval=0.3, pi_lb=-0.6, pi_ub=0.4), "direction"),
    (dict(pval=0.08, ci_lb=-0.02), "significance"),
    (dict(ci_lb=-0.01), "ci_null"),
    (dict(pi_lb=-0.2), "pi_null"),
])
def test_conclusion_flags_detect_each_kind_of_change(change, flag):
    res = conclusion_flags(BASE, dict(BASE, **change), alpha=0.05)
    assert res.changed and res.flags[flag]


def test_k_change_alone_is_reported_but_not_a_changed_conclusion():
    res = conclusion_flags(BASE, dict(BASE, k=11, estimate=0.31), alpha=0.05)
    assert not res.changed and res.flags["k"]
    assert "k 10 -> 11" in res.reasons and any(r.startswith("OR 1.35 -> 1.36") for r in res.reasons)
    assert conclusion_flags(None, BASE).changed  # a first estimate is new information


def test_significance_uses_the_configured_alpha():
    new = dict(BASE, pval=0.07)
    assert conclusion_flags(BASE, new, alpha=0.05).flags["significance"]
    assert not conclusion_flags(BASE, new, alpha=0.10).flags["significance"]


# --- running analyses on the invented trials, and degenerate inputs ---------------------------------

def test_subgroups_get_separate_tau2_and_q_between_as_the_engine():
    from models.meta import escalc, subgroup_separate

    rows = _rows()
    res = run_analysis(_spec(analysis_id="secure:primary:by-intervention", subgroup_var="intervention", test="z"), rows)
    assert [r["subgroup"] for r in res] == ["group", "home_visiting", "video_feedback"]
    assert [r["k"] for r in res] == [3, 3, 6]
    es = escalc("OR", ai=[r["events_int"] for r in rows], n1i=[r["n_int"] for r in rows],
                ci=[r["events_ctl"] for r in rows], n2i=[r["n_ctl"] for r in rows])
    ref = subgroup_separate(es.yi, es.vi, [r["intervention"] for r in rows], method="REML", test="z")
    assert res[0]["q_between"] == pytest.approx(ref.Q_between, rel=1e-10)
    assert res[0]["q_between_df"] == 2 and res[0]["q_between_p"] == pytest.approx(ref.Q_between_p, rel=1e-10)
    assert res[2]["estimate"] == pytest.approx(float(ref.fits["video_feedback"].beta), rel=1e-12)


def test_k1_gives_the_single_study_estimate_with_a_note_and_no_pi():
    row = _rows()[0]
    (res,) = run_analysis(_spec(), [row])
    a, b, c, d = row["events_int"], row["n_int"] - row["events_int"], row["events_ctl"], row["n_ctl"] - row["events_ctl"]
    assert res["k"] == 1 and res["estimate"] == pytest.approx(math.log(a * d / (b * c)))
    assert res["se"] == pytest.approx(math.sqrt(1 / a + 1 / b + 1 / c + 1 / d))
    assert res["pi_lb"] is None and res["test"] == "z" and "k = 1" in res["note"]


def test_k2_knapp_hartung_is_finite_and_flagged():
    (res,) = run_analysis(_spec(), _rows()[:2])
    assert res["k"] == 2 and res["df"] == 1
    assert all(math.isfinite(res[f]) for f in ("estimate", "ci_lb", "ci_ub", "pi_lb", "pi_ub", "pval", "tau2"))
    assert "1 df" in res["note"]


def test_identical_effects_give_q_zero_and_tau2_zero():
    row = dict(_rows()[0])
    rows = [dict(row, study_id=f"s{i}") for i in range(4)]
    (res,) = run_analysis(_spec(), rows)
    assert res["Q"] == pytest.approx(0, abs=1e-12) and res["tau2"] == 0 and res["I2"] == 0
    assert "τ²" in res["note"]


def test_double_zero_study_is_kept_with_metafor_correction_and_mh_drops_it():
    rows = _rows("disorganised")
    assert any(r["events_int"] == 0 and r["events_ctl"] == 0 for r in rows)  # Trial F
    (prim,) = run_analysis(_spec(analysis_id="disorganised:primary", outcome="disorganised"), rows)
    (mh,) = run_analysis(_spec(analysis_id="disorganised:MH", outcome="disorganised", method="MH", test="z",
                               prediction_interval=False), rows)
    assert prim["k"] == 12 and mh["k"] == 12 and mh["Q_df"] == 10  # Q over the 11 non-double-zero studies
    assert mh["tau2"] is None and mh["pi_lb"] is None


def test_missing_values_are_left_out_and_no_rows_gives_no_result():
    rows = _rows()
    rows[0] = dict(rows[0], events_ctl=None)
    (res,) = run_analysis(_spec(), rows)
    assert res["k"] == 11
    assert run_analysis(_spec(), []) == []
    assert run_analysis(_spec(outcome="disorganised"), rows) == []  # rows of another outcome only


def test_a_model_that_cannot_be_fitted_is_a_note_not_a_nan(monkeypatch):
    import models.living as living

    real = living._meta()

    class Broken:
        escalc = staticmethod(real.escalc)

        @staticmethod
        def rma(*a, **k):
            raise ValueError("Fisher scoring diverged")

    monkeypatch.setattr(living, "_meta", lambda: Broken)
    (res,) = run_analysis(_spec(), _rows())
    assert res["estimate"] is None and res["converged"] is False
    assert "could not be fitted: Fisher scoring diverged" in res["note"]


def test_non_convergence_reports_the_fallback(monkeypatch):
    import models.living as living

    real = living._meta()

    class NoConverge:
        escalc = staticmethod(real.escalc)

        @staticmethod
        def rma(yi, vi, method="REML", **k):
            res = real.rma(yi, vi, method="DL", **k)
            res.converged, res.fallback = False, "DL"
            return res

    monkeypatch.setattr(living, "_meta", lambda: NoConverge)
    (res,) = run_analysis(_spec(), _rows())
    assert res["method"] == "DL" and res["converged"] is False
    assert "REML did not converge; τ² from DL" in res["note"]
    assert math.isfinite(res["estimate"])


# --- conclusion flags: review findings ------------------------------------------------------------

def test_a_sign_flip_inside_both_intervals_is_not_a_changed_conclusion():
    """OR 1.03 -> 1.00 with both CIs (and PIs) spanning the null: nothing a reader would conclude changed."""
    old = dict(measure="OR", k=8, estimate=0.0266, pval=0.85, ci_lb=-0.25, ci_ub=0.30, pi_lb=-0.6, pi_ub=0.65)
    new = dict(old, k=9, estimate=-2.2e-6, pval=0.99, ci_lb=-0.26, ci_ub=0.26, pi_lb=-0.55, pi_ub=0.55)
    res = conclusion_flags(old, new)
    assert not res.changed and not res.flags["direction"]
    assert not any(r.startswith("direction") for r in res.reasons)
    # a flip where one interval excludes the null is still a direction change
    sig = dict(old, estimate=0.4, pval=0.01, ci_lb=0.1, ci_ub=0.7)
    res = conclusion_flags(sig, new)
    assert res.changed and res.flags["direction"]
    assert "direction changed: above the null -> below the null" in res.reasons


def test_becoming_or_ceasing_to_be_estimable_is_a_changed_conclusion():
    estimable = dict(measure="OR", k=8, estimate=0.5, pval=0.001, ci_lb=0.2, ci_ub=0.8, pi_lb=0.1, pi_ub=0.9)
    not_estimable = dict(measure="OR", k=9, estimate=None, pval=None, ci_lb=None, ci_ub=None, pi_lb=None,
                         pi_ub=None, note="REML model could not be fitted")
    lost = conclusion_flags(estimable, not_estimable)
    assert lost.changed and lost.flags["estimable"]
    assert any(r.startswith("no longer estimable") for r in lost.reasons)
    gained = conclusion_flags(not_estimable, estimable)
    assert gained.changed and gained.flags["estimable"]
    assert any(r.startswith("now estimable") for r in gained.reasons)
    both = conclusion_flags(not_estimable, dict(not_estimable, k=10))
    assert not both.changed and not both.flags["estimable"]


def test_a_first_prediction_interval_that_includes_the_null_is_flagged():
    """k 1 -> 2: the new CI still excludes the null but the first PI includes it (the PI flag's meaning:
    "the PI now includes the null"; a missing PI stands for the same result's CI, as in an EE model)."""
    spec = _spec(analysis_id="secure:DL", analysis="DL", method="DL", test="z")
    r1 = dict(study_id="a", outcome="secure", kind="binary", events_int=30, n_int=40, events_ctl=10, n_ctl=40)
    (old,) = run_analysis(spec, [r1])
    r2 = dict(study_id="b", outcome="secure", kind="binary", events_int=150, n_int=200, events_ctl=100, n_ctl=200)
    (new,) = run_analysis(spec, [r1, r2])
    assert old["pi_lb"] is None and new["ci_lb"] > 0 and new["pi_lb"] < 0 < new["pi_ub"]  # the premise
    res = conclusion_flags(old, new)
    assert res.changed and res.flags["pi_null"] and not res.flags["ci_null"]
    assert any(r.startswith("PI now crosses the null") for r in res.reasons)
    # ... and the reverse: the PI disappears (k 2 -> 1) and the remaining CI excludes the null
    back = conclusion_flags(new, old)
    assert back.changed and back.flags["pi_null"]
    assert any(r.startswith("PI no longer crosses the null") for r in back.reasons)
    # a first PI that excludes the null like the CI before it changes nothing
    narrow = dict(new, pi_lb=0.1, pi_ub=2.5)
    assert not conclusion_flags(old, narrow).changed
    # analyses that never have a PI (MH, EE) are judged by their CI alone
    no_pi = dict(BASE, pi_lb=None, pi_ub=None)
    assert not conclusion_flags(no_pi, dict(no_pi, k=11, estimate=0.31)).flags["pi_null"]


@pytest.mark.parametrize("measure, expected", [
    # two invented tables: (a, n1, c, n2) = (3, 10, 2, 10) and (6, 10, 24, 30); N = 20 and 40
    ("OR", [0.7, 2.4]),   # b c / N:  7 * 2 / 20,  4 * 24 / 40
    ("RR", [1.0, 6.0]),   # c n1 / N: 2 * 10 / 20, 24 * 10 / 40
    ("RD", [5.0, 7.5]),   # n1 n2 / N: 10 * 10 / 20, 10 * 30 / 40
])
def test_mantel_haenszel_weights_follow_the_measure(measure, expected):
    rows = [dict(study_id="s1", outcome="secure", kind="binary", events_int=3, n_int=10, events_ctl=2, n_ctl=10),
            dict(study_id="s2", outcome="secure", kind="binary", events_int=6, n_int=10, events_ctl=24, n_ctl=30)]
    spec = _spec(analysis_id="secure:MH", analysis="MH", method="MH", test="z", prediction_interval=False,
                 measure=measure)
    (res,) = run_analysis(spec, rows)
    weights = [s["weight"] for s in res["studies"]]
    assert weights == pytest.approx([100 * w / sum(expected) for w in expected], rel=1e-12)
