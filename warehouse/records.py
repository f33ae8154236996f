"""Run bookkeeping and the idempotent, versioned append of fetched records.

One `append_records` call = one transaction: a failure anywhere leaves nothing of the batch
behind. Writes are set-based (the batch is registered as a relation and inserted with
`INSERT … SELECT`) because the nightly append shares the database lock with reviewers' clicks:
the shorter the batch holds it, the quicker their decisions go through.

Dedupe order, against the warehouse and within the batch: PMID (also PMIDs merged before, kept
in `record_aliases`) → normalised DOI → normalised title + year. Two records that both have a DOI,
and different ones, are never merged by title (a corrected-and-republished paper, a duplicate
publication in two journals). A merged PMID becomes an alias of the record it duplicates; its
provenance is still recorded, and so is its own content (`record_alias_versions`, migration 008):
version 1 at the merge, a new version whenever that PMID changes upstream, so a wrong merge can be
undone and a retraction of the alias is seen.

The same PMID twice in one batch: the last occurrence is its content (PubMed files are in order,
as the snapshot reader reads them); earlier ones are counted as duplicates and never stored.

Versions (migration 005): the current content of a record is its `records` row; a version's
JSON is written to `record_versions.data` when a newer version supersedes it, so a bulk append
writes each record's content once. `record_version_content` shows every version with its content.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Iterable

from models.records import Record, normalise_doi
from warehouse.db import connect, transaction

RUN_STATUSES = ("running", "completed", "failed")
RUN_KINDS = ("search", "refetch")
# A title key merges two PMIDs only if the normalised title is this long and the year is known:
# short generic titles ("Erratum", "Editorial", "Reply") are shared by unrelated notices.
MIN_TITLE_KEY_CHARS = 30


@dataclass(frozen=True)
class AppendCounts:
    """What one append made of its batch: `new + updated + duplicates == len(batch)`.

    `duplicates` = records already in the warehouse with the same content, or merged into another
    record (DOI, title + year, or repeated within the batch); `unchanged` is the part of it that was
    the same PMID re-seen with identical content (`duplicates - unchanged` = merges).
    `alias_updated` is the part of the merges that were a merged PMID seen again with changed content
    (a new `record_alias_versions` row: e.g. the alias PMID was retracted).
    """

    new: int = 0
    duplicates: int = 0
    updated: int = 0
    unchanged: int = 0
    alias_updated: int = 0

    @property
    def merged(self) -> int:
        return self.duplicates - self.unchanged


def _check_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {', '.join(RUN_STATUSES)}")


# ---------------------------------------------------------------------------------------------
# nightly and search runs


def start_nightly_run(db_path: str | os.PathLike, source: str, flow_run_id: str | None = None) -> int:
    """Open a nightly run (status 'running') and return its id."""
    with transaction(db_path) as con:
        rows = con.execute(
            "INSERT INTO nightly_runs (flow_run_id, source) VALUES (?, ?) RETURNING nightly_id",
            [None if flow_run_id is None else str(flow_run_id), source],
        ).fetchall()
    return int(rows[0][0])


def finish_nightly_run(
    db_path: str | os.PathLike, nightly_id: int, status: str, summary: dict, error: str | None = None
) -> None:
    """Close a nightly run; `new_records` is summed from its search runs (else taken from summary)."""
    _check_status(status)
    with transaction(db_path) as con:
        n_runs, new = con.execute(
            "SELECT count(*), coalesce(sum(new_records), 0) FROM search_runs WHERE nightly_id = ?",
            [nightly_id]).fetchall()[0]
        if not n_runs:
            new = int((summary or {}).get("new_records", 0) or 0)
        updated = con.execute(
            """UPDATE nightly_runs SET status = ?, finished_at = current_timestamp, new_records = ?,
                      summary = ?, error = ? WHERE nightly_id = ? RETURNING nightly_id""",
            [status, int(new), json.dumps(summary or {}, default=str), error, nightly_id]).fetchall()
        if not updated:
            raise KeyError(f"no nightly run {nightly_id}")


def start_search_run(
    db_path: str | os.PathLike,
    nightly_id: int | None,
    strategy: str,
    query: str,
    source: str,
    window_start: date | None,
    window_end: date | None,
    kind: str = "search",
) -> str:
    """Open a search run for one strategy and window; return its run_id (a uuid).

    kind: 'search' (its hits are identified records, for PRISMA) or 'refetch' (stored records fetched
    again because PubMed modified them: not identified again)."""
    if kind not in RUN_KINDS:
        raise ValueError(f"unknown search run kind {kind!r}; expected one of {', '.join(RUN_KINDS)}")
    run_id = str(uuid.uuid4())
    with transaction(db_path) as con:
        con.execute(
            """INSERT INTO search_runs (run_id, nightly_id, strategy, query, source, window_start, window_end, kind)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            [run_id, nightly_id, strategy, query, source, window_start, window_end, kind])
    return run_id


def finish_search_run(
    db_path: str | os.PathLike,
    run_id: str,
    status: str,
    found: int,
    warnings: list[str],
    error: str | None = None,
) -> dict:
    """Close a search run with counts aggregated from what its appends recorded; return them."""
    _check_status(status)
    with transaction(db_path) as con:
        counts = dict(con.execute(
            "SELECT outcome, count(*) FROM search_hits WHERE run_id = ? GROUP BY outcome", [run_id]).fetchall())
        new = counts.get("new", 0)
        updated = counts.get("updated", 0)
        duplicates = counts.get("unchanged", 0) + counts.get("merged", 0)
        done = con.execute(
            """UPDATE search_runs SET status = ?, found = ?, new_records = ?, duplicates = ?, updated = ?,
                      warnings = ?, error = ?, finished_at = current_timestamp
               WHERE run_id = ? RETURNING run_id""",
            [status, int(found), new, duplicates, updated, json.dumps(list(warnings or [])), error, run_id],
        ).fetchall()
        if not done:
            raise KeyError(f"no search run {run_id}")
    return {"found": int(found), "new": new, "duplicates": duplicates, "updated": updated}


def commit_window(
    db_path: str | os.PathLike, strategy: str, window_start: date, window_end: date, run_id: str
) -> None:
    """Record that every batch of this window was appended (the next run resumes after it)."""
    with transaction(db_path) as con:
        con.execute(
            """INSERT INTO search_windows (strategy, window_start, window_end, run_id) VALUES (?, ?, ?, ?)
               ON CONFLICT (strategy, window_start, window_end)
               DO UPDATE SET run_id = excluded.run_id, committed_at = now()""",
            [strategy, window_start, window_end, run_id])


def last_committed_window(db_path: str | os.PathLike, strategy: str) -> tuple[date, date] | None:
    """The committed window of `strategy` that ends latest, or None before its first run."""
    with connect(db_path) as con:
        rows = con.execute(
            """SELECT window_start, window_end FROM search_windows WHERE strategy = ?
               ORDER BY window_end DESC, window_start DESC LIMIT 1""", [strategy]).fetchall()
    return (rows[0][0], rows[0][1]) if rows else None


# ---------------------------------------------------------------------------------------------
# PMIDs a search found but EFetch did not return (migration 007)

# A PMID asked for this many times (the search, then once a night) and never returned is given up:
# its row stays, marked 'abandoned', and the night that gives up says so in its warnings.
UNRETURNED_MAX_MISSES = 5
# Asked for again in one EPost per night at most (PubMed's EPost takes up to 10,000 UIDs).
UNRETURNED_PER_NIGHT = 9_999


def note_unreturned(
    db_path: str | os.PathLike,
    run_id: str,
    strategy: str,
    pmids: Iterable[str],
    window_start: date | None,
    window_end: date | None,
) -> list[str]:
    """Record PMIDs that run `run_id` asked EFetch for and did not get; return those given up now.

    A PMID missed before gets one more miss (once per run) and its window widens to cover both;
    at UNRETURNED_MAX_MISSES misses it is 'abandoned' (kept, never asked for again by itself).
    """
    wanted = sorted({str(p) for p in pmids})
    if not wanted:
        return []
    params = {"ids": wanted, "strategy": strategy, "run": run_id, "ws": window_start, "we": window_end,
              "max": UNRETURNED_MAX_MISSES}
    with transaction(db_path) as con:
        con.execute(
            """INSERT INTO unreturned_pmids (strategy, pmid, window_start, window_end, first_run_id, last_run_id,
                                             misses, status)
               SELECT $strategy, pmid, $ws, $we, $run, $run, 1,
                      CASE WHEN 1 >= $max THEN 'abandoned' ELSE 'pending' END
               FROM (SELECT DISTINCT unnest($ids::VARCHAR[]) AS pmid)
               ON CONFLICT (strategy, pmid) DO UPDATE SET
                   misses = unreturned_pmids.misses + 1,
                   last_run_id = excluded.last_run_id,
                   window_start = least(unreturned_pmids.window_start, excluded.window_start),
                   window_end = greatest(unreturned_pmids.window_end, excluded.window_end),
                   status = CASE WHEN unreturned_pmids.misses + 1 >= $max THEN 'abandoned' ELSE 'pending' END,
                   updated_at = now()
               WHERE unreturned_pmids.last_run_id <> excluded.last_run_id""", params)
        rows = con.execute(
            """SELECT pmid FROM unreturned_pmids WHERE strategy = $strategy AND last_run_id = $run
               AND status = 'abandoned' AND pmid IN (SELECT unnest($ids::VARCHAR[])) ORDER BY pmid""",
            {"strategy": strategy, "run": run_id, "ids": wanted}).fetchall()
    return [r[0] for r in rows]


def resolve_unreturned(db_path: str | os.PathLike) -> int:
    """Mark 'resolved' every unreturned PMID the warehouse now holds (stored by any run or strategy,
    or merged into another record); return how many."""
    with transaction(db_path) as con:
        rows = con.execute(
            """UPDATE unreturned_pmids SET status = 'resolved', updated_at = current_timestamp
               WHERE status <> 'resolved'
                 AND (pmid IN (SELECT pmid FROM records) OR pmid IN (SELECT pmid FROM record_aliases))
               RETURNING pmid""").fetchall()
    return len(rows)


def pending_unreturned(
    db_path: str | os.PathLike, strategy: str, exclude_nightly: int | None = None
) -> list[tuple[str, date | None, date | None]]:
    """`(pmid, window_start, window_end)` of the strategy's pending unreturned PMIDs, oldest first.

    Those stored since are resolved first. Rows last missed by a run of night `exclude_nightly`
    (the night asking) are left for the next night: they have just been asked for.
    """
    resolve_unreturned(db_path)
    with connect(db_path) as con:
        rows = con.execute(
            """SELECT u.pmid, u.window_start, u.window_end FROM unreturned_pmids u
               WHERE u.strategy = $strategy AND u.status = 'pending'
                 AND u.last_run_id NOT IN (SELECT run_id FROM search_runs
                                           WHERE $nightly IS NOT NULL AND nightly_id = $nightly)
               ORDER BY u.first_missed_at, u.pmid LIMIT $limit""",
            {"strategy": strategy, "nightly": exclude_nightly, "limit": UNRETURNED_PER_NIGHT}).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


# ---------------------------------------------------------------------------------------------
# records


def known_pmids(db_path: str | os.PathLike, pmids: Iterable[str]) -> set[str]:
    """The PMIDs among `pmids` already in the warehouse (as records or as merged aliases).

    One set-based query (the list is bound as one array parameter, no pandas import): about
    70 ms for 50,000 PMIDs against a million records.
    """
    wanted = sorted({str(p) for p in pmids})
    if not wanted:
        return set()
    with connect(db_path) as con:
        rows = con.execute(
            """SELECT pmid FROM records WHERE pmid IN (SELECT unnest($ids::VARCHAR[]))
               UNION SELECT pmid FROM record_aliases WHERE pmid IN (SELECT unnest($ids::VARCHAR[]))""",
            {"ids": wanted}).fetchall()
    return {r[0] for r in rows}


def link_known_records(db_path: str | os.PathLike, run_id: str, strategy: str, pmids: Iterable[str]) -> int:
    """Provenance for PMIDs this run found that are already stored (not fetched again).

    Without it a record found again by a later search would have no row for that run, and the
    per-update PRISMA counts would miss it. Idempotent; returns how many of `pmids` are known.
    Counted as duplicates of the run ('unchanged', or 'merged' for a merged PMID).
    """
    wanted = sorted({str(p) for p in pmids})
    if not wanted:
        return 0
    with transaction(db_path) as con:
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _known AS
               SELECT r.pmid, r.record_id, 'pmid' AS matched_by, 'unchanged' AS outcome FROM records r
               WHERE r.pmid IN (SELECT unnest($ids::VARCHAR[]))
               UNION ALL
               SELECT a.pmid, a.record_id, a.matched_by, 'merged' FROM record_aliases a
               WHERE a.pmid IN (SELECT unnest($ids::VARCHAR[]))""", {"ids": wanted})
        try:
            known = con.execute("SELECT count(*) FROM _known").fetchall()[0][0]
            con.execute(
                """INSERT INTO record_sources (record_id, run_id, strategy, pmid_seen, matched_by)
                   SELECT record_id, $run, $strategy, arg_min(pmid, pmid), arg_min(matched_by, pmid)
                   FROM _known GROUP BY record_id ON CONFLICT DO NOTHING""", {"run": run_id, "strategy": strategy})
            con.execute(
                """INSERT INTO search_hits (run_id, pmid, record_id, outcome)
                   SELECT $run, pmid, record_id, outcome FROM _known ON CONFLICT DO NOTHING""", {"run": run_id})
        finally:
            con.execute("DROP TABLE IF EXISTS _known")
    return int(known)


def _usable_title_key(record: Record, key: str) -> bool:
    return record.year is not None and len(key.rsplit("|", 1)[0]) >= MIN_TITLE_KEY_CHARS


# List fields travel as one string joined by U+001F (illegal in XML 1.0, so never in parsed
# text) and are split back inside DuckDB: much cheaper on both sides than a list per value.
# A batch whose lists cannot be joined unambiguously sends that column as JSON arrays instead.
_SEP = "\x1f"
_LIST_FIELDS = ("authors", "mesh", "publication_types", "keywords")
_JSON_FIELDS = ("comments_corrections", "history", "mesh_detail")
# Stored columns of a record in records-table order (list and JSON columns are encoded, see above).
_CONTENT_COLUMNS = ("doi", "title", "abstract", "journal", "year", "authors", "mesh", "publication_types",
                    "language", "keywords", "comments_corrections", "history", "mesh_detail", "kind")


_JSON = json.JSONEncoder(ensure_ascii=False, default=str)  # one encoder, not one per json.dumps call


def _join_lists(lists: list) -> tuple[list[str], bool]:
    """Each list as one U+001F-joined string, or (if any is ambiguous) each as a JSON array; bool = JSON."""
    out = []
    for items in lists:
        try:
            joined = _SEP.join(items)
        except TypeError:  # non-string items (a hand-made Record): JSON says what they are
            break
        if joined.count(_SEP) != max(len(items) - 1, 0) or (len(items) == 1 and not joined):
            break  # an item holds U+001F, or [""] (which would read back as [])
        out.append(joined)
    else:
        return out, False
    return [json.dumps(list(items), ensure_ascii=False, default=str) for items in lists], True


@dataclass
class PreparedBatch:
    """A batch reduced to what the append needs: keys, hashes and the columns of each record.

    Preparing is the CPU-bound, pure-Python half of an append; keeping it separate lets a parser
    process do it next to parsing, so the process holding the database lock only runs SQL. Columns
    (plain lists of str/int) pickle compactly between processes and stage into DuckDB directly.
    """

    pmids: list[str]
    doi_keys: list[str | None]
    title_keys: list[str]
    match_title_keys: list[str | None]  # None where the title is too short or the year unknown
    hashes: list[str]
    columns: dict[str, list]  # _CONTENT_COLUMNS → values (lists joined, JSON fields as JSON text)
    json_lists: tuple[str, ...] = ()  # list columns sent as JSON arrays in this batch
    deleted: tuple[str, ...] = ()  # PMIDs of <DeleteCitation> blocks read with the batch (see note_deletions)

    def __len__(self) -> int:
        return len(self.pmids)

    def frame(self, positions: list[int] | None = None):
        """The staged relation (pmid, doi_key, title_key, content_hash, content columns) as a DataFrame."""
        import pandas as pd

        data = {"pmid": self.pmids, "doi_key": self.doi_keys, "title_key": self.title_keys,
                "content_hash": self.hashes, **self.columns}
        if positions is not None and len(positions) != len(self.pmids):
            data = {name: [values[i] for i in positions] for name, values in data.items()}
        data["year"] = pd.array(data["year"], dtype="Int64")
        return pd.DataFrame(data)


def prepare_batch(records: Iterable[Record]) -> PreparedBatch:
    """Compute the dedupe keys, content hashes and staged columns of a batch (no I/O)."""
    recs = list(records)
    title_keys = [rec.title_key() for rec in recs]
    columns: dict[str, list] = {
        "doi": [rec.doi for rec in recs],
        "title": [rec.title for rec in recs],
        "abstract": [rec.abstract for rec in recs],
        "journal": [rec.journal for rec in recs],
        "year": [rec.year for rec in recs],
        "language": [rec.language for rec in recs],
        "kind": [rec.kind for rec in recs],
    }
    json_lists = []
    for name in _LIST_FIELDS:
        columns[name], as_json = _join_lists([getattr(rec, name) for rec in recs])
        if as_json:
            json_lists.append(name)
    for name in _JSON_FIELDS:
        columns[name] = [_JSON.encode(getattr(rec, name)) for rec in recs]
    return PreparedBatch(
        pmids=[str(rec.pmid) for rec in recs],
        doi_keys=[normalise_doi(rec.doi) for rec in recs],
        title_keys=title_keys,
        match_title_keys=[key if _usable_title_key(rec, key) else None for rec, key in zip(recs, title_keys)],
        hashes=[rec.content_hash() for rec in recs],
        columns={name: columns[name] for name in _CONTENT_COLUMNS},
        json_lists=tuple(json_lists),
    )


def _content_sql(batch: PreparedBatch, alias: str = "s") -> list[str]:
    """SQL expressions of _CONTENT_COLUMNS over a staged relation (lists decoded)."""
    exprs = []
    for name in _CONTENT_COLUMNS:
        col = f"{alias}.{name}"
        if name in batch.json_lists:
            exprs.append(f"""json_transform({col}, '["VARCHAR"]')""")
        elif name in _LIST_FIELDS:
            exprs.append(f"CASE WHEN {col} = '' THEN []::VARCHAR[] ELSE string_split({col}, chr(31)) END")
        elif name in _JSON_FIELDS:
            exprs.append(f"{col}::JSON")
        else:
            exprs.append(col)
    return exprs


def _json_sql(batch: PreparedBatch, alias: str = "s") -> str:
    """SQL of a staged record's content as JSON (what Record.to_dict gives)."""
    exprs = dict(zip(_CONTENT_COLUMNS, _content_sql(batch, alias)))
    exprs["pmid"] = f"{alias}.pmid"
    return "to_json({" + ", ".join(f"'{name}': {exprs[name]}" for name in _RECORD_FIELDS) + "})"


# The JSON of a record's current content (what Record.to_dict gives), built from its records row.
_ROW_JSON = """to_json({'pmid': r.pmid, 'title': r.title, 'abstract': r.abstract, 'journal': r.journal,
    'year': r.year, 'authors': r.authors, 'doi': r.doi, 'mesh': r.mesh, 'publication_types': r.publication_types,
    'language': r.language, 'comments_corrections': r.comments_corrections, 'history': r.history,
    'keywords': r.keywords, 'kind': r.kind, 'mesh_detail': r.mesh_detail})"""


def append_records(db_path: str | os.PathLike, run_id: str, strategy: str, records: list[Record]) -> AppendCounts:
    """Store a fetched batch in one transaction: new records, new versions, aliases, provenance.

    Idempotent: appending the same batch again (same or later run) adds no record, no version and
    no duplicate provenance row. A PMID whose content hash changed gets version + 1 and a row in
    `record_versions`; the previous content is copied into its own version row's `data` first
    (migration 005: the current version's content lives in `records` only).
    """
    return append_prepared(db_path, run_id, strategy, prepare_batch(records))


def append_prepared(db_path: str | os.PathLike, run_id: str, strategy: str, batch: PreparedBatch) -> AppendCounts:
    """`append_records` for a batch already prepared (see `prepare_batch`)."""
    import pandas as pd

    if not len(batch):
        return AppendCounts()
    pmids, doi_keys = batch.pmids, batch.doi_keys
    usable_titles, hashes = batch.match_title_keys, batch.hashes
    keys = pd.DataFrame({"pmid": pmids, "doi_key": doi_keys, "title_key": usable_titles})

    # The same PMID twice: the batch is classified in first-occurrence order, with the content of the
    # last occurrence (PubMed files are in order). Positions below (`j`) index that last occurrence.
    last: dict[str, int] = {}
    for i, pmid in enumerate(pmids):
        last[pmid] = i

    with transaction(db_path) as con:
        con.register("_keys", keys)
        try:
            # One statement, one scan per key column: (kind, key, record_id, content_hash, extra, version)
            found = con.execute(
                """SELECT 'p', r.pmid, r.record_id, r.content_hash, NULL, r.version FROM records r
                   WHERE r.pmid IN (SELECT pmid FROM _keys)
                   UNION ALL
                   SELECT 'a', a.pmid, a.record_id, v.content_hash, a.matched_by, coalesce(v.version, 0)
                   FROM record_aliases a LEFT JOIN (
                       SELECT pmid, max(version) AS version, arg_max(content_hash, version) AS content_hash
                       FROM record_alias_versions WHERE pmid IN (SELECT pmid FROM _keys) GROUP BY pmid) v
                     ON v.pmid = a.pmid
                   WHERE a.pmid IN (SELECT pmid FROM _keys)
                   UNION ALL
                   SELECT 'd', r.doi_key, min(r.record_id), NULL, NULL, NULL FROM records r
                   WHERE r.doi_key IN (SELECT doi_key FROM _keys WHERE doi_key IS NOT NULL) GROUP BY r.doi_key
                   UNION ALL
                   SELECT 't', r.title_key, min(r.record_id), NULL, r.doi_key, NULL FROM records r
                   WHERE r.title_key IN (SELECT title_key FROM _keys WHERE title_key IS NOT NULL)
                   GROUP BY r.title_key, r.doi_key""").fetchall()
        finally:
            con.unregister("_keys")
        by_pmid: dict[str, tuple[int, str, int]] = {}
        by_alias: dict[str, tuple[int, str, str | None, int]] = {}  # pmid -> (record_id, how, hash, version)
        by_doi: dict[str, int] = {}
        by_title: dict[str, list[tuple[int, str | None]]] = {}  # title_key -> [(record_id, doi_key)]
        for kind, key, rid, chash, extra, version in found:
            if kind == "p":
                by_pmid[key] = (rid, chash, int(version))
            elif kind == "a":
                by_alias[key] = (rid, extra, chash, int(version))
            elif kind == "d":
                by_doi[key] = rid
            else:
                by_title.setdefault(key, []).append((rid, extra))
        for candidates in by_title.values():
            candidates.sort(key=lambda c: c[0])

        def title_match(candidates: list, doi_key: str | None) -> tuple[object, str | None] | None:
            """The first candidate a record may merge with by title: not when both DOIs are known and differ."""
            for target, target_doi in candidates:
                if doi_key is None or target_doi is None or target_doi == doi_key:
                    return target, target_doi
            return None

        # Classify in batch order. A target is an existing record_id (int) or a batch position
        # of a record inserted now (str "#j"), resolved to its record_id after the insert.
        new_pos: list[int] = []
        updated_pos: list[tuple[int, int, int]] = []  # (position, record_id, new version)
        aliases: list[tuple[str, object, str]] = []   # (pmid, target, matched_by)
        alias_versions: list[tuple[int, object, int]] = []  # (position, target, alias version)
        provenance: dict[object, tuple[str, str]] = {}  # target -> (pmid_seen, matched_by), first wins
        hits: dict[str, tuple[object, str]] = {}       # pmid -> (target, outcome), first wins
        seen_doi: dict[str, object] = {}
        seen_title: dict[str, list[tuple[object, str | None]]] = {}  # title_key -> [(target, its doi_key)]
        n_unchanged = n_merged = n_alias_updated = 0
        for i, pmid in enumerate(pmids):
            if pmid in hits:  # the same PMID again in this batch: its last occurrence was used already
                n_merged += 1
                continue
            j = last[pmid]
            doi_key, title_key = doi_keys[j], usable_titles[j]
            target_doi = doi_key  # the DOI of the record it lands in, as far as this batch knows
            if pmid in by_pmid:
                target, current_hash, version = by_pmid[pmid]
                how = "pmid"
                if hashes[j] != current_hash:
                    updated_pos.append((j, target, version + 1))
                    outcome = "updated"
                else:
                    n_unchanged += 1
                    outcome = "unchanged"
            elif pmid in by_alias:
                target, how, alias_hash, alias_version = by_alias[pmid]
                outcome = "merged"
                n_merged += 1
                if hashes[j] != alias_hash:  # changed upstream (or merged before 008: first capture)
                    alias_versions.append((j, target, alias_version + 1))
                    n_alias_updated += alias_version > 0
            elif doi_key is not None and (doi_key in by_doi or doi_key in seen_doi):
                target = by_doi[doi_key] if doi_key in by_doi else seen_doi[doi_key]
                how, outcome = "doi", "merged"
                aliases.append((pmid, target, how))
                alias_versions.append((j, target, 1))
                n_merged += 1
            elif title_key is not None and (
                    match := title_match(by_title.get(title_key, []), doi_key)
                    or title_match(seen_title.get(title_key, []), doi_key)) is not None:
                target, target_doi = match
                how, outcome = "title", "merged"
                aliases.append((pmid, target, how))
                alias_versions.append((j, target, 1))
                n_merged += 1
            else:
                target, how, outcome = f"#{j}", "new", "new"
                new_pos.append(j)
            hits[pmid] = (target, outcome)
            provenance.setdefault(target, (pmid, how))
            if doi_key is not None:
                seen_doi.setdefault(doi_key, target)
            if title_key is not None:
                seen_title.setdefault(title_key, []).append((target, target_doi))

        content = ", ".join(_content_sql(batch))
        ids: dict[object, int] = {}
        if new_pos:
            con.register("_new", batch.frame(new_pos))
            try:
                inserted = con.execute(f"""
                    INSERT INTO records (doi, title, abstract, journal, year, authors, mesh, publication_types,
                        language, keywords, comments_corrections, history, mesh_detail, kind,
                        pmid, doi_key, title_key, content_hash, version, first_seen_run, last_updated_run)
                    SELECT {content}, s.pmid, s.doi_key, s.title_key, s.content_hash, 1, $run, $run
                    FROM _new s
                    RETURNING pmid, record_id""", {"run": run_id}).fetchall()
            finally:
                con.unregister("_new")
            new_ids = dict(inserted)  # pmid -> record_id (PMIDs are unique among the staged rows)
            ids.update({f"#{j}": int(new_ids[pmids[j]]) for j in new_pos})
            # Version 1's content is the records row itself (data NULL until superseded, see 005).
            versions = pd.DataFrame({"record_id": [ids[f"#{j}"] for j in new_pos],
                                     "content_hash": [hashes[j] for j in new_pos]})
            con.register("_ver", versions)
            try:
                con.execute("""
                    INSERT INTO record_versions (record_id, version, content_hash, data, run_id)
                    SELECT record_id, 1, content_hash, NULL, $run FROM _ver""", {"run": run_id})
            finally:
                con.unregister("_ver")

        if updated_pos:
            stage = batch.frame([i for i, _, _ in updated_pos])
            stage.insert(0, "record_id", [rid for _, rid, _ in updated_pos])
            stage.insert(1, "version", [v for _, _, v in updated_pos])
            con.register("_upd", stage)
            try:
                # Keep the outgoing content: copy it into its own version row before overwriting.
                con.execute(f"""
                    UPDATE record_versions SET data = {_ROW_JSON}
                    FROM records r WHERE r.record_id IN (SELECT record_id FROM _upd)
                      AND record_versions.record_id = r.record_id AND record_versions.version = r.version
                      AND record_versions.data IS NULL""")
                con.execute("""
                    INSERT INTO record_versions (record_id, version, content_hash, data, run_id)
                    SELECT record_id, version, content_hash, NULL, $run FROM _upd""", {"run": run_id})
                assignments = ", ".join(f"{name} = {expr}" for name, expr in zip(_CONTENT_COLUMNS, _content_sql(batch)))
                con.execute(f"""
                    UPDATE records SET {assignments}, doi_key = s.doi_key, title_key = s.title_key,
                        content_hash = s.content_hash, version = s.version, last_updated_run = $run,
                        updated_at = current_timestamp
                    FROM _upd s WHERE records.record_id = s.record_id""", {"run": run_id})
            finally:
                con.unregister("_upd")

        def resolve(target: object) -> int:
            return ids[target] if isinstance(target, str) else int(target)

        if aliases:
            frame = pd.DataFrame({
                "pmid": [a[0] for a in aliases],
                "record_id": [resolve(a[1]) for a in aliases],
                "matched_by": [a[2] for a in aliases],
            })
            con.register("_alias", frame)
            try:
                con.execute("""
                    INSERT INTO record_aliases (pmid, record_id, matched_by, run_id)
                    SELECT pmid, record_id, matched_by, $run FROM _alias ON CONFLICT DO NOTHING""",
                            {"run": run_id})
            finally:
                con.unregister("_alias")

        if alias_versions:
            # The merged PMID's own content: at the merge, and again whenever it changes upstream.
            stage = batch.frame([j for j, _, _ in alias_versions])
            stage.insert(0, "record_id", [resolve(t) for _, t, _ in alias_versions])
            stage.insert(1, "version", [v for _, _, v in alias_versions])
            con.register("_aver", stage)
            try:
                con.execute(f"""
                    INSERT INTO record_alias_versions (pmid, version, record_id, content_hash, doi_key, data, run_id)
                    SELECT s.pmid, s.version, s.record_id, s.content_hash, s.doi_key, {_json_sql(batch)}, $run
                    FROM _aver s ON CONFLICT DO NOTHING""", {"run": run_id})
            finally:
                con.unregister("_aver")

        prov = pd.DataFrame({
            "record_id": [resolve(t) for t in provenance],
            "pmid_seen": [v[0] for v in provenance.values()],
            "matched_by": [v[1] for v in provenance.values()],
        })
        hit_frame = pd.DataFrame({
            "pmid": list(hits),
            "record_id": [resolve(t) for t, _ in hits.values()],
            "outcome": [o for _, o in hits.values()],
        })
        con.register("_prov", prov)
        con.register("_hits", hit_frame)
        try:
            con.execute("""
                INSERT INTO record_sources (record_id, run_id, strategy, pmid_seen, matched_by)
                SELECT record_id, $run, $strategy, pmid_seen, matched_by FROM _prov ON CONFLICT DO NOTHING""",
                        {"run": run_id, "strategy": strategy})
            con.execute("""
                INSERT INTO search_hits (run_id, pmid, record_id, outcome)
                SELECT $run, pmid, record_id, outcome FROM _hits ON CONFLICT DO NOTHING""", {"run": run_id})
        finally:
            con.unregister("_prov")
            con.unregister("_hits")

    return AppendCounts(
        new=len(new_pos),
        duplicates=n_unchanged + n_merged,
        updated=len(updated_pos),
        unchanged=n_unchanged,
        alias_updated=n_alias_updated,
    )


def alias_versions(db_path: str | os.PathLike, pmid: str) -> list[tuple[int, Record]]:
    """Every stored content version of a merged PMID, oldest first (empty if it is not an alias)."""
    with connect(db_path) as con:
        rows = con.execute("SELECT version, data FROM record_alias_versions WHERE pmid = ? ORDER BY version",
                           [str(pmid)]).fetchall()
    return [(int(v), Record.from_dict(json.loads(d))) for v, d in rows]


# ---------------------------------------------------------------------------------------------
# PubMed deletions (migration 008)


def note_deletions(db_path: str | os.PathLike, run_id: str, source: str, pmids: Iterable[str]) -> int:
    """Record that `source` (an update file's name) deletes these PMIDs; return how many it names.

    Nothing is removed: the record stays in `records` and `deleted_records` lists it. Each row names
    the record the PMID resolves to now (its own, or the one it is an alias of; NULL if unknown).
    Idempotent per (PMID, source). Joins the caller's transaction if there is one.
    """
    wanted = sorted({str(p) for p in pmids})
    if not wanted:
        return 0
    with transaction(db_path) as con:
        con.execute(
            """INSERT INTO record_deletions (pmid, record_id, run_id, source)
               SELECT d.pmid, coalesce(r.record_id, a.record_id), $run, $source
               FROM (SELECT unnest($ids::VARCHAR[]) AS pmid) d
               LEFT JOIN records r ON r.pmid = d.pmid LEFT JOIN record_aliases a ON a.pmid = d.pmid
               ON CONFLICT DO NOTHING""", {"ids": wanted, "run": run_id, "source": str(source)})
    return len(wanted)


def deleted_pmids(db_path: str | os.PathLike, pmids: Iterable[str]) -> set[str]:
    """The PMIDs among `pmids` that a PubMed deletion has named."""
    wanted = sorted({str(p) for p in pmids})
    if not wanted:
        return set()
    with connect(db_path) as con:
        rows = con.execute("SELECT DISTINCT pmid FROM record_deletions WHERE pmid IN (SELECT unnest($ids::VARCHAR[]))",
                           {"ids": wanted}).fetchall()
    return {r[0] for r in rows}


_RECORD_FIELDS = ("pmid", "title", "abstract", "journal", "year", "authors", "doi", "mesh", "publication_types",
                  "language", "comments_corrections", "history", "keywords", "kind", "mesh_detail")


def get_record(db_path: str | os.PathLike, record_id: int) -> Record | None:
    """The current content of one record, as a Record (its `records` row: the current version)."""
    with connect(db_path) as con:
        rows = con.execute(f"SELECT {', '.join(_RECORD_FIELDS)} FROM records WHERE record_id = ?",
                           [record_id]).fetchall()
    return Record.from_dict(dict(zip(_RECORD_FIELDS, rows[0]))) if rows else None
