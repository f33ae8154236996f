"""Refresh the pooled effects: fingerprint the evidence, and only if it changed compute, plot, store."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.notifications import notify_conclusions_changed, notify_run_failed
from living_review import pooling
from tasks.pool import (compute_pooled_effects, gather_evidence, publish_whats_new, render_pooling_plots,
                        store_evidence_version)

COMPACT_FIELDS = ("changed", "evidence_version", "previous_version", "analyses", "conclusions_changed",
                  "diff_summary", "message", "fingerprint", "trigger",
                  "dropped")  # analyses no longer estimable: their reasons reach the notification


@flow(name="refresh-pooled-effects", log_prints=True, on_failure=[notify_run_failed],
      on_crashed=[notify_run_failed], on_completion=[notify_conclusions_changed])
def refresh_pooled_effects(db_path: str | None = None, config_path: str | None = None, trigger: str = "nightly",
                           plots: bool = True) -> dict:
    """Gather → (unchanged: stop) → compute → plot → store → What's new artifact. Returns a small summary."""
    from living_review.config import load_review

    log = get_run_logger()
    db, config, settings = pooling._resolve(db_path, load_review(config_path) if config_path else None)
    state = gather_evidence(db, config)
    if not state.changed or (state.previous is None and not state.rows):
        summary = pooling.unchanged_summary(state)
    else:
        computed = compute_pooled_effects(state)
        written = render_pooling_plots(computed, config, settings.reports_dir, db) if plots else []
        try:
            store_evidence_version(db, computed, trigger)
        except pooling.ConcurrentRefresh:
            log.info("another refresh stored a version first; computing again without Prefect steps")
            if plots:
                pooling.discard_plots(computed, settings.reports_dir, db)
            # the retry's full summary: its What's new is published below like any other
            summary = pooling.refresh_pooled_effects_now(db, config, trigger=trigger, plots=plots,
                                                         reports_dir=settings.reports_dir)
        else:
            summary = pooling.summarise(computed, state.previous["version"] if state.previous else None, trigger)
            summary["plots"] = written
    publish_whats_new(summary, config.title)
    log.info(summary["message"])
    return _compact(summary)


def _compact(summary: dict) -> dict:
    """What the nightly summary needs: the headline numbers of each primary analysis, not every row."""
    out = {k: summary.get(k) for k in COMPACT_FIELDS if k in summary}
    out["primary"] = [
        {k: r.get(k) for k in ("analysis_id", "k", "measure", "estimate", "ci_lb", "ci_ub", "exp_estimate",
                               "exp_ci_lb", "exp_ci_ub", "conclusion_changed")}
        for r in summary.get("results", []) if r.get("analysis") == "primary" and not r.get("subgroup")
    ]
    return out
