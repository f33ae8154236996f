"""Load the meta-analysis reference cases and their CSVs from tests/fixtures/meta."""

from __future__ import annotations

import csv
import json
from functools import lru_cache
from pathlib import Path

META_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "meta"


@lru_cache(maxsize=None)
def load_cases(name: str) -> tuple:
    return tuple(json.loads((META_FIXTURES / name).read_text(encoding="utf-8")))


@lru_cache(maxsize=None)
def load_table(dataset: str) -> dict:
    with open(META_FIXTURES / f"{dataset}.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {key: [row[key] for row in rows] for key in rows[0]}
