"""Evidence versions and pooled results in the warehouse (append-only), and what the app shows.

A refresh that finds changed evidence writes one `evidence_versions` row and one `pooled_results`
row per analysis (per subgroup level); earlier versions stay, which is the living history.
"""

from __future__ import annotations

import json
from typing import Any

from warehouse.evidence import current_entry_count, rows_as_dicts

RESULT_COLUMNS = (
    "evidence_version", "analysis_id", "outcome", "analysis", "subgroup_var", "subgroup", "measure", "method",
    "test", "level", "k", "estimate", "se", "stat", "df", "ci_lb", "ci_ub", "pi_lb", "pi_ub", "pval", "tau2",
    "tau2_se", "I2", "H2", "Q", "Q_df", "Qp", "q_between", "q_between_df", "q_between_p", "exp_estimate",
    "exp_ci_lb", "exp_ci_ub", "exp_pi_lb", "exp_pi_ub", "converged", "note", "conclusion_changed",
    "change_reasons", "studies", "extras", "forest_plot", "funnel_plot", "cumulative_plot",
)
JSON_COLUMNS = ("change_reasons", "studies", "extras")
NO_DATA_MESSAGE = "no outcome data entered yet: nothing is pooled"


def latest_version(con, full: bool = True) -> dict[str, Any] | None:
    """The newest evidence version row (diff/evidence/plan decoded when `full`), or None before the first
    refresh. `full=False` reads only version, fingerprint, created_at, trigger (the cheap unchanged check)."""
    cols_sql = "*" if full else "version, fingerprint, created_at, trigger, conclusions_changed"
    cur = con.execute(f"SELECT {cols_sql} FROM evidence_versions ORDER BY version DESC LIMIT 1")
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall()
    if not rows:
        return None
    row = dict(zip(cols, rows[0]))
    for f in ("diff", "evidence", "plan"):
        if isinstance(row.get(f), str):
            row[f] = json.loads(row[f])
    return row


def insert_version(con, version: int, fingerprint: str, trigger: str, diff: dict, evidence: dict, plan: list,
                   conclusions_changed: int) -> None:
    con.execute(
        "INSERT INTO evidence_versions (version, fingerprint, trigger, diff, evidence, plan, n_studies, n_entries, "
        "conclusions_changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [version, fingerprint, trigger, json.dumps(diff, default=str), json.dumps(evidence, default=str),
         json.dumps(plan, default=str), diff.get("n_studies"), diff.get("n_entries"), conclusions_changed])


def insert_results(con, rows: list[dict]) -> None:
    """Bulk insert of pooled result dicts (keys of RESULT_COLUMNS; JSON fields as Python objects)."""
    if not rows:
        return
    values = []
    for r in rows:
        values.append([json.dumps(r.get(c), default=str) if c in JSON_COLUMNS else r.get(c) for c in RESULT_COLUMNS])
    con.executemany(
        f"INSERT INTO pooled_results ({', '.join(RESULT_COLUMNS)}) VALUES ({', '.join('?' * len(RESULT_COLUMNS))})",
        values)


def _decode(cols: list[str], row: tuple) -> dict[str, Any]:
    d = dict(zip(cols, row))
    for c in JSON_COLUMNS:
        if isinstance(d.get(c), str):
            d[c] = json.loads(d[c])
    return d


def results_of_version(con, version: int, studies: bool = True) -> list[dict]:
    """Every pooled result of one version (`studies=False` skips the per-study JSON, for speed)."""
    cols_sql = "*" if studies else "* EXCLUDE (studies)"
    cur = con.execute(f"SELECT {cols_sql} FROM pooled_results WHERE evidence_version = ? ORDER BY analysis_id, subgroup",
                      [version])
    cols = [d[0] for d in cur.description]
    return [_decode(cols, r) for r in cur.fetchall()]


def latest_pooled_results(con) -> list[dict]:
    """Every pooled result of the newest evidence version, for the web app.

    Keys include analysis_id, outcome, analysis, subgroup ('' = all studies), measure, method, test, k,
    estimate, ci_lb, ci_ub, pi_lb, pi_ub, pval, tau2, I2, exp_* (ratio measures), note,
    conclusion_changed, change_reasons, evidence_version, forest_plot/funnel_plot/cumulative_plot
    (PNG paths relative to reports_dir, or None). Empty list before the first refresh.
    """
    latest = latest_version(con, full=False)
    if latest is None:
        return []
    out = results_of_version(con, latest["version"], studies=False)
    for r in out:
        r["created_at"] = latest["created_at"]
    return out


def history(con, analysis_id: str, subgroup: str = "") -> list[dict]:
    """The estimate of one analysis across evidence versions (for the cumulative / living plot)."""
    cur = con.execute(
        "SELECT p.evidence_version, v.created_at, p.k, p.estimate, p.ci_lb, p.ci_ub, p.pi_lb, p.pi_ub, p.measure "
        "FROM pooled_results p JOIN evidence_versions v ON v.version = p.evidence_version "
        "WHERE p.analysis_id = ? AND p.subgroup = ? ORDER BY p.evidence_version", [analysis_id, subgroup])
    return rows_as_dicts(cur)


def pooling_status(con) -> dict[str, Any]:
    """For `living-review status`: how much evidence there is and what the last refresh said."""
    n_studies = con.execute("SELECT count(*) FROM studies WHERE included").fetchall()[0][0]
    n_entries = current_entry_count(con)
    latest = latest_version(con, full=False)
    status: dict[str, Any] = {"studies": int(n_studies), "outcome_entries": int(n_entries),
                              "evidence_version": None, "last_refresh": None, "analyses": 0,
                              "conclusions_changed": 0}
    if latest is None:
        status["message"] = NO_DATA_MESSAGE if n_entries == 0 else "outcome data entered but not pooled yet (run `living-review pool`)"
        return status
    status.update(
        evidence_version=int(latest["version"]),
        last_refresh=str(latest["created_at"]),
        trigger=latest.get("trigger"),
        analyses=int(con.execute("SELECT count(*) FROM pooled_results WHERE evidence_version = ?",
                                 [latest["version"]]).fetchall()[0][0]),
        conclusions_changed=int(latest.get("conclusions_changed") or 0),
    )
    if n_entries == 0:
        status["message"] = "no outcome data in the current evidence: nothing is pooled"
    else:
        status["message"] = (f"evidence version {status['evidence_version']} ({status['last_refresh'][:16]}): "
                             f"{status['analyses']} pooled results, {status['conclusions_changed']} with a changed "
                             f"conclusion")
    return status
