"""Markdown for the nightly run summary (pure, so it is tested without Prefect)."""

from __future__ import annotations


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def describe_recall(recall: dict | None) -> str:
    """One sentence on recall; no bound is claimed until a record of the random audit sample is screened."""
    recall = recall or {}
    if recall.get("recall_lower_bound") is None or not recall.get("audited", 1):
        return "No recall estimate yet: no record of the random audit sample has been screened."
    return (f"Recall ≥ {100 * recall['recall_lower_bound']:.1f}% with {100 * recall.get('confidence', 0.95):.0f}% "
            f"confidence; {recall.get('records_to_screen_for_target', '?')} more records to screen for the target.")


def render_run_summary(summary: dict) -> str:
    lines = [
        f"# Nightly update: {summary.get('status', '?')}",
        "",
        f"Source: `{summary.get('source', '?')}` · new records: **{summary.get('new_records', 0)}**",
        "",
        "| strategy | found | fetched | new | duplicates | updated | warnings |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in summary.get("strategies", []):
        if s.get("failed"):
            lines.append(f"| {_cell(s['strategy'])} | failed: {_cell(s.get('error', ''))} | | | | | |")
            continue
        warnings = "; ".join(s.get("warnings", [])) or "none"
        lines.append(
            f"| {_cell(s['strategy'])} | {s.get('found', 0)} | {s.get('fetched', 0)} | {s.get('new', 0)} | "
            f"{s.get('duplicates', 0) + s.get('already_known', 0)} | {s.get('updated', 0)} | {_cell(warnings)} |"
        )
    ranking = summary.get("ranking") or {}
    lines += ["", "## Ranking", ""]
    if ranking.get("failed"):
        lines.append(f"Ranking failed: {_cell(ranking.get('error'))}")
    else:
        lines.append(describe_recall(ranking.get("recall_estimate")))
        top = ranking.get("top") or []
        if top:
            lines += ["", "| rank | PMID | score | title |", "|---:|---|---:|---|"]
            for i, row in enumerate(top[:10], 1):
                lines.append(f"| {i} | {row.get('pmid', '')} | {float(row.get('score', 0)):.3f} | {_cell(row.get('title', ''))[:120]} |")
    pooling = summary.get("pooling") or {}
    lines += ["", "## Pooled effects", ""]
    if pooling.get("failed"):
        lines.append(f"Pooling failed: {_cell(pooling.get('error'))}")
    else:
        lines.append(_cell(pooling.get("message") or ("evidence changed: new pooled results stored" if pooling.get("changed") else "evidence unchanged: nothing recomputed")))
    return "\n".join(lines) + "\n"
