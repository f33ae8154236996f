"""The Source contract the search flow is written against (Entrez over HTTP, or a local snapshot).

A search covers one window (inclusive) of the create date [crdt], or of the modification date
[mdat] with `date_type="mdat"` (records changed since they were stored: retractions, errata,
corrected abstracts), and returns at most 9,999 PMIDs; when `count` exceeds that, the caller splits
the window. Records are fetched in batches through a
history (WebEnv + query_key) so that a failing batch can be retried or reported on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Protocol, runtime_checkable

from models.records import Record

MAX_IDS_PER_SEARCH = 9_999  # PubMed's ESearch serves at most the first 10,000 ids; stay below
# ESearch `datetype`s a search window can be on: the create date (new records) and the
# modification date (records changed since).
DATE_TYPES = ("crdt", "mdat")


def check_date_type(date_type: str) -> str:
    if date_type not in DATE_TYPES:
        raise ValueError(f"unknown date type {date_type!r}; expected one of {', '.join(DATE_TYPES)}")
    return date_type


@dataclass(frozen=True)
class History:
    """Where a result set lives on the (real or local) history server."""

    webenv: str
    query_key: str
    count: int


@dataclass
class SearchResult:
    count: int  # everything that matched (may exceed len(pmids): then split the window)
    pmids: list[str]
    history: History | None  # None when nothing matched
    warnings: list[str] = field(default_factory=list)  # PubMed's PhraseNotFound / WarningList
    translation: str | None = None  # PubMed's QueryTranslation, when given

    @property
    def complete(self) -> bool:
        """True when every matching id was returned (count within the per-search cap)."""
        return self.count <= len(self.pmids)


class SourceError(RuntimeError):
    """A search/post/fetch failed for good (after any retries); the message says why.

    `transient` tells a caller (e.g. a Prefect retry condition) whether a later attempt may succeed:
    False for a rejected request (4xx other than 429), a query that cannot be read, a missing
    snapshot folder.
    """

    def __init__(self, message: str = "", *, transient: bool = True):
        super().__init__(message)
        self.transient = transient

    def __reduce__(self):  # keep keyword state across pickling (Prefect persists task exceptions)
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


class RateLimitError(SourceError):
    """NCBI kept answering 429 (too many requests) after the bounded back-off."""


class BatchError(SourceError):
    """One fetch batch was truncated, malformed or an <ERROR>: report it, keep earlier batches."""

    def __init__(self, message: str = "", *, retstart: int = 0, retmax: int = 0, cause: str | None = None,
                 transient: bool = True):
        self.retstart = retstart
        self.retmax = retmax
        self.cause = cause or message
        super().__init__(f"batch retstart={retstart} retmax={retmax}: {message}", transient=transient)


def _rebuild(cls, message: str, state: dict):
    error = Exception.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class RateLimitedBatchError(BatchError, RateLimitError):
    """A batch that failed because NCBI kept rate-limiting it (both a BatchError and a RateLimitError)."""


@runtime_checkable
class Source(Protocol):
    name: str

    def search(self, query: str, mindate: date, maxdate: date, date_type: str = "crdt") -> SearchResult:
        """PMIDs whose create date [crdt] (or, with date_type="mdat", modification date [mdat]) is
        within [mindate, maxdate] (inclusive), at most 9,999."""
        ...

    def post(self, pmids: list[str]) -> History:
        """Store ids on the history server (e.g. to re-fetch known records)."""
        ...

    def fetch_batch(self, history: History, retstart: int, retmax: int) -> list[Record]:
        """Records retstart..retstart+retmax-1 of a history; raises BatchError on bad data."""
        ...
