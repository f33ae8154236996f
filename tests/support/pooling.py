"""Helpers for the pooling tests: a review.toml copy that knows the invented trials' interventions."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "pooling"
SYNTHETIC_INTERVENTIONS = ["video_feedback", "home_visiting", "group"]


def synthetic_config_path(tmp_path: Path, outcomes: list[str] | None = None, sensitivity: bool = True) -> Path:
    """review.toml with the synthetic intervention names added to the vocabulary and, optionally,
    only the named [[outcomes]] kept and no sensitivity analyses (fewer plots: faster tests)."""
    text = (REPO / "review.toml").read_text(encoding="utf-8")
    new, n = re.subn(r'(interventions\s*=\s*\[)', r'\1 ' + ", ".join(f'"{x}"' for x in SYNTHETIC_INTERVENTIONS) + ",",
                     text, count=1)
    assert n == 1, "review.toml has no interventions list"
    if outcomes is not None:
        blocks = re.split(r"(?m)^(?=\[\[outcomes\]\]|\[pooling\])", new)
        kept = []
        for b in blocks:
            m = re.search(r'^\[\[outcomes\]\]\s*\nname\s*=\s*"([^"]+)"', b)
            if m and m.group(1) not in outcomes:
                continue
            kept.append(b)
        new = "".join(kept)
    if not sensitivity:
        new, n = re.subn(r"(?ms)^sensitivity\s*=\s*\[.*?^\]", "sensitivity = []", new, count=1)
        assert n == 1, "review.toml has no [pooling] sensitivity list"
    path = tmp_path / "review-synthetic.toml"
    path.write_text(new, encoding="utf-8")
    return path


def synthetic_config(tmp_path: Path, outcomes: list[str] | None = None, sensitivity: bool = True):
    from living_review.config import load_review

    return load_review(synthetic_config_path(tmp_path, outcomes, sensitivity))


def reference_case(case_id: str) -> dict:
    cases = json.loads((FIXTURES / "reference_cases_synthetic.json").read_text())
    return next(c for c in cases if c["id"] == case_id)


def read_rows(name: str) -> list[dict]:
    with (FIXTURES / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def import_synthetic(db_path: Path, config) -> dict:
    """Import the invented trials' rows for the outcomes `config` declares."""
    from living_review.commands.import_outcomes import import_files

    names = {o.name for o in config.outcomes}
    source = FIXTURES / "synthetic_outcomes.csv"
    lines = source.read_text().splitlines()
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.split(",")[1] in names]
    if len(kept) != len(lines):
        source = Path(db_path).with_name("synthetic_outcomes_subset.csv")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("\n".join(kept) + "\n")
    return import_files(source, FIXTURES / "synthetic_studies.csv", db_path=db_path, config=config, entered_by="test")
