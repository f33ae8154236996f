"""Where records come from: `EntrezSource` (NCBI E-utilities) or `SnapshotSource` (local PubMed XML)."""

from __future__ import annotations

from living_review.sources.base import (
    DATE_TYPES,
    MAX_IDS_PER_SEARCH,
    BatchError,
    History,
    RateLimitedBatchError,
    RateLimitError,
    SearchResult,
    Source,
    SourceError,
)

__all__ = [
    "DATE_TYPES",
    "MAX_IDS_PER_SEARCH",
    "BatchError",
    "History",
    "RateLimitedBatchError",
    "RateLimitError",
    "SearchResult",
    "Source",
    "SourceError",
    "get_source",
]


def get_source(kind: str, settings=None) -> Source:
    """'entrez' or 'snapshot' (the offline default), configured from settings."""
    from living_review.settings import get_settings

    settings = settings or get_settings()
    if kind == "entrez":
        from living_review.sources.entrez import EntrezSource

        return EntrezSource.from_settings(settings)
    if kind == "snapshot":
        from living_review.sources.snapshot import SnapshotSource

        return SnapshotSource.from_settings(settings)
    raise ValueError(f"unknown source {kind!r}; expected 'entrez' or 'snapshot'")
