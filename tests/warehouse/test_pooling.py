"""Refreshing pooled effects end to end on the invented trials (tests only, never evidence).

Stored numbers are checked against metafor 3.8-1's values for the same data
(tests/fixtures/pooling/reference_cases_synthetic.json).
"""

from __future__ import annotations

import math

import pytest

from living_review.pooling import NO_DATA_MESSAGE, refresh_pooled_effects_now, whats_new_markdown
from support.pooling import import_synthetic, reference_case, synthetic_config
from warehouse.db import connect, migrate, transaction
from warehouse.evidence import save_outcomes
from warehouse.pooling import latest_pooled_results, pooling_status


def _close(x, e, tol) -> bool:
    return abs(x - e) <= tol["abs"] + tol["rel"] * abs(e)


def _matches(stored: dict, case: dict, mapping: dict[str, str]) -> None:
    """All mapped fields within tolerance of `expected`, or all of `expected_converged`."""
    tol = case["tolerance"]
    sets = [case["expected"]] + ([case["expected_converged"]] if "expected_converged" in case else [])
    misses = []
    for exp in sets:
        bad = {ours: (stored[ours], exp[theirs]) for ours, theirs in mapping.items()
               if not _close(stored[ours], exp[theirs], tol)}
        if not bad:
            return
        misses.append(bad)
    raise AssertionError(f"{case['id']}: {misses}")


def _counts(db) -> tuple[int, int]:
    with connect(db) as con:
        return (con.execute("SELECT count(*) FROM evidence_versions").fetchall()[0][0],
                con.execute("SELECT count(*) FROM pooled_results").fetchall()[0][0])


@pytest.fixture
def setup(tmp_path):
    config = synthetic_config(tmp_path)
    db = tmp_path / "w.duckdb"
    return config, db


def test_no_outcome_data_says_so_and_writes_nothing(setup, tmp_path):
    config, db = setup
    summary = refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r")
    assert summary["changed"] is False and summary["message"] == NO_DATA_MESSAGE
    assert _counts(db) == (0, 0)
    with connect(db) as con:
        status = pooling_status(con)
        assert status["message"] == NO_DATA_MESSAGE and status["evidence_version"] is None
        assert latest_pooled_results(con) == []
    assert NO_DATA_MESSAGE in whats_new_markdown(summary)


def test_synthetic_trials_pool_to_metafor_values_and_refresh_is_versioned(setup, tmp_path):
    config, db = setup
    counts = import_synthetic(db, config)
    assert counts["added"] == 36 and counts["studies_created"] == 12
    s1 = refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r", trigger="test")
    assert s1["changed"] and s1["evidence_version"] == 1 and s1["previous_version"] is None
    assert len(s1["diff"]["studies_added"]) == 12
    with connect(db) as con:
        results = {(r["analysis_id"], r["subgroup"]): r for r in latest_pooled_results(con)}
    assert len(results) == 3 + 3 + 2 + 3 * 3  # primary and DL x 3 outcomes, MH x 2 binary, 3 subgroups x 3
    # primary REML (Knapp-Hartung changes the CI only): estimate, tau2, Q match metafor's REML fit
    est_fields = {"estimate": "estimate", "tau2": "tau2", "Q": "QE", "I2": "I2"}
    _matches(results[("secure:primary", "")], reference_case("rma_attach_secure_or_reml"), est_fields)
    _matches(results[("disorganised:primary", "")], reference_case("rma_attach_disorg_or_reml"), est_fields)
    # sensitivity DL with a z-test on the SMDs: every reported number
    _matches(results[("sensitivity:DL", "")], reference_case("rma_attach_smd_dl"),
             {"estimate": "estimate", "se": "se", "stat": "zval", "pval": "pval", "ci_lb": "ci_lb", "ci_ub": "ci_ub",
              "tau2": "tau2", "I2": "I2", "H2": "H2", "Q": "QE", "Qp": "QEp", "pi_lb": "pi_lb", "pi_ub": "pi_ub"})
    # Mantel-Haenszel on the disorganised counts (double-zero trial dropped from Q)
    mh = results[("disorganised:MH", "")]
    _matches(mh, reference_case("mh_attach_disorg_or"),
             {"estimate": "estimate", "se": "se", "pval": "pval", "ci_lb": "ci_lb", "ci_ub": "ci_ub", "Q": "QE",
              "Qp": "QEp", "I2": "I2"})
    assert mh["Q_df"] == 10 and mh["k"] == 12
    # Knapp-Hartung: t on k - 1 df, so the primary CI is wider than the z-based one here
    prim = results[("secure:primary", "")]
    assert prim["test"] == "knha" and prim["df"] == 11
    z_case = reference_case("rma_attach_secure_or_reml")["expected"]
    assert prim["ci_ub"] - prim["ci_lb"] > z_case["ci_ub"] - z_case["ci_lb"]
    assert prim["exp_estimate"] == pytest.approx(math.exp(prim["estimate"]))
    # trim-and-fill for the funnel plot (metafor refits the filled data with a z-test)
    with connect(db) as con:
        extras = con.execute("SELECT extras FROM pooled_results WHERE analysis_id = 'secure:primary'").fetchall()[0][0]
    import json

    tf = json.loads(extras)["trimfill"]
    tf_case = reference_case("trimfill_attach_secure_or_reml")
    assert tf["k0"] == tf_case["expected"]["k0"]
    assert any(_close(tf["estimate"], e["estimate"], tf_case["tolerance"])
               for e in (tf_case["expected"], tf_case["expected_converged"]))
    # subgroup rows: separate tau2 per intervention with a Q-between
    sub = [results[("secure:primary:by-intervention", g)] for g in ("group", "home_visiting", "video_feedback")]
    assert [r["k"] for r in sub] == [3, 3, 6] and sub[0]["q_between_df"] == 2

    # unchanged evidence: nothing written
    before = _counts(db)
    s2 = refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r")
    assert s2 == {**s2, "changed": False, "evidence_version": 1} and _counts(db) == before
    assert import_synthetic(db, config)["unchanged"] == 36  # identical re-import adds nothing
    assert refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r")["changed"] is False

    # a correction (Trial H: 17 of 18 secure rather than 18) -> version 2 with diff and flags
    with transaction(db) as con:
        save_outcomes(con, [{"study_id": "trial-h-2015", "outcome": "secure", "events_int": 17, "n_int": 18,
                             "events_ctl": 12, "n_ctl": 18}], config, entered_by="test")
    s3 = refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r", trigger="test")
    assert s3["changed"] and s3["evidence_version"] == 2 and s3["previous_version"] == 1
    assert s3["diff"]["corrected"] == [{"study_id": "trial-h-2015", "outcome": "secure",
                                        "changes": {"events_int": [18, 17]}}]
    assert s3["diff"]["added"] == [] and s3["diff"]["removed"] == []
    assert _counts(db) == (2, 2 * before[1])  # every result stored again; version 1 kept
    by_id = {(r["analysis_id"], r["subgroup"]): r for r in s3["results"]}
    assert not by_id[("disorganised:primary", "")]["conclusion_changed"]
    assert by_id[("disorganised:primary", "")]["change_reasons"] == []
    assert any(r.startswith("OR ") for r in by_id[("secure:primary", "")]["change_reasons"])
    with connect(db) as con:
        status = pooling_status(con)
    assert status["evidence_version"] == 2 and status["studies"] == 12 and status["outcome_entries"] == 36
    md = whats_new_markdown(s3)
    assert "| Date | Event | Description |" in md and "corrected: trial-h-2015/secure (events_int)" in md


def test_a_study_that_flips_a_conclusion_is_flagged(setup, tmp_path):
    config, db = setup
    import_synthetic(db, config)
    refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r")
    with transaction(db) as con:  # an invented large trial pointing the other way
        from warehouse.evidence import save_study

        save_study(con, {"study_id": "synthetic-z", "label": "Synthetic Z", "intervention": "group"}, config)
        save_outcomes(con, [{"study_id": "synthetic-z", "outcome": "secure", "events_int": 40, "n_int": 300,
                             "events_ctl": 160, "n_ctl": 300}], config)
    s = refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r")
    prim = next(r for r in s["results"] if r["analysis_id"] == "secure:primary" and not r["subgroup"])
    assert prim["conclusion_changed"] and prim["k"] == 13
    assert any(r.startswith("significance") or r.startswith("direction") for r in prim["change_reasons"])
    assert s["diff"]["studies_added"] == ["synthetic-z"] and s["conclusions_changed"] >= 1
    assert "conclusions have changed" in whats_new_markdown(s)


def test_two_studies_and_one_study_give_defined_answers(setup, tmp_path):
    config, db = setup
    migrate(db)
    with transaction(db) as con:
        from warehouse.evidence import save_study

        for sid in ("synthetic-1", "synthetic-2"):
            save_study(con, {"study_id": sid, "label": sid, "intervention": "group"}, config)
        save_outcomes(con, [
            {"study_id": "synthetic-1", "outcome": "secure", "events_int": 10, "n_int": 20, "events_ctl": 5, "n_ctl": 20},
            {"study_id": "synthetic-2", "outcome": "secure", "events_int": 12, "n_int": 25, "events_ctl": 9, "n_ctl": 24},
            {"study_id": "synthetic-1", "outcome": "sensitivity", "mean_int": 1.0, "sd_int": 1.0, "n_int": 20,
             "mean_ctl": 0.5, "sd_ctl": 1.2, "n_ctl": 20},
        ], config)
    s = refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r")
    by_id = {(r["analysis_id"], r["subgroup"]): r for r in s["results"]}
    assert by_id[("secure:primary", "")]["k"] == 2 and math.isfinite(by_id[("secure:primary", "")]["ci_ub"])
    one = by_id[("sensitivity:primary", "")]
    assert one["k"] == 1 and one["method"] == "EE" and one["pi_lb"] is None and "k = 1" in one["note"]
    assert ("disorganised:primary", "") not in by_id  # no data for that outcome: not pooled, not invented
    for r in s["results"]:
        for f in ("estimate", "ci_lb", "ci_ub", "pval"):
            assert r[f] is None or math.isfinite(r[f])


def test_a_refresh_that_loses_the_race_leaves_the_stored_versions_plots_alone(tmp_path):
    """Two refreshes (a nightly run, a web save) both compute version 1 from different evidence; the
    second to store must neither overwrite the winner's plot files nor leave its own behind."""
    from living_review import pooling

    config = synthetic_config(tmp_path, outcomes=["secure"], sensitivity=False)
    db, reports = tmp_path / "w.duckdb", tmp_path / "reports"
    import_synthetic(db, config)
    winner = pooling.compute_version(pooling.gather_evidence(db, config))
    pooling.render_plots(winner, config, reports, db)
    with transaction(db) as con:  # one more trial arrives while the first refresh is still plotting
        save_outcomes(con, [{"study_id": "trial-h-2015", "outcome": "secure", "events_int": 17, "n_int": 18,
                             "events_ctl": 12, "n_ctl": 18}], config)
    loser = pooling.compute_version(pooling.gather_evidence(db, config))
    assert (winner.version, loser.version) == (1, 1) and winner.fingerprint != loser.fingerprint
    stored = {p: p.read_bytes() for p in reports.rglob("*") if p.is_file()}
    pooling.render_plots(loser, config, reports, db)
    pooling.store_version(db, winner, "nightly")
    with pytest.raises(pooling.ConcurrentRefresh):
        pooling.store_version(db, loser, "web")
    pooling.discard_plots(loser, reports, db)
    assert {p: p.read_bytes() for p in reports.rglob("*") if p.is_file()} == stored
    with connect(db) as con:
        for r in latest_pooled_results(con):
            assert (reports / r["forest_plot"]).read_bytes() == stored[reports / r["forest_plot"]]


def test_plots_are_written_and_reused_for_analyses_whose_inputs_did_not_change(tmp_path):
    config = synthetic_config(tmp_path, outcomes=["secure", "disorganised"], sensitivity=False)
    db, reports = tmp_path / "w.duckdb", tmp_path / "reports"
    import_synthetic(db, config)
    s1 = refresh_pooled_effects_now(db, config, reports_dir=reports)
    assert len(s1["plots"]) == 2 * 4 * 2  # 2 outcomes x (forest, subgroup forest, funnel, history) x PNG+SVG
    with transaction(db) as con:
        save_outcomes(con, [{"study_id": "trial-h-2015", "outcome": "secure", "events_int": 17, "n_int": 18,
                             "events_ctl": 12, "n_ctl": 18}], config)
    s2 = refresh_pooled_effects_now(db, config, reports_dir=reports)
    v1, v2 = f"plots/v1-{s1['fingerprint'][:8]}", f"plots/v2-{s2['fingerprint'][:8]}"
    assert v1 != v2 and all(f"/{v2}/secure-" in p for p in s2["plots"]) and len(s2["plots"]) == 4 * 2
    with connect(db) as con:
        rows = {(r["analysis_id"], r["subgroup"]): r for r in latest_pooled_results(con)}
    assert rows[("secure:primary", "")]["forest_plot"] == f"{v2}/secure-primary-forest.png"
    assert rows[("secure:primary", "")]["cumulative_plot"] == f"{v2}/secure-primary-history.png"
    assert rows[("disorganised:primary", "")]["forest_plot"] == f"{v1}/disorganised-primary-forest.png"
    assert rows[("disorganised:primary:by-intervention", "group")]["forest_plot"] == \
        f"{v1}/disorganised-primary-by-intervention-forest.png"
    for r in rows.values():
        assert (reports / r["forest_plot"]).exists()


def _two_outcomes_one_study_each(db, config, intervention_2: str = "group"):
    """secure: one significant invented study (OR 9, p < 0.001); sensitivity: another study (SMD)."""
    from warehouse.evidence import save_study

    migrate(db)
    with transaction(db) as con:
        save_study(con, {"study_id": "synthetic-1", "label": "synthetic-1", "intervention": "group"}, config)
        save_study(con, {"study_id": "synthetic-2", "label": "synthetic-2", "intervention": intervention_2}, config)
        save_outcomes(con, [
            {"study_id": "synthetic-1", "outcome": "secure", "events_int": 30, "n_int": 40, "events_ctl": 10,
             "n_ctl": 40},
            {"study_id": "synthetic-2", "outcome": "sensitivity", "mean_int": 1.0, "sd_int": 1.0, "n_int": 40,
             "mean_ctl": 0.2, "sd_ctl": 1.0, "n_ctl": 40},
        ], config)


def test_an_analysis_that_is_no_longer_estimable_is_a_changed_conclusion(tmp_path):
    """Retracting the only study of an outcome: version 2 says its conclusions changed, everywhere."""
    from living_review import notify
    from warehouse.evidence import retract_outcome
    from warehouse.pooling import results_of_version

    config = synthetic_config(tmp_path, sensitivity=False)
    db = tmp_path / "w.duckdb"
    _two_outcomes_one_study_each(db, config)
    s1 = refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r")
    assert ("secure:primary", "") in {(r["analysis_id"], r["subgroup"]) for r in s1["results"]}
    with transaction(db) as con:
        retract_outcome(con, "synthetic-1", "secure", note="retracted paper")
    s2 = refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r")
    assert s2["evidence_version"] == 2
    dropped = {(d["analysis_id"], d["subgroup"]): d for d in s2["dropped"]}
    assert set(dropped) == {("secure:primary", ""), ("secure:primary:by-intervention", "group")}
    assert all(d["conclusion_changed"] for d in dropped.values())
    assert dropped[("secure:primary", "")]["change_reasons"][0].startswith("no longer estimable")
    assert s2["conclusions_changed"] == 2
    with connect(db) as con:
        assert con.execute("SELECT conclusions_changed FROM evidence_versions WHERE version = 2").fetchall() == [(2,)]
        old, new = results_of_version(con, 1, studies=False), results_of_version(con, 2, studies=False)
    md = whats_new_markdown(s2)
    assert "Data withdrawn and conclusions have changed (evidence version 2)" in md
    assert "conclusions have not changed" not in md
    assert "Changed: secure:primary (no longer estimable" in md
    assert "| secure | primary (no estimate) | 0 | not estimable |" in md
    assert NO_DATA_MESSAGE not in md
    # the notification names it too (old effect -> not estimable)
    changes = notify.changed_conclusions(old, new, s2["dropped"])
    assert [(c["analysis_id"], c["subgroup"]) for c in changes] == [
        ("secure:primary", ""), ("secure:primary:by-intervention", "group")]
    assert changes[0]["old"].startswith("OR 9.00") and changes[0]["new"] == "not estimable"
    assert changes[0]["reasons"][0].startswith("no longer estimable")
    msg = notify.conclusions_changed_by("test", 2, 1, old, new)
    assert msg is not None and any(ln.startswith("- secure:primary: OR 9.00") and "no longer estimable" in ln
                                   for ln in msg.body.splitlines())


def test_retracting_every_outcome_entry_says_so_not_that_no_data_was_ever_entered(tmp_path):
    from warehouse.evidence import retract_outcome

    config = synthetic_config(tmp_path, sensitivity=False)
    db = tmp_path / "w.duckdb"
    _two_outcomes_one_study_each(db, config)
    refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r")
    with transaction(db) as con:
        retract_outcome(con, "synthetic-1", "secure")
        retract_outcome(con, "synthetic-2", "sensitivity")
    s = refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r")
    assert s["changed"] and s["evidence_version"] == 2 and s["results"] == []
    assert s["conclusions_changed"] == 4 == len(s["dropped"])
    md = whats_new_markdown(s)
    assert "Data withdrawn and conclusions have changed" in md
    assert NO_DATA_MESSAGE not in md and "no outcome data remain" in md


def test_a_subgroup_that_empties_is_a_changed_conclusion(tmp_path):
    """Moving a study to another intervention empties its old subgroup: that subgroup's estimate is gone."""
    from warehouse.evidence import save_study

    config = synthetic_config(tmp_path, outcomes=["sensitivity"], sensitivity=False)
    db = tmp_path / "w.duckdb"
    migrate(db)
    with transaction(db) as con:
        for sid, iv in (("synthetic-1", "group"), ("synthetic-2", "home_visiting")):
            save_study(con, {"study_id": sid, "label": sid, "intervention": iv}, config)
        save_outcomes(con, [
            {"study_id": sid, "outcome": "sensitivity", "mean_int": m, "sd_int": 1.0, "n_int": 40, "mean_ctl": 0.2,
             "sd_ctl": 1.0, "n_ctl": 40} for sid, m in (("synthetic-1", 1.0), ("synthetic-2", 0.9))], config)
    refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r")
    with transaction(db) as con:
        save_study(con, {"study_id": "synthetic-2", "label": "synthetic-2", "intervention": "group"}, config)
    s = refresh_pooled_effects_now(db, config, plots=False, reports_dir=tmp_path / "r")
    assert [(d["analysis_id"], d["subgroup"]) for d in s["dropped"]] == [
        ("sensitivity:primary:by-intervention", "home_visiting")]
    assert s["conclusions_changed"] >= 1
    md = whats_new_markdown(s)
    assert "conclusions have changed" in md
    assert "sensitivity:primary:by-intervention [home_visiting] (no longer estimable" in md
