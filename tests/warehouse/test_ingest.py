"""Bulk ingest: chunking changes no record; the pipeline gives what append_records gives."""

from __future__ import annotations

import gzip

import pytest
from lxml import etree

from models.pubmed import PubmedParseError, iter_records
from support.warehouse_records import FIXTURES
from warehouse import db, ingest
from warehouse import records as wr

FILES = ["pubmed1.xml", "pubmed2.xml", "11618220.xml", "11636720.xml", "11873782.xml", "32437181.xml",
         "30386702.xml", "sample_article_20301577.xml"]


def _combined(tmp_path, gz=False):
    """One efetch-like file holding every fixture article (real XML, concatenated), books included."""
    parts = []
    for name in FILES:
        root = etree.parse(str(FIXTURES / name), etree.XMLParser(load_dtd=False, no_network=True)).getroot()
        parts.extend(etree.tostring(el) for el in root if el.tag in ("PubmedArticle", "PubmedBookArticle"))
    data = (b'<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet>\n<PubmedArticleSet>\n'
            + b"\n".join(parts) + b"\n</PubmedArticleSet>\n")
    path = tmp_path / ("all.xml.gz" if gz else "all.xml")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("per_chunk", [1, 3, 1000])
@pytest.mark.parametrize("gz, block", [(False, 8 << 20), (True, 97), (True, 8 << 20)])
def test_chunks_parse_to_the_same_records(tmp_path, monkeypatch, per_chunk, gz, block):
    monkeypatch.setattr(ingest, "_BLOCK", block)  # tiny blocks: end tags straddle block boundaries
    path = _combined(tmp_path, gz=gz)
    whole = list(iter_records(path))
    assert len(whole) == 10 and {r.kind for r in whole} == {"article", "book"}
    chunks = list(ingest.iter_chunks(path, per_chunk))
    assert len(chunks) == -(-10 // per_chunk)
    assert [r for c in chunks for r in iter_records(c)] == whole


def test_plain_files_are_split_into_byte_ranges(tmp_path):
    path = _combined(tmp_path)
    pieces = list(ingest.iter_pieces(path, 4))
    assert all(isinstance(p, tuple) and p[0] == str(path) for p in pieces) and len(pieces) == 3
    assert pieces[0][2] == pieces[1][1]  # contiguous, nothing skipped


@pytest.mark.parametrize("content", [b"<eFetchResult><ERROR>Empty id list - nothing todo</ERROR></eFetchResult>", b""])
def test_not_a_pubmed_set_is_reported_by_the_parser(tmp_path, content):
    bad = tmp_path / "error.xml"
    bad.write_bytes(content)
    with pytest.raises(PubmedParseError):
        [r for c in ingest.iter_chunks(bad, 10) for r in iter_records(c)]


@pytest.mark.parametrize("workers, gz", [(0, False), (1, False), (0, True)])
def test_pipeline_equals_append_records(tmp_path, workers, gz):
    path = _combined(tmp_path, gz=gz)
    by_pipeline, by_append = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    for p in (by_pipeline, by_append):
        db.migrate(p)
    result = ingest.ingest_files(by_pipeline, "run-1", "snapshot", [path], batch_size=3, workers=workers)
    counts = wr.append_records(by_append, "run-1", "snapshot", list(iter_records(path)))
    assert result.records == 10 and result.batches == 4
    assert result.counts == counts == wr.AppendCounts(new=10)
    query = "SELECT pmid, title, doi, version, content_hash FROM records ORDER BY pmid"
    assert db.fetchall(by_pipeline, query) == db.fetchall(by_append, query)
    again = ingest.ingest_files(by_pipeline, "run-2", "snapshot", [path], batch_size=3, workers=workers)
    assert again.counts == wr.AppendCounts(duplicates=10, unchanged=10)


@pytest.mark.parametrize("workers", [0, 1])
def test_truncated_file_fails_its_batch_only(tmp_path, workers):
    path = _combined(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.9)])  # cut inside the last (book) article
    wh = tmp_path / "w.duckdb"
    db.migrate(wh)
    with pytest.raises(PubmedParseError, match=r"all.xml, batch 3 of 4 articles: .*truncated"):
        ingest.ingest_files(wh, "run-1", "snapshot", [path], batch_size=4, workers=workers)
    # batches before the damaged one were committed (one batch = one transaction); nothing partial after
    assert db.fetchall(wh, "SELECT count(*) FROM records") == [(8,)]


def _articles(tmp_path) -> list[bytes]:
    root = etree.parse(str(_combined(tmp_path)), etree.XMLParser(load_dtd=False, no_network=True)).getroot()
    return [etree.tostring(el) for el in root if el.tag == "PubmedArticle"]


def _set(parts: list[bytes], close: bool = True) -> bytes:
    return (b'<?xml version="1.0" ?>\n<PubmedArticleSet>\n' + b"\n".join(parts) + b"\n"
            + (b"</PubmedArticleSet>\n" if close else b""))


# -- truncated files --------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("gz", [False, True])
def test_file_cut_right_after_a_chunk_is_not_ingested_as_complete(tmp_path, gz, workers):
    """4 articles, cut after article 2 (no closing tag), batch_size=2: the last piece is the bare remainder.

    Contract (one batch = one transaction): batch 1 is committed, the error names the file and
    batch 2, and nothing after it is stored.
    """
    parts = _articles(tmp_path)[:4]
    data = _set(parts)
    cut = data[: data.index(parts[1]) + len(parts[1])] + b"\n"
    path = tmp_path / ("cut.xml.gz" if gz else "cut.xml")
    path.write_bytes(gzip.compress(cut) if gz else cut)
    wh = tmp_path / "w.duckdb"
    db.migrate(wh)
    with pytest.raises(PubmedParseError, match=rf"{path.name}, batch 2 of 2 articles: .*truncated"):
        ingest.ingest_files(wh, "run-1", "snapshot", [path], batch_size=2, workers=workers)
    assert db.fetchall(wh, "SELECT count(*) FROM records") == [(2,)]


@pytest.mark.parametrize("workers", [0, 1])
def test_truncated_gzip_names_its_file(tmp_path, monkeypatch, workers):
    monkeypatch.setattr(ingest, "_BLOCK", 97)  # small blocks: some batches are read before the cut
    packed = gzip.compress(_combined(tmp_path).read_bytes())
    path = tmp_path / "cut.xml.gz"
    path.write_bytes(packed[: len(packed) - 200])  # the gzip stream ends early
    wh = tmp_path / "w.duckdb"
    db.migrate(wh)
    with pytest.raises(PubmedParseError, match=r"cut\.xml\.gz: .*(gzip|ended)"):
        ingest.ingest_files(wh, "run-1", "snapshot", [path], batch_size=2, workers=workers)
    # the batches read in full before the damage are committed (as for a plain file), in order
    stored = db.fetchall(wh, "SELECT count(*) FROM records")[0][0]
    assert stored % 2 == 0 and stored < 10
    with pytest.raises(PubmedParseError, match=r"cut\.xml\.gz: "):
        list(ingest.iter_chunks(path, 1000))


# -- DeleteCitation ---------------------------------------------------------------------------------


def _delete(*pmids: str) -> bytes:
    return b"<DeleteCitation>" + b"".join(b'<PMID Version="1">%s</PMID>' % p.encode() for p in pmids) \
        + b"</DeleteCitation>"


@pytest.mark.parametrize("workers, gz, batch_size", [(0, False, 2), (1, False, 3), (0, True, 2), (0, False, 1000)])
def test_update_file_deletions_are_recorded_and_the_record_kept(tmp_path, workers, gz, batch_size):
    parts = _articles(tmp_path)[:4]
    pmids = [r.pmid for r in iter_records(_set(parts))]
    base = tmp_path / ("pubmed25n0001.xml" + (".gz" if gz else ""))
    update = tmp_path / ("pubmed25n0002.xml" + (".gz" if gz else ""))
    for path, data in ((base, _set(parts)), (update, _set(parts[3:] + [_delete(pmids[1], "99999999")]))):
        path.write_bytes(gzip.compress(data) if gz else data)
    wh = tmp_path / "w.duckdb"
    db.migrate(wh)
    result = ingest.ingest_files(wh, "run-1", "snapshot", [base, update], batch_size=batch_size, workers=workers)
    assert result.records == 5 and result.deleted == 2
    assert result.counts == wr.AppendCounts(new=4, duplicates=1, unchanged=1)
    assert db.fetchall(wh, "SELECT count(*) FROM records") == [(4,)]  # the deleted record stays
    rid = db.fetchall(wh, "SELECT record_id FROM records WHERE pmid = ?", [pmids[1]])[0][0]
    rows = db.fetchall(wh, "SELECT pmid, record_id, run_id, source FROM record_deletions ORDER BY pmid")
    assert rows == sorted([(pmids[1], rid, "run-1", update.name), ("99999999", None, "run-1", update.name)])
    assert db.fetchall(wh, "SELECT pmid FROM deleted_records") == [(pmids[1],)]
    assert wr.deleted_pmids(wh, pmids + ["99999999"]) == {pmids[1], "99999999"}
    again = ingest.ingest_files(wh, "run-2", "snapshot", [base, update], batch_size=batch_size, workers=workers)
    assert again.deleted == 2
    assert db.fetchall(wh, "SELECT count(*) FROM record_deletions") == [(2,)]  # idempotent per file


def test_deletion_of_a_merged_pmid_names_its_record(tmp_path):
    parts = _articles(tmp_path)[:1]
    (real,) = iter_records(_set(parts))
    wh = tmp_path / "w.duckdb"
    db.migrate(wh)
    twin = real.__class__(**{**real.to_dict(), "pmid": "99000001"})
    wr.append_records(wh, "run-0", "s", [real, twin])
    update = tmp_path / "upd.xml"
    update.write_bytes(_set([_delete("99000001")]))
    assert ingest.ingest_files(wh, "run-1", "snapshot", [update], workers=0).deleted == 1
    rid = db.fetchall(wh, "SELECT record_id FROM records")[0][0]
    assert db.fetchall(wh, "SELECT pmid, record_id FROM record_deletions") == [("99000001", rid)]


@pytest.mark.parametrize("workers", [0, 1])
def test_a_batch_that_fails_to_parse_stops_the_ingest_there(tmp_path, workers):
    """One batch = one transaction: the batches before a damaged one stay, none after it is stored,
    also when parser processes have already read ahead past it."""
    parts = _articles(tmp_path)[:6]
    parts[1] = parts[1].replace(b"</ArticleTitle>", b"</ArticleTitleX>", 1)  # mismatched tag in batch 2
    path = tmp_path / "damaged.xml"
    path.write_bytes(_set(parts))
    wh = tmp_path / "w.duckdb"
    db.migrate(wh)
    with pytest.raises(PubmedParseError, match=r"damaged.xml, batch 2 of 1 articles"):
        ingest.ingest_files(wh, "run-1", "snapshot", [path], batch_size=1, workers=workers)
    assert db.fetchall(wh, "SELECT count(*) FROM records") == [(1,)]
