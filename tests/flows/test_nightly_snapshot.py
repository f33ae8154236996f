"""The nightly flow on the bundled snapshot of real records, under a real (temporary) Prefect API."""

from __future__ import annotations

import contextlib
import io
import json

from living_review.cli import main as cli
from living_review.settings import get_settings


def _cli_json(args: list[str]) -> dict:
    """Run the CLI and parse its stdout. Not capsys: Prefect's console logger would keep its closed stream."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli(args) == 0
    return json.loads(out.getvalue())


def _status(_=None) -> dict:
    return _cli_json(["status", "--json"])


def test_status_before_any_run_is_honest(lr_home):
    report = _status()
    assert report["records"] == 0 and report["search_runs"] == 0 and report["last_run"] is None


def test_nightly_on_snapshot_stores_records_once(prefect_harness, lr_home):
    from flows.nightly import nightly_update
    from warehouse.db import connect, transaction

    first = nightly_update(source="snapshot")
    assert first["status"] == "completed"
    assert first["new_records"] > 0
    found = {s["strategy"]: s for s in first["strategies"]}
    assert set(found) == {"attachment-rcts", "uk-interventions"}
    report = _status()
    assert report["records"] == first["new_records"]
    assert report["search_runs"] >= 2
    assert report["last_run"]["status"] == "completed"
    assert report["last_run"]["new_records"] == first["new_records"]

    db = get_settings().db_path
    with connect(db) as con:
        versions_before = con.execute("select count(*) from record_versions").fetchall()[0][0]
        # every stored record was found by at least one strategy of this run
        orphans = con.execute(
            "select count(*) from records r where not exists (select 1 from record_sources s where s.record_id = r.record_id)"
        ).fetchall()[0][0]
    assert orphans == 0

    # Forget the committed windows so the rerun searches exactly the same windows again.
    with transaction(db) as con:
        con.execute("delete from search_windows")
    second = nightly_update(source="snapshot")
    assert second["status"] == "completed"
    assert second["new_records"] == 0
    assert sum(s["found"] for s in second["strategies"]) == sum(s["found"] for s in first["strategies"])
    assert sum(s["fetched"] for s in second["strategies"]) == 0  # only what is new is fetched
    again = _status()
    assert again["records"] == report["records"]
    with connect(db) as con:
        assert con.execute("select count(*) from record_versions").fetchall()[0][0] == versions_before


def test_cli_nightly_prints_summary(prefect_harness, lr_home):
    summary = _cli_json(["nightly", "--source", "snapshot", "--json"])
    assert summary["status"] == "completed" and summary["source"] == "snapshot"
    assert "no outcome data" in json.dumps(summary["pooling"]).lower() or summary["pooling"].get("changed") is False
