"""The Source contract's value types and errors: what the flow relies on to report and retry."""

from __future__ import annotations

import pickle

from living_review.sources import (
    BatchError,
    History,
    RateLimitedBatchError,
    RateLimitError,
    SearchResult,
    SourceError,
)


def test_batch_error_names_the_batch_and_keeps_the_cause():
    error = BatchError("malformed XML at line 4", retstart=500, retmax=250)
    assert str(error) == "batch retstart=500 retmax=250: malformed XML at line 4"
    assert (error.retstart, error.retmax, error.cause) == (500, 250, "malformed XML at line 4")
    assert isinstance(error, SourceError) and error.transient


def test_errors_survive_pickling_with_their_fields():
    # Prefect persists task exceptions; keyword-only state must come back intact.
    for error in (
        SourceError("HTTP 400 (not retried)", transient=False),
        RateLimitError("gave up after 6 tries"),
        BatchError("truncated", retstart=10, retmax=5, cause="truncated", transient=True),
        RateLimitedBatchError("HTTP 429", retstart=0, retmax=9),
    ):
        clone = pickle.loads(pickle.dumps(error))
        assert type(clone) is type(error) and str(clone) == str(error)
        assert clone.__dict__ == error.__dict__


def test_search_result_completeness_and_history_values():
    history = History("MCID_1", "1", 12000)
    capped = SearchResult(count=12000, pmids=[str(i) for i in range(9999)], history=history)
    assert not capped.complete  # the caller must split this window
    assert SearchResult(count=0, pmids=[], history=None).complete
    assert pickle.loads(pickle.dumps(capped)) == capped
    assert capped.warnings == [] and capped.translation is None
