"""Idempotent, versioned, deduplicated appends on real PubMed records, and run bookkeeping."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from models.records import Record
from support.warehouse_records import by_pmid, csv_records, fixture_records
from warehouse import db
from warehouse import records as wr
from warehouse.records import AppendCounts

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def wh(tmp_path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    db.migrate(path)
    return path


def _run(wh, strategy="rct-attachment") -> str:
    return wr.start_search_run(wh, None, strategy, "attachment[tiab]", "snapshot", date(2024, 1, 1), date(2024, 1, 31))


def _count(wh, table: str) -> int:
    return db.fetchall(wh, f"SELECT count(*) FROM {table}")[0][0]


def _all_counts(wh) -> dict[str, int]:
    return {t: _count(wh, t) for t in ("records", "record_versions", "record_sources", "record_aliases", "search_hits")}


# ---------------------------------------------------------------------------------------------


def test_append_stores_real_records_with_first_version_and_provenance(wh):
    recs = fixture_records()
    run = _run(wh)
    counts = wr.append_records(wh, run, "rct-attachment", recs)
    assert counts == AppendCounts(new=len(recs), duplicates=0, updated=0, unchanged=0)
    assert _all_counts(wh) == {"records": 8, "record_versions": 8, "record_sources": 8, "record_aliases": 0,
                               "search_hits": 8}
    row = db.fetchall(wh, """SELECT doi, doi_key, year, version, first_seen_run, last_updated_run, authors, kind
                             FROM records WHERE pmid = '9997'""")[0]
    assert row == ("10.1016/0005-2795(76)90109-4", "10.1016/0005-2795(76)90109-4", 1976, 1, run, run,
                   by_pmid("9997").authors, "article")
    assert db.fetchall(wh, "SELECT DISTINCT matched_by, strategy FROM record_sources") == [("new", "rct-attachment")]
    record_id = db.fetchall(wh, "SELECT record_id FROM records WHERE pmid = '9997'")[0][0]
    assert wr.get_record(wh, record_id) == by_pmid("9997")  # round trip through record_versions.data
    history = json.loads(db.fetchall(wh, "SELECT history FROM records WHERE pmid = '9997'")[0][0])
    assert history == by_pmid("9997").history


def test_reappending_same_batch_adds_nothing_in_same_or_later_run(wh):
    recs = fixture_records()
    run = _run(wh)
    wr.append_records(wh, run, "rct-attachment", recs)
    before = _all_counts(wh)
    again = wr.append_records(wh, run, "rct-attachment", recs)
    assert again == AppendCounts(new=0, duplicates=8, updated=0, unchanged=8)
    assert _all_counts(wh) == before
    later = _run(wh)
    wr.append_records(wh, later, "rct-attachment", recs)
    wr.append_records(wh, later, "rct-attachment", recs)
    after = _all_counts(wh)
    assert after["records"] == 8 and after["record_versions"] == 8 and after["record_aliases"] == 0
    # the later run found them too: one provenance row per (record, run, strategy), no duplicates
    assert after["record_sources"] == 16
    assert db.fetchall(wh, """SELECT count(*) FROM (SELECT record_id, run_id, strategy FROM record_sources
                              GROUP BY ALL HAVING count(*) > 1)""") == [(0,)]
    assert db.fetchall(wh, f"SELECT DISTINCT matched_by FROM record_sources WHERE run_id = '{later}'") == [("pmid",)]


def test_changed_content_becomes_a_new_version_never_an_overwrite(wh):
    original = by_pmid("9997")
    run1 = _run(wh)
    wr.append_records(wh, run1, "s", [original])
    corrected = dataclasses.replace(original, title=original.title + " [corrected]",
                                    publication_types=original.publication_types + ["Retracted Publication"])
    run2 = _run(wh)
    assert wr.append_records(wh, run2, "s", [corrected]) == AppendCounts(new=0, duplicates=0, updated=1)
    rows = db.fetchall(wh, "SELECT version, content_hash, run_id, data FROM record_versions ORDER BY version")
    assert [(v, h, r) for v, h, r, _ in rows] == [(1, original.content_hash(), run1), (2, corrected.content_hash(), run2)]
    assert Record.from_dict(json.loads(rows[0][3])) == original  # the old content is still there
    current = db.fetchall(wh, "SELECT record_id, title, version, first_seen_run, last_updated_run, content_hash FROM records")
    assert current == [(current[0][0], corrected.title, 2, run1, run2, corrected.content_hash())]
    assert wr.get_record(wh, current[0][0]) == corrected
    # the same correction seen again is not a third version; going back upstream is (v3)
    assert wr.append_records(wh, run2, "s", [corrected]).updated == 0
    assert wr.append_records(wh, _run(wh), "s", [original]).updated == 1
    assert db.fetchall(wh, "SELECT max(version), count(*) FROM record_versions") == [(3, 3)]


def test_history_only_change_is_not_a_new_version(wh):
    original = by_pmid("9997")
    wr.append_records(wh, _run(wh), "s", [original])
    reindexed = dataclasses.replace(original, history={**original.history, "pubmed": "2030-01-01"})
    assert wr.append_records(wh, _run(wh), "s", [reindexed]) == AppendCounts(duplicates=1, unchanged=1)


def test_doi_duplicate_under_another_pmid_is_merged_as_alias(wh):
    real = by_pmid("11748933")
    # The same paper indexed twice (built from the real record: new PMID, DOI written differently).
    twin = dataclasses.replace(real, pmid="99000001", doi="https://doi.org/" + real.doi.upper(),
                               title=real.title + " (duplicate entry)")
    run1 = _run(wh, "rct-attachment")
    wr.append_records(wh, run1, "rct-attachment", [real])
    run2 = _run(wh, "uk-interventions")
    counts = wr.append_records(wh, run2, "uk-interventions", [twin])
    assert counts == AppendCounts(new=0, duplicates=1, updated=0, unchanged=0)
    assert counts.merged == 1
    record_id = db.fetchall(wh, "SELECT record_id FROM records WHERE pmid = '11748933'")[0][0]
    assert _count(wh, "records") == 1
    assert db.fetchall(wh, "SELECT pmid, record_id, matched_by, run_id FROM record_aliases") == [
        ("99000001", record_id, "doi", run2)]
    assert db.fetchall(wh, "SELECT record_id, strategy, pmid_seen, matched_by FROM record_sources ORDER BY found_at") == [
        (record_id, "rct-attachment", "11748933", "new"), (record_id, "uk-interventions", "99000001", "doi")]
    assert wr.known_pmids(wh, ["99000001", "11748933", "1"]) == {"99000001", "11748933"}
    # seen again later: matched through the alias, nothing new
    assert wr.append_records(wh, _run(wh), "uk-interventions", [twin]).duplicates == 1
    assert _all_counts(wh)["record_aliases"] == 1 and _count(wh, "records") == 1


def test_title_and_year_duplicate_without_doi_is_merged(wh):
    real = csv_records()[1]  # a real topical trial (records.csv): Bernard 2012, Child Dev
    twin = dataclasses.replace(real, pmid="99000002", doi=None,
                               title=real.title.upper().replace(":", " -") + ".")
    other_year = dataclasses.replace(real, pmid="99000003", doi=None, year=real.year + 1)
    run = _run(wh)
    wr.append_records(wh, run, "s", [real])
    counts = wr.append_records(wh, run, "s", [twin, other_year])
    assert counts == AppendCounts(new=1, duplicates=1)
    assert db.fetchall(wh, "SELECT pmid, matched_by FROM record_aliases") == [("99000002", "title")]
    assert sorted(r[0] for r in db.fetchall(wh, "SELECT pmid FROM records")) == ["22239483", "99000003"]


def test_short_generic_titles_are_not_merged(wh):
    intro = by_pmid("11873782")  # real record titled "Introduction."
    other = dataclasses.replace(intro, pmid="99000004", doi=None, authors=["Someone Else"])
    counts = wr.append_records(wh, _run(wh), "s", [intro, other])
    assert counts == AppendCounts(new=2)
    assert _count(wh, "record_aliases") == 0


def test_within_batch_duplicates(wh):
    a, b = by_pmid("9997"), by_pmid("11700088")
    doi_twin = dataclasses.replace(a, pmid="99000005", title="Another title for the same DOI in this batch")
    title_twin = dataclasses.replace(b, pmid="99000006", doi=None)
    batch = [a, a, doi_twin, b, title_twin, b]
    counts = wr.append_records(wh, _run(wh), "s", batch)
    assert counts == AppendCounts(new=2, duplicates=4, updated=0, unchanged=0)
    assert counts.new + counts.duplicates + counts.updated == len(batch)
    assert sorted(db.fetchall(wh, "SELECT pmid, matched_by FROM record_aliases")) == [
        ("99000005", "doi"), ("99000006", "title")]
    assert _all_counts(wh) | {} == {"records": 2, "record_versions": 2, "record_sources": 2,
                                   "record_aliases": 2, "search_hits": 4}


def test_pmid_wins_over_doi_and_doi_over_title(wh):
    a, b = by_pmid("9997"), by_pmid("11748933")
    wr.append_records(wh, _run(wh), "s", [a, b])
    # same PMID as a, but b's DOI: PMID decides, so it is a new version of a, not a merge into b
    confusing = dataclasses.replace(a, doi=b.doi)
    assert wr.append_records(wh, _run(wh), "s", [confusing]) == AppendCounts(updated=1)


def test_doi_decides_before_title(wh):
    a, b = by_pmid("9997"), by_pmid("11748933")
    wr.append_records(wh, _run(wh), "s", [a, b])
    mixed = dataclasses.replace(b, pmid="99000007", doi=a.doi)  # b's title and year, a's DOI
    assert wr.append_records(wh, _run(wh), "s", [mixed]) == AppendCounts(duplicates=1)
    rid_a = db.fetchall(wh, "SELECT record_id FROM records WHERE pmid = '9997'")[0][0]
    assert db.fetchall(wh, "SELECT record_id, matched_by FROM record_aliases WHERE pmid = '99000007'") == [(rid_a, "doi")]


class _FailingConnection:
    """Wraps a DuckDB connection and fails on one statement, after the earlier inserts ran."""

    def __init__(self, con, marker):
        self._con, self._marker = con, marker

    def execute(self, sql, *args, **kwargs):
        if self._marker in sql:
            raise RuntimeError("injected failure after the record inserts")
        return self._con.execute(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._con, name)


def test_failure_mid_append_leaves_nothing_half_written(wh, monkeypatch):
    from contextlib import contextmanager

    real_transaction = wr.transaction

    @contextmanager
    def failing_transaction(path):
        with real_transaction(path) as con:
            yield _FailingConnection(con, "INSERT INTO search_hits")

    recs = fixture_records()
    run = _run(wh)
    monkeypatch.setattr(wr, "transaction", failing_transaction)
    with pytest.raises(RuntimeError, match="injected"):
        wr.append_records(wh, run, "s", recs)
    assert _all_counts(wh) == {"records": 0, "record_versions": 0, "record_sources": 0, "record_aliases": 0,
                               "search_hits": 0}
    monkeypatch.setattr(wr, "transaction", real_transaction)
    assert wr.append_records(wh, run, "s", recs).new == 8  # the retry succeeds in full


_CHILD_PRELUDE = f"""
import sys
sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]
from support.warehouse_records import fixture_records
from warehouse import records as wr
"""

_KILLED_APPEND = _CHILD_PRELUDE + """
import time
from contextlib import contextmanager
real = wr.transaction

class Stall:
    def __init__(self, con): self.con = con
    def execute(self, sql, *a, **k):
        if "INSERT INTO search_hits" in sql:
            print("records inserted", flush=True)
            time.sleep(60)
        return self.con.execute(sql, *a, **k)
    def __getattr__(self, n): return getattr(self.con, n)

@contextmanager
def stalling(path):
    with real(path) as con:
        yield Stall(con)

wr.transaction = stalling
wr.append_records(sys.argv[1], sys.argv[2], "s", fixture_records())
"""


def test_killed_child_mid_append_leaves_nothing(wh):
    run = _run(wh)
    child = subprocess.Popen([sys.executable, "-c", _KILLED_APPEND, str(wh), run],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "records inserted", child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert _all_counts(wh) == {"records": 0, "record_versions": 0, "record_sources": 0, "record_aliases": 0,
                               "search_hits": 0}
    assert wr.append_records(wh, run, "s", fixture_records()).new == 8


_CONCURRENT_APPEND = _CHILD_PRELUDE + """
import dataclasses
path, run, strategy, offset = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = fixture_records()
total = {"new": 0, "duplicates": 0}
for k in range(12):  # 12 batches; both children append the same re-keyed records, in a different order
    batch = [dataclasses.replace(r, pmid=str(80000000 + 100 * ((k + offset) % 12) + i),
                                 doi=None, title=f"{r.title} (load copy {(k + offset) % 12}-{i})")
             for i, r in enumerate(base)]
    c = wr.append_records(path, run, strategy, batch)
    total["new"] += c.new
    total["duplicates"] += c.duplicates
print(total["new"], total["duplicates"])
"""


def test_two_processes_appending_at_once_both_succeed_without_duplicates(wh):
    runs = [_run(wh, "rct-attachment"), _run(wh, "uk-interventions")]
    children = [subprocess.Popen([sys.executable, "-c", _CONCURRENT_APPEND, str(wh), run, strategy, str(off)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for run, strategy, off in zip(runs, ["rct-attachment", "uk-interventions"], [0, 6])]
    outs = [c.communicate(timeout=120) for c in children]
    assert [c.returncode for c in children] == [0, 0], outs
    news = [int(o[0].split()[0]) for o in outs]
    dups = [int(o[0].split()[1]) for o in outs]
    assert sum(news) == 96 and [n + d for n, d in zip(news, dups)] == [96, 96]
    assert _count(wh, "records") == 96 and _count(wh, "record_versions") == 96
    assert db.fetchall(wh, "SELECT count(DISTINCT pmid) FROM records") == [(96,)]
    assert _count(wh, "record_sources") == 192  # each record found once by each strategy


# ---------------------------------------------------------------------------------------------
# bookkeeping


def test_runs_windows_and_counts(wh):
    nightly = wr.start_nightly_run(wh, "snapshot", flow_run_id="flow-1")
    run = wr.start_search_run(wh, nightly, "rct-attachment", "q", "snapshot", date(2024, 1, 1), date(2024, 1, 31))
    recs = fixture_records()
    wr.append_records(wh, run, "rct-attachment", recs[:5])
    wr.append_records(wh, run, "rct-attachment", recs[:5])  # a retried batch: no double counting
    wr.append_records(wh, run, "rct-attachment", [dataclasses.replace(recs[0], title="Changed upstream title x")]
                      + recs[5:])
    counts = wr.finish_search_run(wh, run, "completed", found=9, warnings=["PhraseNotFound: foo"])
    assert counts == {"found": 9, "new": 8, "duplicates": 0, "updated": 0}  # first outcome per PMID in a run
    row = db.fetchall(wh, "SELECT status, found, new_records, duplicates, updated, warnings, finished_at IS NOT NULL "
                          "FROM search_runs WHERE run_id = ?", [run])[0]
    assert row[:5] == ("completed", 9, 8, 0, 0) and json.loads(row[5]) == ["PhraseNotFound: foo"] and row[6]
    run2 = wr.start_search_run(wh, nightly, "uk-interventions", "q2", "snapshot", date(2024, 1, 1), date(2024, 1, 31))
    wr.append_records(wh, run2, "uk-interventions", recs[:3] + [dataclasses.replace(recs[3], title="New title here")])
    # recs[0] is back to its original title (changed in run 1): an update too
    assert wr.finish_search_run(wh, run2, "completed", 4, []) == {"found": 4, "new": 0, "duplicates": 2, "updated": 2}
    wr.finish_nightly_run(wh, nightly, "completed", {"strategies": 2})
    assert db.fetchall(wh, "SELECT status, new_records, summary, flow_run_id FROM nightly_runs") == [
        ("completed", 8, '{"strategies": 2}', "flow-1")]


def test_status_values_are_checked(wh):
    nightly = wr.start_nightly_run(wh, "snapshot")
    with pytest.raises(ValueError, match="unknown run status 'done'"):
        wr.finish_nightly_run(wh, nightly, "done", {})
    with pytest.raises(KeyError):
        wr.finish_nightly_run(wh, 999, "failed", {}, error="boom")
    with pytest.raises(KeyError):
        wr.finish_search_run(wh, "no-such-run", "failed", 0, [], error="boom")


def test_failed_nightly_run_keeps_its_error(wh):
    nightly = wr.start_nightly_run(wh, "entrez")
    wr.finish_nightly_run(wh, nightly, "failed", {"new_records": 0}, error="HTTP 500 after 5 tries")
    assert db.fetchall(wh, "SELECT status, error FROM nightly_runs") == [("failed", "HTTP 500 after 5 tries")]


def test_committed_windows_resume_from_the_latest(wh):
    assert wr.last_committed_window(wh, "rct") is None
    wr.commit_window(wh, "rct", date(2024, 1, 1), date(2024, 1, 31), "run-a")
    wr.commit_window(wh, "rct", date(2024, 1, 28), date(2024, 2, 29), "run-b")
    wr.commit_window(wh, "other", date(2025, 1, 1), date(2025, 1, 2), "run-c")
    wr.commit_window(wh, "rct", date(2024, 1, 1), date(2024, 1, 31), "run-a2")  # re-committed: no error
    assert wr.last_committed_window(wh, "rct") == (date(2024, 1, 28), date(2024, 2, 29))
    assert db.fetchall(wh, "SELECT count(*) FROM search_windows WHERE strategy = 'rct'") == [(2,)]


def test_known_pmids_on_a_large_list(wh):
    recs = fixture_records()
    wr.append_records(wh, _run(wh), "s", recs)
    asked = [str(10_000_000 + i) for i in range(50_000)] + [recs[2].pmid, recs[5].pmid]
    assert wr.known_pmids(wh, asked) == {recs[2].pmid, recs[5].pmid}
    assert wr.known_pmids(wh, []) == set()
    assert wr.known_pmids(wh, iter([int(recs[1].pmid)])) == {recs[1].pmid}  # ints accepted


def test_a_title_merges_only_with_its_year(wh):
    """The documented rule: a long enough title merges two DOI-less PMIDs only when both years are known and equal.

    The title is the same (>= MIN_TITLE_KEY_CHARS) in both pairs, so only the year requirement of
    `_usable_title_key` keeps the year-less pair apart.
    """
    title = "Attachment-based intervention for mothers of preterm infants: a randomised trial."
    assert len(Record(pmid="0", title=title).title_key().rsplit("|", 1)[0]) >= wr.MIN_TITLE_KEY_CHARS
    no_year = [Record(pmid="99000010", title=title), Record(pmid="99000011", title=title, journal="Other J")]
    assert wr.append_records(wh, _run(wh), "s", no_year) == AppendCounts(new=2)
    assert wr.append_records(wh, _run(wh), "s", no_year) == AppendCounts(duplicates=2, unchanged=2)
    assert _count(wh, "record_aliases") == 0
    dated = [Record(pmid="99000012", title=title, year=2020), Record(pmid="99000013", title=title, year=2020,
                                                                     journal="Other J")]
    assert wr.append_records(wh, _run(wh), "s", dated) == AppendCounts(new=1, duplicates=1)
    assert db.fetchall(wh, "SELECT pmid, matched_by FROM record_aliases") == [("99000013", "title")]
    assert wr.known_pmids(wh, ["99000010", "99000011", "99000013", "1"]) == {"99000010", "99000011", "99000013"}


# -- different DOIs, alias content (migration 008) ---------------------------------------------------


def _other_publication(real: Record, pmid="99000010") -> Record:
    """The real record republished elsewhere: same title and year, its own DOI and abstract."""
    return dataclasses.replace(real, pmid=pmid, doi="10.9999/other-publication",
                               abstract="A different abstract: the corrected and republished version.")


def test_records_with_different_dois_are_never_merged_by_title(wh):
    real = by_pmid("11748933")
    assert real.doi and real.year
    other = _other_publication(real)
    wr.append_records(wh, _run(wh), "s", [real])
    assert wr.append_records(wh, _run(wh), "s", [other]) == AppendCounts(new=1)
    assert _count(wh, "record_aliases") == 0
    stored = db.fetchall(wh, "SELECT abstract FROM records WHERE pmid = '99000010'")
    assert stored == [(other.abstract,)]
    # within one batch too, and whichever comes first
    wh2 = wh.with_name("w2.duckdb")
    db.migrate(wh2)
    assert wr.append_records(wh2, _run(wh2), "s", [other, real]) == AppendCounts(new=2)
    # a DOI on one side only still merges by title + year (the rule is unchanged there)
    no_doi = dataclasses.replace(other, pmid="99000011", doi=None)
    assert wr.append_records(wh, _run(wh), "s", [no_doi]) == AppendCounts(duplicates=1)
    assert db.fetchall(wh, "SELECT matched_by FROM record_aliases WHERE pmid = '99000011'") == [("title",)]


def test_a_doi_less_record_merges_into_the_first_of_several_title_matches(wh):
    """Three records share title and year under three DOIs; a DOI-less copy merges into the oldest."""
    real = by_pmid("11748933")
    no_doi = dataclasses.replace(real, pmid="99000020", doi=None, abstract="")
    wr.append_records(wh, _run(wh), "s", [real, _other_publication(real, "99000021")])
    wr.append_records(wh, _run(wh), "s", [dataclasses.replace(no_doi, pmid="99000022", doi="10.9999/third")])
    assert _count(wh, "records") == 3 and _count(wh, "record_aliases") == 0
    # 99000020 has no DOI: it merges into the lowest record_id it may merge with (the real one)
    assert wr.append_records(wh, _run(wh), "s", [no_doi]) == AppendCounts(duplicates=1)
    rid = db.fetchall(wh, "SELECT record_id FROM records WHERE pmid = '11748933'")[0][0]
    assert db.fetchall(wh, "SELECT record_id FROM record_aliases WHERE pmid = '99000020'") == [(rid,)]


def _alias_versions(wh, pmid):
    return [(v, Record.from_dict(json.loads(d))) for v, d in db.fetchall(
        wh, "SELECT version, data FROM record_alias_versions WHERE pmid = ? ORDER BY version", [pmid])]


@pytest.mark.parametrize("how", ["doi", "title"])
def test_merged_alias_keeps_its_own_content_and_every_later_version(wh, how):
    real = by_pmid("11748933")
    twin = dataclasses.replace(real, pmid="99000010", abstract="The alias's own abstract, kept nowhere else.",
                               doi=real.doi if how == "doi" else None)
    run1, run2 = _run(wh), _run(wh)
    wr.append_records(wh, run1, "s", [real])
    assert wr.append_records(wh, run1, "s", [twin]) == AppendCounts(duplicates=1)
    assert db.fetchall(wh, "SELECT matched_by FROM record_aliases") == [(how,)]
    assert _alias_versions(wh, "99000010") == [(1, twin)]  # the merge can be undone from here
    assert wr.alias_versions(wh, "99000010") == [(1, twin)]
    # seen again unchanged: nothing new
    assert wr.append_records(wh, run2, "s", [twin]) == AppendCounts(duplicates=1)
    # upstream retracts the alias PMID: a new alias version, counted, the old one kept
    retracted = dataclasses.replace(twin, publication_types=twin.publication_types + ["Retracted Publication"])
    counts = wr.append_records(wh, run2, "s", [retracted])
    assert counts == AppendCounts(duplicates=1, alias_updated=1) and counts.merged == 1
    assert _alias_versions(wh, "99000010") == [(1, twin), (2, retracted)]
    assert db.fetchall(wh, "SELECT run_id FROM record_alias_versions ORDER BY version") == [(run1,), (run2,)]
    assert db.fetchall(wh, """SELECT pmid, version, list_contains(from_json(data->'$.publication_types', '["VARCHAR"]'),
                                      'Retracted Publication') FROM record_alias_content""") == [
        ("99000010", 2, True)]
    # the record itself is untouched: one version, its own content
    assert _count(wh, "record_versions") == 1 and _count(wh, "records") == 1
    assert wr.append_records(wh, _run(wh), "s", [retracted]) == AppendCounts(duplicates=1)
    assert _count(wh, "record_alias_versions") == 2


def test_within_batch_alias_keeps_its_content(wh):
    real = by_pmid("11748933")
    twin = dataclasses.replace(real, pmid="99000010", abstract="Alias abstract.")
    assert wr.append_records(wh, _run(wh), "s", [real, twin]) == AppendCounts(new=1, duplicates=1)
    assert _alias_versions(wh, "99000010") == [(1, twin)]


def test_alias_merged_before_008_gets_its_content_when_seen_again(wh):
    path = wh
    real = by_pmid("11748933")
    twin = dataclasses.replace(real, pmid="99000010", abstract="Alias abstract.")
    assert wr.append_records(path, "r1", "s", [real]) == AppendCounts(new=1)
    with db.transaction(path) as con:  # an alias as the pre-008 append wrote it: no content
        con.execute("""INSERT INTO record_aliases (pmid, record_id, matched_by, run_id)
                       SELECT '99000010', record_id, 'doi', 'r1' FROM records""")
    assert db.fetchall(path, "SELECT version FROM record_alias_content") == [(None,)]
    assert wr.append_records(path, "r2", "s", [twin]) == AppendCounts(duplicates=1)  # first capture, not a change
    assert _alias_versions(path, "99000010") == [(1, twin)]


# -- the same PMID twice in one batch ---------------------------------------------------------------


def test_same_pmid_twice_in_a_batch_keeps_the_later_version(wh):
    """PubMed files are in order: the later occurrence is the current content (as the snapshot reader has it).

    The earlier one is never stored: both arrive in one transaction, so it never was the
    warehouse's content, and re-appending the same batch stays idempotent.
    """
    v1 = by_pmid("9997")
    v2 = dataclasses.replace(v1, title=v1.title + " [corrected]")
    counts = wr.append_records(wh, _run(wh), "s", [v1, v2])
    assert counts == AppendCounts(new=1, duplicates=1)
    rid = db.fetchall(wh, "SELECT record_id FROM records")[0][0]
    assert wr.get_record(wh, rid) == v2
    assert db.fetchall(wh, "SELECT version, content_hash FROM record_versions") == [(1, v2.content_hash())]
    assert wr.append_records(wh, _run(wh), "s", [v1, v2]) == AppendCounts(duplicates=2, unchanged=1)
    # against a stored record: v0 is kept as a version, the batch's last occurrence becomes current
    v3 = dataclasses.replace(v1, title=v1.title + " [corrected again]")
    assert wr.append_records(wh, _run(wh), "s", [v1, v3]) == AppendCounts(updated=1, duplicates=1)
    assert wr.get_record(wh, rid) == v3
    rows = db.fetchall(wh, "SELECT version, data FROM record_version_content ORDER BY version")
    assert [(v, Record.from_dict(json.loads(d))) for v, d in rows] == [(1, v2), (2, v3)]


def test_link_known_records_gives_provenance_without_refetching(wh):
    recs = fixture_records()
    real = by_pmid("11748933")
    twin = dataclasses.replace(real, pmid="99000001", title=real.title + " (duplicate entry)")  # same DOI
    wr.append_records(wh, _run(wh, "rct-attachment"), "rct-attachment", recs + [twin])
    later = _run(wh, "uk-interventions")
    asked = [r.pmid for r in recs[:3]] + ["99000001", "12345678"]  # 3 records, 1 merged PMID, 1 unknown
    assert wr.link_known_records(wh, later, "uk-interventions", asked) == 4
    assert wr.link_known_records(wh, later, "uk-interventions", asked) == 4  # idempotent
    rows = db.fetchall(wh, f"SELECT pmid_seen, matched_by FROM record_sources WHERE run_id = '{later}' ORDER BY 1")
    # 11748933 and its merged PMID 99000001 are one record: one provenance row for it
    assert rows == sorted((r.pmid, "pmid") for r in recs[:3]) and "11748933" in {r.pmid for r in recs[:3]}
    assert _count(wh, "records") == 8
    assert wr.finish_search_run(wh, later, "completed", found=5, warnings=[]) == {
        "found": 5, "new": 0, "duplicates": 4, "updated": 0}
    assert wr.link_known_records(wh, later, "uk-interventions", []) == 0


# -- version content (migration 005) and the staged list encoding --------------------------------


def test_every_version_content_is_kept_and_readable(wh):
    original = by_pmid("9997")
    wr.append_records(wh, _run(wh), "s", [original])
    # version 1 is current: its content lives in `records`, the view shows it as JSON
    (data,), = db.fetchall(wh, "SELECT data FROM record_version_content")
    assert Record.from_dict(json.loads(data)) == original
    assert db.fetchall(wh, "SELECT data FROM record_versions") == [(None,)]
    corrected = dataclasses.replace(original, title=original.title + " [corrected]", authors=["Doe J"], mesh=[])
    wr.append_records(wh, _run(wh), "s", [corrected])
    rows = db.fetchall(wh, "SELECT version, data FROM record_version_content ORDER BY version")
    assert [(v, Record.from_dict(json.loads(d))) for v, d in rows] == [(1, original), (2, corrected)]
    assert [d is None for (d,) in db.fetchall(wh, "SELECT data FROM record_versions ORDER BY version")] == [False, True]


@pytest.mark.parametrize("authors, mesh", [
    (["Doe J", "Roe R"], []),
    ([""], ["A\x1fB"]),          # [""] and an item holding the separator: sent as JSON arrays
    (["", "Roe R"], ["", ""]),   # empty items survive the joined form
])
def test_list_fields_round_trip_whatever_their_content(wh, authors, mesh):
    rec = dataclasses.replace(by_pmid("9997"), authors=authors, mesh=mesh, keywords=[])
    wr.append_records(wh, _run(wh), "s", [rec])
    assert db.fetchall(wh, "SELECT authors, mesh, keywords FROM records") == [(authors, mesh, [])]
    assert wr.get_record(wh, db.fetchall(wh, "SELECT record_id FROM records")[0][0]) == rec
    assert wr.append_records(wh, _run(wh), "s", [rec]) == AppendCounts(duplicates=1, unchanged=1)


def test_upgrade_to_005_keeps_versions_written_before(tmp_path):
    path = tmp_path / "old.duckdb"
    db.migrate(path, up_to=4)
    rec = by_pmid("9997")
    with db.transaction(path) as con:  # a version-1 row as the pre-005 append wrote it (data filled)
        con.execute("""INSERT INTO records (pmid, title, content_hash, version) VALUES (?, ?, ?, 1)""",
                    [rec.pmid, rec.title, rec.content_hash()])
        con.execute("""INSERT INTO record_versions (record_id, version, content_hash, data)
                       SELECT record_id, 1, content_hash, ? FROM records""", [json.dumps(rec.to_dict())])
    assert db.migrate(path, up_to=5) == [5]
    (data,), = db.fetchall(path, "SELECT data FROM record_version_content")
    assert Record.from_dict(json.loads(data)) == rec


def test_unreturned_pmids_are_kept_until_stored_or_given_up(wh, monkeypatch):
    monkeypatch.setattr(wr, "UNRETURNED_MAX_MISSES", 3)
    recs = fixture_records()
    gone, back = recs[0].pmid, recs[1].pmid
    night1 = wr.start_nightly_run(wh, "entrez")
    run1 = wr.start_search_run(wh, night1, "rct", "q", "entrez", date(2024, 1, 1), date(2024, 1, 31))
    assert wr.note_unreturned(wh, run1, "rct", [gone, back, back], date(2024, 1, 1), date(2024, 1, 31)) == []
    assert wr.note_unreturned(wh, run1, "rct", [gone], date(2024, 1, 1), date(2024, 1, 31)) == []  # once per run
    assert wr.note_unreturned(wh, run1, "other", [gone], None, None) == []  # per strategy
    # the night that missed them does not ask again; the next night does
    assert wr.pending_unreturned(wh, "rct", exclude_nightly=night1) == []
    assert sorted(p for p, _, _ in wr.pending_unreturned(wh, "rct", exclude_nightly=night1 + 1)) == sorted([gone, back])

    run2 = wr.start_search_run(wh, None, "rct", "q", "entrez", date(2024, 1, 20), date(2024, 2, 28))
    wr.append_records(wh, run2, "rct", [recs[1]])  # `back` is returned at last
    assert wr.note_unreturned(wh, run2, "rct", [gone], date(2024, 1, 20), date(2024, 2, 28)) == []
    assert wr.pending_unreturned(wh, "rct") == [(gone, date(2024, 1, 1), date(2024, 2, 28))]
    assert db.fetchall(wh, "SELECT pmid, status, misses FROM unreturned_pmids WHERE strategy = 'rct' ORDER BY pmid") \
        == sorted([(gone, "pending", 2), (back, "resolved", 1)])

    run3 = wr.start_search_run(wh, None, "rct", "q", "entrez", None, None)
    assert wr.note_unreturned(wh, run3, "rct", [gone], None, None) == [gone]  # third miss: given up
    assert wr.pending_unreturned(wh, "rct") == []
    assert db.fetchall(wh, "SELECT status, misses FROM unreturned_pmids WHERE strategy = 'rct' AND pmid = ?",
                       [gone]) == [("abandoned", 3)]
    # kept, not forgotten: stored later by any run, it is resolved too
    wr.append_records(wh, run3, "other", [recs[0]])
    assert wr.resolve_unreturned(wh) == 2
    assert db.fetchall(wh, "SELECT DISTINCT status FROM unreturned_pmids") == [("resolved",)]


def test_a_split_is_not_a_run_status(wh):
    """A split parent run is closed 'completed' (found 0) by the flow: no fourth status exists."""
    run = _run(wh)
    with pytest.raises(ValueError, match="unknown run status 'split'"):
        wr.finish_search_run(wh, run, "split", 12_000, [])
