"""The run's story for maintainers: one markdown artifact per nightly run."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from models.summary import render_run_summary


@task(name="publish-run-summary")
def publish_run_summary(summary: dict) -> str:
    markdown = render_run_summary(summary)
    create_markdown_artifact(key="nightly-summary", markdown=markdown, description="What the nightly run found")
    return markdown
