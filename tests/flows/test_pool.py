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


def test_flow_that_loses_the_race_to_store_still_publishes_whats_new(prefect_harness, lr_home, tmp_path,
                                                                     monkeypatch):
    """Another refresh (a web save) stores version 1 while this run computes it: the run recomputes
    version 2 and publishes that version's What's new."""
    import flows.pool as flow_module
    from flows.pool import refresh_pooled_effects
    from living_review import pooling
    from living_review.settings import get_settings
    from warehouse.db import transaction
    from warehouse.evidence import save_outcomes

    config_path = synthetic_config_path(tmp_path, outcomes=["secure"], sensitivity=False)
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config_path))
    settings = get_settings()
    config = synthetic_config(tmp_path, outcomes=["secure"], sensitivity=False)
    import_synthetic(settings.db_path, config)
    web = pooling.compute_version(pooling.gather_evidence(settings.db_path, config))  # the web save's version 1

    def racing_store(db_path, computed, trigger):  # the web save commits first, then this run tries
        pooling.store_version(db_path, web, "web")
        with transaction(db_path) as con:  # and a correction lands before the retry
            save_outcomes(con, [{"study_id": "trial-h-2015", "outcome": "secure", "events_int": 17, "n_int": 18,
                                 "events_ctl": 12, "n_ctl": 18}], config)
        pooling.store_version(db_path, computed, trigger)

    monkeypatch.setattr(flow_module, "store_evidence_version", racing_store)
    out = refresh_pooled_effects(plots=False)
    assert out["changed"] and out["evidence_version"] == 2 and out["previous_version"] == 1
    markdown = _artifact_markdown("pooled-effects-whats-new")
    assert markdown and "(evidence version 2)" in markdown and "corrected: trial-h-2015/secure" in markdown
