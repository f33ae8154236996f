"""Included studies and their outcome data: validation, append-only saving, the current evidence.

Used by `living-review import-outcomes` and by the web app's extraction form, so the rules live
here once. Outcome data are never updated in place: a changed value appends an entry that
`supersedes` the previous one (a correction); identical data adds nothing. The current data of a
(study, outcome) pair is its latest entry unless that entry is a retraction.

CSV / form fields (empty = not given):
  outcomes: study_id, outcome, events_int, n_int, events_ctl, n_ctl   (binary outcomes)
            study_id, outcome, mean_int, sd_int, n_int, mean_ctl, sd_ctl, n_ctl   (continuous)
  studies:  study_id, label, intervention, comparator, population, risk_group, country,
            attachment_measure, age_months, follow_up_months, pmid
Row numbers in errors are the caller's (`first_row`; for a CSV file, the line number, header = 1).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

OUTCOME_COLUMNS = ("study_id", "outcome", "events_int", "n_int", "events_ctl", "n_ctl",
                   "mean_int", "sd_int", "mean_ctl", "sd_ctl")
STUDY_COLUMNS = ("study_id", "label", "intervention", "comparator", "population", "risk_group", "country",
                 "attachment_measure", "age_months", "follow_up_months", "pmid")
BINARY_REQUIRED = ("events_int", "n_int", "events_ctl", "n_ctl")
CONTINUOUS_REQUIRED = ("mean_int", "sd_int", "n_int", "mean_ctl", "sd_ctl", "n_ctl")
VALUE_FIELDS = ("events_int", "n_int", "events_ctl", "n_ctl", "mean_int", "sd_int", "mean_ctl", "sd_ctl")
STUDY_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


@dataclass(frozen=True)
class RowError:
    """One problem in one input row: where (row number, field) and what."""

    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.field}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "message": self.message}


class EvidenceValidationError(ValueError):
    """Raised by the save functions when rows are invalid; `.errors` lists every problem."""

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        super().__init__(f"{len(errors)} error(s): " + "; ".join(str(e) for e in errors[:5])
                         + (" ..." if len(errors) > 5 else ""))


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _parse_int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if v.is_integer():
            return int(v)
        raise ValueError
    s = str(v).strip()
    if re.fullmatch(r"[+-]?\d+", s):
        return int(s)
    if re.fullmatch(r"[+-]?\d+\.0*", s):  # "12.0" from a spreadsheet export
        return int(float(s))
    raise ValueError


def _parse_float(v: Any) -> float:
    f = float(str(v).strip()) if not isinstance(v, (int, float)) or isinstance(v, bool) else float(v)
    if isinstance(v, bool) or not math.isfinite(f):
        raise ValueError
    return f


# ---------------------------------------------------------------------------------------------
# validation


def parse_outcome_rows(rows: Iterable[dict], config, known_studies: Iterable[str], first_row: int = 2
                       ) -> tuple[list[dict], list[RowError]]:
    """Typed outcome rows and every error found (all rows, all fields, at once)."""
    known = set(known_studies)
    outcomes = {o.name: o for o in config.outcomes}
    errors: list[RowError] = []
    parsed: list[dict] = []
    seen: dict[tuple[str, str], int] = {}
    for i, raw in enumerate(rows):
        rowno = first_row + i
        raw = {str(k).strip(): v for k, v in (raw or {}).items() if k is not None}
        errs: list[RowError] = []
        sid = "" if _blank(raw.get("study_id")) else str(raw["study_id"]).strip()
        oname = "" if _blank(raw.get("outcome")) else str(raw["outcome"]).strip()
        if not sid:
            errs.append(RowError(rowno, "study_id", "required"))
        elif sid not in known:
            errs.append(RowError(rowno, "study_id", f"unknown study {sid!r} (add it first, or give it in the studies file)"))
        oc = outcomes.get(oname)
        if not oname:
            errs.append(RowError(rowno, "outcome", "required"))
        elif oc is None:
            errs.append(RowError(rowno, "outcome", f"unknown outcome {oname!r}; configured: {', '.join(outcomes)}"))
        if sid and oname:
            if (sid, oname) in seen:
                errs.append(RowError(rowno, "outcome", f"duplicate row for {sid} x {oname} (first on row {seen[(sid, oname)]})"))
            else:
                seen[(sid, oname)] = rowno
        values: dict[str, Any] = {}
        if oc is not None:
            required = BINARY_REQUIRED if oc.kind == "binary" else CONTINUOUS_REQUIRED
            for f in VALUE_FIELDS:
                v = raw.get(f)
                if f not in required:
                    if not _blank(v):
                        errs.append(RowError(rowno, f, f"must be empty for {oc.kind} outcome {oname!r}"))
                    continue
                if _blank(v):
                    errs.append(RowError(rowno, f, f"required for {oc.kind} outcome {oname!r}"))
                    continue
                is_count = f.startswith(("events", "n_"))
                try:
                    values[f] = _parse_int(v) if is_count else _parse_float(v)
                except ValueError:
                    kind = "a whole number" if is_count else "a number"
                    errs.append(RowError(rowno, f, f"must be {kind}, got {str(v).strip()!r}"))
                    continue
                if f.startswith("n_") and values[f] <= 0:
                    errs.append(RowError(rowno, f, f"must be > 0, got {values[f]}"))
                if f.startswith("events") and values[f] < 0:
                    errs.append(RowError(rowno, f, f"must be >= 0, got {values[f]}"))
                if f.startswith("sd") and values[f] <= 0:
                    errs.append(RowError(rowno, f, f"must be > 0, got {values[f]:g}"))
            if oc.kind == "binary":
                for ev, n in (("events_int", "n_int"), ("events_ctl", "n_ctl")):
                    if isinstance(values.get(ev), int) and isinstance(values.get(n), int) and values[n] > 0 \
                            and values[ev] > values[n]:
                        errs.append(RowError(rowno, ev, f"events ({values[ev]}) exceed {n} ({values[n]})"))
            else:  # a standard deviation is undefined for a single observation (n - 1 = 0)
                for sd, n in (("sd_int", "n_int"), ("sd_ctl", "n_ctl")):
                    if not _blank(raw.get(sd)) and isinstance(values.get(n), int) and values[n] == 1:
                        errs.append(RowError(rowno, n, "must be at least 2 when an SD is given "
                                                       f"(an SD is undefined for one participant), got {values[n]}"))
        errors.extend(errs)
        if not errs and oc is not None:
            row = {"study_id": sid, "outcome": oname, "kind": oc.kind}
            row.update({f: values.get(f) for f in VALUE_FIELDS})
            parsed.append(row)
    return parsed, errors


def validate_outcome_rows(rows: Iterable[dict], config, known_studies: Iterable[str], first_row: int = 2
                          ) -> list[RowError]:
    """Every error in the rows (empty list = all valid)."""
    return parse_outcome_rows(rows, config, known_studies, first_row)[1]


def parse_study_rows(rows: Iterable[dict], config, first_row: int = 2) -> tuple[list[dict], list[RowError]]:
    """Typed study rows and every error (study_id slug, label, intervention from the vocabulary...)."""
    vocab = list(config.interventions)
    measures = list(getattr(config, "attachment_measures", []) or [])
    errors: list[RowError] = []
    parsed: list[dict] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(rows):
        rowno = first_row + i
        raw = {str(k).strip(): v for k, v in (raw or {}).items() if k is not None}
        errs: list[RowError] = []
        row: dict[str, Any] = {}
        for f in STUDY_COLUMNS:
            v = raw.get(f)
            row[f] = None if _blank(v) else str(v).strip()
        sid = row["study_id"]
        if not sid:
            errs.append(RowError(rowno, "study_id", "required"))
        elif not STUDY_ID_RE.match(sid):
            errs.append(RowError(rowno, "study_id", f"{sid!r} must be a lower-case slug such as 'bernard-2012'"))
        elif sid in seen:
            errs.append(RowError(rowno, "study_id", f"duplicate study (first on row {seen[sid]})"))
        else:
            seen[sid] = rowno
        if not row["label"]:
            errs.append(RowError(rowno, "label", "required (shown on forest plots, e.g. 'Bernard 2012')"))
        if not row["intervention"]:
            errs.append(RowError(rowno, "intervention", f"required; one of: {', '.join(vocab)}"))
        elif row["intervention"] not in vocab:
            errs.append(RowError(rowno, "intervention", f"{row['intervention']!r} is not in the configured vocabulary: {', '.join(vocab)}"))
        if row["attachment_measure"] and measures and row["attachment_measure"] not in measures:
            errs.append(RowError(rowno, "attachment_measure", f"{row['attachment_measure']!r} is not one of: {', '.join(measures)}"))
        for f in ("age_months", "follow_up_months"):
            if row[f] is not None:
                try:
                    row[f] = _parse_float(row[f])
                    if row[f] < 0:
                        raise ValueError
                except ValueError:
                    errs.append(RowError(rowno, f, f"must be a number >= 0, got {raw.get(f)!r}"))
        if row["pmid"] and not re.fullmatch(r"\d{1,9}", row["pmid"]):
            errs.append(RowError(rowno, "pmid", f"must be digits, got {row['pmid']!r}"))
        errors.extend(errs)
        if not errs:
            parsed.append(row)
    return parsed, errors


def validate_study_rows(rows: Iterable[dict], config, first_row: int = 2) -> list[RowError]:
    return parse_study_rows(rows, config, first_row)[1]


# ---------------------------------------------------------------------------------------------
# reading


def known_study_ids(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT study_id FROM studies").fetchall()}


def rows_as_dicts(cur) -> list[dict]:
    """An executed cursor's rows as {column: value} dicts."""
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def list_studies(con) -> list[dict]:
    return rows_as_dicts(con.execute("SELECT * FROM studies ORDER BY study_id"))


_CURRENT_SQL = """
WITH ranked AS (
    SELECT *, row_number() OVER (PARTITION BY study_id, outcome ORDER BY entry_id DESC) AS rn
    FROM outcome_data
)
SELECT * EXCLUDE (rn) FROM ranked WHERE rn = 1 AND NOT retracted
"""


# the current entries of included studies, joined with their study attributes
_INCLUDED_CURRENT = f"""FROM ({_CURRENT_SQL}) o JOIN studies s USING (study_id)
        WHERE s.included
        ORDER BY o.outcome, o.study_id"""


def current_entries(con) -> dict[tuple[str, str], dict]:
    """The current (latest, not retracted) outcome entry of every (study_id, outcome)."""
    return {(r["study_id"], r["outcome"]): r for r in rows_as_dicts(con.execute(_CURRENT_SQL))}


def current_entry_count(con) -> int:
    """How many (study_id, outcome) pairs have a current entry."""
    return int(con.execute(f"SELECT count(*) FROM ({_CURRENT_SQL})").fetchall()[0][0])


def current_evidence(con):
    """DataFrame: one row per included study x outcome with current data, study attributes joined."""
    return con.execute(f"""
        SELECT o.entry_id, o.study_id, o.outcome, o.kind, o.events_int, o.n_int, o.events_ctl, o.n_ctl,
               o.mean_int, o.sd_int, o.mean_ctl, o.sd_ctl, o.entered_by, o.entered_at, o.source,
               s.label, s.intervention, s.comparator, s.population, s.risk_group, s.country,
               s.attachment_measure, s.age_months, s.follow_up_months, s.pmid, s.record_id
        {_INCLUDED_CURRENT}
    """).df()


def current_evidence_rows(con) -> list[dict]:
    """`current_evidence` as plain dicts (None for missing values), the form models.living takes."""
    return rows_as_dicts(con.execute(f"""
        SELECT o.entry_id, o.study_id, o.outcome, o.kind, o.events_int, o.n_int, o.events_ctl, o.n_ctl,
               o.mean_int, o.sd_int, o.mean_ctl, o.sd_ctl,
               s.label, s.intervention, s.risk_group, s.attachment_measure, s.follow_up_months
        {_INCLUDED_CURRENT}
    """))


def outcome_history(con, study_id: str, outcome: str) -> list[dict]:
    return rows_as_dicts(con.execute(
        "SELECT * FROM outcome_data WHERE study_id = ? AND outcome = ? ORDER BY entry_id", [study_id, outcome]))


# ---------------------------------------------------------------------------------------------
# writing (call inside warehouse.db.transaction)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _study_hash(row: dict) -> str:
    return _hash({f: row.get(f) for f in STUDY_COLUMNS})


def _entry_hash(row: dict) -> str:
    return _hash({f: row.get(f) for f in ("kind",) + VALUE_FIELDS})


def save_study(con, study: dict, config=None, *, created_by: str | None = None, record_id: int | None = None,
               first_row: int = 2) -> str:
    """Create or update one study; returns 'created', 'updated' or 'unchanged'.

    With `config`, the row is validated first (EvidenceValidationError lists every problem).
    An update bumps `version` and appends the new state to study_versions.
    """
    if config is not None:
        parsed, errors = parse_study_rows([study], config, first_row)
        if errors:
            raise EvidenceValidationError(errors)
        study = parsed[0]
    row = {f: study.get(f) for f in STUDY_COLUMNS}
    h = _study_hash(row)
    existing = con.execute("SELECT version, content_hash FROM studies WHERE study_id = ?", [row["study_id"]]).fetchall()
    data_json = json.dumps(row, default=str)
    if not existing:
        con.execute(
            f"INSERT INTO studies ({', '.join(STUDY_COLUMNS)}, record_id, content_hash, created_by, updated_by) "
            f"VALUES ({', '.join('?' * len(STUDY_COLUMNS))}, ?, ?, ?, ?)",
            [row[f] for f in STUDY_COLUMNS] + [record_id, h, created_by, created_by])
        con.execute("INSERT INTO study_versions (study_id, version, data, content_hash, changed_by) VALUES (?, 1, ?, ?, ?)",
                    [row["study_id"], data_json, h, created_by])
        return "created"
    version, old_hash = existing[0]
    if old_hash == h:
        return "unchanged"
    sets = ", ".join(f"{f} = ?" for f in STUDY_COLUMNS if f != "study_id")
    con.execute(f"UPDATE studies SET {sets}, version = ?, content_hash = ?, updated_by = ?, updated_at = current_timestamp "
                f"WHERE study_id = ?",
                [row[f] for f in STUDY_COLUMNS if f != "study_id"] + [version + 1, h, created_by, row["study_id"]])
    con.execute("INSERT INTO study_versions (study_id, version, data, content_hash, changed_by) VALUES (?, ?, ?, ?, ?)",
                [row["study_id"], version + 1, data_json, h, created_by])
    return "updated"


def set_study_included(con, study_id: str, included: bool, *, changed_by: str | None = None) -> None:
    """Take a study out of (or back into) the pooled evidence without deleting anything."""
    con.execute("UPDATE studies SET included = ?, updated_by = ?, updated_at = current_timestamp WHERE study_id = ?",
                [included, changed_by, study_id])


def save_outcomes(con, rows: Iterable[dict], config, *, entered_by: str | None = None,
                  source: str | None = None, first_row: int = 2, extra_known_studies: Iterable[str] = ()
                  ) -> dict[str, int]:
    """Validate and append outcome rows; returns counts {'added', 'corrected', 'unchanged'}.

    All-or-nothing when run inside `warehouse.db.transaction`: any invalid row raises
    EvidenceValidationError before anything is written.
    """
    known = known_study_ids(con) | set(extra_known_studies)
    parsed, errors = parse_outcome_rows(list(rows), config, known, first_row)
    if errors:
        raise EvidenceValidationError(errors)
    current = current_entries(con)
    counts = {"added": 0, "corrected": 0, "unchanged": 0}
    for row in parsed:
        h = _entry_hash(row)
        prev = current.get((row["study_id"], row["outcome"]))
        if prev is not None and prev["content_hash"] == h:
            counts["unchanged"] += 1
            continue
        con.execute(
            f"INSERT INTO outcome_data (study_id, outcome, kind, {', '.join(VALUE_FIELDS)}, supersedes, content_hash, "
            f"entered_by, source) VALUES (?, ?, ?, {', '.join('?' * len(VALUE_FIELDS))}, ?, ?, ?, ?)",
            [row["study_id"], row["outcome"], row["kind"]] + [row[f] for f in VALUE_FIELDS]
            + [prev["entry_id"] if prev else None, h, entered_by, source])
        counts["corrected" if prev else "added"] += 1
    return counts


def retract_outcome(con, study_id: str, outcome: str, *, entered_by: str | None = None, note: str | None = None) -> bool:
    """Withdraw the current data of (study, outcome) by appending a retraction; False if there was none."""
    prev = current_entries(con).get((study_id, outcome))
    if prev is None:
        return False
    con.execute("INSERT INTO outcome_data (study_id, outcome, kind, retracted, supersedes, content_hash, entered_by, "
                "source, note) VALUES (?, ?, ?, TRUE, ?, 'retracted', ?, 'retraction', ?)",
                [study_id, outcome, prev["kind"], prev["entry_id"], entered_by, note])
    return True
