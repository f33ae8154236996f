"""Refresh the pooled effects when (and only when) the evidence changed. No Prefect here.

`refresh_pooled_effects_now()` is what the web app calls after an extraction is saved and what the
`refresh-pooled-effects` flow runs step by step (tasks/pool.py wraps each step):

1. `gather_evidence`  read the included studies' current data, build the analysis plan, fingerprint;
2. `compute_version`  run every declared analysis, diff against the last version, flag conclusions;
3. `render_plots`     forest / funnel / living-history plots under reports_dir/plots/v<N>-<fingerprint>/;
4. `store_version`    one transaction: the evidence version row and every pooled result.

Unchanged fingerprint: nothing is written. No outcome data at all: nothing is written and the
summary says so plainly. An analysis the previous version estimated and this one cannot (its data
retracted or excluded, its subgroup emptied, the analysis removed from review.toml) is listed in
`dropped` and counts as a changed conclusion ("no longer estimable") in the stored count, the
summary, What's new and the notification.

`notify_conclusions_changed(summary, origin)` tells maintainers which conclusions a newly stored
version changed. Whatever stored the version calls it once with the refresh's summary: the
refresh-pooled-effects flow's completion hook (flows/notifications.py), the web app after an
extraction save. `refresh_pooled_effects_now` itself sends nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from warehouse.pooling import NO_DATA_MESSAGE

log = logging.getLogger(__name__)
SUMMARY_FIELDS = ("analysis_id", "outcome", "analysis", "subgroup", "measure", "method", "test", "k", "estimate",
                  "ci_lb", "ci_ub", "pi_lb", "pi_ub", "pval", "tau2", "I2", "exp_estimate", "exp_ci_lb",
                  "exp_ci_ub", "exp_pi_lb", "exp_pi_ub", "q_between_p", "note", "conclusion_changed",
                  "change_reasons", "forest_plot")


@dataclass
class EvidenceState:
    db_path: Path
    rows: list[dict]
    plan: list  # list[AnalysisSpec]
    fingerprint: str
    previous: dict | None  # latest evidence_versions row (JSON decoded only when the evidence changed)
    alpha: float
    previous_results: list[dict] = field(default_factory=list)  # without per-study JSON
    snapshot: dict = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.previous is None or self.previous["fingerprint"] != self.fingerprint


@dataclass
class ComputedVersion:
    version: int
    fingerprint: str
    diff: dict
    evidence: dict
    plan: list[dict]
    results: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _resolve(db_path, config):
    from living_review.config import load_review
    from living_review.settings import get_settings

    settings = get_settings()
    return Path(db_path) if db_path else settings.db_path, config if config is not None else load_review(), settings


def gather_evidence(db_path: Path, config) -> EvidenceState:
    """Current evidence, the declared plan and their fingerprint, plus the last stored version."""
    from models.living import analysis_plan, evidence_fingerprint, evidence_snapshot
    from warehouse.db import connect, migrate
    from warehouse.evidence import current_evidence_rows
    from warehouse.pooling import latest_version, results_of_version

    migrate(db_path)
    plan = analysis_plan(config)
    with connect(db_path) as con:
        rows = current_evidence_rows(con)
        snapshot = evidence_snapshot(rows)
        fingerprint = evidence_fingerprint(rows, plan, snapshot)
        previous = latest_version(con, full=False)
        previous_results: list[dict] = []
        if previous is not None and previous["fingerprint"] != fingerprint:
            previous = latest_version(con, full=True)
            previous_results = results_of_version(con, previous["version"], studies=False)
    return EvidenceState(db_path=db_path, rows=rows, plan=plan, fingerprint=fingerprint, previous=previous,
                         alpha=config.pooling.alpha, previous_results=previous_results, snapshot=snapshot)


def compute_version(state: EvidenceState) -> ComputedVersion:
    """Every declared analysis on the current evidence, with the diff and conclusion flags."""
    from models.living import conclusion_flags, diff_evidence, evidence_snapshot, funnel_extras, run_analysis

    t0 = time.perf_counter()
    prev_results = {(r["analysis_id"], r["subgroup"]): r for r in state.previous_results}
    snapshot = state.snapshot or evidence_snapshot(state.rows)
    version = 1 if state.previous is None else int(state.previous["version"]) + 1
    computed = ComputedVersion(version=version, fingerprint=state.fingerprint,
                               diff=diff_evidence(state.previous["evidence"] if state.previous else None, snapshot),
                               evidence=snapshot, plan=[s.to_dict() for s in state.plan])
    for spec in state.plan:
        digest = _input_digest(snapshot, spec)
        for res in run_analysis(spec, state.rows):
            res.update(evidence_version=version, analysis_id=spec.analysis_id, outcome=spec.outcome,
                       analysis=spec.analysis, subgroup_var=spec.subgroup_var)
            if spec.analysis == "primary" and spec.subgroup_var is None:
                res["extras"] = funnel_extras(spec, res)
            prev = prev_results.pop((spec.analysis_id, res["subgroup"]), None)
            change = conclusion_flags(prev, res, state.alpha)
            res["conclusion_changed"] = change.changed
            res["change_reasons"] = change.reasons
            res["extras"] = dict(res.get("extras") or {}, conclusion_flags=change.flags, input_digest=digest)
            if prev is not None and (prev.get("extras") or {}).get("input_digest") == digest and prev.get("forest_plot"):
                res["_reuse_plots"] = {f: prev.get(f) for f in ("forest_plot", "funnel_plot", "cumulative_plot")}
            computed.results.append(res)
    declared = {spec.analysis_id for spec in state.plan}
    gone = sorted(prev_results.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
    computed.dropped = [_dropped(r, declared) for _, r in gone]
    computed.seconds = time.perf_counter() - t0
    return computed


def _dropped(prev: dict, declared: set[str]) -> dict[str, Any]:
    """A result of the previous version that this version no longer has: its outcome lost every usable
    study (retractions, exclusions), a subgroup level emptied, or the analysis left review.toml. Its
    conclusion changed when it had an estimate: that estimate is withdrawn."""
    had_estimate = prev.get("estimate") is not None
    if prev["analysis_id"] not in declared:
        reason = "no longer reported: analysis removed from the plan (review.toml)"
    else:
        reason = (("no longer estimable" if had_estimate else "no longer reported (it had no estimate)")
                  + ": no study with usable data left" + (f" in {prev['subgroup']}" if prev.get("subgroup") else ""))
    return {"analysis_id": prev["analysis_id"], "subgroup": prev.get("subgroup") or "",
            "outcome": prev.get("outcome"), "analysis": prev.get("analysis"), "measure": prev.get("measure"),
            "k_before": prev.get("k"), "before": format_effect(prev, pi=False),
            "conclusion_changed": had_estimate, "change_reasons": [reason]}


def n_conclusions_changed(computed: ComputedVersion) -> int:
    """Results whose conclusion flags are set, plus withdrawn estimates (see `_dropped`)."""
    return (sum(1 for r in computed.results if r["conclusion_changed"])
            + sum(1 for d in computed.dropped if d["conclusion_changed"]))


def _input_digest(snapshot: dict, spec) -> str:
    """Hash of everything one analysis depends on (its outcome's evidence and its settings): equal
    digests across versions mean identical results, so their plots are reused, not redrawn."""
    import hashlib
    import json

    items = [v for v in snapshot.values() if v["outcome"] == spec.outcome]
    text = json.dumps({"spec": spec.to_dict(), "evidence": items}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _titles(config) -> dict[str, str]:
    return {o.name: o.label for o in config.outcomes}


def render_plots(computed: ComputedVersion, config, reports_dir: Path, db_path: Path | None = None) -> list[str]:
    """Forest plot for every analysis (subgroup panels for split analyses), funnel and living-history
    plots for each primary analysis. Paths (relative to reports_dir) are set on the result dicts.
    Analyses whose inputs did not change since the previous version keep that version's plots."""
    from living_review.reports.plots import cumulative_plot, forest_plot, funnel_plot

    reports_dir = Path(reports_dir)
    base = plot_folder(computed)
    titles = _titles(config)
    written: list[str] = []
    history_by_id: dict[str, list[dict]] = {}
    if db_path is not None and computed.version > 1:
        from warehouse.db import connect
        from warehouse.pooling import history

        with connect(db_path) as con:
            for r in computed.results:
                if r["analysis"] == "primary" and not r.get("subgroup_var"):
                    history_by_id[r["analysis_id"]] = history(con, r["analysis_id"])
    groups: dict[str, list[dict]] = {}
    for r in computed.results:
        groups.setdefault(r["analysis_id"], []).append(r)
    for analysis_id, results in groups.items():
        first = results[0]
        reuse = [r.get("_reuse_plots") for r in results]
        if all(reuse) and all((reports_dir / p).exists() for u in reuse for p in u.values() if p):
            for r, u in zip(results, reuse):  # same inputs as the previous version: same plots
                r.update(u)
            continue
        slug = analysis_id.replace(":", "-")
        label = titles.get(first["outcome"], first["outcome"])
        what = "primary analysis" if first["analysis"] == "primary" else f"sensitivity analysis: {first['analysis']}"
        try:
            if first.get("subgroup_var"):
                overall = next((r for r in computed.results if r["analysis_id"] == f"{first['outcome']}:primary"
                                and not r.get("subgroup_var")), None)
                if overall is None:
                    continue
                paths = forest_plot(overall, reports_dir / base / f"{slug}-forest", subgroups=results,
                                    title=f"{label}: by {first['subgroup_var']} (evidence version {computed.version})")
            else:
                paths = forest_plot(first, reports_dir / base / f"{slug}-forest",
                                    title=f"{label}: {what} (evidence version {computed.version})")
            rel = str((base / f"{slug}-forest.png").as_posix())
            for r in results:
                r["forest_plot"] = rel
            written += [str(p) for p in paths.values()]
            if first["analysis"] == "primary" and not first.get("subgroup_var"):
                paths = funnel_plot(first, reports_dir / base / f"{slug}-funnel", extras=first.get("extras"),
                                    title=f"{label}: funnel plot")
                first["funnel_plot"] = str((base / f"{slug}-funnel.png").as_posix())
                written += [str(p) for p in paths.values()]
                hist = [h for h in history_by_id.get(analysis_id, []) if h["evidence_version"] < computed.version]
                hist.append({"evidence_version": computed.version, "created_at": time.strftime("%Y-%m-%d"),
                             **{f: first.get(f) for f in ("k", "estimate", "ci_lb", "ci_ub", "pi_lb", "pi_ub")}})
                paths = cumulative_plot(hist, reports_dir / base / f"{slug}-history", measure=first["measure"],
                                        title=f"{label}: pooled estimate across evidence versions")
                first["cumulative_plot"] = str((base / f"{slug}-history.png").as_posix())
                written += [str(p) for p in paths.values()]
        except Exception:  # noqa: BLE001 - a plot must never lose the numbers
            log.exception("plot for %s failed", analysis_id)
    return written


def plot_folder(computed: ComputedVersion) -> Path:
    """Where a computed version's plots go (relative to reports_dir). The evidence fingerprint is part
    of the name: two refreshes racing for the same version number with different evidence never
    draw into the same files; with the same evidence they draw the same plots."""
    return Path("plots") / f"v{computed.version}-{computed.fingerprint[:8]}"


def discard_plots(computed: ComputedVersion, reports_dir: Path, db_path: Path) -> None:
    """After losing the race to store: remove this attempt's plots, unless a stored version uses them."""
    import shutil

    from warehouse.db import connect

    folder = plot_folder(computed).as_posix() + "/"
    with connect(db_path) as con:
        used = con.execute("SELECT count(*) FROM pooled_results WHERE starts_with(forest_plot, ?) "
                           "OR starts_with(funnel_plot, ?) OR starts_with(cumulative_plot, ?)",
                           [folder, folder, folder]).fetchall()[0][0]
    if not used:
        shutil.rmtree(Path(reports_dir) / folder, ignore_errors=True)


class ConcurrentRefresh(RuntimeError):
    """Another process stored a version while this one computed; the caller recomputes."""


def store_version(db_path: Path, computed: ComputedVersion, trigger: str) -> None:
    """One transaction: the evidence_versions row and every pooled result (nothing overwritten)."""
    from warehouse.db import transaction
    from warehouse.pooling import insert_results, insert_version

    with transaction(db_path) as con:
        latest = con.execute("SELECT coalesce(max(version), 0) FROM evidence_versions").fetchall()[0][0]
        if latest != computed.version - 1:
            raise ConcurrentRefresh(f"evidence version {latest} appeared while computing {computed.version}")
        insert_version(con, computed.version, computed.fingerprint, trigger, computed.diff, computed.evidence,
                       computed.plan, n_conclusions_changed(computed))
        insert_results(con, computed.results)


def summarise(computed: ComputedVersion, previous_version: int | None, trigger: str) -> dict[str, Any]:
    from models.living import diff_summary

    results = [{f: r.get(f) for f in SUMMARY_FIELDS} for r in computed.results]
    return {
        "changed": True,
        "evidence_version": computed.version,
        "previous_version": previous_version,
        "fingerprint": computed.fingerprint,
        "trigger": trigger,
        "diff": computed.diff,
        "diff_summary": diff_summary(computed.diff),
        "analyses": len(results),
        "conclusions_changed": n_conclusions_changed(computed),
        "dropped": computed.dropped,
        "results": results,
        "message": f"evidence version {computed.version}: {diff_summary(computed.diff)}",
    }


def unchanged_summary(state: EvidenceState) -> dict[str, Any]:
    if state.previous is None:
        return {"changed": False, "evidence_version": None, "fingerprint": state.fingerprint, "analyses": 0,
                "conclusions_changed": 0, "results": [], "message": NO_DATA_MESSAGE}
    return {"changed": False, "evidence_version": int(state.previous["version"]), "fingerprint": state.fingerprint,
            "analyses": 0, "conclusions_changed": 0, "results": [],
            "message": f"evidence unchanged since version {state.previous['version']}: nothing written"}


def refresh_pooled_effects_now(db_path=None, config=None, *, trigger: str = "manual", plots: bool = True,
                               reports_dir=None) -> dict[str, Any]:
    """Recompute and store every declared analysis if the evidence changed; return a JSON-able summary.

    `{"changed": False, ...}` when the fingerprint matches the last version (or there is no outcome
    data at all: `message` says "no outcome data entered yet: nothing is pooled").
    """
    db_path, config, settings = _resolve(db_path, config)
    reports_dir = Path(reports_dir) if reports_dir else settings.reports_dir
    t0 = time.perf_counter()
    for attempt in range(3):
        state = gather_evidence(db_path, config)
        if not state.changed or (state.previous is None and not state.rows):
            return unchanged_summary(state)
        computed = compute_version(state)
        written = render_plots(computed, config, reports_dir, db_path) if plots else []
        try:
            store_version(db_path, computed, trigger)
        except ConcurrentRefresh:
            log.info("another refresh stored a version first; recomputing (attempt %d)", attempt + 1)
            if plots:
                discard_plots(computed, reports_dir, db_path)
            continue
        summary = summarise(computed, state.previous["version"] if state.previous else None, trigger)
        summary["plots"] = written
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        return summary
    raise RuntimeError("could not store a pooled-effects version: other refreshes kept writing first")


# ---------------------------------------------------------------------------------------------
# Telling maintainers


def notify_conclusions_changed(summary: dict | None, origin: str, *, db_path=None, settings=None,
                               url: str | None = None, logger: logging.Logger | logging.LoggerAdapter | None = None
                               ) -> bool:
    """Send "pooled conclusions changed" for the evidence version a refresh just stored, if any of its
    conclusions changed; True when sent.

    `summary`: what the refresh returned (`refresh_pooled_effects_now`'s, or the flow's compact one);
    `origin`: what stored the version, for the message ("refresh-pooled-effects run ...", "extraction
    of ... saved by ann in the reviewers' workspace"). The old and new results are read back from the
    warehouse (`db_path`, default the settings'). Nothing happens (False) when LIVING_REVIEW_NOTIFY_BLOCK
    is unset, the evidence was unchanged, the version is the first, or no conclusion flag is set.
    Never raises: a problem is a warning on `logger`.
    """
    from living_review import notify

    logger = logger or log
    try:
        if settings is None:
            from living_review.settings import get_settings

            settings = get_settings()
        if not settings.notify_block or not isinstance(summary, dict):
            return False
        version, previous = summary.get("evidence_version"), summary.get("previous_version")
        if not summary.get("changed") or not summary.get("conclusions_changed") or version is None or previous is None:
            return False
        from warehouse.db import connect
        from warehouse.pooling import results_of_version

        with connect(Path(db_path) if db_path else settings.db_path) as con:
            old = results_of_version(con, int(previous), studies=False)
            new = results_of_version(con, int(version), studies=False)
        message = notify.conclusions_changed_by(origin, int(version), int(previous), old, new, url,
                                                dropped=summary.get("dropped"))
        return message is not None and notify.send(message, settings, logger)
    except Exception as exc:  # noqa: BLE001 - a notification never fails what it reports on
        logger.warning("notification not sent: %s", notify.failure_reason(exc))
        return False


# ---------------------------------------------------------------------------------------------
# "What's new" (Cochrane living-review style)


def format_effect(r: dict, pi: bool = True) -> str:
    """'OR 1.52 (1.10 to 2.10); PI ...' on the natural scale for ratio measures; `pi=False` leaves the
    prediction interval out. A missing measure or CI is left out, not an error."""
    if r.get("estimate") is None:
        return "not estimable"
    p = "exp_" if r.get("exp_estimate") is not None else ""
    text = f"{r.get('measure') or 'estimate'} {r[p + 'estimate']:.2f}"
    if r.get(p + "ci_lb") is not None and r.get(p + "ci_ub") is not None:
        text += f" ({r[p + 'ci_lb']:.2f} to {r[p + 'ci_ub']:.2f})"
    if pi and r.get(p + "pi_lb") is not None:
        text += f"; PI {r[p + 'pi_lb']:.2f} to {r[p + 'pi_ub']:.2f}"
    return text


def whats_new_markdown(summary: dict[str, Any], review_title: str = "") -> str:
    """Markdown for the Prefect artifact and `living-review pool`: a What's new table (date, event,
    description) as Cochrane living reviews publish per version, then the pooled results."""
    date = time.strftime("%d %B %Y")
    lines = [f"# What's new{': ' + review_title if review_title else ''}", ""]
    if not summary.get("changed"):
        event = "No outcome data" if summary.get("evidence_version") is None else "No new evidence"
        lines += ["| Date | Event | Description |", "|---|---|---|",
                  f"| {date} | {event} | {summary.get('message', '')} |", ""]
        return "\n".join(lines)
    n_changed = summary.get("conclusions_changed", 0)
    first = summary.get("previous_version") is None
    diff = summary.get("diff") or {}
    new_studies = bool(diff.get("studies_added"))
    withdrawn_only = bool(diff.get("removed")) and not diff.get("added") and not diff.get("corrected")
    if first:
        event = "First pooled analysis"
    elif n_changed:
        event = ("New studies added and conclusions have changed" if new_studies
                 else "Data withdrawn and conclusions have changed" if withdrawn_only
                 else "Evidence amended and conclusions have changed")
    else:
        event = ("New studies added but conclusions have not changed" if new_studies
                 else "Data withdrawn; conclusions have not changed" if withdrawn_only
                 else "Amended; conclusions have not changed")
    desc = summary.get("diff_summary", "")
    primaries = [r for r in summary["results"] if r["analysis"] == "primary" and not r.get("subgroup")]
    dropped = summary.get("dropped") or []
    flagged = [r for r in summary["results"] if r["conclusion_changed"] and not first]
    flagged += [d for d in dropped if d.get("conclusion_changed")]
    if flagged:
        desc += ". Changed: " + "; ".join(f"{r['analysis_id']}{' [' + r['subgroup'] + ']' if r['subgroup'] else ''} "
                                          f"({', '.join(x for x in r['change_reasons'] if not x.startswith('k '))})"
                                          for r in flagged)
    lines += ["| Date | Event | Description |", "|---|---|---|",
              f"| {date} | {event} (evidence version {summary['evidence_version']}) | {desc.replace('|', '/')} |", ""]
    lines += ["## Pooled results", "",
              "| Outcome | Analysis | k | Effect (95% CI; 95% PI) | I² | p | Change since last version |",
              "|---|---|---|---|---|---|---|"]
    for r in summary["results"]:
        name = r["analysis"] + (f" / {r['subgroup']}" if r.get("subgroup") else "")
        i2 = f"{r['I2']:.0f}%" if r.get("I2") is not None else ""
        p = "" if r.get("pval") is None else ("< 0.001" if r["pval"] < 0.001 else f"{r['pval']:.3f}")
        change = "; ".join(r.get("change_reasons") or []) or "none"
        flag = "**conclusion changed**: " if r["conclusion_changed"] and not first else ""
        lines.append(f"| {r['outcome']} | {name} ({r['method']}) | {r['k']} | {format_effect(r)} | {i2} | {p} | "
                     f"{flag}{change} |")
    for d in dropped:  # withdrawn since the previous version: a row saying so, with what it was
        name = (d.get("analysis") or d["analysis_id"]) + (f" / {d['subgroup']}" if d.get("subgroup") else "")
        flag = "**conclusion changed**: " if d.get("conclusion_changed") else ""
        change = "; ".join(d.get("change_reasons") or []) + (f" (was {d['before']}, k = {d.get('k_before')})"
                                                              if d.get("conclusion_changed") else "")
        lines.append(f"| {d.get('outcome') or d['analysis_id'].split(':')[0]} | {name} (no estimate) | 0 | "
                     f"not estimable | | | {flag}{change.replace('|', '/')} |")
    notes = [f"- {r['analysis_id']}{' [' + r['subgroup'] + ']' if r.get('subgroup') else ''}: {r['note']}"
             for r in summary["results"] if r.get("note")]
    if notes:
        lines += ["", "Notes:", *notes]
    if not primaries:
        lines += ["", NO_DATA_MESSAGE if first else
                  f"no outcome data remain (withdrawn since evidence version {summary['previous_version']}): "
                  "nothing is pooled"]
    return "\n".join(lines)
