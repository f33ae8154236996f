"""The ranking job behind `rank_unscreened` and `living-review rank`: cold start, retrain-on-change, recall."""

from __future__ import annotations

import pytest
from support.ranking_db import decide, fixture_records, load_fixture_into

from living_review.config import load_review
from living_review.settings import get_settings


@pytest.fixture
def warehouse(lr_home):
    settings = get_settings()
    ids = load_fixture_into(settings.db_path)
    return settings, ids


def test_cold_start_before_any_decision_scores_everything(warehouse):
    from living_review.ranking_job import run_ranking
    from warehouse.db import connect
    from warehouse.ranking import latest_recall_estimate, latest_scores

    settings, ids = warehouse
    out = run_ranking()
    assert out["kind"] == "cold_start" and out["retrained"] is True
    assert out["scored"] == len(ids) and len(out["top"]) == 5
    with connect(settings.db_path) as con:
        scores = latest_scores(con)
        est = latest_recall_estimate(con)
    assert set(scores) == set(ids.values())
    assert est["screened"] == 0 and est["unscreened"] == len(ids)


def test_retrains_only_when_settled_decisions_change(warehouse):
    from living_review.ranking_job import run_ranking
    from warehouse.db import connect, transaction
    from warehouse.ranking import latest_scores

    settings, ids = warehouse
    df = fixture_records()
    labels = {ids[f"fx{r}"]: y for r, y in zip(df["record_id"], df["label_included"])}
    decided = [rid for rid, y in labels.items() if y][:3] + [rid for rid, y in labels.items() if not y][:12]
    with transaction(settings.db_path) as con:
        for rid in decided:
            decide(con, rid, "include" if labels[rid] else "exclude")
        decide(con, [r for r in labels if r not in decided][0], "include", reviewers=("ann",))  # unsettled
    first = run_ranking()
    assert first["kind"] == "trained" and first["retrained"] is True and first["n_train"] == 15
    assert first["scored"] == len(ids) - 15
    again = run_ranking()
    assert again["retrained"] is False and again["model_version"] == first["model_version"]
    with transaction(settings.db_path) as con:
        decide(con, [r for r in labels if r not in decided][1], "exclude")
    third = run_ranking()
    assert third["retrained"] is True and third["model_version"] != first["model_version"]
    with connect(settings.db_path) as con:
        scores = latest_scores(con)
        card = con.execute("SELECT library_versions, n_train FROM model_versions WHERE model_version = ?",
                           [third["model_version"]]).fetchall()[0]
    assert not set(decided) & {r for r, (_, v) in scores.items() if v == third["model_version"]}
    assert "scikit-learn" in card[0] and card[1] == 16
    unscreened = [r for r in labels if r not in decided][2:]
    ranked_inc = sum(labels[r] for r in sorted(unscreened, key=lambda r: -scores[r][0])[:20])
    assert ranked_inc >= 8  # 13 includes left among 63: the top 20 should hold well over chance (≈4)
    assert (settings.models_dir / f"{third['model_version']}.json").exists()


def test_audit_records_are_flagged_and_spread_through_the_queue(warehouse):
    from living_review.ranking_job import _interleave

    prob = {i: 1 - i / 100 for i in range(1, 41)}
    audits = {7: 0.01, 30: 0.002}
    rows = _interleave(prob, audits, 0.1)
    flagged = [r for r in rows if r[4]]
    assert [r[0] for r in flagged] == [30, 7]  # audit records in key order, whatever their probability
    assert [r[3] for r in flagged] == [10, 20]
    by_score = sorted(rows, key=lambda r: -r[1])
    assert [r[0] for r in by_score].index(30) < 12  # a score-sorted queue meets it early
    assert sorted(r[0] for r in rows) == sorted(prob)


def test_recall_estimate_counts_audit_records_by_their_key(warehouse):
    from living_review import ranking_job
    from models.recall import in_audit
    from warehouse.db import transaction

    settings, ids = warehouse
    config = load_review()
    config.ranking.audit_fraction = 0.5
    decided = list(ids)[:30]
    with transaction(settings.db_path) as con:
        for pmid in decided:
            decide(con, ids[pmid], "exclude")
    out = ranking_job.run_ranking(config=config)
    rec = out["recall_estimate"]
    undecided = [p for p in ids if p not in decided]
    assert out["audit_pending"] == sum(in_audit(p, 0.5) for p in undecided) > 0
    assert 0 < rec["audited"] <= sum(in_audit(p, 0.5) for p in decided)
    assert rec["found"] == rec["audit_hits"] == 0 and rec["screened"] == 30
    assert rec["recall_lower_bound"] == 0.0  # nothing found yet: no recall to claim


@pytest.mark.parametrize("fraction", [0.2, 0.3, 0.5])
def test_recall_bound_is_not_lifted_by_the_model_learning_the_audit_labels(warehouse, fraction):
    """Reviewers screened exactly the random audit sample. A model trained on those labels scores the
    audited includes high in-sample; judged by it, they would look "already passed by the ranking" and drop
    out of the sample, leaving a hit-free sample and a bound above the true recall (the bug this pins)."""
    from living_review import ranking_job
    from models.recall import in_audit, recall_bound
    from warehouse.db import transaction

    settings, ids = warehouse
    labels = {ids[f"fx{r}"]: int(y) for r, y in zip(fixture_records().record_id, fixture_records().label_included)}
    config = load_review()
    config.ranking.audit_fraction = fraction
    audited = [rid for pmid, rid in ids.items() if in_audit(pmid, fraction)]
    with transaction(settings.db_path) as con:
        for rid in audited:
            decide(con, rid, "include" if labels[rid] else "exclude")
    found = sum(labels[r] for r in audited)
    assert 0 < found < len(audited)  # the model is trained, on audit labels only
    rec = ranking_job.run_ranking(config=config)["recall_estimate"]
    true_recall = found / sum(labels.values())
    assert rec["found"] == found
    assert rec["recall_lower_bound"] <= true_recall
    # judged blind to the audit's labels, no audited include counts as already passed by the ranking
    assert rec["audit_hits"] == found and rec["audited"] <= len(audited)
    assert rec["recall_lower_bound"] == pytest.approx(
        recall_bound(found, rec["audited"], rec["audit_hits"], rec["unscreened"])[0])


def test_prefect_task_wraps_the_job(warehouse):
    from tasks.rank import rank_unscreened

    out = rank_unscreened.fn(run="test")
    assert out["kind"] == "cold_start" and "recall_estimate" in out


def test_empty_warehouse_is_a_clean_no_op(lr_home):
    from living_review.cli import main
    from living_review.ranking_job import run_ranking

    out = run_ranking()
    assert out["model_version"] is None and out["scored"] == 0 and out["top"] == []
    assert main(["rank"]) == 0


def test_rank_command_prints_queue_and_recall(warehouse, capsys):
    from living_review.cli import main

    assert main(["rank", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "cold_start" in out and "recall:" in out and "with 95% confidence" in out
    assert out.count("PMID fx") == 3


def test_cold_start_puts_seed_studies_from_the_warehouse_first(warehouse):
    from living_review.ranking_job import run_ranking

    settings, ids = warehouse
    config = load_review()
    config.ranking.seed_pmids = ["fx2", "999999"]  # one in the warehouse, one not
    config.ranking.audit_fraction = 0.0
    out = run_ranking(config=config)
    assert out["kind"] == "cold_start" and out["top"][0]["pmid"] == "fx2"


def test_quiet_night_keeps_scores_without_rescoring(warehouse, monkeypatch):
    """Nothing new and no new decisions: the stored scores stand and no record is read again."""
    import living_review.ranking_job as job
    from warehouse.db import connect, transaction

    settings, ids = warehouse
    first = job.run_ranking()
    assert first.get("unchanged") is None

    def must_not_load(con):
        raise AssertionError("records were re-read on a night with nothing new")

    load_records = job._load_records
    monkeypatch.setattr(job, "_load_records", must_not_load)
    again = job.run_ranking()
    assert again["unchanged"] is True and again["retrained"] is False
    assert again["model_version"] == first["model_version"] and again["top"] == first["top"]
    with connect(settings.db_path) as con:
        assert con.execute("select count(distinct model_version) from record_scores").fetchall()[0][0] == 1

    # a new decision (or record) changes the input state: the job works again
    monkeypatch.setattr(job, "_load_records", load_records)  # not undo(): that would drop LIVING_REVIEW_HOME too
    with transaction(settings.db_path) as con:
        decide(con, next(iter(ids.values())), "exclude")
    assert job.run_ranking().get("unchanged") is None
    # --force always re-scores
    assert job.run_ranking(force=True).get("unchanged") is None
