"""The nightly flow on the bundled snapshot of real records, under a real (temporary) Prefect API."""

from __future__ import annotations

import contextlib
import io
import json

from living_review.cli import main as cli
from living_review.settings import get_settings


def _cli_json(args: list[str]) -> dict:
    """Run the CLI and parse its stdout. Not capsys: Prefect's console logger would keep its closed stream."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli(args) == 0
    return json.loads(out.getvalue())


def _status(_=None) -> dict:
    return _cli_json(["status", "--json"])


def test_status_before_any_run_is_honest(lr_home):
    report = _status()
    assert report["records"] == 0 and report["search_runs"] == 0 and report["last_run"] is None


def test_nightly_on_snapshot_stores_records_once(prefect_harness, lr_home):
    from flows.nightly import nightly_update
    from warehouse.db import connect, transaction

    first = nightly_update(source="snapshot")
    assert first["status"] == "completed"
    assert first["new_records"] > 0
    found = {s["strategy"]: s for s in first["strategies"]}
    assert set(found) == {"attachment-rcts", "uk-interventions"}
    report = _status()
    assert report["records"] == first["new_records"]
    assert report["search_runs"] >= 2
    assert report["last_run"]["status"] == "completed"
    assert report["last_run"]["new_records"] == first["new_records"]

    db = get_settings().db_path
    with connect(db) as con:
        versions_before = con.execute("select count(*) from record_versions").fetchall()[0][0]
        # every stored record was found by at least one strategy of this run
        orphans = con.execute(
            "select count(*) from records r where not exists (select 1 from record_sources s where s.record_id = r.record_id)"
        ).fetchall()[0][0]
    assert orphans == 0

    # Forget the committed windows so the rerun searches exactly the same windows again.
    with transaction(db) as con:
        con.execute("delete from search_windows")
    second = nightly_update(source="snapshot")
    assert second["status"] == "completed"
    assert second["new_records"] == 0
    assert sum(s["found"] for s in second["strategies"]) == sum(s["found"] for s in first["strategies"])
    assert sum(s["fetched"] for s in second["strategies"]) == 0  # only what is new is fetched
    again = _status()
    assert again["records"] == report["records"]
    with connect(db) as con:
        assert con.execute("select count(*) from record_versions").fetchall()[0][0] == versions_before


def test_cli_nightly_prints_summary(prefect_harness, lr_home):
    summary = _cli_json(["nightly", "--source", "snapshot", "--json"])
    assert summary["status"] == "completed" and summary["source"] == "snapshot"
    assert "no outcome data" in json.dumps(summary["pooling"]).lower() or summary["pooling"].get("changed") is False


def test_window_with_too_many_hits_is_split_into_halves_and_stored(prefect_harness, lr_home, monkeypatch):
    """A window over the ESearch cap is halved; the parent run is closed, the halves do the work.

    The cap is lowered to 3 hits: uk-interventions has 6 in the snapshot, attachment-rcts 3.
    """
    from datetime import date

    import flows.search
    from flows.nightly import nightly_update
    from living_review.config import load_review
    from living_review.sources.snapshot import SnapshotSource
    from warehouse.db import connect
    from warehouse.records import known_pmids

    settings = get_settings()
    snapshot = SnapshotSource.from_settings(settings)
    expected = {s.name: snapshot.search(s.query, s.start_date, date.today()).pmids for s in load_review().strategies}
    assert len(expected["uk-interventions"]) == 6 and len(expected["attachment-rcts"]) == 3

    monkeypatch.setattr(flows.search, "needs_split", lambda count: count > 3)
    summary = nightly_update(source="snapshot")
    assert summary["status"] == "completed"
    by_name = {s["strategy"]: s for s in summary["strategies"]}
    uk = by_name["uk-interventions"]
    assert len(uk["windows"]) >= 2  # both halves (or their halves) searched
    assert uk["found"] == 6 and uk["fetched"] + uk["already_known"] == 6
    assert by_name["attachment-rcts"]["found"] == 3 and len(by_name["attachment-rcts"]["windows"]) == 1
    assert any("split" in w for w in uk["warnings"])

    db = settings.db_path
    every = {p for pmids in expected.values() for p in pmids}
    assert known_pmids(db, every) == every  # every hit is stored (as a record or a merged alias)
    with connect(db) as con:
        assert con.execute("select count(*) from search_runs where status <> 'completed'").fetchall()[0][0] == 0
        committed = con.execute(
            "select window_start, window_end from search_windows where strategy = 'uk-interventions' "
            "order by window_start").fetchall()
        parents = con.execute(
            "select found, warnings from search_runs where strategy = 'uk-interventions' and run_id not in "
            "(select run_id from search_windows)").fetchall()
    assert [f"{s.isoformat()}..{e.isoformat()}" for s, e in committed] == sorted(uk["windows"])
    assert parents and all(found == 0 and "split" in warnings for found, warnings in parents)

    # `living-review status` sums the night's search runs per strategy: a split is not counted twice.
    report = _status()["last_run"]
    assert report["status"] == "completed"
    assert report["strategies"]["uk-interventions"]["found"] == 6
    assert report["strategies"]["uk-interventions"]["status"] == "completed"
    assert report["strategies"]["attachment-rcts"]["found"] == 3
    assert report["new_records"] == summary["new_records"] > 0


def test_snapshot_update_file_revising_a_stored_record_versions_it(prefect_harness, lr_home, tmp_path, monkeypatch):
    """A local mirror gets a daily update file with a new version of a stored record (retracted,
    new DateRevised): the next night's [mdat] search on the snapshot re-fetches and versions it;
    a night with no update fetches nothing more."""
    import shutil
    from datetime import date

    from lxml import etree

    from conftest import FIXTURES, REPO
    from flows.nightly import nightly_update
    from support.eutils_server import retraction
    from tasks.search import _source
    from warehouse.db import connect

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for xml in (FIXTURES / "pubmed").glob("*.xml"):
        shutil.copy(xml, mirror / xml.name)
    text = (REPO / "review.toml").read_text(encoding="utf-8")
    head, _, rest = text.partition("[[strategies]]")
    config = tmp_path / "review.toml"
    config.write_text(head + '[[strategies]]\nname = "english"\nquery = \'eng[la]\'\nstart_date = "1946-01-01"\n'
                      'overlap_days = 7\n\n' + rest[rest.index("[screening]"):], encoding="utf-8")
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config))
    monkeypatch.setenv("LIVING_REVIEW_SNAPSHOT_DIR", str(mirror))

    def night(day: date) -> dict:
        _source.cache_clear()  # a night is a new process: the mirror is read afresh
        (strategy,) = nightly_update(source="snapshot", today=day)["strategies"]
        return strategy

    first = night(date(2030, 1, 10))
    assert first["new"] > 0 and first["refetched"] == 0
    quiet = night(date(2030, 1, 11))
    assert (quiet["modified_found"], quiet["fetched"], quiet["updated"]) == (0, 0, 0)

    pmid = "30386702"
    article = etree.fromstring((FIXTURES / "pubmed" / f"{pmid}.xml").read_bytes()).find("PubmedArticle")
    retraction(date(2030, 1, 12))(article)  # test data: a revised copy of the real record
    (mirror / "zz_update_0001.xml").write_bytes(
        b"<PubmedArticleSet>" + etree.tostring(article, encoding="utf-8") + b"</PubmedArticleSet>")
    updated = night(date(2030, 1, 12))
    assert (updated["modified_found"], updated["refetched"], updated["updated"], updated["new"]) == (1, 1, 1, 0)
    with connect(get_settings().db_path) as con:
        title, version = con.execute("select title, version from records where pmid = ?", [pmid]).fetchall()[0]
        kept = con.execute("select count(*) from record_versions v join records r using (record_id) "
                           "where r.pmid = ? and v.data is not null", [pmid]).fetchall()[0][0]
    assert title.startswith("[Retracted] ") and version == 2 and kept == 1
    _source.cache_clear()
