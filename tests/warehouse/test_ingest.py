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
