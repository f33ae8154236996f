"""Lazy, forgiving calls into the ranking and pooling capabilities.

The workspace must keep working while those modules are missing, being rebuilt or failing: a
ranking error costs the queue its order and the page its recall estimate, never the page itself.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Callable

log = logging.getLogger("living_review.web")


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _call(module: str, fn: str, *args, **kwargs) -> tuple[bool, Any]:
    mod = _module(module)
    f = getattr(mod, fn, None) if mod is not None else None
    if f is None:
        return False, None
    try:
        return True, f(*args, **kwargs)
    except Exception:  # noqa: BLE001 - a neighbour's failure must not take the page down
        log.exception("%s.%s failed", module, fn)
        return False, None


def ranking_scores(con) -> tuple[dict[int, float] | None, str | None]:
    """({record_id: score}, model_version) from warehouse.ranking.latest_scores, or (None, None)."""
    ok, res = _call("warehouse.ranking", "latest_scores", con)  # {record_id: (score, model_version)}
    if not ok or res is None:
        return None, None
    scores = {int(rid): float(score) for rid, (score, _) in res.items()}
    version = next((v for _, v in res.values() if v is not None), None)
    if version is None:
        version = model_version(con)
    return scores or None, (str(version) if version is not None else None)


def model_version(con) -> str | None:
    """The ranking model version now in use (recorded with every decision); cheap, one row."""
    ok, v = _call("warehouse.ranking", "latest_model_version", con)
    return str(v) if ok and v is not None else None


def recall_estimate(con) -> dict | None:
    ok, res = _call("warehouse.ranking", "latest_recall_estimate", con)
    return res if ok else None


def pooled_results(con) -> list[dict] | None:
    """None when the pooling capability is absent; [] before its first refresh."""
    ok, res = _call("warehouse.pooling", "latest_pooled_results", con)
    if not ok:
        return None
    return list(res or [])


def refresh_pooled_effects(*, on_new_version: Callable[[dict], Any] | None = None, **kwargs) -> tuple[bool, str]:
    """Re-pool now (plain function, no Prefect); (done, message for the reviewer).

    kwargs go to `living_review.pooling.refresh_pooled_effects_now` (db_path, config, reports_dir,
    trigger) so the app's own warehouse is refreshed, whatever the environment says. When the
    refresh stored a new evidence version, `on_new_version(summary)` is called with its summary.
    """
    mod = _module("living_review.pooling")
    fn = getattr(mod, "refresh_pooled_effects_now", None) if mod else None
    if fn is None:
        return False, "pooled results will refresh on the next nightly run"
    try:
        summary = fn(**kwargs)
    except Exception:  # noqa: BLE001
        log.exception("refresh_pooled_effects_now failed")
        return False, "saved; re-pooling failed and will be retried by the nightly run"
    if isinstance(summary, dict) and summary.get("changed") is False:
        return True, "pooled results unchanged"
    if on_new_version is not None and isinstance(summary, dict):
        on_new_version(summary)
    return True, "pooled results refreshed"


def notify_conclusions_changed(summary: dict, origin: str, **kwargs) -> bool:
    """`living_review.pooling.notify_conclusions_changed` (db_path, settings in kwargs); False when the
    capability is absent or anything fails: a notification never reaches the reviewer's page."""
    ok, sent = _call("living_review.pooling", "notify_conclusions_changed", summary, origin, **kwargs)
    return bool(ok and sent)
