"""warehouse.ranking: stored versions, scores and recall estimates read back as the web app expects."""

from __future__ import annotations

from warehouse import ranking as wr
from warehouse.db import connect, migrate, transaction

ESTIMATE = {"recall_lower_bound": 0.8, "confidence": 0.95, "target": 0.95, "records_to_screen_for_target": 120,
            "screened": 300, "unscreened": 700, "found": 20, "audited": 40, "audit_hits": 1, "audit_pending": 3,
            "missed_upper_bound": 5}


def test_empty_warehouse_reads_as_nothing_yet(tmp_path):
    db = tmp_path / "w.duckdb"
    migrate(db)
    with connect(db) as con:
        assert wr.latest_scores(con) == {}
        assert wr.latest_recall_estimate(con) is None
        status = wr.ranking_status(con)
    assert status["model_version"] is None and "living-review rank" in status["message"]


def test_scores_estimates_and_status_round_trip(tmp_path):
    db = tmp_path / "w.duckdb"
    migrate(db)
    with transaction(db) as con:
        wr.store_model_version(con, "v1", "trained", "fp1", {"C": 0.11}, {"scikit-learn": "1.9"}, {}, 10, 2, None)
        wr.store_scores(con, "v1", [(1, 0.9, 0.9, 1, False), (2, 0.4, 0.1, 2, True), (3, 0.2, 0.2, 3, False)])
        wr.store_recall_estimate(con, ESTIMATE, "v1", "night-1")
    with transaction(db) as con:  # a later version rescoring record 1 only
        con.execute("UPDATE model_versions SET created_at = created_at - INTERVAL 1 HOUR")
        con.execute("UPDATE record_scores SET scored_at = scored_at - INTERVAL 1 HOUR")
        wr.store_model_version(con, "v2", "trained", "fp2", {}, {}, {}, 11, 2, None)
        wr.store_scores(con, "v2", [(1, 0.7, 0.7, 1, False)])
    with connect(db) as con:
        scores = wr.latest_scores(con)
        est = wr.latest_recall_estimate(con)
        status = wr.ranking_status(con)
        assert wr.latest_fingerprint(con) == "fp2"
    assert scores == {1: (0.7, "v2"), 2: (0.4, "v1"), 3: (0.2, "v1")}
    for key in ("recall_lower_bound", "confidence", "target", "records_to_screen_for_target", "screened",
                "unscreened", "model_version", "computed_at"):
        assert key in est
    assert est["recall_lower_bound"] == 0.8 and est["model_version"] == "v1" and est["records_to_screen_for_target"] == 120
    assert status["model_version"] == "v2" and status["scored"] == 1
    assert status["recall_estimate"]["screened"] == 300


def test_rescoring_same_version_replaces_the_row(tmp_path):
    db = tmp_path / "w.duckdb"
    migrate(db)
    with transaction(db) as con:
        wr.store_model_version(con, "v1", "cold_start", "fp", {}, {}, {}, 0, 0, None)
        wr.store_scores(con, "v1", [(1, 0.3, 0.3, 1, False)])
        wr.store_scores(con, "v1", [(1, 0.6, 0.6, 1, False)])
        assert con.execute("SELECT count(*) FROM record_scores").fetchall()[0][0] == 1
        assert wr.latest_scores(con) == {1: (0.6, "v1")}
