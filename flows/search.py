"""Search one strategy: plan the window, search, fetch what is new in batches, append, commit.

The window is committed only when every batch is stored, so a failed night is resumed from the
last committed window and refetches only the PMIDs still missing.
"""

from __future__ import annotations

from datetime import date

from prefect import flow

from living_review.config import Strategy, load_review
from living_review.settings import get_settings
from models.windows import Window, needs_split
from tasks.search import (
    SearchFailed,
    append_batch,
    close_search_run,
    commit_window,
    fetch_batch,
    link_known_records,
    plan_window,
    post_pmids,
    search_pubmed,
    select_new_pmids,
    start_search_run,
)


@flow(name="search-strategy", flow_run_name="search-{strategy_name}")
def search_strategy(strategy_name: str, source: str, nightly_id: int, today: date | None = None) -> dict:
    strategy = load_review().strategy(strategy_name)
    window = plan_window(strategy, today)
    return _combine(strategy_name, search_window(strategy, window, source, nightly_id))


def search_window(strategy: Strategy, window: Window, source: str, nightly_id: int) -> list[dict]:
    settings = get_settings()
    retrying = {"retries": settings.task_retries, "retry_delay_seconds": settings.task_retry_delay_seconds}
    run_id = start_search_run(nightly_id, strategy, window, source)
    try:
        result = search_pubmed.with_options(**retrying)(source, strategy.query, window)
    except Exception as exc:
        message = f"strategy {strategy.name}, window {window}: search failed: {exc}"
        close_search_run(run_id, "failed", 0, [], error=message)
        raise SearchFailed(message) from exc
    if needs_split(result.count):
        close_search_run(run_id, "split", result.count, result.warnings)
        first, second = window.halves()
        return search_window(strategy, first, source, nightly_id) + search_window(strategy, second, source, nightly_id)

    new = select_new_pmids(result.pmids)
    new_set = set(new)  # built once: a window holds up to 10,000 PMIDs
    link_known_records(run_id, strategy.name, [p for p in result.pmids if p not in new_set])
    batch_size = settings.fetch_batch_size
    counts = {"new": 0, "duplicates": 0, "updated": 0, "unchanged": 0}
    batch_no, retstart = 0, 0
    try:
        if new:
            history = result.history if len(new) == len(result.pmids) and result.history else post_pmids.with_options(**retrying)(source, new)
            for batch_no, retstart in enumerate(range(0, len(new), batch_size)):
                records = fetch_batch.with_options(**retrying)(source, history, retstart, batch_size)
                for key, n in append_batch(run_id, strategy.name, records).items():
                    counts[key] += n
    except Exception as exc:
        where = (f"strategy {strategy.name}, window {window}, batch {batch_no} "
                 f"(records {retstart + 1}-{min(retstart + batch_size, len(new))} of {len(new)} new)")
        close_search_run(run_id, "failed", result.count, result.warnings, error=f"{where}: {exc}")
        raise SearchFailed(f"{where}: {exc}") from exc
    commit_window(strategy.name, window, run_id)
    close_search_run(run_id, "completed", result.count, result.warnings)
    return [{"window": str(window), "found": result.count, "fetched": len(new),
             "already_known": result.count - len(new), "warnings": list(result.warnings), **counts}]


def _combine(strategy: str, parts: list[dict]) -> dict:
    total = {"strategy": strategy, "windows": [p["window"] for p in parts], "warnings": []}
    for key in ("found", "fetched", "already_known", "new", "duplicates", "updated", "unchanged"):
        total[key] = sum(p[key] for p in parts)
    for p in parts:
        total["warnings"] += p["warnings"]
    return total
