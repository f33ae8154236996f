"""Load the meta-analysis reference cases and their CSVs from tests/fixtures/meta."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

META_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "meta"


@lru_cache(maxsize=None)
def load_cases(name: str) -> tuple:
    return tuple(json.loads((META_FIXTURES / name).read_text(encoding="utf-8")))


@lru_cache(maxsize=None)
def load_table(dataset: str) -> dict:
    """Read with the command's own reader, so the tests take the path `validate-meta` takes."""
    from living_review.commands.validate_meta import read_table

    return read_table(META_FIXTURES / f"{dataset}.csv")
