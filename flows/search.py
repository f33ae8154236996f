"""Search one strategy: plan the window, search, fetch what is new in batches, append, commit.

Before that, every night after the baseline re-fetches the stored records PubMed has changed
(`refetch_modified`): the same query on the modification date [mdat] over the same span as the
create-date window (the last committed window's end minus `overlap_days`, up to today), the hits
intersected with the PMIDs the warehouse holds (records and merged aliases), fetched in batches
through the same retrying path and appended, so a retraction, an erratum or a corrected abstract
becomes a new version of the record (the old content kept in `record_versions`) and is counted as
`updated`. Its search run is closed with found = 0 (its hits are no new search hits); the summary
counts `modified_found` (mdat hits), `refetched` (stored records fetched again, also counted in
`fetched`) and `updated` (`alias_updated`: merged PMIDs whose own content changed). It runs before
the create-date window is committed, so a night whose re-fetch fails commits nothing and the next
night searches both dates from the same start. The [mdat] hits the warehouse still lacks once the
create-date window is stored are records that match the query only since PubMed modified them
(indexing adds publication types and MeSH terms after the create date has left every window):
`fetch_late_matches` fetches them as new (`late_matches`; identified, in a search run of their own).
Over 9,999 modified hits the window is halved, as for the create date; a single day still over
the cap re-fetches the stored records among the 9,999 listed and says, in the run's warnings,
that the rest could not be checked.

The window is committed only when every batch is stored, so a failed night is resumed from the
last committed window and refetches only the PMIDs still missing.

A PMID the search found but EFetch did not return, even after the batch's retries, does not hold
the window back (PubMed stops serving deleted or withdrawn records, and a window that could never
be committed would block the strategy for good). It is kept in `unreturned_pmids` before the window
is committed, named in the run's warnings, and asked for again on each later night
(`ask_again_for_unreturned`) until it is stored, or given up after
`warehouse.records.UNRETURNED_MAX_MISSES` misses (kept, marked 'abandoned', and said so).
"""

from __future__ import annotations

from datetime import date

from prefect import flow

from living_review.config import Strategy, load_review
from living_review.settings import get_settings
from models.windows import MAX_IDS_PER_SEARCH, Window, needs_split
from tasks.search import (
    SearchFailed,
    append_batch,
    close_search_run,
    commit_window,
    fetch_batch,
    link_known_records,
    note_unreturned,
    pending_unreturned,
    pmid_list,
    plan_modified_window,
    plan_window,
    post_pmids,
    resolve_unreturned,
    search_pubmed,
    select_new_pmids,
    select_stored_pmids,
    start_search_run,
)

_COUNTS = ("new", "duplicates", "updated", "unchanged", "alias_updated")


@flow(name="search-strategy", flow_run_name="search-{strategy_name}")
def search_strategy(strategy_name: str, source: str, nightly_id: int, today: date | None = None) -> dict:
    strategy = load_review().strategy(strategy_name)
    window = plan_window(strategy, today)
    modified = plan_modified_window(strategy, today)  # None on the baseline night
    parts = refetch_modified(strategy, modified, source, nightly_id) if modified else []
    unstored = [p for part in parts for p in part.pop("unstored", [])]
    parts += search_window(strategy, window, source, nightly_id)
    if unstored:
        parts += fetch_late_matches(strategy, modified, unstored, source, nightly_id)
    return _combine(strategy_name, parts + ask_again_for_unreturned(strategy, source, nightly_id))


def refetch_modified(strategy: Strategy, window: Window, source: str, nightly_id: int) -> list[dict]:
    """Fetch again the stored records the strategy's query finds modified [mdat] within `window`.

    One search run per (half-)window, closed with found = 0; nothing is committed. A record that
    came back changed is appended as a new version (`updated`); unchanged ones count as duplicates.
    """
    settings = get_settings()
    retrying = _retrying(settings)
    label = f"window {window} [mdat]"
    run_id = start_search_run(nightly_id, strategy, window, source, kind="refetch")
    try:
        result = search_pubmed.with_options(**retrying)(source, strategy.query, window, "mdat")
    except Exception as exc:
        message = f"strategy {strategy.name}, {label}: search for modified records failed: {exc}"
        close_search_run(run_id, "failed", 0, [], error=message)
        raise SearchFailed(message) from exc
    warnings = list(result.warnings)
    if needs_split(result.count):
        if window.days > 1:
            note = (f"{label}: {result.count} modified records, more than one search can retrieve: "
                    "split into two halves")
            close_search_run(run_id, "completed", 0, [note])
            first, second = window.halves()
            parts = (refetch_modified(strategy, first, source, nightly_id)
                     + refetch_modified(strategy, second, source, nightly_id))
            parts[0]["warnings"].insert(0, note)
            return parts
        warnings.append(f"{label}: {result.count} records modified on one day, more than one search can list "
                        f"({MAX_IDS_PER_SEARCH:,}): only the stored records among the {len(result.pmids)} listed were "
                        "fetched again; stored records among the others were not checked for changes")

    stored = select_stored_pmids(result.pmids)
    # The search's history holds every hit, listed or not: reuse it only if it is exactly `stored`.
    history = result.history if stored and result.complete and len(stored) == len(result.pmids) else None
    counts, missing = _fetch_and_append(run_id, strategy, source, stored, history, label, 0, warnings,
                                         ids="stored, modified")
    refetched = len(stored) - len(missing)
    if stored:
        warnings.append(f"{label}: {len(stored)} stored records modified since they were stored, fetched again: "
                        f"{counts['updated']} changed (new version kept, the old one in record_versions)"
                        + (f", {counts['alias_updated']} merged PMIDs changed (record_alias_versions)"
                           if counts["alias_updated"] else ""))
    if missing:
        warnings.append(f"{label}: {len(missing)} of {len(stored)} stored records modified since were not "
                        f"returned by EFetch ({settings.task_retries + 1} tries): {pmid_list(missing)}; "
                        "their stored version is kept")
    close_search_run(run_id, "completed", 0, warnings)
    stored_set = set(stored)
    return [{"window": f"{window} (modified)", "found": 0, "modified_found": result.count,
             "unstored": [p for p in result.pmids if p not in stored_set],
             "fetched": refetched, "refetched": refetched, "already_known": 0, "not_returned": 0,
             "asked_again": 0, "warnings": warnings, **counts}]


def search_window(strategy: Strategy, window: Window, source: str, nightly_id: int) -> list[dict]:
    settings = get_settings()
    retrying = _retrying(settings)
    run_id = start_search_run(nightly_id, strategy, window, source)
    try:
        result = search_pubmed.with_options(**retrying)(source, strategy.query, window)
    except Exception as exc:
        message = f"strategy {strategy.name}, window {window}: search failed: {exc}"
        close_search_run(run_id, "failed", 0, [], error=message)
        raise SearchFailed(message) from exc
    if needs_split(result.count):
        # The parent run is closed as completed with found = 0: its hits are found (and counted)
        # again by the halves, and `living-review status` sums `found` over the night's runs.
        note = f"window {window}: {result.count} hits, more than one search can retrieve: split into two halves"
        close_search_run(run_id, "completed", 0, [note])
        first, second = window.halves()
        parts = search_window(strategy, first, source, nightly_id) + search_window(strategy, second, source, nightly_id)
        parts[0]["warnings"].insert(0, note)
        return parts

    new = select_new_pmids(result.pmids)
    new_set = set(new)  # built once: a window holds up to 10,000 PMIDs
    link_known_records(run_id, strategy.name, [p for p in result.pmids if p not in new_set])
    history = result.history if new and len(new) == len(result.pmids) and result.history else None
    counts, missing = _fetch_and_append(run_id, strategy, source, new, history, f"window {window}",
                                         result.count, result.warnings)
    warnings = list(result.warnings)
    if missing:  # kept before the window is committed: nothing is lost if the night dies here
        warnings += _unreturned_warnings(f"window {window}", run_id, strategy, missing, len(new), window, settings)
    commit_window(strategy.name, window, run_id)
    close_search_run(run_id, "completed", result.count, warnings)
    return [{"window": str(window), "found": result.count, "fetched": len(new) - len(missing),
             "already_known": result.count - len(new), "not_returned": len(missing), "asked_again": 0,
             "warnings": warnings, **counts}]


def fetch_late_matches(strategy: Strategy, window: Window, pmids: list[str], source: str,
                       nightly_id: int) -> list[dict]:
    """Fetch as new the [mdat] hits the warehouse still lacks after the create-date search.

    Publication types and MeSH terms arrive with indexing, often weeks after a record is created,
    when its create date has left every window: such a record matches the query only since it was
    modified, and only the [mdat] search sees it. Its own search run (found = the records fetched)
    counts them as identified.
    """
    new = select_new_pmids(pmids)  # what tonight's create-date search stored is no longer new
    if not new:
        return []
    settings = get_settings()
    run_id = start_search_run(nightly_id, strategy, window, source)
    what = f"window {window} [mdat]: {len(new)} records not stored before"
    counts, missing = _fetch_and_append(run_id, strategy, source, new, None, what, len(new), [])
    fetched = len(new) - len(missing)
    warnings = [f"window {window} [mdat]: {fetched} records that match the query only since they were modified "
                f"(e.g. indexed after their create date left the search windows) fetched as new"]
    if missing:
        warnings += _unreturned_warnings(f"window {window} [mdat]", run_id, strategy, missing, len(new), window, settings)
    close_search_run(run_id, "completed", len(new), warnings)
    return [{"window": f"{window} (modified, not stored before)", "found": len(new), "fetched": fetched,
             "already_known": 0, "not_returned": len(missing), "asked_again": 0, "late_matches": len(new),
             "warnings": warnings, **counts}]


def ask_again_for_unreturned(strategy: Strategy, source: str, nightly_id: int) -> list[dict]:
    """Fetch by PMID what earlier nights' EFetch did not return (one search run, found = 0).

    The run's window spans the windows that found them; nothing is committed. PMIDs stored since
    (by any strategy) are no longer pending: `pending_unreturned` resolves them first.
    """
    pending = pending_unreturned(strategy.name, nightly_id)
    if not pending:
        return []
    settings = get_settings()
    pmids = [p for p, _, _ in pending]
    starts = [s for _, s, _ in pending if s is not None]
    ends = [e for _, _, e in pending if e is not None]
    span = Window(min(starts), max(ends)) if starts and ends else None
    run_id = start_search_run(nightly_id, strategy, span, source)
    what = f"{len(pmids)} PMIDs not returned on an earlier night"
    counts, missing = _fetch_and_append(run_id, strategy, source, pmids, None, what, 0, [])
    fetched = len(pmids) - len(missing)
    warnings = [f"asked again for {what}: {fetched} returned now"]
    if missing:
        warnings += _unreturned_warnings("asked again", run_id, strategy, missing, len(pmids), span, settings)
    resolve_unreturned()
    close_search_run(run_id, "completed", 0, warnings)
    return [{"window": f"{span or 'earlier windows'} (asked again)", "found": 0,
             "fetched": fetched, "already_known": 0, "not_returned": len(missing),
             "asked_again": len(pmids), "warnings": warnings, **counts}]


def _fetch_and_append(run_id: str, strategy: Strategy, source: str, pmids: list[str], history, what: str,
                      found: int, search_warnings: list[str], ids: str = "new") -> tuple[dict, list[str]]:
    """Fetch `pmids` in batches (posting them unless `history` already holds exactly them) and append
    each batch; return the append counts and the PMIDs EFetch did not return. A failing batch closes the
    run as failed and raises SearchFailed naming the strategy, `what` and the batch."""
    settings = get_settings()
    retrying = _retrying(settings)
    batch_size = settings.fetch_batch_size
    counts = dict.fromkeys(_COUNTS, 0)
    returned: set[str] = set()
    batch_no, retstart = 0, 0
    try:
        if pmids:
            history = history or post_pmids.with_options(**retrying)(source, pmids)
            for batch_no, retstart in enumerate(range(0, len(pmids), batch_size)):
                expected = pmids[retstart: retstart + batch_size]
                records = fetch_batch.with_options(**retrying)(source, history, retstart, batch_size, expected)
                returned.update(r.pmid for r in records)
                for key, n in append_batch(run_id, strategy.name, records).items():
                    counts[key] += n
    except Exception as exc:
        where = (f"strategy {strategy.name}, {what}, batch {batch_no} "
                 f"(records {retstart + 1}-{min(retstart + batch_size, len(pmids))} of {len(pmids)} {ids})")
        close_search_run(run_id, "failed", found, search_warnings, error=f"{where}: {exc}")
        raise SearchFailed(f"{where}: {exc}") from exc
    return counts, [p for p in pmids if p not in returned]


def _unreturned_warnings(what: str, run_id: str, strategy: Strategy, missing: list[str], asked: int,
                         window: Window | None, settings) -> list[str]:
    """Keep the missing PMIDs (unreturned_pmids) and say so, naming those given up now."""
    abandoned = note_unreturned(run_id, strategy.name, missing, window)
    gone = set(abandoned)
    pending = [p for p in missing if p not in gone]
    tries = settings.task_retries + 1
    warnings = []
    if pending:
        warnings.append(f"{what}: {len(pending)} of {asked} PMIDs asked for were not returned by EFetch "
                        f"({tries} tries): {pmid_list(pending)}; kept in unreturned_pmids, asked for again next night")
    if abandoned:
        warnings.append(f"{what}: {len(abandoned)} of {asked} PMIDs asked for were not returned by EFetch "
                        f"({tries} tries) and are given up after being asked for on several nights: "
                        f"{pmid_list(abandoned)}; kept in unreturned_pmids as abandoned")
    return warnings


def _retrying(settings) -> dict:
    return {"retries": settings.task_retries, "retry_delay_seconds": settings.task_retry_delay_seconds}


def _combine(strategy: str, parts: list[dict]) -> dict:
    total = {"strategy": strategy, "windows": [p["window"] for p in parts], "warnings": []}
    for key in ("found", "fetched", "already_known", "not_returned", "asked_again", "modified_found", "refetched",
                "late_matches", *_COUNTS):
        total[key] = sum(p.get(key, 0) for p in parts)
    for p in parts:
        total["warnings"] += p["warnings"]
    return total
