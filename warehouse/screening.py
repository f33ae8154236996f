"""Screening decisions: an append-only log, and what it means once read back.

Nothing is ever updated or deleted. A reviewer's *current* decision on (record, stage) is their
latest row; 'retract' (undo) leaves them with no current decision. A record's *settled* decision
is the latest resolution row if there is one, otherwise the unanimous include/exclude of at least
`reviewers_per_record` reviewers. Ranking trains on `settled_decisions`, PRISMA counts on it, so
the rules live here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

STAGES = ("title_abstract", "full_text")
DECISIONS = ("include", "exclude", "maybe", "retract")
SETTLING = ("include", "exclude")


class DecisionError(ValueError):
    """A decision that cannot be recorded (unknown stage, decision or record); message says which."""


def _check(stage: str, decision: str | None = None) -> None:
    if stage not in STAGES:
        raise DecisionError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if decision is not None and decision not in DECISIONS:
        raise DecisionError(f"unknown decision {decision!r}; expected one of {', '.join(DECISIONS)}")


def append_decision(
    con,
    record_id: int,
    reviewer: str,
    stage: str,
    decision: str,
    reason: str | None = None,
    note: str | None = None,
    model_version: str | None = None,
    client_token: str | None = None,
    is_resolution: bool = False,
    created_at=None,
) -> int:
    """Append one decision row and return its decision_id.

    Idempotent on `client_token`: a repeated submission (double click, browser retry) returns the
    id of the original row and adds nothing. Run it inside `warehouse.db.transaction` so the
    check and the insert happen under the same lock. `created_at` (default: now) is the moment the
    reviewer decided, for decisions journalled first and written when the lock comes free.
    """
    _check(stage, decision)
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise DecisionError("reviewer is required")
    if is_resolution and decision == "maybe":
        raise DecisionError("a resolution must be include, exclude or retract")
    if reason is not None and decision != "exclude":
        reason = None  # reasons describe exclusions only; keep the log unambiguous
    if client_token:
        row = con.execute(
            "SELECT decision_id FROM screening_decisions WHERE client_token = ?", [client_token]
        ).fetchall()
        if row:
            return int(row[0][0])
    found = con.execute("SELECT 1 FROM records WHERE record_id = ?", [int(record_id)]).fetchall()
    if not found:
        raise DecisionError(f"no record with id {record_id}")
    row = con.execute(
        """
        INSERT INTO screening_decisions
            (record_id, reviewer, stage, decision, reason, note, model_version, client_token, is_resolution, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, coalesce(CAST(? AS TIMESTAMP), current_timestamp))
        RETURNING decision_id
        """,
        [int(record_id), reviewer, stage, decision, reason, note, model_version, client_token or None, bool(is_resolution),
         created_at],
    ).fetchall()
    return int(row[0][0])


_CURRENT_SQL = """
WITH ranked AS (
    SELECT record_id, reviewer, decision, reason, decision_id, created_at,
           row_number() OVER (PARTITION BY record_id, reviewer ORDER BY decision_id DESC) AS rn
    FROM screening_decisions
    WHERE stage = ? AND NOT is_resolution {extra}
)
SELECT record_id, reviewer, decision, reason, decision_id, created_at
FROM ranked WHERE rn = 1 AND decision <> 'retract'
{order}
"""
_BY_RECORD = "ORDER BY record_id, reviewer"

_RESOLUTION_SQL = """
WITH ranked AS (
    SELECT record_id, reviewer, decision, reason, decision_id, created_at,
           row_number() OVER (PARTITION BY record_id ORDER BY decision_id DESC) AS rn
    FROM screening_decisions
    WHERE stage = ? AND is_resolution {extra}
)
SELECT record_id, reviewer, decision, reason, decision_id, created_at
FROM ranked WHERE rn = 1 AND decision <> 'retract'
"""


def current_decisions(con, stage: str = "title_abstract", record_id: int | None = None) -> dict[int, dict[str, tuple[str, str | None]]]:
    """record_id -> {reviewer: (decision, reason)} of every reviewer's current (non-retracted) decision."""
    _check(stage)
    params: list = [stage]
    extra = ""
    if record_id is not None:
        extra, params = "AND record_id = ?", [stage, int(record_id)]
    out: dict[int, dict[str, tuple[str, str | None]]] = {}
    for rid, reviewer, decision, reason, _, _ in con.execute(_CURRENT_SQL.format(extra=extra, order=_BY_RECORD), params).fetchall():
        out.setdefault(int(rid), {})[reviewer] = (decision, reason)
    return out


def reviewer_decision(con, record_id: int, reviewer: str, stage: str = "title_abstract") -> tuple[str, str | None] | None:
    """This reviewer's current (decision, reason) on the record, or None."""
    return current_decisions(con, stage, record_id).get(int(record_id), {}).get(reviewer)


def resolutions(con, stage: str = "title_abstract", record_id: int | None = None) -> dict[int, tuple[str, str | None, str]]:
    """record_id -> (decision, reason, lead) of the latest standing resolution (of one record if given)."""
    _check(stage)
    params: list = [stage]
    extra = ""
    if record_id is not None:
        extra, params = "AND record_id = ?", [stage, int(record_id)]
    rows = con.execute(_RESOLUTION_SQL.format(extra=extra), params).fetchall()
    return {int(r[0]): (r[2], r[3], r[1]) for r in rows}


def _settle(votes: dict[str, tuple[str, str | None]], reviewers_per_record: int) -> tuple[str, str | None] | None:
    if len(votes) < reviewers_per_record:
        return None
    kinds = {d for d, _ in votes.values()}
    if len(kinds) != 1:
        return None
    (decision,) = kinds
    if decision not in SETTLING:
        return None
    reasons = sorted({r for _, r in votes.values() if r})
    return decision, "; ".join(reasons) or None


def settled_details(con, stage: str = "title_abstract", reviewers_per_record: int = 2) -> dict[int, tuple[str, str | None]]:
    """record_id -> (decision, reason) for every settled record at this stage."""
    _check(stage)
    out: dict[int, tuple[str, str | None]] = {}
    for rid, votes in current_decisions(con, stage).items():
        settled = _settle(votes, reviewers_per_record)
        if settled:
            out[rid] = settled
    for rid, (decision, reason, _) in resolutions(con, stage).items():
        out[rid] = (decision, reason)  # a lead's resolution wins over any agreement or disagreement
    return out


def settled_decisions(con, stage: str = "title_abstract", reviewers_per_record: int = 2) -> dict[int, str]:
    """record_id -> 'include' | 'exclude' for records settled at this stage (training labels)."""
    return {rid: d for rid, (d, _) in settled_details(con, stage, reviewers_per_record).items()}


@dataclass
class Conflict:
    record_id: int
    votes: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    kind: str = "disagreement"  # or "undecided": enough reviewers, all said maybe


def conflicts(con, stage: str = "title_abstract", reviewers_per_record: int = 2) -> list[Conflict]:
    """Unresolved records whose current decisions disagree, or that enough reviewers all marked maybe."""
    _check(stage)
    resolved = resolutions(con, stage)
    out = []
    for rid, votes in current_decisions(con, stage).items():
        if rid in resolved:
            continue
        kinds = {d for d, _ in votes.values()}
        if len(kinds) > 1:
            out.append(Conflict(rid, votes, "disagreement"))
        elif kinds == {"maybe"} and len(votes) >= reviewers_per_record:
            out.append(Conflict(rid, votes, "undecided"))
    return out


def cohens_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Cohen's kappa for paired categorical ratings; None when chance agreement is total (undefined)."""
    n = len(pairs)
    if n == 0:
        return None
    cats = sorted({c for p in pairs for c in p})
    po = sum(a == b for a, b in pairs) / n
    pe = sum((sum(a == c for a, _ in pairs) / n) * (sum(b == c for _, b in pairs) / n) for c in cats)
    if pe >= 1.0:
        return None
    return (po - pe) / (1.0 - pe)


@dataclass
class PairAgreement:
    reviewer_a: str
    reviewer_b: str
    n: int
    agreement: float | None
    kappa: float | None


def kappa_by_pair(con, stage: str = "title_abstract") -> list[PairAgreement]:
    """Cohen's kappa for every reviewer pair over the records both currently decided (include/exclude/maybe)."""
    by_record = current_decisions(con, stage)
    reviewers = sorted({r for votes in by_record.values() for r in votes})
    out = []
    for a, b in combinations(reviewers, 2):
        pairs = [(v[a][0], v[b][0]) for v in by_record.values() if a in v and b in v]
        agreement = (sum(x == y for x, y in pairs) / len(pairs)) if pairs else None
        out.append(PairAgreement(a, b, len(pairs), agreement, cohens_kappa(pairs)))
    return out


def decided_record_ids(con, reviewer: str, stage: str = "title_abstract") -> set[int]:
    """Records this reviewer currently has a decision on (the queue hides them)."""
    _check(stage)
    rows = con.execute(
        _CURRENT_SQL.format(extra="AND reviewer = ?", order=_BY_RECORD), [stage, reviewer]
    ).fetchall()
    return {int(r[0]) for r in rows}


def last_decision(con, reviewer: str, stage: str = "title_abstract") -> dict | None:
    """The reviewer's most recent decision that is still current (what 'undo' retracts), or None.

    Repeated undo walks back through earlier records, because a retracted record no longer has a
    current decision.
    """
    _check(stage)
    rows = con.execute(
        _CURRENT_SQL.format(extra="AND reviewer = ?", order="ORDER BY decision_id DESC LIMIT 1"),
        [stage, reviewer],
    ).fetchall()
    if not rows:
        return None
    rid, _, decision, reason, decision_id, created_at = rows[0]
    return {"decision_id": int(decision_id), "record_id": int(rid), "stage": stage, "decision": decision, "reason": reason}
