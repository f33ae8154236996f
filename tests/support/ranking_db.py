"""Warehouse helpers for the ranking tests: migrated DB, real records from the screening fixture, decisions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "screening" / "antihistamines_80.csv"


def fixture_records(n: int | None = None) -> pd.DataFrame:
    df = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False)
    df["label_included"] = df["label_included"].astype(int)
    return df if n is None else df.head(n)


def load_fixture_into(db_path: Path, n: int | None = None) -> dict[str, int]:
    """Migrate db_path and insert the fixture records (pmid = 'fx' + source record_id); → pmid: record_id."""
    from warehouse.db import migrate, transaction

    migrate(db_path)
    ids = {}
    with transaction(db_path) as con:
        for row in fixture_records(n).itertuples():
            pmid = f"fx{row.record_id}"
            got = con.execute(
                "INSERT INTO records (pmid, title, abstract, content_hash) VALUES (?, ?, ?, ?) RETURNING record_id",
                [pmid, row.title, row.abstract, f"h-{pmid}"]).fetchall()
            ids[pmid] = int(got[0][0])
    return ids


def decide(con, record_id: int, decision: str, reviewers=("ann", "bob")) -> None:
    """Both reviewers agree (rows inserted directly into the append-only log)."""
    for r in reviewers:
        con.execute("INSERT INTO screening_decisions (record_id, reviewer, stage, decision) VALUES (?, ?, 'title_abstract', ?)",
                    [record_id, r, decision])
