"""What the warehouse holds and how the last nightly run went (`living-review status --json`).

Keys are a contract for external checks: they may be added, never renamed.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from pathlib import Path

from warehouse.db import connect, schema_version


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _table_names(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def status_summary(db_path: str | os.PathLike) -> dict:
    """Counts, the last nightly run with its per-strategy counts, decisions and the schema version.

    A missing database is reported as empty (nothing has run yet) without creating the file.
    """
    empty = {
        "records": 0,
        "record_versions": 0,
        "search_runs": 0,
        "nightly_runs": 0,
        "last_run": None,
        "decisions": {"total": 0, "records_with_decisions": 0, "by_decision": {}},
        "schema_version": 0,
        "db_path": str(db_path),
    }
    if not Path(db_path).exists():
        return empty
    with connect(db_path) as con:
        tables = _table_names(con)
        summary = dict(empty)
        summary["schema_version"] = schema_version(con)
        if "records" not in tables:
            return summary
        count = lambda table: con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]  # noqa: E731
        summary["records"] = count("records")
        summary["record_versions"] = count("record_versions")
        summary["search_runs"] = count("search_runs")
        summary["nightly_runs"] = count("nightly_runs")
        summary["last_run"] = _last_run(con)
        total, with_decisions = con.execute(
            "SELECT count(*), count(DISTINCT record_id) FROM screening_decisions").fetchall()[0]
        by_decision = dict(con.execute(
            "SELECT decision, count(*) FROM screening_decisions GROUP BY decision ORDER BY decision").fetchall())
        summary["decisions"] = {"total": total, "records_with_decisions": with_decisions,
                                "by_decision": by_decision}
    return summary


def _last_run(con) -> dict | None:
    rows = con.execute(
        """SELECT nightly_id, flow_run_id, source, status, started_at, finished_at, new_records, summary, error
           FROM nightly_runs ORDER BY started_at DESC, nightly_id DESC LIMIT 1""").fetchall()
    if not rows:
        return None
    nightly_id, flow_run_id, source, status, started, finished, new, summary, error = rows[0]
    strategies: dict[str, dict] = {}
    for strategy, run_status, found, new_r, dup, upd, warnings, w_start, w_end, s_err in con.execute(
        """SELECT strategy, status, found, new_records, duplicates, updated, warnings, window_start, window_end, error
           FROM search_runs WHERE nightly_id = ? ORDER BY started_at, run_id""", [nightly_id]).fetchall():
        entry = strategies.setdefault(strategy, {
            "status": run_status, "found": 0, "new": 0, "duplicates": 0, "updated": 0, "warnings": [],
            "windows": [], "errors": []})
        entry["found"] += found
        entry["new"] += new_r
        entry["duplicates"] += dup
        entry["updated"] += upd
        entry["warnings"].extend(json.loads(warnings) if warnings else [])
        entry["windows"].append([_iso(w_start), _iso(w_end)])
        if s_err:
            entry["errors"].append(s_err)
        if run_status != "completed":
            entry["status"] = run_status
    return {
        "nightly_id": nightly_id,
        "flow_run_id": flow_run_id,
        "source": source,
        "status": status,
        "new_records": new,
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "error": error,
        "strategies": strategies,
        "summary": json.loads(summary) if summary else {},
    }
