"""Run bookkeeping and the idempotent, versioned append of fetched records.

One `append_records` call = one transaction: a failure anywhere leaves nothing of the batch
behind. Writes are set-based (the batch is registered as a relation and inserted with
`INSERT … SELECT`) because the nightly append shares the database lock with reviewers' clicks:
the shorter the batch holds it, the quicker their decisions go through.

Dedupe order, against the warehouse and within the batch: PMID (also PMIDs merged before, kept
in `record_aliases`) → normalised DOI → normalised title + year. A merged PMID becomes an alias
of the record it duplicates; its provenance is still recorded.
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
# A title key merges two PMIDs only if the normalised title is this long and the year is known:
# short generic titles ("Erratum", "Editorial", "Reply") are shared by unrelated notices.
MIN_TITLE_KEY_CHARS = 30


@dataclass(frozen=True)
class AppendCounts:
    """What one append made of its batch: `new + updated + duplicates == len(batch)`.

    `duplicates` = records already in the warehouse with the same content, or merged into another
    record (DOI, title + year, or repeated within the batch); `unchanged` is the part of it that was
    the same PMID re-seen with identical content (`duplicates - unchanged` = merges).
    """

    new: int = 0
    duplicates: int = 0
    updated: int = 0
    unchanged: int = 0

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
) -> str:
    """Open a search run for one strategy and window; return its run_id (a uuid)."""
    run_id = str(uuid.uuid4())
    with transaction(db_path) as con:
        con.execute(
            """INSERT INTO search_runs (run_id, nightly_id, strategy, query, source, window_start, window_end)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            [run_id, nightly_id, strategy, query, source, window_start, window_end])
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


# JSON structure of a Record's to_dict(), for json_transform inside DuckDB (one C++ pass per batch).
_STRUCT = json.dumps({
    "title": "VARCHAR", "abstract": "VARCHAR", "journal": "VARCHAR", "year": "INTEGER",
    "authors": ["VARCHAR"], "doi": "VARCHAR", "mesh": ["VARCHAR"], "publication_types": ["VARCHAR"],
    "language": "VARCHAR", "keywords": ["VARCHAR"], "kind": "VARCHAR",
})

def _stage_sql(relation: str) -> str:
    """Typed columns of a staged batch (pmid, doi_key, title_key, content_hash, data JSON, …)."""
    return f"""
        SELECT b.*, unnest(json_transform(b.data, '{_STRUCT}')),
               json_extract(b.data, '$.comments_corrections') AS comments_corrections,
               json_extract(b.data, '$.history') AS history,
               json_extract(b.data, '$.mesh_detail') AS mesh_detail
        FROM {relation} b
    """


@dataclass
class PreparedBatch:
    """A batch reduced to what the append needs: keys, hashes and the JSON of each record.

    Preparing is the CPU-bound, pure-Python half of an append; keeping it separate lets a parser
    process do it next to parsing, so the process holding the database lock only runs SQL.
    """

    pmids: list[str]
    doi_keys: list[str | None]
    title_keys: list[str]
    match_title_keys: list[str | None]  # None where the title is too short or the year unknown
    hashes: list[str]
    datas: list[str]

    def __len__(self) -> int:
        return len(self.pmids)


def prepare_batch(records: Iterable[Record]) -> PreparedBatch:
    """Compute the dedupe keys, content hashes and version JSON of a batch (no I/O)."""
    batch = PreparedBatch([], [], [], [], [], [])
    for rec in records:
        title_key = rec.title_key()
        batch.pmids.append(str(rec.pmid))
        batch.doi_keys.append(normalise_doi(rec.doi))
        batch.title_keys.append(title_key)
        batch.match_title_keys.append(title_key if _usable_title_key(rec, title_key) else None)
        batch.hashes.append(rec.content_hash())
        # vars() is to_dict() without asdict's deep copy (10x slower on MeSH-heavy records).
        batch.datas.append(json.dumps(vars(rec), ensure_ascii=False, default=str))
    return batch


def append_records(db_path: str | os.PathLike, run_id: str, strategy: str, records: list[Record]) -> AppendCounts:
    """Store a fetched batch in one transaction: new records, new versions, aliases, provenance.

    Idempotent: appending the same batch again (same or later run) adds no record, no version and
    no duplicate provenance row. A PMID whose content hash changed gets version + 1 and a row in
    `record_versions` (the previous content stays there).
    """
    return append_prepared(db_path, run_id, strategy, prepare_batch(records))


def append_prepared(db_path: str | os.PathLike, run_id: str, strategy: str, batch: PreparedBatch) -> AppendCounts:
    """`append_records` for a batch already prepared (see `prepare_batch`)."""
    import pandas as pd

    if not len(batch):
        return AppendCounts()
    pmids, doi_keys, title_keys = batch.pmids, batch.doi_keys, batch.title_keys
    usable_titles, hashes, datas = batch.match_title_keys, batch.hashes, batch.datas
    keys = pd.DataFrame({"pmid": pmids, "doi_key": doi_keys, "title_key": usable_titles})

    with transaction(db_path) as con:
        con.register("_keys", keys)
        try:
            by_pmid = {p: (rid, h, v) for p, rid, h, v in con.execute(
                """SELECT r.pmid, r.record_id, r.content_hash, r.version FROM records r
                   WHERE r.pmid IN (SELECT pmid FROM _keys)""").fetchall()}
            by_alias = {p: (rid, how) for p, rid, how in con.execute(
                """SELECT a.pmid, a.record_id, a.matched_by FROM record_aliases a
                   WHERE a.pmid IN (SELECT pmid FROM _keys)""").fetchall()}
            by_doi = dict(con.execute(
                """SELECT r.doi_key, min(r.record_id) FROM records r
                   WHERE r.doi_key IN (SELECT doi_key FROM _keys WHERE doi_key IS NOT NULL)
                   GROUP BY r.doi_key""").fetchall())
            by_title = dict(con.execute(
                """SELECT r.title_key, min(r.record_id) FROM records r
                   WHERE r.title_key IN (SELECT title_key FROM _keys WHERE title_key IS NOT NULL)
                   GROUP BY r.title_key""").fetchall())
        finally:
            con.unregister("_keys")

        # Classify in batch order. A target is an existing record_id (int) or a batch position
        # of a record inserted now (str "#i"), resolved to its record_id after the insert.
        new_pos: list[int] = []
        updated_pos: list[tuple[int, int, int]] = []  # (position, record_id, new version)
        aliases: list[tuple[str, object, str]] = []   # (pmid, target, matched_by)
        provenance: dict[object, tuple[str, str]] = {}  # target -> (pmid_seen, matched_by), first wins
        hits: dict[str, tuple[object, str]] = {}       # pmid -> (target, outcome), first wins
        seen_doi: dict[str, object] = {}
        seen_title: dict[str, object] = {}
        n_unchanged = n_merged = 0
        for i, pmid in enumerate(pmids):
            if pmid in hits:  # the same PMID twice in one batch
                n_merged += 1
                continue
            doi_key, title_key = doi_keys[i], usable_titles[i]
            if pmid in by_pmid:
                target, current_hash, version = by_pmid[pmid]
                how = "pmid"
                if hashes[i] != current_hash:
                    updated_pos.append((i, target, version + 1))
                    outcome = "updated"
                else:
                    n_unchanged += 1
                    outcome = "unchanged"
            elif pmid in by_alias:
                target, how = by_alias[pmid]
                outcome = "merged"
                n_merged += 1
            elif doi_key is not None and (doi_key in by_doi or doi_key in seen_doi):
                target = by_doi[doi_key] if doi_key in by_doi else seen_doi[doi_key]
                how, outcome = "doi", "merged"
                aliases.append((pmid, target, how))
                n_merged += 1
            elif title_key is not None and (title_key in by_title or title_key in seen_title):
                target = by_title[title_key] if title_key in by_title else seen_title[title_key]
                how, outcome = "title", "merged"
                aliases.append((pmid, target, how))
                n_merged += 1
            else:
                target, how, outcome = f"#{i}", "new", "new"
                new_pos.append(i)
            hits[pmid] = (target, outcome)
            provenance.setdefault(target, (pmid, how))
            if doi_key is not None:
                seen_doi.setdefault(doi_key, target)
            if title_key is not None:
                seen_title.setdefault(title_key, target)

        ids: dict[object, int] = {}
        if new_pos:
            stage = pd.DataFrame({
                "pmid": [pmids[i] for i in new_pos],
                "doi_key": [doi_keys[i] for i in new_pos],
                "title_key": [title_keys[i] for i in new_pos],
                "content_hash": [hashes[i] for i in new_pos],
                "data": [datas[i] for i in new_pos],
            })
            con.register("_new", stage)
            try:
                inserted = con.execute(f"""
                    INSERT INTO records (pmid, doi, doi_key, title, abstract, journal, year, authors, mesh,
                        publication_types, language, keywords, comments_corrections, history, mesh_detail,
                        kind, title_key, content_hash, version, first_seen_run, last_updated_run)
                    SELECT s.pmid, s.doi, s.doi_key, s.title, s.abstract, s.journal, s.year, s.authors, s.mesh,
                        s.publication_types, s.language, s.keywords, s.comments_corrections, s.history,
                        s.mesh_detail, s.kind, s.title_key, s.content_hash, 1, $run, $run
                    FROM ({_stage_sql('_new')}) s
                    RETURNING pmid, record_id""", {"run": run_id}).fetchall()
                new_ids = dict(inserted)  # pmid -> record_id (PMIDs are unique among the staged rows)
                ids.update({f"#{i}": int(new_ids[pmids[i]]) for i in new_pos})
                con.execute("""
                    INSERT INTO record_versions (record_id, version, content_hash, data, run_id)
                    SELECT r.record_id, 1, s.content_hash, s.data, $run
                    FROM _new s JOIN records r ON r.pmid = s.pmid""", {"run": run_id})
            finally:
                con.unregister("_new")

        if updated_pos:
            stage = pd.DataFrame({
                "record_id": [rid for _, rid, _ in updated_pos],
                "version": [v for _, _, v in updated_pos],
                "pmid": [pmids[i] for i, _, _ in updated_pos],
                "doi_key": [doi_keys[i] for i, _, _ in updated_pos],
                "title_key": [title_keys[i] for i, _, _ in updated_pos],
                "content_hash": [hashes[i] for i, _, _ in updated_pos],
                "data": [datas[i] for i, _, _ in updated_pos],
            })
            con.register("_upd", stage)
            try:
                con.execute("""
                    INSERT INTO record_versions (record_id, version, content_hash, data, run_id)
                    SELECT record_id, version, content_hash, data, $run FROM _upd""", {"run": run_id})
                con.execute(f"""
                    UPDATE records SET doi = s.doi, doi_key = s.doi_key, title = s.title, abstract = s.abstract,
                        journal = s.journal, year = s.year, authors = s.authors, mesh = s.mesh,
                        publication_types = s.publication_types, language = s.language, keywords = s.keywords,
                        comments_corrections = s.comments_corrections, history = s.history,
                        mesh_detail = s.mesh_detail, kind = s.kind, title_key = s.title_key,
                        content_hash = s.content_hash, version = s.version, last_updated_run = $run,
                        updated_at = current_timestamp
                    FROM ({_stage_sql('_upd')}) s WHERE records.record_id = s.record_id""", {"run": run_id})
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
    )


def get_record(db_path: str | os.PathLike, record_id: int) -> Record | None:
    """The current content of one record, as a Record (its latest version's data)."""
    with connect(db_path) as con:
        rows = con.execute(
            """SELECT v.data FROM record_versions v JOIN records r
                 ON r.record_id = v.record_id AND r.version = v.version WHERE r.record_id = ?""",
            [record_id]).fetchall()
    return Record.from_dict(json.loads(rows[0][0])) if rows else None
