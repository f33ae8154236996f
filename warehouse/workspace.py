"""Queries behind the reviewers' workspace: accounts, the screening queue, progress, PRISMA, exports.

Every function takes an open connection; the web app opens one short locked connection per request
(`warehouse.db.connect`/`transaction`) because the nightly flow writes the same file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from warehouse import screening

ROLES = ("reviewer", "lead")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class AccountError(ValueError):
    """An account operation that cannot be done (bad name, unknown reviewer, weak password)."""


# --------------------------------------------------------------------------------------------
# accounts


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """scrypt hash with a fresh per-user salt, encoded with its parameters so they can change later."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        algo, n, r, p, salt_hex, hash_hex = encoded.split("$")
        if algo != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode("utf-8"), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p), dklen=len(hash_hex) // 2
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), hash_hex)


_DUMMY_HASH = hash_password("not a real password", salt=b"\x00" * 16)


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise AccountError("reviewer name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def _check_password(password: str) -> None:
    if len(password or "") < 8:
        raise AccountError("password must have at least 8 characters")


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    return role


@dataclass
class Reviewer:
    name: str
    role: str
    active: bool
    session_epoch: int
    created_at: datetime | None = None

    @property
    def is_lead(self) -> bool:
        return self.role == "lead"


def add_reviewer(con, name: str, password: str, role: str = "reviewer") -> Reviewer:
    name, role = _check_name(name), _check_role(role)
    _check_password(password)
    if con.execute("SELECT 1 FROM reviewers WHERE name = ?", [name]).fetchall():
        raise AccountError(f"reviewer {name!r} already exists (use `living-review reviewer passwd` to change the password)")
    con.execute("INSERT INTO reviewers (name, role, password_hash) VALUES (?, ?, ?)", [name, role, hash_password(password)])
    audit(con, "cli", "reviewer.add", "reviewer", name, {"role": role})
    return get_reviewer(con, name)


def get_reviewer(con, name: str) -> Reviewer | None:
    rows = con.execute(
        "SELECT name, role, active, session_epoch, created_at FROM reviewers WHERE name = ?", [name]
    ).fetchall()
    return Reviewer(*rows[0]) if rows else None


def list_reviewers(con) -> list[Reviewer]:
    rows = con.execute("SELECT name, role, active, session_epoch, created_at FROM reviewers ORDER BY name").fetchall()
    return [Reviewer(*r) for r in rows]


def _require(con, name: str) -> Reviewer:
    r = get_reviewer(con, name)
    if r is None:
        raise AccountError(f"no reviewer named {name!r}")
    return r


def end_sessions(con, name: str) -> None:
    """Every existing session of `name` stops working: the session epoch goes up and is published
    (next to the warehouse) before the caller's transaction commits."""
    con.execute("UPDATE reviewers SET session_epoch = session_epoch + 1, updated_at = current_timestamp WHERE name = ?",
                [name])
    _publish_from_warehouse(con, name)


def set_password(con, name: str, password: str) -> None:
    """New password; existing sessions of that reviewer stop working."""
    _require(con, name)
    _check_password(password)
    con.execute("UPDATE reviewers SET password_hash = ? WHERE name = ?", [hash_password(password), name])
    end_sessions(con, name)
    audit(con, "cli", "reviewer.passwd", "reviewer", name, {})


def set_role(con, name: str, role: str) -> None:
    _require(con, name)
    _check_role(role)
    con.execute("UPDATE reviewers SET role = ? WHERE name = ?", [role, name])
    end_sessions(con, name)
    audit(con, "cli", "reviewer.role", "reviewer", name, {"role": role})


def authenticate(con, name: str, password: str) -> Reviewer | None:
    """The reviewer if the password matches an active account; same work either way (no timing oracle)."""
    rows = con.execute("SELECT password_hash, active FROM reviewers WHERE name = ?", [(name or "").strip()]).fetchall()
    if not rows:
        verify_password(password or "", _DUMMY_HASH)
        return None
    ok = verify_password(password or "", rows[0][0])
    if not ok or not rows[0][1]:
        return None
    return get_reviewer(con, name.strip())


# --------------------------------------------------------------------------------------------
# session versions outside the warehouse lock
#
# The web app journals a title/abstract decision without taking the DuckDB lock (web/journal.py),
# so it cannot read `reviewers.session_epoch` there. Every epoch bump is therefore also published
# to a small SQLite table in the journal's file, which the journal checks in the same SQLite
# transaction that stores the decision. Publishing happens inside the caller's warehouse
# transaction, before its COMMIT: if publishing fails nothing changes; if the COMMIT fails after
# it, the published epoch is ahead of the warehouse, which only sends that reviewer's decisions
# down the slow, warehouse-checked path. Epochs only ever go up (a stale writer cannot lower one).

SESSION_STORE_NAME = "decision_journal.sqlite3"
SESSIONS_DDL = """
CREATE TABLE IF NOT EXISTS reviewer_sessions (
    name        TEXT PRIMARY KEY,
    epoch       INTEGER NOT NULL,
    active      INTEGER NOT NULL,
    updated_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)
"""
_PUBLISH_SQL = """
INSERT INTO reviewer_sessions (name, epoch, active) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
    active = CASE WHEN excluded.epoch > reviewer_sessions.epoch THEN excluded.active
                  WHEN excluded.epoch = reviewer_sessions.epoch THEN min(reviewer_sessions.active, excluded.active)
                  ELSE reviewer_sessions.active END,
    epoch = max(reviewer_sessions.epoch, excluded.epoch),
    updated_at = CURRENT_TIMESTAMP
"""


def session_store_path(db_path) -> Path:
    """The SQLite file beside the warehouse that holds the decision journal and published session epochs."""
    return Path(db_path).with_name(SESSION_STORE_NAME)


def publish_session(sql: sqlite3.Connection, name: str, epoch: int, active: bool) -> None:
    """Record (monotonically) a reviewer's session epoch on an open SQLite connection in autocommit mode."""
    sql.execute(SESSIONS_DDL)
    sql.execute(_PUBLISH_SQL, (name, int(epoch), int(bool(active))))


def _publish_from_warehouse(con, name: str) -> None:
    """Publish `name`'s current epoch next to the warehouse `con` is attached to (skipped for in-memory)."""
    rows = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    if not rows or not rows[0][0]:
        return
    r = get_reviewer(con, name)
    store = session_store_path(rows[0][0])
    try:
        sql = sqlite3.connect(str(store), isolation_level=None, timeout=30)
        try:
            sql.execute("PRAGMA synchronous=FULL")
            publish_session(sql, r.name, r.session_epoch, r.active)
        finally:
            sql.close()
    except sqlite3.Error as exc:
        raise AccountError(f"could not record the session change in {store}: {exc}; nothing was changed") from None


def audit_refusal(con, reviewer: str, record_id: int, error: str, **detail) -> None:
    """A vote the warehouse refused before writing anything (`DecisionError`): `decision.refused`."""
    audit(con, reviewer, "decision.refused", "record", record_id, {**detail, "error": error})


def audit(con, actor: str, action: str, entity: str | None = None, entity_id: str | None = None, detail: dict | None = None) -> None:
    con.execute(
        "INSERT INTO audit_log (actor, action, entity, entity_id, detail) VALUES (?, ?, ?, ?, ?)",
        [actor, action, entity, None if entity_id is None else str(entity_id), json.dumps(detail or {}, default=str)],
    )


# --------------------------------------------------------------------------------------------
# screening queue


_CURRENT_COUNTS = """
WITH ranked AS (
    SELECT record_id, reviewer, decision,
           row_number() OVER (PARTITION BY record_id, reviewer ORDER BY decision_id DESC) AS rn
    FROM screening_decisions WHERE stage = ? AND NOT is_resolution
), cur AS (
    SELECT record_id, reviewer FROM ranked WHERE rn = 1 AND decision <> 'retract'
), counts AS (
    SELECT record_id, count(*) AS n, bool_or(reviewer = ?) AS mine FROM cur GROUP BY record_id
), res_ranked AS (
    SELECT record_id, decision, row_number() OVER (PARTITION BY record_id ORDER BY decision_id DESC) AS rn
    FROM screening_decisions WHERE stage = ? AND is_resolution
), resolved AS (
    SELECT record_id FROM res_ranked WHERE rn = 1 AND decision <> 'retract'
)
SELECT r.record_id
FROM records r LEFT JOIN counts c ON c.record_id = r.record_id
WHERE NOT coalesce(c.mine, FALSE)
  AND coalesce(c.n, 0) < ?
  AND r.record_id NOT IN (SELECT record_id FROM resolved)
ORDER BY r.created_at DESC, r.record_id DESC
"""


def eligible_for_stage(con, stage: str, reviewers_per_record: int) -> set[int] | None:
    """Records that may be screened at this stage (None = all records): full text needs a title/abstract include."""
    if stage == "title_abstract":
        return None
    return {rid for rid, d in screening.settled_decisions(con, "title_abstract", reviewers_per_record).items() if d == "include"}


def queue(con, reviewer: str, stage: str, reviewers_per_record: int, scores: dict[int, float] | None = None) -> list[int]:
    """Record ids this reviewer still has to screen at this stage, best first.

    Hidden: records the reviewer already decided, records that already have enough reviewers, and
    resolved records. Order: relevance score when the ranker has scored them, else most recent first.
    """
    screening._check(stage)
    ids = [int(r[0]) for r in con.execute(_CURRENT_COUNTS, [stage, reviewer, stage, reviewers_per_record]).fetchall()]
    allowed = eligible_for_stage(con, stage, reviewers_per_record)
    if allowed is not None:
        ids = [i for i in ids if i in allowed]
    if scores:
        position = {rid: k for k, rid in enumerate(ids)}  # recency as the tie-breaker
        ids.sort(key=lambda rid: (-scores.get(rid, float("-inf")), position[rid]))
    return ids


class RecordFullError(screening.DecisionError):
    """A reviewer's vote refused: the record already has its reviewers (or a lead's resolution) at that
    stage, or, for one of those reviewers, their votes there are final (all of them are in)."""


_STAGE_WORDS = {"title_abstract": "title/abstract", "full_text": "full text"}


def _all_reviewers(reviewers_per_record: int) -> str:
    return "both reviewers'" if reviewers_per_record == 2 else f"all {reviewers_per_record} reviewers'"


def vote_refusal(con, record_id: int, reviewer: str, stage: str, reviewers_per_record: int,
                 decision: str | None = None) -> str | None:
    """Why `reviewer` may not add this vote (or undo, `decision='retract'`) on the record at this stage now, or None.

    Votes are final once all are in: a reviewer with a current vote may change or undo it only
    while the record has fewer than `reviewers_per_record` current votes. After that (agreeing or
    not) a change would let a reviewer vote, see what moved (a settled include reaching full
    text, PRISMA counts), undo and learn the partner's vote; a lead resolves the record instead.
    With one reviewer per record there is no partner to protect, and the vote stays changeable.
    Anyone else is refused once the record has a standing resolution, or already has
    `reviewers_per_record` current votes: a further vote could only turn an agreement into a
    conflict (the queue hides such records, but two reviewers can be shown the same record before
    either has voted). An undo from someone with no current vote there withdraws nothing and is
    let through (refusing it would tell them the record is full).
    """
    reviewer = (reviewer or "").strip()
    votes = screening.current_decisions(con, stage, record_id).get(int(record_id), {})
    where = _STAGE_WORDS.get(stage, stage)
    if reviewer in votes:
        if reviewers_per_record > 1 and len(votes) >= reviewers_per_record:
            return (f"record {record_id} already has {_all_reviewers(reviewers_per_record)} decisions at {where}, "
                    "and they are final; ask a lead if yours should change")
        return None
    if decision == "retract":
        return None
    if screening.resolutions(con, stage, record_id):
        return f"record {record_id} has been resolved by a lead at {where}; it takes no further reviewers"
    if len(votes) >= reviewers_per_record:
        needs = "1 reviewer's decision" if reviewers_per_record == 1 else f"{reviewers_per_record} reviewers' decisions"
        return f"record {record_id} already has the {needs} it needs at {where}"
    return None


def append_decision(con, record_id: int, reviewer: str, stage: str, decision: str, *, reviewers_per_record: int,
                    reason: str | None = None, note: str | None = None, model_version: str | None = None,
                    client_token: str | None = None, created_at=None) -> int:
    """A reviewer's own vote (or undo, 'retract'), appended with `screening.append_decision` if allowed.

    Raises RecordFullError (a DecisionError, raised before anything is written) when `vote_refusal`
    says no: the record has no room for a new reviewer, or the reviewer's vote is final. A
    repeated `client_token` returns its original row, as `screening.append_decision` does, even
    if the record has filled up since. Resolutions are a lead's and go through
    `screening.append_decision(..., is_resolution=True)`, unchecked here.
    """
    screening._check(stage, decision)
    if client_token:
        row = con.execute("SELECT decision_id FROM screening_decisions WHERE client_token = ?", [client_token]).fetchall()
        if row:
            return int(row[0][0])
    why = vote_refusal(con, record_id, reviewer, stage, reviewers_per_record, decision)
    if why:
        raise RecordFullError(why)
    return screening.append_decision(con, record_id, reviewer, stage, decision, reason=reason, note=note,
                                     model_version=model_version, client_token=client_token, created_at=created_at)


def get_record(con, record_id: int) -> dict | None:
    rows = con.execute(
        """SELECT record_id, pmid, doi, title, abstract, journal, year, authors, mesh, publication_types,
                  language, keywords, kind, created_at, version, updated_at
           FROM records WHERE record_id = ?""",
        [int(record_id)],
    ).fetchall()
    if not rows:
        return None
    keys = ["record_id", "pmid", "doi", "title", "abstract", "journal", "year", "authors", "mesh",
            "publication_types", "language", "keywords", "kind", "created_at", "version", "updated_at"]
    rec = dict(zip(keys, rows[0]))
    for k in ("authors", "mesh", "publication_types", "keywords"):
        rec[k] = list(rec[k] or [])
    return rec


# --------------------------------------------------------------------------------------------
# one record's history


DECISION_KEYS = ["decision_id", "record_id", "reviewer", "stage", "decision", "reason", "note", "model_version",
                 "is_resolution", "created_at", "client_token"]


def record_history(con, record_id: int) -> dict | None:
    """Everything known about one record, for its page; None if there is no such record.

    `record` (current content, as `get_record`, with its `version`); `versions`, newest first, each
    with its content (`data`), whether it is `current`, and the fields it `changed` against the
    version before; `sources`: every (search run, strategy) that found it, oldest first, with the
    PMID it was seen under and how it was matched; `aliases`: PMIDs merged into it; `decisions`:
    every screening decision row on it (every reviewer, stage, retraction and resolution), in the
    order they were made (`created_at`, the reviewer's decision time; ties by decision_id).
    Nothing is filtered here: blinding is the caller's (the web app's) rule.
    """
    rec = get_record(con, record_id)
    if rec is None:
        return None
    rid = int(record_id)
    rows = con.execute(
        """SELECT version, content_hash, run_id, created_at, CAST(data AS VARCHAR)
           FROM record_version_content WHERE record_id = ? ORDER BY version""", [rid]).fetchall()
    versions: list[dict] = []
    previous: dict | None = None
    for version, chash, run_id, created_at, data in rows:
        content = json.loads(data) if data else {}
        changed = [] if previous is None else sorted(
            k for k in set(content) | set(previous) if content.get(k) != previous.get(k))
        versions.append({"version": int(version), "content_hash": chash, "run_id": run_id, "created_at": created_at,
                         "data": content, "changed": changed, "current": int(version) == int(rec["version"])})
        previous = content
    versions.reverse()
    sources = con.execute(
        """SELECT s.strategy, s.run_id, sr.nightly_id, s.pmid_seen, s.matched_by, s.found_at
           FROM record_sources s LEFT JOIN search_runs sr ON sr.run_id = s.run_id
           WHERE s.record_id = ? ORDER BY s.found_at, s.run_id, s.strategy""", [rid]).fetchall()
    aliases = con.execute(
        "SELECT pmid, matched_by, run_id, created_at FROM record_aliases WHERE record_id = ? ORDER BY created_at, pmid",
        [rid]).fetchall()
    decisions = con.execute(
        f"""SELECT {', '.join(DECISION_KEYS)} FROM screening_decisions WHERE record_id = ?
            ORDER BY created_at, decision_id""", [rid]).fetchall()
    return {
        "record": rec,
        "versions": versions,
        "sources": [dict(zip(["strategy", "run_id", "nightly_id", "pmid_seen", "matched_by", "found_at"], r))
                    for r in sources],
        "aliases": [dict(zip(["pmid", "matched_by", "run_id", "created_at"], r)) for r in aliases],
        "decisions": [dict(zip(DECISION_KEYS, r)) for r in decisions],
    }


# --------------------------------------------------------------------------------------------
# progress


@dataclass
class StageProgress:
    stage: str
    eligible: int
    settled: int
    included: int
    excluded: int
    conflicts: int
    in_progress: int  # some but not enough decisions
    mine_done: int
    mine_remaining: int

    @property
    def remaining(self) -> int:
        return self.eligible - self.settled


def progress(con, reviewer: str, reviewers_per_record: int, scores=None) -> list[StageProgress]:
    out = []
    for stage in screening.STAGES:
        allowed = eligible_for_stage(con, stage, reviewers_per_record)
        eligible = (con.execute("SELECT count(*) FROM records").fetchall()[0][0] if allowed is None else len(allowed))
        settled = screening.settled_decisions(con, stage, reviewers_per_record)
        if allowed is not None:
            settled = {k: v for k, v in settled.items() if k in allowed}
        current = screening.current_decisions(con, stage)
        if allowed is not None:
            current = {k: v for k, v in current.items() if k in allowed}
        conflict_ids = {c.record_id for c in screening.conflicts(con, stage, reviewers_per_record)
                        if allowed is None or c.record_id in allowed}
        in_progress = sum(1 for rid in current if rid not in settled and rid not in conflict_ids)
        mine_done = sum(1 for votes in current.values() if reviewer in votes)
        out.append(StageProgress(
            stage=stage, eligible=int(eligible), settled=len(settled),
            included=sum(1 for d in settled.values() if d == "include"),
            excluded=sum(1 for d in settled.values() if d == "exclude"),
            conflicts=len(conflict_ids), in_progress=in_progress,
            mine_done=mine_done, mine_remaining=len(queue(con, reviewer, stage, reviewers_per_record)),
        ))
    return out


# --------------------------------------------------------------------------------------------
# PRISMA 2020 flow


@dataclass
class PrismaCounts:
    label: str
    identified: int = 0
    by_strategy: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    screened: int = 0
    awaiting_screening: int = 0
    excluded_screening: int = 0
    sought: int = 0
    assessed: int = 0
    awaiting_full_text: int = 0
    excluded_full_text: dict[str, int] = field(default_factory=dict)
    included: int = 0

    @property
    def screened_done(self) -> int:
        """Records with a settled title/abstract decision (`screened` counts those after de-duplication)."""
        return self.screened - self.awaiting_screening

    @property
    def excluded_full_text_total(self) -> int:
        return sum(self.excluded_full_text.values())


def _reason_counts(details: dict[int, tuple[str, str | None]], ids) -> dict[str, int]:
    out: dict[str, int] = {}
    for rid in ids:
        decision, reason = details[rid]
        if decision == "exclude":
            key = reason or "no reason given"
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def prisma_counts(con, reviewers_per_record: int = 2) -> tuple[PrismaCounts, list[PrismaCounts]]:
    """(cumulative, one per update) PRISMA 2020 counts.

    An *update* is a nightly run. Identified = PMIDs its search runs returned and appended
    (`search_hits`, one per PMID per strategy run, so a record found by both strategies counts
    twice, as PRISMA counts database hits; stored records fetched again because PubMed modified them
    are not identified again); duplicates removed = identified minus the records the
    update added (hits on records already held, merged DOI/title duplicates, overlap between
    strategies); screened = records the update added; the screening and eligibility boxes follow
    those records through the settled decisions.
    """
    ta = screening.settled_details(con, "title_abstract", reviewers_per_record)
    ft = screening.settled_details(con, "full_text", reviewers_per_record)
    hits = con.execute(
        """SELECT coalesce(sr.nightly_id, -1) AS nightly, coalesce(sr.strategy, '?'), count(*)
           FROM search_hits h LEFT JOIN search_runs sr ON sr.run_id = h.run_id
           WHERE coalesce(sr.kind, 'search') <> 'refetch'  -- re-fetched because modified: not identified again
           GROUP BY ALL"""
    ).fetchall()
    firsts = con.execute(
        """SELECT r.record_id, coalesce(sr.nightly_id, -1)
           FROM records r LEFT JOIN search_runs sr ON sr.run_id = r.first_seen_run"""
    ).fetchall()
    runs = con.execute(
        "SELECT nightly_id, started_at, status, source FROM nightly_runs ORDER BY nightly_id"
    ).fetchall()

    def build(label: str, hit_rows, record_ids: list[int]) -> PrismaCounts:
        c = PrismaCounts(label)
        for _, strategy, n in hit_rows:
            c.by_strategy[strategy] = c.by_strategy.get(strategy, 0) + int(n)
        c.identified = sum(c.by_strategy.values())
        c.screened = len(record_ids)
        c.duplicates = max(c.identified - c.screened, 0)
        ta_ids = [r for r in record_ids if r in ta]
        c.awaiting_screening = c.screened - len(ta_ids)
        c.excluded_screening = sum(1 for r in ta_ids if ta[r][0] == "exclude")
        passed = [r for r in ta_ids if ta[r][0] == "include"]
        c.sought = len(passed)
        ft_ids = [r for r in passed if r in ft]
        c.assessed = len(ft_ids)
        c.awaiting_full_text = c.sought - c.assessed
        c.excluded_full_text = _reason_counts(ft, ft_ids)
        c.included = sum(1 for r in ft_ids if ft[r][0] == "include")
        return c

    all_ids = [int(r[0]) for r in firsts]
    cumulative = build("Cumulative", hits, all_ids)
    per_update = []
    by_nightly: dict[int, list[int]] = {}
    for rid, nightly in firsts:
        by_nightly.setdefault(int(nightly), []).append(int(rid))
    for nightly_id, started_at, status, source in runs:
        label = f"#{nightly_id} · {started_at:%Y-%m-%d}" if started_at else f"#{nightly_id}"
        per_update.append(build(label, [h for h in hits if h[0] == nightly_id], by_nightly.get(int(nightly_id), [])))
    if by_nightly.get(-1) or any(h[0] == -1 for h in hits):
        per_update.insert(0, build("Before nightly runs", [h for h in hits if h[0] == -1], by_nightly.get(-1, [])))
    return cumulative, per_update


# --------------------------------------------------------------------------------------------
# runs, audit


def last_nightly_run(con) -> dict | None:
    rows = con.execute(
        """SELECT nightly_id, flow_run_id, source, status, started_at, finished_at, new_records, error
           FROM nightly_runs ORDER BY nightly_id DESC LIMIT 1"""
    ).fetchall()
    if not rows:
        return None
    keys = ["nightly_id", "flow_run_id", "source", "status", "started_at", "finished_at", "new_records", "error"]
    return dict(zip(keys, rows[0]))


def audit_entries(con, limit: int = 200, offset: int = 0) -> list[dict]:
    rows = con.execute(
        """SELECT id, actor, action, entity, entity_id, CAST(detail AS VARCHAR), "at"
           FROM audit_log ORDER BY id DESC LIMIT ? OFFSET ?""",
        [int(limit), int(offset)],
    ).fetchall()
    return [dict(zip(["id", "actor", "action", "entity", "entity_id", "detail", "at"], r)) for r in rows]


def recent_decisions(con, limit: int = 200, offset: int = 0) -> list[dict]:
    rows = con.execute(
        """SELECT d.decision_id, d.record_id, r.pmid, d.reviewer, d.stage, d.decision, d.reason,
                  d.model_version, d.is_resolution, d.created_at
           FROM screening_decisions d LEFT JOIN records r ON r.record_id = d.record_id
           ORDER BY d.decision_id DESC LIMIT ? OFFSET ?""",
        [int(limit), int(offset)],
    ).fetchall()
    keys = ["decision_id", "record_id", "pmid", "reviewer", "stage", "decision", "reason", "model_version", "is_resolution", "created_at"]
    return [dict(zip(keys, r)) for r in rows]


# --------------------------------------------------------------------------------------------
# exports


def _safe_cell(value):
    """Neutralise spreadsheet formulas in exported text (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "@", "\t", "\r"):
        return "'" + value
    return value


def export_records(con, reviewers_per_record: int = 2) -> list[dict]:
    """One row per record with settled decisions, reasons and every reviewer's current vote."""
    ta = screening.settled_details(con, "title_abstract", reviewers_per_record)
    ft = screening.settled_details(con, "full_text", reviewers_per_record)
    ta_votes = screening.current_decisions(con, "title_abstract")
    ft_votes = screening.current_decisions(con, "full_text")
    rows = con.execute(
        """SELECT record_id, pmid, doi, title, abstract, journal, year, authors, mesh, publication_types
           FROM records ORDER BY record_id"""
    ).fetchall()

    def votes(v: dict) -> str:
        return "; ".join(f"{who}: {d}" + (f" ({r})" if r else "") for who, (d, r) in sorted(v.items()))

    out = []
    for rid, pmid, doi, title, abstract, journal, year, authors, mesh, ptypes in rows:
        t, f = ta.get(rid, (None, None)), ft.get(rid, (None, None))
        out.append({
            "record_id": rid, "pmid": pmid, "doi": doi, "title": title, "abstract": abstract, "journal": journal,
            "year": year, "authors": list(authors or []), "mesh": list(mesh or []), "publication_types": list(ptypes or []),
            "title_abstract_decision": t[0] or "", "title_abstract_reason": t[1] or "",
            "full_text_decision": f[0] or "", "full_text_reason": f[1] or "",
            "title_abstract_votes": votes(ta_votes.get(rid, {})), "full_text_votes": votes(ft_votes.get(rid, {})),
        })
    return out


RECORD_CSV_COLUMNS = ["record_id", "pmid", "doi", "title", "journal", "year", "authors",
                      "title_abstract_decision", "title_abstract_reason", "full_text_decision", "full_text_reason",
                      "title_abstract_votes", "full_text_votes"]


def records_csv(rows: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(RECORD_CSV_COLUMNS)
    for r in rows:
        w.writerow([_safe_cell("; ".join(r[c]) if isinstance(r[c], list) else ("" if r[c] is None else r[c])) for c in RECORD_CSV_COLUMNS])
    return buf.getvalue()


def _ris_text(value: str) -> str:
    return " ".join(str(value).split())  # RIS is one tag per line


def records_ris(rows: list[dict]) -> str:
    """RIS with decisions in N1 notes and the PMID as accession number (reference managers keep both)."""
    lines: list[str] = []
    for r in rows:
        lines.append("TY  - JOUR")
        if r["title"]:
            lines.append(f"TI  - {_ris_text(r['title'])}")
        for a in r["authors"]:
            lines.append(f"AU  - {_ris_text(a)}")
        if r["journal"]:
            lines.append(f"JO  - {_ris_text(r['journal'])}")
        if r["year"]:
            lines.append(f"PY  - {r['year']}")
        if r["abstract"]:
            lines.append(f"AB  - {_ris_text(r['abstract'])}")
        if r["doi"]:
            lines.append(f"DO  - {_ris_text(r['doi'])}")
        lines.append(f"AN  - {r['pmid']}")
        lines.append(f"UR  - https://pubmed.ncbi.nlm.nih.gov/{r['pmid']}/")
        for k in r["mesh"]:
            lines.append(f"KW  - {_ris_text(k)}")
        for stage in ("title_abstract", "full_text"):
            if r[f"{stage}_decision"]:
                note = f"{stage}: {r[f'{stage}_decision']}"
                if r[f"{stage}_reason"]:
                    note += f" ({r[f'{stage}_reason']})"
                lines.append(f"N1  - {_ris_text(note)}")
        lines.append("ER  - ")
        lines.append("")
    return "\n".join(lines)


DECISION_CSV_COLUMNS = ["decision_id", "record_id", "pmid", "reviewer", "stage", "decision", "reason", "note",
                        "model_version", "is_resolution", "created_at"]


def decisions_csv(con) -> str:
    import csv
    import io

    rows = con.execute(
        """SELECT d.decision_id, d.record_id, r.pmid, d.reviewer, d.stage, d.decision, d.reason, d.note,
                  d.model_version, d.is_resolution, d.created_at
           FROM screening_decisions d LEFT JOIN records r ON r.record_id = d.record_id ORDER BY d.decision_id"""
    ).fetchall()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(DECISION_CSV_COLUMNS)
    for row in rows:
        w.writerow([_safe_cell("" if v is None else (v.isoformat(sep=" ") if isinstance(v, datetime) else v)) for v in row])
    return buf.getvalue()
