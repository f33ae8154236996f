"""Prefect task: rank the unscreened records (retrain only when settled decisions changed)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


@task(name="rank-unscreened", cache_policy=NO_CACHE)
def rank_unscreened(run: str | None = None, force: bool = False) -> dict:
    """Score every unscreened record and estimate recall; returns the JSON-able run summary section."""
    from living_review.ranking_job import run_ranking

    summary = run_ranking(run=run, force=force)
    rec = summary["recall_estimate"]
    if summary["model_version"] is None:
        _logger().info("ranking: %s", summary.get("message"))
    else:
        _logger().info(
            "ranking %s (%s, retrained=%s): %d scored; recall >= %.1f%% with %.0f%% confidence",
            summary["model_version"], summary["kind"], summary["retrained"], summary["scored"],
            100 * (rec["recall_lower_bound"] or 0), 100 * rec["confidence"])
    return summary


def _logger():
    """The run logger inside Prefect; the module logger when called as a plain function (`.fn`)."""
    import logging

    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)
