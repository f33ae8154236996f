"""The nightly flow over real HTTP: Bio.Entrez against a local E-utilities double replaying real XML.

Covers what a night on the live service can throw at the flow: a damaged batch fails the run with the
strategy, window and batch named, keeps the batches already stored and leaves the window uncommitted,
so the next run resumes and fetches only the PMIDs still missing; a PhraseNotFound warning reaches
the summary.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from conftest import FIXTURES, REPO
from support.eutils_server import EutilsServer, Fault, retraction

XML_FILES = sorted((FIXTURES / "pubmed").glob("*.xml"))


@pytest.fixture
def entrez_env(lr_home, tmp_path, monkeypatch):
    """One broad strategy (English-language records) so every fixture article is a hit."""
    text = (REPO / "review.toml").read_text(encoding="utf-8")
    head, _, rest = text.partition("[[strategies]]")
    tail = rest[rest.index("[screening]"):]
    strategy = ('[[strategies]]\nname = "english"\nquery = \'eng[la]\'\n'
                'start_date = "1946-01-01"\noverlap_days = 7\n\n')
    config = tmp_path / "review.toml"
    config.write_text(head + strategy + tail, encoding="utf-8")
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config))
    monkeypatch.setenv("LIVING_REVIEW_FETCH_BATCH", "2")
    monkeypatch.setenv("LIVING_REVIEW_TASK_RETRIES", "0")
    with EutilsServer.from_files(XML_FILES) as server:
        monkeypatch.setenv("LIVING_REVIEW_EUTILS_URL", server.base_url)
        yield server


def _stored_pmids(db) -> set[str]:
    from warehouse.db import connect

    with connect(db) as con:
        return {r[0] for r in con.execute("select pmid from records").fetchall()}


def test_damaged_batch_fails_run_and_next_run_fetches_only_the_missing(prefect_harness, entrez_env):
    from flows.nightly import nightly_update
    from living_review.settings import get_settings
    from warehouse.db import connect

    server = entrez_env
    db = get_settings().db_path
    # efetch #1 (batch 0) succeeds, efetch #2 (batch 1) is cut off mid-document.
    server.inject("efetch", Fault(), Fault(truncate=True))
    state = nightly_update(source="entrez", return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert "english" in message and "batch 1" in message and "1946-01-01.." in message

    kept = _stored_pmids(db)
    assert len(kept) == 2  # batch 0 is committed and stays
    with connect(db) as con:
        assert con.execute("select count(*) from search_windows").fetchall()[0][0] == 0
        status, error = con.execute("select status, error from nightly_runs order by nightly_id desc limit 1").fetchall()[0]
    assert status == "failed" and "batch 1" in error

    posts_before = len(server.calls("epost"))
    state = nightly_update(source="entrez", return_state=True)
    assert state.is_completed(), state.message
    after = _stored_pmids(db)
    assert kept < after
    # The second night posted exactly the PMIDs it did not have yet to the history server.
    posted = server.calls("epost")[posts_before:]
    assert len(posted) == 1
    assert set(posted[0].params["id"].split(",")) == after - kept
    english = {pmid for pmid, a in server.articles.items() if a.record.language == "eng"}
    assert after == english
    with connect(db) as con:
        assert con.execute("select count(*) from search_windows").fetchall()[0][0] == 1


def test_phrase_not_found_is_a_warning_in_the_summary(prefect_harness, entrez_env):
    from flows.nightly import nightly_update

    entrez_env.inject("esearch", Fault(phrase_not_found="vipp-xyz"))
    summary = nightly_update(source="entrez")
    (strategy,) = summary["strategies"]
    assert strategy["found"] == 0 and strategy["new"] == 0
    assert any("vipp-xyz" in w for w in strategy["warnings"])


# A real EFetch answer with no article in it (metapub's pmid_xml/37909814.xml, see pubmed-notes 2.2).
EMPTY_SET = (FIXTURES / "pubmed" / "37909814.xml").read_bytes()


def _english(server) -> set[str]:
    return {pmid for pmid, a in server.articles.items() if a.record.language == "eng"}


def _retry_once_at_once(monkeypatch) -> None:
    monkeypatch.setenv("LIVING_REVIEW_TASK_RETRIES", "1")
    monkeypatch.setenv("LIVING_REVIEW_TASK_RETRY_DELAY", "0")


def test_short_efetch_batch_is_fetched_again_and_nothing_is_lost(prefect_harness, entrez_env, monkeypatch):
    from flows.nightly import nightly_update
    from living_review.settings import get_settings
    from warehouse.db import connect

    server = entrez_env
    _retry_once_at_once(monkeypatch)
    assert b"<PubmedArticle>" not in EMPTY_SET and b"PubmedArticleSet" in EMPTY_SET
    server.inject("efetch", Fault(body=EMPTY_SET))  # HTTP 200, zero of the two articles asked for
    summary = nightly_update(source="entrez")
    (strategy,) = summary["strategies"]
    english = _english(server)
    assert _stored_pmids(get_settings().db_path) == english
    assert strategy["fetched"] == strategy["new"] == len(english) and strategy["not_returned"] == 0
    batches = -(-len(english) // 2)
    assert len(server.calls("efetch")) == batches + 1  # the short batch was asked for once more
    first, again = server.calls("efetch")[:2]
    assert first.params["retstart"] == again.params["retstart"] == "0"
    with connect(get_settings().db_path) as con:
        assert con.execute("select count(*) from search_windows").fetchall()[0][0] == 1


def test_pmid_efetch_never_returns_is_kept_and_asked_for_again_each_night(prefect_harness, entrez_env, monkeypatch):
    """A PMID EFetch never returns neither blocks the strategy nor is lost: the window is committed,
    the PMID is recorded (run warning + unreturned_pmids) and each later night asks for it again."""
    from flows.nightly import nightly_update
    from living_review.settings import get_settings
    from warehouse.db import connect

    server = entrez_env
    _retry_once_at_once(monkeypatch)
    db = get_settings().db_path
    english = _english(server)
    gone = "30849835"
    server.withheld.add(gone)

    night1 = nightly_update(source="entrez")
    assert night1["status"] == "completed"
    (s1,) = night1["strategies"]
    assert _stored_pmids(db) == english - {gone}  # nothing lost from the other records
    assert s1["found"] == len(english) and s1["fetched"] == len(english) - 1 and s1["not_returned"] == 1
    assert any(gone in w and "not returned" in w for w in s1["warnings"])
    with connect(db) as con:
        assert con.execute("select count(*) from search_windows").fetchall()[0][0] == 1  # not blocked
        assert con.execute("select pmid, status, misses from unreturned_pmids").fetchall() == [(gone, "pending", 1)]
        (warnings,) = con.execute("select warnings from search_runs where status = 'completed'").fetchall()[0]
    assert gone in warnings
    status = _status_json()["last_run"]["strategies"]["english"]
    assert any(gone in w for w in status["warnings"]) and status["found"] == len(english)

    # Night 2: the new window finds nothing, but the PMID is asked for again (and still not returned).
    posts = len(server.calls("epost"))
    night2 = nightly_update(source="entrez")
    (s2,) = night2["strategies"]
    assert [c.params["id"] for c in server.calls("epost")[posts:]] == [gone]
    assert s2["asked_again"] == 1 and s2["not_returned"] == 1 and s2["new"] == 0
    assert s2["found"] == 0  # status totals count each search hit once
    assert any(gone in w for w in s2["warnings"])
    with connect(db) as con:
        assert con.execute("select status, misses from unreturned_pmids").fetchall() == [("pending", 2)]

    # Night 3: PubMed serves it again: stored, with this strategy's provenance, and resolved.
    server.withheld.clear()
    night3 = nightly_update(source="entrez")
    (s3,) = night3["strategies"]
    assert s3["asked_again"] == 1 and s3["new"] == 1 and s3["not_returned"] == 0
    assert _stored_pmids(db) == english
    with connect(db) as con:
        assert con.execute("select status from unreturned_pmids").fetchall() == [("resolved",)]
        assert con.execute("select count(*) from record_sources s join records r using (record_id) "
                           "where r.pmid = ? and s.strategy = 'english'", [gone]).fetchall()[0][0] == 1
    posts = len(server.calls("epost"))
    nightly_update(source="entrez")
    assert len(server.calls("epost")) == posts  # nothing is pending any more


def _status_json() -> dict:
    import contextlib
    import io
    import json

    from living_review.cli import main as cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli(["status", "--json"]) == 0
    return json.loads(out.getvalue())


# -- records PubMed changes after they were stored (retractions, errata) -------------------------------------

NIGHT1 = date(2030, 1, 10)  # after every fixture's DateRevised, so only the revisions below are "modified"


def _stored(db, pmid: str) -> tuple:
    from warehouse.db import connect

    with connect(db) as con:
        record_id, title, types, version = con.execute(
            "select record_id, title, publication_types, version from records where pmid = ?", [pmid]).fetchall()[0]
        versions = con.execute("select version, data from record_versions where record_id = ? order by version",
                               [record_id]).fetchall()
    return title, list(types), version, versions


def test_stored_record_pubmed_retracts_later_is_fetched_again_and_versioned(prefect_harness, entrez_env):
    """Night 1 stores; a night with nothing modified fetches nothing more; once PubMed retracts a
    stored record (new content, DateRevised in the window) the [mdat] search re-fetches it: the
    warehouse holds the retraction, the old content in record_versions, and the night counts it."""
    import json

    from flows.nightly import nightly_update
    from living_review.settings import get_settings

    server = entrez_env
    db = get_settings().db_path
    pmid = "30386702"
    first = nightly_update(source="entrez", today=NIGHT1)
    (s1,) = first["strategies"]
    assert s1["new"] == len(_english(server)) and s1["refetched"] == 0 and s1["updated"] == 0
    assert all(c.params.get("datetype") == "crdt" for c in server.calls("esearch"))  # baseline: no [mdat] search
    old_title, _, _, _ = _stored(db, pmid)

    # Night 2: nothing modified in the window: one [mdat] search, nothing posted or fetched.
    calls = {e: len(server.calls(e)) for e in ("esearch", "epost", "efetch")}
    second = nightly_update(source="entrez", today=date(2030, 1, 11))
    (s2,) = second["strategies"]
    assert (s2["modified_found"], s2["refetched"], s2["fetched"], s2["updated"]) == (0, 0, 0, 0)
    assert (len(server.calls("epost")), len(server.calls("efetch"))) == (calls["epost"], calls["efetch"])
    mdat = [c.params for c in server.calls("esearch")[calls["esearch"]:] if c.params["datetype"] == "mdat"]
    assert [(p["mindate"], p["maxdate"]) for p in mdat] == [("2030/01/03", "2030/01/11")]  # last end - 7 .. today

    # PubMed retracts the stored record.
    server.revise(pmid, retraction(date(2030, 1, 12)))
    third = nightly_update(source="entrez", today=date(2030, 1, 12))
    (s3,) = third["strategies"]
    assert (s3["modified_found"], s3["refetched"], s3["fetched"], s3["updated"], s3["new"]) == (1, 1, 1, 1, 0)
    assert third["updated_records"] == 1
    assert any("1 changed" in w for w in s3["warnings"])
    title, types, version, versions = _stored(db, pmid)
    assert title == "[Retracted] " + old_title and "Retracted Publication" in types and version == 2
    assert [v for v, _ in versions] == [1, 2]
    old = json.loads(versions[0][1])  # the superseded content, kept
    assert old["title"] == old_title and "Retracted Publication" not in old["publication_types"]
    assert _status_json()["last_run"]["strategies"]["english"]["updated"] == 1

    # Night 4: the revision is still inside the overlap: fetched again, unchanged, no new version.
    fourth = nightly_update(source="entrez", today=date(2030, 1, 13))
    (s4,) = fourth["strategies"]
    assert (s4["refetched"], s4["updated"], s4["new"]) == (1, 0, 0)
    assert _stored(db, pmid)[2] == 2 and len(_stored(db, pmid)[3]) == 2

    # PRISMA: a record fetched again because PubMed changed it was not identified again by the search
    from warehouse.db import connect
    from warehouse.workspace import prisma_counts

    with connect(db) as con:
        _, updates = prisma_counts(con, 2)
        found = dict(con.execute("SELECT nightly_id, sum(found) FROM search_runs GROUP BY nightly_id").fetchall())
    assert len(updates) == 4
    for u in updates:  # identified = what the night's create-date searches found, re-fetches not counted
        assert u.identified == found[int(u.label.split()[0][1:])], u


def test_modified_window_over_the_cap_is_split_and_a_full_single_day_says_what_was_not_checked(
        prefect_harness, entrez_env, monkeypatch):
    """[mdat] hits over the cap halve the window like the create-date search; a single day still
    over it re-fetches the stored records ESearch listed and names the gap in the warnings."""
    import flows.search
    from flows.nightly import nightly_update
    from living_review.settings import get_settings
    from warehouse.db import connect

    server = entrez_env
    db = get_settings().db_path
    nightly_update(source="entrez", today=NIGHT1)
    early, same_day = "25364329", ["30849835", "35649368"]
    server.revise(early, retraction(date(2030, 1, 5)))
    for pmid in same_day:
        server.revise(pmid, retraction(date(2030, 1, 12)))
    monkeypatch.setattr(flows.search, "needs_split", lambda count: count > 1)
    server.id_cap = 1  # ESearch lists one id per search

    night = nightly_update(source="entrez", today=date(2030, 1, 12))
    (s,) = night["strategies"]
    listed = max(same_day, key=int)  # newest first
    assert s["updated"] == s["refetched"] == 2 and s["found"] == 0
    assert any("split into two halves" in w for w in s["warnings"])
    assert any("modified on one day" in w and "not checked" in w for w in s["warnings"])
    assert _stored(db, early)[2] == _stored(db, listed)[2] == 2
    assert _stored(db, min(same_day, key=int))[2] == 1  # not listed, so not fetched: said in the warnings
    with connect(db) as con:
        assert con.execute("select count(*) from search_runs where status <> 'completed'").fetchall()[0][0] == 0


def test_a_record_that_matches_the_query_only_after_pubmed_indexes_it_is_fetched_as_new(
        prefect_harness, entrez_env, monkeypatch, tmp_path):
    """Publication types and MeSH terms arrive with indexing, weeks after a record is created, when
    its create date has left every search window. The [mdat] search sees it: a hit the warehouse
    does not hold after the create-date search is fetched as new, and counted as identified."""
    from flows.nightly import nightly_update
    from living_review.settings import get_settings
    from warehouse.db import connect
    from warehouse.workspace import prisma_counts

    server = entrez_env
    text = (REPO / "review.toml").read_text(encoding="utf-8")
    head, _, rest = text.partition("[[strategies]]")
    tail = rest[rest.index("[screening]"):]
    config = tmp_path / "retracted.toml"
    config.write_text(head + ('[[strategies]]\nname = "retracted"\nquery = \'"Retracted Publication"[pt]\'\n'
                              'start_date = "1946-01-01"\noverlap_days = 7\n\n') + tail, encoding="utf-8")
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config))
    db = get_settings().db_path
    pmid = "30386702"  # created in 2018: outside every window after the baseline

    first = nightly_update(source="entrez", today=NIGHT1)
    assert first["strategies"][0]["new"] == 0 and pmid not in _stored_pmids(db)

    server.revise(pmid, retraction(date(2030, 1, 11)))  # now it matches: "Retracted Publication"[pt]
    second = nightly_update(source="entrez", today=date(2030, 1, 11))
    (s2,) = second["strategies"]
    assert pmid in _stored_pmids(db)
    assert (s2["modified_found"], s2["refetched"], s2["late_matches"], s2["new"], s2["found"]) == (1, 0, 1, 1, 1)
    assert any("match the query only since they were modified" in w for w in s2["warnings"])
    with connect(db) as con:
        cumulative, _ = prisma_counts(con, 2)
    assert (cumulative.identified, cumulative.screened) == (1, 1)

    third = nightly_update(source="entrez", today=date(2030, 1, 12))  # still in the overlap: stored, not new
    (s3,) = third["strategies"]
    assert (s3["late_matches"], s3["new"], s3["refetched"]) == (0, 0, 1)
