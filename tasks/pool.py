"""Prefect tasks of the pooling refresh: one step of living_review.pooling each."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from living_review import pooling


@task(name="gather-evidence", cache_policy=NO_CACHE)
def gather_evidence(db_path: Path, config) -> pooling.EvidenceState:
    """Current evidence, declared plan, fingerprint and the last stored version."""
    return pooling.gather_evidence(db_path, config)


@task(name="compute-pooled-effects", cache_policy=NO_CACHE)
def compute_pooled_effects(state: pooling.EvidenceState) -> pooling.ComputedVersion:
    """Every declared analysis, the diff against the last version and the conclusion flags."""
    return pooling.compute_version(state)


@task(name="render-pooling-plots", cache_policy=NO_CACHE)
def render_pooling_plots(computed: pooling.ComputedVersion, config, reports_dir: Path, db_path: Path) -> list[str]:
    """Forest, funnel and living-history plots (PNG + SVG) under reports_dir/plots/v<N>-<fingerprint>/."""
    return pooling.render_plots(computed, config, reports_dir, db_path)


@task(name="store-evidence-version", cache_policy=NO_CACHE)
def store_evidence_version(db_path: Path, computed: pooling.ComputedVersion, trigger: str) -> None:
    """One transaction: the new evidence version and all its pooled results."""
    pooling.store_version(db_path, computed, trigger)


@task(name="publish-whats-new", cache_policy=NO_CACHE)
def publish_whats_new(summary: dict, review_title: str = "") -> str:
    """The Cochrane-style "What's new" table as a Prefect markdown artifact."""
    markdown = pooling.whats_new_markdown(summary, review_title)
    create_markdown_artifact(key="pooled-effects-whats-new", markdown=markdown,
                             description="What changed in the pooled effects")
    return markdown
