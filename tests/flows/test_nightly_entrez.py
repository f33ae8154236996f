"""The nightly flow over real HTTP: Bio.Entrez against a local E-utilities double replaying real XML.

Covers what a night on the live service can throw at the flow: a damaged batch fails the run with the
strategy, window and batch named, keeps the batches already stored and leaves the window uncommitted,
so the next run resumes and fetches only the PMIDs still missing; a PhraseNotFound warning reaches
the summary.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FIXTURES, REPO
from support.eutils_server import EutilsServer, Fault

XML_FILES = sorted((FIXTURES / "pubmed").glob("*.xml"))


@pytest.fixture
def entrez_env(lr_home, tmp_path, monkeypatch):
    """One broad strategy (English-language records) so every fixture article is a hit."""
    text = (REPO / "review.toml").read_text(encoding="utf-8")
    head, _, rest = text.partition("[[strategies]]")
    tail = rest[rest.index("[screening]"):]
    strategy = ('[[strategies]]\nname = "english"\nquery = \'eng[la]\'\n'
                'start_date = "1946-01-01"\nschedule = "0 2 * * *"\noverlap_days = 7\n\n')
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
