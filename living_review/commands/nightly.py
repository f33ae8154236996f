"""`living-review nightly`: run the nightly update flow now."""

from __future__ import annotations

import json
import os


def register(sub) -> None:
    p = sub.add_parser("nightly", help="run the nightly update now (search, store, rank, pool)")
    p.add_argument("--source", choices=["entrez", "snapshot"], default=os.environ.get("LIVING_REVIEW_SOURCE", "snapshot"),
                   help="entrez = live PubMed E-utilities; snapshot = PubMed XML files on disk (default: the bundled snapshot)")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from flows.nightly import nightly_update
    from models.summary import render_run_summary

    state = nightly_update(source=args.source, return_state=True)
    if not state.is_completed():
        print(f"nightly run {state.name.lower()}: {state.message}")
        return 1
    summary = state.result()
    print(json.dumps(summary, indent=2, default=str) if args.json else render_run_summary(summary))
    return 0
