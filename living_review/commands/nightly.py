"""`living-review nightly`: run the nightly update flow now."""

from __future__ import annotations

import json

SOURCES = ("entrez", "snapshot")


def register(sub) -> None:
    p = sub.add_parser("nightly", help="run the nightly update now (search, store, rank, pool)")
    p.add_argument("--source", choices=SOURCES, default=None,
                   help="entrez = live PubMed E-utilities; snapshot = PubMed XML files on disk (default: "
                        "$LIVING_REVIEW_SOURCE, else snapshot, the bundled snapshot)")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(func=run)


def default_source() -> str:
    """LIVING_REVIEW_SOURCE (default "snapshot"), checked against the choices --source accepts: argparse
    does not check a default, and a bad value would otherwise fail only inside the flow."""
    from living_review.cli import CommandError
    from living_review.settings import get_settings

    value = get_settings().nightly_source
    if value not in SOURCES:
        raise CommandError(f"LIVING_REVIEW_SOURCE={value!r} is not a source: use one of {', '.join(SOURCES)} "
                           "(it sets the default of --source)")
    return value


def run(args) -> int:
    source = args.source or default_source()  # an explicit --source does not consult the variable

    from flows.nightly import nightly_update
    from models.summary import render_run_summary

    state = nightly_update(source=source, return_state=True)
    if not state.is_completed():
        print(f"nightly run {state.name.lower()}: {state.message}")
        return 1
    summary = state.result()
    print(json.dumps(summary, indent=2, default=str) if args.json else render_run_summary(summary))
    return 0
