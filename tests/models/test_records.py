"""Record: the content hash (change detection), the title key (dedupe) and dict round trips."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from models.records import Record, normalise_doi, normalise_title


def make_record(**changes) -> Record:
    base = Record(
        pmid="9997",
        title="Magnetic studies.",
        abstract="x",
        journal="J",
        year=1976,
        authors=["Strekas TC"],
        doi="10.1/X",
        mesh=["Iron"],
        publication_types=["Journal Article"],
        language="eng",
        comments_corrections=[{"ref_type": "ErratumIn", "pmid": "1", "source": "s"}],
        history={"entrez": "1976-09-28"},
        keywords=["k"],
    )
    return replace(base, **changes)


def test_content_hash_is_pinned_so_stored_hashes_stay_valid():
    # The warehouse stores these hashes; changing the scheme would mark every record "updated".
    assert make_record().content_hash() == "e0ffae104cc625bb8b7e1913a00496cbd3a855d29cf85631e595d153f3d8ea49"


def test_content_hash_ignores_retrieval_dates_but_sees_content():
    record = make_record()
    assert make_record(history={"entrez": "2000-01-01", "medline": "2001-01-01"}).content_hash() == record.content_hash()
    assert make_record(doi="https://doi.org/10.1/x").content_hash() == record.content_hash()  # same DOI
    for change in (
        {"title": "Magnetic studies"},
        {"abstract": "y"},
        {"mesh": ["Iron", "Heme"]},
        {"publication_types": ["Journal Article", "Retracted Publication"]},
        {"comments_corrections": [{"ref_type": "RetractionIn", "pmid": "2", "source": "s"}]},
        {"year": 1977},
        {"authors": ["Strekas T"]},
    ):
        assert make_record(**change).content_hash() != record.content_hash(), change


def test_title_key_normalises_case_accents_punctuation_and_trailing_period():
    a = make_record(title="Élan: the  Attachment, study.", year=2001)
    b = make_record(title="ELAN - THE ATTACHMENT STUDY", year=2001)
    assert a.title_key() == "elan the attachment study|2001"
    assert a.title_key() == b.title_key()
    assert make_record(title="Elan the attachment study", year=2002).title_key() != a.title_key()
    assert make_record(title="A title.", year=None).title_key() == "a title|"
    assert normalise_title("  Œuvre — naïve   café.  ") == "oeuvre naive cafe"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("10.1111/J.1467-8624.2011.01712.X", "10.1111/j.1467-8624.2011.01712.x"),
        ("https://doi.org/10.1/ABC", "10.1/abc"),
        ("http://dx.doi.org/10.1/abc", "10.1/abc"),
        ("doi: 10.1/abc ", "10.1/abc"),
        ("DOI:10.1/abc", "10.1/abc"),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_normalise_doi(raw, expected):
    assert normalise_doi(raw) == expected


def test_dict_round_trip_and_database_shaped_input():
    record = make_record(mesh_detail=[{"descriptor": "Iron", "ui": "D1", "major": False, "qualifiers": []}])
    data = record.to_dict()
    assert Record.from_dict(data) == record
    assert Record.from_dict(data).mesh_detail == record.mesh_detail
    # What comes back from DuckDB/JSON: JSON strings, None lists, a string year, extra columns.
    row = dict(data, comments_corrections=json.dumps(data["comments_corrections"]), history=json.dumps(data["history"]),
               keywords=None, year="1976", record_id=5, content_hash="x")
    restored = Record.from_dict(row)
    assert restored.year == 1976 and restored.keywords == [] and restored.history == {"entrez": "1976-09-28"}
    assert restored.comments_corrections == record.comments_corrections


def test_from_dict_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown record kind"):
        Record.from_dict({"pmid": "1", "kind": "tweet"})
