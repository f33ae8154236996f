"""Prefect tasks for searching PubMed and storing what is new: one unit of work each.

The tasks take plain values (names, windows, PMIDs) and open the source and the warehouse themselves,
so each can be retried on its own and the flows stay free of I/O.
"""

from __future__ import annotations

import dataclasses

from datetime import date
from functools import lru_cache

from prefect import get_run_logger, task

from living_review.config import Strategy
from living_review.settings import get_settings
from models.windows import Window, next_window


class SearchFailed(RuntimeError):
    """A strategy's window could not be completed; the message names strategy, window and batch."""


def is_transient(task, task_run, state) -> bool:
    """Retry only faults a later attempt can cure: network, rate limits, a damaged response."""
    from living_review.sources.base import SourceError

    try:
        state.result()
    except SourceError as exc:
        return exc.transient  # a rejected request or an unreadable query fails at once
    except Exception:
        return False
    return False


@lru_cache(maxsize=4)
def _source(name: str, configuration: str):
    """`configuration` (see `source_configuration`) keys the cache; get_source reads the same settings."""
    from living_review.sources import get_source

    return get_source(name)


def source_configuration(name: str, settings) -> str:
    """Everything a source is built from, so a changed setting opens a new source.

    The API key enters only as a hash: cache keys can end up in tracebacks and debuggers.
    """
    import hashlib

    if name == "snapshot":
        return str(settings.snapshot_dir)
    key = settings.ncbi_api_key.get_secret_value() if settings.ncbi_api_key else ""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16] if key else "-"
    return f"{settings.eutils_url}|{settings.ncbi_email or ''}|{digest}"


def open_source(name: str):
    """The source by name, loaded once per process and configuration (the snapshot is costly to open)."""
    return _source(name, source_configuration(name, get_settings()))


def _db():
    return get_settings().db_path


@task(name="prepare-warehouse")
def prepare_warehouse() -> str:
    """Create or upgrade the DuckDB warehouse before anything writes to it."""
    from warehouse.db import migrate

    settings = get_settings()
    settings.ensure_dirs()
    migrate(settings.db_path)
    return str(settings.db_path)


@task(name="open-nightly-run")
def open_nightly_run(source: str) -> int:
    from prefect.runtime import flow_run

    from warehouse.records import start_nightly_run

    return start_nightly_run(_db(), source, flow_run_id=str(flow_run.id) if flow_run.id else None)


@task(name="close-nightly-run")
def close_nightly_run(nightly_id: int, status: str, summary: dict, error: str | None = None) -> None:
    from warehouse.records import finish_nightly_run

    finish_nightly_run(_db(), nightly_id, status, summary, error=error)


@task(name="plan-window")
def plan_window(strategy: Strategy, today: date | None = None) -> Window:
    """Resume from the last committed window (minus the overlap) up to today."""
    from warehouse.records import last_committed_window

    last = last_committed_window(_db(), strategy.name)
    return next_window(strategy.start_date, last[1] if last else None, today or date.today(), strategy.overlap_days)


@task(name="plan-modified-window")
def plan_modified_window(strategy: Strategy, today: date | None = None) -> Window | None:
    """The [mdat] window for re-fetching stored records PubMed has changed since (retractions,
    errata, corrected abstracts): the same span as plan_window, from the last committed window's
    end minus the overlap up to today. None before the strategy's first committed window (the
    baseline night stores everything fresh, so nothing stored can be stale yet)."""
    from warehouse.records import last_committed_window

    last = last_committed_window(_db(), strategy.name)
    if last is None:
        return None
    return next_window(strategy.start_date, last[1], today or date.today(), strategy.overlap_days)


@task(name="start-search-run")
def start_search_run(nightly_id: int, strategy: Strategy, window: Window | None, source: str,
                     kind: str = "search") -> str:
    from warehouse.records import start_search_run as start

    return start(_db(), nightly_id, strategy.name, strategy.query, source,
                 window.start if window else None, window.end if window else None, kind=kind)


@task(name="search-pubmed", retry_condition_fn=is_transient)
def search_pubmed(source: str, query: str, window: Window, date_type: str = "crdt"):
    """esearch over one [crdt] window, or [mdat] window with date_type="mdat" (history server on);
    PubMed warnings travel with the result."""
    result = open_source(source).search(query, window.start, window.end, date_type=date_type)
    logger = get_run_logger()
    logger.info("window %s [%s]: %d records", window, date_type, result.count)
    for w in result.warnings:
        logger.warning("PubMed warning for window %s [%s]: %s", window, date_type, w)
    return result


@task(name="select-new-pmids")
def select_new_pmids(pmids: list[str]) -> list[str]:
    """Only what the warehouse has never seen is fetched; order kept as PubMed returned it."""
    from warehouse.records import known_pmids

    known = known_pmids(_db(), pmids)
    return [p for p in pmids if p not in known]


@task(name="select-stored-pmids")
def select_stored_pmids(pmids: list[str]) -> list[str]:
    """The PMIDs the warehouse holds (as records or merged aliases); order kept as PubMed returned it."""
    from warehouse.records import known_pmids

    known = known_pmids(_db(), pmids)
    return [p for p in pmids if p in known]


@task(name="link-known-records")
def link_known_records(run_id: str, strategy: str, pmids: list[str]) -> int:
    """Record that this run and strategy found records already stored (PRISMA counts per update)."""
    from warehouse.records import link_known_records as link

    return link(_db(), run_id, strategy, pmids) if pmids else 0


@task(name="post-pmids", retry_condition_fn=is_transient)
def post_pmids(source: str, pmids: list[str]):
    """Put just the new PMIDs on the history server so efetch can page through them."""
    return open_source(source).post(pmids)


@task(name="fetch-batch", retry_condition_fn=is_transient)
def fetch_batch(source: str, history, retstart: int, retmax: int, expected: list[str] | None = None) -> list:
    """Records retstart.. of a history; `expected` = the PMIDs asked for (the slice of the list posted).

    EFetch can answer HTTP 200 with fewer articles than asked for (an empty <PubmedArticleSet> is a
    real answer). While this task has retries left, a short answer is a transient BatchError, so
    the batch is fetched again; on the last try the records returned are handed back and the
    caller records what is still missing (see flows.search).
    """
    records = open_source(source).fetch_batch(history, retstart, retmax)
    if expected:
        returned = {r.pmid for r in records}
        missing = [p for p in expected if p not in returned]
        if missing:
            message = (f"efetch returned {len(expected) - len(missing)} of {len(expected)} records asked for; "
                       f"not returned: {pmid_list(missing)}")
            if _retries_left():
                from living_review.sources.base import BatchError

                raise BatchError(message, retstart=retstart, retmax=retmax, transient=True)
            get_run_logger().warning("batch retstart=%d retmax=%d: %s (no retries left)", retstart, retmax, message)
    return records


def _retries_left() -> bool:
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    return context is not None and context.task_run.run_count <= context.task.retries


def pmid_list(pmids: list[str], shown: int = 20) -> str:
    """PMIDs for a message: the first `shown`, then how many more."""
    more = len(pmids) - shown
    return ", ".join(pmids[:shown]) + (f" and {more} more" if more > 0 else "")


@task(name="append-batch")
def append_batch(run_id: str, strategy: str, records: list) -> dict:
    """One batch, one transaction: a failure leaves nothing half-written."""
    from warehouse.records import append_records

    return dataclasses.asdict(append_records(_db(), run_id, strategy, records))  # AppendCounts' fields


@task(name="commit-window")
def commit_window(strategy: str, window: Window, run_id: str) -> None:
    from warehouse.records import commit_window as commit

    commit(_db(), strategy, window.start, window.end, run_id)


@task(name="close-search-run")
def close_search_run(run_id: str, status: str, found: int, warnings: list[str], error: str | None = None) -> None:
    from warehouse.records import finish_search_run

    finish_search_run(_db(), run_id, status, found, warnings, error=error)


@task(name="note-unreturned")
def note_unreturned(run_id: str, strategy: str, pmids: list[str], window: Window | None) -> list[str]:
    """Keep PMIDs EFetch did not return (unreturned_pmids); return those given up now."""
    from warehouse.records import note_unreturned as note

    return note(_db(), run_id, strategy, pmids, window.start if window else None, window.end if window else None)


@task(name="pending-unreturned")
def pending_unreturned(strategy: str, nightly_id: int) -> list[tuple]:
    """The strategy's PMIDs still to be asked for again (not those this night has just missed)."""
    from warehouse.records import pending_unreturned as pending

    return pending(_db(), strategy, exclude_nightly=nightly_id)


@task(name="resolve-unreturned")
def resolve_unreturned() -> int:
    from warehouse.records import resolve_unreturned as resolve

    return resolve(_db())
