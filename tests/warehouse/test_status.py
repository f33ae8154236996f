"""`status_summary`: the contract keys of `living-review status --json`."""

from __future__ import annotations

import json
from datetime import date

from support.warehouse_records import fixture_records
from warehouse import db
from warehouse import records as wr
from warehouse.status import status_summary


def test_missing_database_is_reported_empty_and_not_created(tmp_path):
    path = tmp_path / "none" / "warehouse.duckdb"
    summary = status_summary(path)
    assert summary["records"] == 0 and summary["search_runs"] == 0 and summary["last_run"] is None
    assert summary["schema_version"] == 0
    assert not path.exists()


def test_summary_after_a_nightly_run(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    db.migrate(path)
    nightly = wr.start_nightly_run(path, "snapshot", flow_run_id="0b6f-flow")
    recs = fixture_records()
    for strategy, batch, warnings in (("rct-attachment", recs[:5], []), ("uk-interventions", recs[3:], ["PhraseNotFound: x"])):
        run = wr.start_search_run(path, nightly, strategy, "q", "snapshot", date(2024, 1, 1), date(2024, 1, 31))
        wr.append_records(path, run, strategy, batch)
        wr.finish_search_run(path, run, "completed", len(batch), warnings)
    wr.finish_nightly_run(path, nightly, "completed", {"note": "ok"})
    with db.transaction(path) as con:
        con.execute("INSERT INTO screening_decisions (record_id, reviewer, stage, decision) VALUES (1, 'ann', 'title_abstract', 'include')")

    summary = status_summary(path)
    json.dumps(summary)  # JSON-able as printed by `status --json`
    assert summary["records"] == 8 and summary["search_runs"] == 2
    last = summary["last_run"]
    assert last["status"] == "completed" and last["new_records"] == 8
    assert last["source"] == "snapshot" and last["flow_run_id"] == "0b6f-flow"
    assert last["started_at"] and last["finished_at"]
    assert last["strategies"]["rct-attachment"] | {} == {
        "status": "completed", "found": 5, "new": 5, "duplicates": 0, "updated": 0, "warnings": [],
        "windows": [["2024-01-01", "2024-01-31"]], "errors": []}
    assert last["strategies"]["uk-interventions"]["new"] == 3
    assert last["strategies"]["uk-interventions"]["duplicates"] == 2
    assert last["strategies"]["uk-interventions"]["warnings"] == ["PhraseNotFound: x"]
    assert summary["decisions"]["total"] == 1 and summary["decisions"]["by_decision"] == {"include": 1}
    assert summary["schema_version"] == max(v for v, _, _ in db.migration_files())


def test_last_run_is_the_latest_even_when_it_failed(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    db.migrate(path)
    first = wr.start_nightly_run(path, "snapshot")
    wr.finish_nightly_run(path, first, "completed", {})
    second = wr.start_nightly_run(path, "entrez")
    wr.finish_nightly_run(path, second, "failed", {}, error="HTTP 429 after 6 tries")
    last = status_summary(path)["last_run"]
    assert (last["status"], last["source"], last["error"], last["new_records"]) == (
        "failed", "entrez", "HTTP 429 after 6 tries", 0)
