"""How the flows are run and shipped: the nightly schedule has one home (prefect.yaml; review.toml
cannot declare one that nothing reads), and package data names only files that exist."""

from __future__ import annotations

import tomllib

import pytest
import yaml

from conftest import REPO
from living_review.config import ConfigError, load_review


def test_review_toml_declares_no_schedule_and_prefect_yaml_does():
    raw = tomllib.loads((REPO / "review.toml").read_text(encoding="utf-8"))
    assert raw["strategies"] and all("schedule" not in s for s in raw["strategies"])
    assert all("schedule" not in s.model_dump() for s in load_review(REPO / "review.toml").strategies)
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    (nightly,) = [d for d in spec["deployments"] if d["name"] == "nightly-update"]
    assert [(s["cron"], s["timezone"]) for s in nightly["schedules"]] == [("0 2 * * *", "Europe/London")]


def test_a_per_strategy_schedule_fails_loudly(tmp_path):
    text = (REPO / "review.toml").read_text(encoding="utf-8").replace(
        'overlap_days = 7', 'schedule = "0 4 * * 1"\noverlap_days = 7', 1)
    path = tmp_path / "review.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'attachment-rcts'.*'schedule' is not supported.*prefect\.yaml"):
        load_review(path)


def test_every_package_data_pattern_ships_a_file():
    """A non-editable install has only what package-data names: each pattern must match a file in its
    package (review.toml lives at the repository root and is read from the checkout, see settings)."""
    spec = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = spec["tool"]["setuptools"]["package-data"]
    assert package_data
    for package, patterns in package_data.items():
        for pattern in patterns:
            assert any(p.is_file() for p in (REPO / package).glob(pattern)), f"{package}: {pattern} matches no file"
