"""An offline Source: PubMed XML files in a folder (the bundled snapshot, or a local mirror of
PubMed's annual baseline + daily update files), searched with the local PubMed-syntax evaluator.

Files (`*.xml`, `*.xml.gz`) are applied in name order, as NLM numbers baseline and update files:
a later version of a PMID replaces the earlier one and `<DeleteCitation>` removes it. An optional
`records.csv` (pmid,title,abstract,journal,year,authors,doi,…) adds citation-only records
(`kind="citation"`) underneath the XML. A record's date for the [crdt] window is its `entrez`
history date, else `pubmed`, else 1 January of its publication year.

PubMed XML carries no [mdat] (the modification date E-utilities search on), so a
`date_type="mdat"` search here uses the citation's `<DateRevised>` (`record_modified`): the date
NLM last revised it, which is what an update file's new version of a retracted or corrected record
carries. A record without one (a records.csv citation, an old XML record) was last changed when it
was created, so its [crdt] date stands in. Only records in the folder are ever returned, in their
current (last-applied) version. NLM warns that DateRevised is not a guaranteed change signal
(pubmed-notes §2.8): against live PubMed use the entrez source, whose [mdat] is PubMed's own.

Small folders are parsed once and kept in memory; folders above `memory_limit_bytes` of XML are
streamed on every search, keeping only the window's records (memory bounded by the window).
"""

from __future__ import annotations

import csv
import itertools
import threading
from datetime import date
from pathlib import Path
from typing import Callable, Iterator

from living_review.sources.base import (
    MAX_IDS_PER_SEARCH,
    BatchError,
    History,
    SearchResult,
    SourceError,
    check_date_type,
)
from models.pubmed import DATE_REVISED, Deletion, PubmedParseError, iter_pubmed
from models.query import Document, QuerySyntaxError, compile_query
from models.records import Record

CSV_NAME = "records.csv"


def record_date(record: Record) -> str | None:
    """The date a windowed search sees: create date, else entry date, else the publication year."""
    for status in ("entrez", "pubmed"):
        value = record.history.get(status)
        if value:
            return value[:10]
    return f"{record.year:04d}-01-01" if record.year else None


def record_modified(record: Record) -> str | None:
    """The date an [mdat] search sees: the citation's DateRevised, else its create date (record_date)."""
    value = record.history.get(DATE_REVISED)
    return value[:10] if value else record_date(record)


def read_citations(path: Path) -> Iterator[Record]:
    """records.csv rows as citation-only Records (authors are '; '-separated)."""
    with open(path, newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            pmid = (row.get("pmid") or "").strip()
            if not pmid:
                continue
            year = (row.get("year") or "").strip()
            if year and not year.isdigit():
                raise SourceError(f"{path}:{line}: year {year!r} is not a number", transient=False)
            yield Record(
                pmid=pmid,
                title=(row.get("title") or "").strip(),
                abstract=(row.get("abstract") or "").strip(),
                journal=(row.get("journal") or "").strip(),
                year=int(year) if year else None,
                authors=[a.strip() for a in (row.get("authors") or "").split(";") if a.strip()],
                doi=(row.get("doi") or "").strip() or None,
                kind="citation",
            )


class SnapshotSource:
    """Same interface as EntrezSource; history tokens are local to this instance."""

    name = "snapshot"

    def __init__(self, folder: str | Path, memory_limit_bytes: int = 512 * 1024 * 1024):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceError(f"snapshot folder not found: {self.folder}", transient=False)
        self.memory_limit_bytes = memory_limit_bytes
        self._lock = threading.Lock()
        self._documents: dict[str, Document] | None = None
        self._histories: dict[tuple[str, str], list[Record]] = {}
        self._keys = itertools.count(1)
        self._webenv = f"SNAPSHOT_{id(self):x}"

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "SnapshotSource":
        return cls(settings.snapshot_dir, **kwargs)

    # -- reading the folder ------------------------------------------------------------------

    def files(self) -> list[Path]:
        """PubMed XML files in the order they are applied (name order, like NLM's numbering)."""
        found = [p for p in self.folder.iterdir() if p.is_file() and (p.name.endswith(".xml") or p.name.endswith(".xml.gz"))]
        return sorted(found, key=lambda p: p.name)

    def _scan(self, keep: Callable[[Record], bool]) -> dict[str, Record]:
        latest: dict[str, Record] = {}
        csv_path = self.folder / CSV_NAME
        if csv_path.exists():
            for record in read_citations(csv_path):
                if keep(record):
                    latest[record.pmid] = record
        for path in self.files():
            try:
                for item in iter_pubmed(path):
                    if isinstance(item, Deletion):
                        for pmid in item.pmids:
                            latest.pop(pmid, None)
                    elif keep(item):
                        latest[item.pmid] = item
                    else:
                        latest.pop(item.pmid, None)
            except PubmedParseError as exc:
                raise SourceError(f"snapshot file {path.name}: {exc}", transient=False) from None
        return latest

    @property
    def streaming(self) -> bool:
        return sum(p.stat().st_size for p in self.files()) > self.memory_limit_bytes

    def _all_documents(self) -> dict[str, Document]:
        with self._lock:
            if self._documents is None:
                self._documents = {pmid: Document(r) for pmid, r in self._scan(lambda r: True).items()}
            return self._documents

    def records(self) -> list[Record]:
        """Every current record of the snapshot (loads the folder into memory)."""
        return [d.record for d in self._all_documents().values()]

    # -- the Source API ----------------------------------------------------------------------

    def search(self, query: str, mindate: date, maxdate: date, date_type: str = "crdt") -> SearchResult:
        """Records matching `query` whose [crdt] date (`record_date`), or with date_type="mdat" whose
        modification date (`record_modified`, see the module docstring), is in [mindate, maxdate]."""
        check_date_type(date_type)
        dated = record_modified if date_type == "mdat" else record_date
        if mindate > maxdate:
            raise ValueError(f"mindate {mindate} is after maxdate {maxdate}")
        try:
            compiled = compile_query(query)
        except QuerySyntaxError as exc:
            raise SourceError(f"snapshot search: query not understood: {exc}", transient=False) from None
        low, high = mindate.isoformat(), maxdate.isoformat()

        def in_window(record: Record) -> bool:
            when = dated(record)
            return when is not None and low <= when <= high

        if self.streaming:
            candidates = [Document(r) for r in self._scan(in_window).values()]
        else:
            candidates = [d for d in self._all_documents().values() if in_window(d.record)]
        hits = [d.record for d in candidates if compiled.matches(d)]
        hits.sort(key=lambda r: int(r.pmid) if r.pmid.isdigit() else 0, reverse=True)  # newest first
        shown = hits[:MAX_IDS_PER_SEARCH]
        history = self._store(shown) if hits else None
        if history is not None:
            history = History(history.webenv, history.query_key, len(hits))
        return SearchResult(count=len(hits), pmids=[r.pmid for r in shown], history=history,
                            warnings=[], translation=None)

    def _store(self, records: list[Record]) -> History:
        with self._lock:
            key = str(next(self._keys))
            self._histories[(self._webenv, key)] = records
        return History(self._webenv, key, len(records))

    def post(self, pmids: list[str]) -> History:
        if not pmids:
            raise ValueError("post() needs at least one PMID")
        wanted = [str(p) for p in pmids]
        if self.streaming:
            wanted_set = set(wanted)
            found = self._scan(lambda r: r.pmid in wanted_set)
            records = [found[p] for p in wanted if p in found]
        else:  # look the PMIDs up; no copy of the whole snapshot per post
            documents = self._all_documents()
            records = [documents[p].record for p in wanted if p in documents]
        # PMIDs unknown to the snapshot are simply not returned, as with EFetch.
        return self._store(records)

    def fetch_batch(self, history: History, retstart: int, retmax: int) -> list[Record]:
        if retstart < 0 or retmax < 1:
            raise BatchError("retstart must be >= 0 and retmax >= 1", retstart=retstart, retmax=retmax,
                             transient=False)
        with self._lock:
            stored = self._histories.get((history.webenv, history.query_key))
        if stored is None:
            raise BatchError(
                f"unknown history (WebEnv {history.webenv}, query_key {history.query_key}) for this snapshot",
                retstart=retstart, retmax=retmax, transient=False,
            )
        return list(stored[retstart: retstart + retmax])
