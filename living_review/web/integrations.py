"""Lazy, forgiving calls into the ranking and pooling capabilities.

The workspace must keep working while those modules are missing, being rebuilt or failing: a
ranking error costs the queue its order and the page its recall estimate, never the page itself.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

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
    ok, res = _call("warehouse.ranking", "latest_scores", con)
    if not ok or res is None:
        return None, None
    scores: dict[int, float] = {}
    version = None
    try:
        if hasattr(res, "to_dict") and hasattr(res, "columns"):  # DataFrame
            cols = list(res.columns)
            score_col = "score" if "score" in cols else next(c for c in cols if c != "record_id")
            for rid, sc in zip(res["record_id"].tolist(), res[score_col].tolist()):
                scores[int(rid)] = float(sc)
            if "model_version" in cols and len(res):
                version = str(res["model_version"].iloc[0])
        elif isinstance(res, dict):
            if "scores" in res and isinstance(res["scores"], dict):
                version = res.get("model_version")
                res = res["scores"]
            for k, v in res.items():
                if isinstance(v, (tuple, list)):  # (score, model_version)
                    scores[int(k)] = float(v[0])
                    if len(v) > 1 and version is None:
                        version = v[1]
                else:
                    scores[int(k)] = float(v)
        else:  # iterable of rows
            for row in res:
                if isinstance(row, dict):
                    scores[int(row["record_id"])] = float(row["score"])
                    version = version or row.get("model_version")
                else:
                    scores[int(row[0])] = float(row[1])
                    if len(row) > 2 and version is None:
                        version = row[2]
    except Exception:  # noqa: BLE001
        log.exception("could not read ranking scores")
        return None, None
    if version is None:
        ok, v = _call("warehouse.ranking", "latest_model_version", con)
        version = v if ok else None
    return scores or None, (str(version) if version is not None else None)


def model_version(con) -> str | None:
    """The ranking model version now in use (recorded with every decision); cheap, one row."""
    ok, v = _call("warehouse.ranking", "latest_model_version", con)
    return str(v) if ok and v is not None else None


def recall_estimate(con) -> dict | None:
    ok, res = _call("warehouse.ranking", "latest_recall_estimate", con)
    if not ok or res is None:
        return None
    if not isinstance(res, dict):
        res = getattr(res, "__dict__", None) or {"value": res}
    return res


def pooled_results(con) -> list[dict] | None:
    """None when the pooling capability is absent; [] before its first refresh."""
    ok, res = _call("warehouse.pooling", "latest_pooled_results", con)
    if not ok:
        return None
    return list(res or [])


def refresh_pooled_effects(**kwargs) -> tuple[bool, str]:
    """Re-pool now (plain function, no Prefect); (done, message for the reviewer).

    kwargs go to `living_review.pooling.refresh_pooled_effects_now` (db_path, config, reports_dir,
    trigger) so the app's own warehouse is refreshed, whatever the environment says.
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
    return True, "pooled results refreshed"
