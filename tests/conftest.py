"""Shared fixtures: an isolated LIVING_REVIEW_HOME per test and the Prefect test harness on demand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@pytest.fixture
def lr_home(tmp_path, monkeypatch) -> Path:
    """A fresh LIVING_REVIEW_HOME for one test."""
    home = tmp_path / "lr-home"
    home.mkdir()
    monkeypatch.setenv("LIVING_REVIEW_HOME", str(home))
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(REPO / "review.toml"))
    monkeypatch.delenv("NCBI_API_KEY", raising=False)
    return home


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for the whole session (start-up ~20 s), only for tests that ask."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
