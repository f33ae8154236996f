"""`living-review pool [--no-flow] [--json]`: refresh the pooled effects now."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("pool", help="recompute pooled effects if the evidence changed (runs the Prefect flow)")
    p.add_argument("--no-flow", action="store_true", help="run the plain function, without Prefect")
    p.add_argument("--no-plots", action="store_true", help="skip forest/funnel/history plots")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from living_review.cli import CommandError
    from living_review.config import ConfigError
    from living_review.pooling import format_effect, whats_new_markdown
    from models.living import PlanError

    try:
        if args.no_flow:
            from living_review.pooling import notify_conclusions_changed, refresh_pooled_effects_now

            summary = refresh_pooled_effects_now(trigger="manual", plots=not args.no_plots)
            notify_conclusions_changed(summary, "living-review pool --no-flow")  # the flow's hook does it otherwise
        else:
            from flows.pool import refresh_pooled_effects

            summary = refresh_pooled_effects(trigger="manual", plots=not args.no_plots)
    except (ConfigError, PlanError) as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    elif args.no_flow:
        print(whats_new_markdown(summary))
    else:
        print(summary.get("message", ""))
        for r in summary.get("primary", []):
            if r.get("estimate") is None:
                continue
            flag = "  [conclusion changed]" if r.get("conclusion_changed") and summary.get("previous_version") else ""
            print(f"  {r['analysis_id']}: k = {r['k']}, {format_effect(r)}{flag}")  # no PI in the compact summary
    return 0
