"""Real records for warehouse tests: parsed from the XML copied into tests/fixtures/warehouse/."""

from __future__ import annotations

import csv
from pathlib import Path

from models.pubmed import iter_records
from models.records import Record

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "warehouse"
XML_FILES = ("pubmed1.xml", "pubmed2.xml", "11618220.xml", "11636720.xml", "11873782.xml", "32437181.xml")


def fixture_records() -> list[Record]:
    """The 8 real records of the fixture files, in file order (PMIDs unique, most with a DOI)."""
    return [rec for name in XML_FILES for rec in iter_records(FIXTURES / name)]


def by_pmid(pmid: str) -> Record:
    return next(r for r in fixture_records() if r.pmid == pmid)


def csv_records() -> list[Record]:
    """Records built from rows of the shared records.csv (real bibliographic facts, no abstracts)."""
    out = []
    with open(FIXTURES / "records_head.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out.append(Record(
                pmid=row["pmid"], title=row["title"], journal=row["journal"],
                year=int(row["year"]) if row["year"] else None,
                authors=[a.strip() for a in row["authors"].split(";") if a.strip()],
                doi=row["doi"] or None))
    return out
