"""SnapshotSource: the offline default over the bundled snapshot and over baseline/update-style folders."""

from __future__ import annotations

import gzip
import shutil
from datetime import date
from pathlib import Path

import pytest

from living_review.config import load_review
from living_review.sources import BatchError, History, Source, SourceError, get_source
from living_review.sources.snapshot import SnapshotSource, record_date
from models.records import Record

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures" / "pubmed"
BUNDLED = REPO / "living_review" / "snapshot"
SHARED_CSV = REPO.parent / "shared" / "data" / "pubmed" / "records.csv"
EVERYTHING = (date(1900, 1, 1), date(2100, 12, 31))


@pytest.fixture(scope="module")
def bundled() -> SnapshotSource:
    return SnapshotSource(BUNDLED)


def fetch_all(source, result) -> list[Record]:
    records = []
    for retstart in range(0, len(result.pmids), 7):
        records += source.fetch_batch(result.history, retstart, 7)
    return records


# -- the bundled snapshot -------------------------------------------------------------------------------


def test_bundled_snapshot_is_small_real_and_documented():
    files = [p for p in BUNDLED.iterdir() if p.is_file()]
    assert len(files) <= 30
    assert sum(p.stat().st_size for p in files) <= 2 * 1024 * 1024
    sources = (BUNDLED / "SOURCES.md").read_text(encoding="utf-8")
    for xml in BUNDLED.glob("*.xml"):
        assert f"`{xml.name}`" in sources or xml.name.split("_", 1)[1].split(".")[0] in sources, xml.name
    assert "records.csv" in sources


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="../shared is not present")
def test_bundled_citations_are_byte_identical_to_the_shared_list():
    assert (BUNDLED / "records.csv").read_bytes() == SHARED_CSV.read_bytes()


def test_bundled_snapshot_contents(bundled):
    assert isinstance(bundled, Source) and bundled.name == "snapshot"
    records = bundled.records()
    kinds = sorted(r.kind for r in records)
    assert (kinds.count("article"), kinds.count("book"), kinds.count("citation")) == (27, 1, 40)
    by_pmid = {r.pmid: r for r in records}
    bernard = by_pmid["22239483"]  # a seed trial, from records.csv: kept exactly as listed
    assert bernard.kind == "citation" and bernard.abstract == "" and bernard.year == 2012
    assert bernard.title == ("Enhancing attachment organization among maltreated children: "
                             "results of a randomized clinical trial")
    assert bernard.authors[:2] == ["Bernard K", "Dozier M"] and bernard.doi == "10.1111/j.1467-8624.2011.01712.x"
    assert by_pmid["20301577"].kind == "book"
    assert by_pmid["35649368"].comments_corrections[0]["ref_type"] == "ErratumIn"


def test_review_strategies_find_the_on_topic_citations(bundled):
    config = load_review(REPO / "review.toml")
    found = {s.name: set(bundled.search(s.query, *EVERYTHING).pmids) for s in config.strategies}
    assert found["attachment-rcts"] == {"22065891", "19323672", "17154730"}
    assert found["uk-interventions"] == {"38790505", "33709328", "17154732", "16292115", "11707882", "10834766"}
    since_start = bundled.search(config.strategy("uk-interventions").query, date(2019, 1, 1), date(2100, 1, 1))
    assert set(since_start.pmids) == {"38790505", "33709328"}


def test_search_windows_on_create_date_then_year(bundled):
    assert record_date(Record(pmid="1", year=2012)) == "2012-01-01"
    assert record_date(Record(pmid="1", year=2012, history={"pubmed": "2012-05-02"})) == "2012-05-02"
    assert record_date(Record(pmid="1", history={"entrez": "2019-03-10", "pubmed": "1999-06-01"})) == "2019-03-10"
    assert record_date(Record(pmid="1")) is None
    march = bundled.search("all[sb]", date(2019, 3, 10), date(2019, 3, 10))
    assert march.pmids == ["30849835"]  # created 2019-03-10, entry date 1999
    assert bundled.search("all[sb]", date(1999, 6, 1), date(1999, 6, 1)).count == 0
    year_2012 = bundled.search("all[sb]", date(2012, 1, 1), date(2012, 1, 1))
    assert "22239483" in year_2012.pmids  # citations date from 1 January of their year


def test_search_fetch_and_post_round_trip(bundled):
    result = bundled.search("all[sb]", *EVERYTHING)
    assert result.count == 68 and result.complete and result.history.count == 68
    assert result.pmids == sorted(result.pmids, key=int, reverse=True)
    records = fetch_all(bundled, result)
    assert [r.pmid for r in records] == result.pmids
    history = bundled.post(["9997", "00000", "22239483"])
    assert [r.pmid for r in bundled.fetch_batch(history, 0, 10)] == ["9997", "22239483"]
    assert bundled.fetch_batch(history, 5, 10) == []


def test_empty_search_and_errors(bundled):
    empty = bundled.search("all[sb]", date(2090, 1, 1), date(2090, 12, 31))
    assert (empty.count, empty.pmids, empty.history) == (0, [], None)
    with pytest.raises(SourceError, match="query not understood: unclosed") as bad_query:
        bundled.search("(attachment[tiab]", *EVERYTHING)
    assert bad_query.value.transient is False  # retrying cannot help
    with pytest.raises(BatchError, match="unknown history") as info:
        bundled.fetch_batch(History("MCID_elsewhere", "1", 3), 0, 3)
    assert (info.value.retstart, info.value.retmax) == (0, 3)
    with pytest.raises(ValueError, match="after"):
        bundled.search("all[sb]", date(2020, 1, 2), date(2020, 1, 1))
    with pytest.raises(SourceError, match="not found"):
        SnapshotSource(BUNDLED / "missing")


def test_search_caps_ids_and_reports_full_count(tmp_path, monkeypatch):
    import living_review.sources.snapshot as snapshot

    monkeypatch.setattr(snapshot, "MAX_IDS_PER_SEARCH", 3)
    shutil.copy(FIXTURES / "pubmed1.xml", tmp_path / "a.xml")
    shutil.copy(FIXTURES / "pubmed4.xml", tmp_path / "b.xml")
    shutil.copy(FIXTURES / "35649368.xml", tmp_path / "c.xml")
    shutil.copy(FIXTURES / "25364329.xml", tmp_path / "d.xml")
    result = SnapshotSource(tmp_path).search("all[sb]", *EVERYTHING)
    assert result.count == 5 and len(result.pmids) == 3 and not result.complete


# -- a baseline + updates mirror ------------------------------------------------------------------------


def make_mirror(folder: Path) -> None:
    """Baseline file (gzip) + an update that revises 9997 and an update that deletes 12091962."""
    folder.mkdir()
    raw = (FIXTURES / "pubmed1.xml").read_bytes()
    (folder / "pubmed25n0001.xml.gz").write_bytes(gzip.compress(raw))
    shutil.copy(FIXTURES / "pubmed4.xml", folder / "pubmed25n0002.xml")
    # Test scaffolding, not evidence: the same real record with a corrected title, as an update.
    start = raw.index(b"<PubmedArticle><MedlineCitation Status=\"MEDLINE\" Owner=\"NLM\"")
    revised = raw[:raw.index(b"<PubmedArticle>")] + raw[start:].replace(
        b"A mechanism for heme-flavin interaction.", b"A mechanism for heme-flavin interaction (corrected).")
    (folder / "pubmed25n1300.xml").write_bytes(revised)
    (folder / "pubmed25n1301.xml").write_bytes(
        b'<?xml version="1.0"?>\n<PubmedArticleSet><DeleteCitation><PMID Version="1">12091962</PMID>'
        b"</DeleteCitation></PubmedArticleSet>\n")
    (folder / "README.txt").write_text("not PubMed XML: ignored")


@pytest.mark.parametrize("memory_limit", [512 * 1024 * 1024, 0], ids=["in-memory", "streaming"])
def test_update_files_apply_in_name_order(tmp_path, memory_limit):
    make_mirror(tmp_path / "mirror")
    source = SnapshotSource(tmp_path / "mirror", memory_limit_bytes=memory_limit)
    assert source.streaming is (memory_limit == 0)
    assert [p.name for p in source.files()] == [
        "pubmed25n0001.xml.gz", "pubmed25n0002.xml", "pubmed25n1300.xml", "pubmed25n1301.xml"]
    result = source.search("all[sb]", *EVERYTHING)
    assert sorted(result.pmids) == ["27797938", "9997"]  # 12091962 deleted
    records = {r.pmid: r for r in source.fetch_batch(result.history, 0, 10)}
    assert records["9997"].title.endswith("(corrected).")  # the later version wins
    assert source.search("heme flavin interaction[ti]", date(1976, 9, 28), date(1976, 9, 28)).pmids == ["9997"]
    assert source.post(["12091962"]).count == 0


def test_malformed_file_names_the_file(tmp_path):
    raw = (FIXTURES / "pubmed4.xml").read_bytes()
    (tmp_path / "pubmed25n0001.xml").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(SourceError, match=r"pubmed25n0001.xml: .*line \d+"):
        SnapshotSource(tmp_path).search("all[sb]", *EVERYTHING)


def test_get_source_builds_both_kinds_from_settings(lr_home, monkeypatch):
    monkeypatch.setenv("LIVING_REVIEW_SNAPSHOT_DIR", str(BUNDLED))
    snapshot = get_source("snapshot")
    assert isinstance(snapshot, SnapshotSource) and snapshot.folder == BUNDLED
    assert get_source("entrez").name == "entrez"
    with pytest.raises(ValueError, match="unknown source"):
        get_source("scopus")


# -- the modification date [mdat] ------------------------------------------------------------------------


def test_mdat_search_uses_date_revised_else_the_create_date(tmp_path):
    from models.pubmed import DATE_REVISED
    from living_review.sources.snapshot import record_modified

    for name in ("30386702.xml", "pubmed1.xml"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    (tmp_path / "records.csv").write_text("pmid,title,year\n111,A citation without dates,2020\n", encoding="utf-8")
    source = SnapshotSource(tmp_path)
    by_pmid = {r.pmid: r for r in source.records()}
    assert by_pmid["30386702"].history[DATE_REVISED] == "2020-10-01"  # <DateRevised>
    assert record_modified(by_pmid["30386702"]) == "2020-10-01"
    assert record_modified(by_pmid["111"]) == "2020-01-01"  # no DateRevised: the create-date stand-in
    day = date(2020, 10, 1)
    assert source.search("all[sb]", day, day, date_type="mdat").pmids == ["30386702"]
    assert source.search("all[sb]", day, day).count == 0  # created 2018-11-03
    assert source.search("all[sb]", date(2018, 11, 3), date(2018, 11, 3), date_type="mdat").count == 0
    assert set(source.search("all[sb]", date(2007, 11, 15), date(2019, 6, 9), date_type="mdat").pmids) == {
        "12091962", "9997"}
    with pytest.raises(ValueError, match="date type"):
        source.search("all[sb]", day, day, date_type="edat")
