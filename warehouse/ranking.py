"""Ranking state in the warehouse: model versions, per-record scores, pooled recall estimates.

Readers (web app, status) use `latest_scores`, `latest_recall_estimate`, `ranking_status`; the
ranking job writes through `store_model_version`, `store_scores`, `store_recall_estimate`.
All functions take an open DuckDB connection (see warehouse.db.connect / transaction).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

RECALL_KEYS = ("recall_lower_bound", "confidence", "target", "records_to_screen_for_target", "screened",
               "unscreened", "model_version", "computed_at")


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()[0][0])


def latest_model_version(con) -> str | None:
    if not _has_table(con, "model_versions"):
        return None
    row = con.execute("SELECT model_version FROM model_versions ORDER BY created_at DESC, model_version DESC LIMIT 1").fetchall()
    return row[0][0] if row else None


def model_version_info(con, model_version: str) -> dict | None:
    rows = con.execute(
        "SELECT model_version, created_at, kind, training_fingerprint, params, library_versions, metrics, n_train, "
        "n_includes, model_path FROM model_versions WHERE model_version = ?", [model_version]).fetchall()
    if not rows:
        return None
    r = rows[0]
    return {"model_version": r[0], "created_at": r[1], "kind": r[2], "training_fingerprint": r[3],
            "params": json.loads(r[4]), "library_versions": json.loads(r[5]), "metrics": json.loads(r[6]),
            "n_train": r[7], "n_includes": r[8], "model_path": r[9]}


def latest_fingerprint(con) -> str | None:
    v = latest_model_version(con)
    if v is None:
        return None
    return con.execute("SELECT training_fingerprint FROM model_versions WHERE model_version = ?", [v]).fetchall()[0][0]


def store_model_version(con, model_version: str, kind: str, fingerprint: str, params: dict, library_versions: dict,
                        metrics: dict, n_train: int, n_includes: int, model_path: str | None) -> None:
    con.execute(
        "INSERT INTO model_versions (model_version, created_at, kind, training_fingerprint, params, library_versions, "
        "metrics, n_train, n_includes, model_path) VALUES (?, current_timestamp, ?, ?, ?, ?, ?, ?, ?, ?)",
        [model_version, kind, fingerprint, json.dumps(params), json.dumps(library_versions),
         json.dumps(metrics, default=float), int(n_train), int(n_includes), model_path])


def store_scores(con, model_version: str, rows: Iterable[tuple[int, float, float, int, bool]]) -> int:
    """rows: (record_id, queue score, probability, rank, is_audit). Replaces this version's earlier score of a record."""
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=["record_id", "score", "probability", "rank", "is_audit"])
    if df.empty:
        return 0
    df["model_version"] = model_version
    con.register("_new_scores", df)
    try:
        con.execute("DELETE FROM record_scores WHERE model_version = ? AND record_id IN (SELECT record_id FROM _new_scores)",
                    [model_version])
        con.execute("INSERT INTO record_scores (record_id, model_version, score, probability, rank, is_audit, scored_at) "
                    "SELECT record_id, model_version, score, probability, rank, is_audit, current_timestamp FROM _new_scores")
    finally:
        con.unregister("_new_scores")
    return len(df)


def store_recall_estimate(con, estimate: dict, model_version: str | None, run: str | None,
                          method: str = "pooled-audit-hypergeometric") -> None:
    con.execute(
        "INSERT INTO recall_estimates (run, model_version, method, recall_lower_bound, confidence, target, "
        "records_to_screen_for_target, screened, unscreened, found, audited, audit_hits, audit_pending, "
        "missed_upper_bound, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)",
        [run, model_version, method, estimate["recall_lower_bound"], estimate["confidence"], estimate["target"],
         estimate["records_to_screen_for_target"], estimate["screened"], estimate["unscreened"], estimate["found"],
         estimate["audited"], estimate["audit_hits"], estimate.get("audit_pending", 0), estimate.get("missed_upper_bound")])


def latest_scores(con) -> dict[int, tuple[float, str]]:
    """record_id → (queue score, model_version) from the newest scoring of each record.

    The queue score is the calibrated probability, except that a pending audit record carries the
    priority of its reserved queue slot so that a queue sorted by score screens it regardless of its
    own probability (which stays in record_scores.probability).
    """
    if not _has_table(con, "record_scores"):
        return {}
    rows = con.execute(
        """
        SELECT record_id, score, model_version FROM (
            SELECT record_id, score, model_version,
                   row_number() OVER (PARTITION BY record_id ORDER BY scored_at DESC, model_version DESC) AS rn
            FROM record_scores) WHERE rn = 1
        """).fetchall()
    return {int(r[0]): (float(r[1]), str(r[2])) for r in rows}


def latest_recall_estimate(con) -> dict | None:
    """The newest recall estimate, with keys RECALL_KEYS plus found/audited/audit_hits/method."""
    if not _has_table(con, "recall_estimates"):
        return None
    rows = con.execute(
        "SELECT recall_lower_bound, confidence, target, records_to_screen_for_target, screened, unscreened, "
        "model_version, computed_at, found, audited, audit_hits, audit_pending, missed_upper_bound, method, run "
        "FROM recall_estimates ORDER BY computed_at DESC, estimate_id DESC LIMIT 1").fetchall()
    if not rows:
        return None
    keys = RECALL_KEYS + ("found", "audited", "audit_hits", "audit_pending", "missed_upper_bound", "method", "run")
    return dict(zip(keys, rows[0]))


def ranking_status(con) -> dict:
    """For `living-review status`: model version, when, how many scored, the latest recall estimate."""
    version = latest_model_version(con)
    if version is None:
        return {"model_version": None, "message": "no ranking yet: run `living-review rank`",
                "recall_estimate": latest_recall_estimate(con)}
    info = model_version_info(con, version) or {}
    n_scored = con.execute("SELECT count(*) FROM record_scores WHERE model_version = ?", [version]).fetchall()[0][0]
    n_audit = con.execute("SELECT count(*) FROM record_scores WHERE model_version = ? AND is_audit", [version]).fetchall()[0][0]
    return {"model_version": version, "kind": info.get("kind"), "created_at": info.get("created_at"),
            "n_train": info.get("n_train"), "n_includes": info.get("n_includes"), "scored": int(n_scored),
            "audit_pending": int(n_audit), "recall_estimate": latest_recall_estimate(con)}


def input_state(con, settings_key: str) -> str:
    """A cheap key of everything ranking reads: record count and last change, decisions, settings."""
    records = con.execute("SELECT count(*), max(record_id), max(updated_at) FROM records").fetchall()[0]
    decisions = con.execute("SELECT count(*), max(decision_id) FROM screening_decisions").fetchall()[0]
    return f"{records[0]}|{records[1]}|{records[2]}|{decisions[0]}|{decisions[1]}|{settings_key}"


def summary_for_state(con, state_key: str) -> dict | None:
    """The summary of the last ranking run if it saw exactly this state, else None."""
    rows = con.execute("SELECT state_key, summary FROM ranking_state ORDER BY computed_at DESC LIMIT 1").fetchall()
    if rows and rows[0][0] == state_key:
        return json.loads(rows[0][1])
    return None


def store_state(con, state_key: str, summary: dict) -> None:
    con.execute("DELETE FROM ranking_state")
    con.execute("INSERT INTO ranking_state (state_key, summary) VALUES (?, ?)", [state_key, json.dumps(summary, default=str)])
