"""The workspace reads the ranking capability's real warehouse shapes (not a stand-in)."""

from __future__ import annotations

from living_review.web import integrations
from warehouse import ranking as wr
from warehouse.db import connect, migrate, transaction


def test_scores_version_and_recall_from_the_ranking_tables(tmp_path):
    db = tmp_path / "w.duckdb"
    migrate(db)
    with connect(db) as con:
        assert integrations.ranking_scores(con) == (None, None)
        assert integrations.recall_estimate(con) is None
    with transaction(db) as con:
        wr.store_model_version(con, "v1", "trained", "fp1", {}, {}, {}, 10, 2, None)
        wr.store_scores(con, "v1", [(1, 0.9, 0.9, 1, False), (2, 0.4, 0.1, 2, True)])
        wr.store_recall_estimate(con, {"recall_lower_bound": 0.8, "confidence": 0.95, "target": 0.95,
                                       "records_to_screen_for_target": 12, "screened": 30, "unscreened": 70,
                                       "found": 5, "audited": 9, "audit_hits": 1}, "v1", "night-1")
    with connect(db) as con:
        assert integrations.ranking_scores(con) == ({1: 0.9, 2: 0.4}, "v1")
        assert integrations.model_version(con) == "v1"
        recall = integrations.recall_estimate(con)
    assert recall["recall_lower_bound"] == 0.8 and recall["records_to_screen_for_target"] == 12
