"""The refresh-pooled-effects flow under a temporary Prefect API, on the invented trials (tests only)."""

from __future__ import annotations

import asyncio

from support.pooling import import_synthetic, synthetic_config, synthetic_config_path


def _artifact_markdown(key: str) -> str | None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def fetch():
        async with get_client() as client:
            arts = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            # other tests' flows publish under the same key in this shared harness: take the newest
            return max(arts, key=lambda a: a.created).data if arts else None

    return asyncio.run(fetch())


def test_flow_pools_plots_publishes_whats_new_then_does_nothing(prefect_harness, lr_home, tmp_path, monkeypatch):
    from flows.pool import refresh_pooled_effects
    from living_review.settings import get_settings

    # one outcome, no sensitivity analyses: fewer plots keep this test cheap
    config_path = synthetic_config_path(tmp_path, outcomes=["secure"], sensitivity=False)
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config_path))
    settings = get_settings()
    import_synthetic(settings.db_path, synthetic_config(tmp_path, outcomes=["secure"], sensitivity=False))

    first = refresh_pooled_effects()
    assert first["changed"] and first["evidence_version"] == 1 and first["trigger"] == "nightly"
    assert [p["analysis_id"] for p in first["primary"]] == ["secure:primary"]
    assert 1.3 < first["primary"][0]["exp_estimate"] < 1.4  # invented data; exact value checked in warehouse tests
    (plots,) = (settings.reports_dir / "plots").glob("v1-*")  # v<N>-<evidence fingerprint>
    for name in ("secure-primary-forest", "secure-primary-funnel", "secure-primary-history",
                 "secure-primary-by-intervention-forest"):
        assert (plots / f"{name}.png").stat().st_size > 0 and (plots / f"{name}.svg").exists()
    markdown = _artifact_markdown("pooled-effects-whats-new")
    assert markdown and "| Date | Event | Description |" in markdown and "First pooled analysis" in markdown

    again = refresh_pooled_effects()
    assert again["changed"] is False and again["evidence_version"] == 1
    assert "unchanged" in again["message"]
