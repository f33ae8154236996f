"""`living-review rank`: retrain (if decisions changed), score unscreened records, estimate recall."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("rank", help="rank unscreened records and estimate recall now")
    p.add_argument("--force", action="store_true", help="retrain even if no decision changed")
    p.add_argument("--top", type=int, default=5, help="queue entries to print (default 5)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from living_review.cli import CommandError
    from living_review.config import ConfigError
    from living_review.ranking_job import run_ranking

    try:
        summary = run_ranking(run="manual", force=args.force, top_n=max(args.top, 0))
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    rec = summary["recall_estimate"]
    if summary["model_version"] is None:
        print(f"rank: {summary.get('message', 'nothing to rank')}")
        return 0
    print(f"model:   {summary['model_version']} ({summary['kind']}, {'retrained' if summary['retrained'] else 'unchanged'}; "
          f"{summary['n_train']} settled decisions, {summary['n_includes']} includes)")
    print(f"scored:  {summary['scored']} unscreened records ({summary['audit_pending']} random audit records pending)")
    lb = rec["recall_lower_bound"]
    print(f"recall:  >= {100 * lb:.1f}% with {100 * rec['confidence']:.0f}% confidence "
          f"(target {100 * rec['target']:.0f}%: screen ~{rec['records_to_screen_for_target']} more)")
    for i, t in enumerate(summary["top"], 1):
        tag = " [audit]" if t["is_audit"] else ""
        print(f"  {i}. PMID {t['pmid']}  {t['score']:.3f}{tag}  {(t['title'] or '')[:90]}")
    return 0
