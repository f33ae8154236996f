"""`living-review status`: what the warehouse holds and how the last run went."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("status", help="records, runs, last run, ranking and pooling state")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def collect_status() -> dict:
    from living_review.settings import get_settings
    from warehouse.status import status_summary

    settings = get_settings()
    if not settings.db_path.exists():  # reported as empty, without creating the file
        status = status_summary(settings.db_path)
        status.update(warehouse=str(settings.db_path), message="no warehouse yet: run `living-review nightly`")
        return status
    from warehouse.db import connect, migrate
    from warehouse.pooling import pooling_status
    from warehouse.ranking import ranking_status

    migrate(settings.db_path)
    status = status_summary(settings.db_path)
    status["warehouse"] = str(settings.db_path)
    with connect(settings.db_path) as con:
        status["ranking"] = ranking_status(con)
        status["pooling"] = pooling_status(con)
    return status


def run(args) -> int:
    from models.summary import describe_recall

    status = collect_status()
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    print(f"warehouse:   {status['warehouse']}")
    print(f"records:     {status['records']}")
    print(f"search runs: {status['search_runs']}")
    last = status.get("last_run")
    if last:
        print(f"last run:    {last.get('status')} ({last.get('source')}), {last.get('new_records')} new records, "
              f"started {last.get('started_at')}")
    else:
        print("last run:    none yet")
    if status.get("ranking"):
        print(f"recall:      {describe_recall(status['ranking'].get('recall_estimate'))}")
    pooling = status.get("pooling") or {}
    if pooling.get("message"):
        print(f"pooling:     {pooling['message']}")
    if status.get("message"):
        print(status["message"])
    return 0
