"""The nightly living-review run: search every strategy, then rank and pool what changed.

Reads like the review process; each step is a sub-flow or task that does the work.
"""

from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger

from flows.notifications import notify_night_digest, notify_run_failed
from flows.search import search_strategy
from living_review.config import load_review
from tasks.search import close_nightly_run, open_nightly_run, prepare_warehouse
from tasks.summary import publish_run_summary


@flow(name="nightly-update", log_prints=True, on_failure=[notify_run_failed], on_crashed=[notify_run_failed],
      on_completion=[notify_night_digest])
def nightly_update(source: str = "snapshot", today: date | None = None) -> dict:
    """Search → dedupe → append (per strategy) → rank → pool → summary artifact."""
    from flows.pool import refresh_pooled_effects
    from tasks.rank import rank_unscreened

    config = load_review()
    prepare_warehouse()
    nightly_id = open_nightly_run(source)
    strategies, failures = [], []
    for strategy in config.strategies:
        state = search_strategy(strategy.name, source, nightly_id, today, return_state=True)
        if state.is_completed():
            strategies.append(state.result())
        else:
            failures.append(f"{strategy.name}: {state.message}")
            strategies.append({"strategy": strategy.name, "failed": True, "error": state.message})
    ranking = _step("ranking", rank_unscreened(run=f"nightly-{nightly_id}", return_state=True), failures)
    pooling = _step("pooling", refresh_pooled_effects(return_state=True), failures)
    summary = {
        "source": source,
        "status": "failed" if failures else "completed",
        "new_records": sum(s.get("new", 0) for s in strategies),
        # stored records PubMed changed since (retractions, errata...), re-fetched and stored as new versions
        "updated_records": sum(s.get("updated", 0) for s in strategies),
        "strategies": strategies,
        "ranking": ranking,
        "pooling": pooling,
    }
    publish_run_summary(summary)
    close_nightly_run(nightly_id, summary["status"], summary, error="; ".join(failures) or None)
    if failures:
        get_run_logger().error("nightly run failed: %s", "; ".join(failures))
        raise RuntimeError("nightly run failed: " + "; ".join(failures))
    return summary


def _step(name: str, state, failures: list[str]) -> dict:
    """A later step's summary; its failure fails the night but does not lose the searches' record."""
    if state.is_completed():
        return state.result()
    failures.append(f"{name}: {state.message}")
    return {"failed": True, "error": state.message}
