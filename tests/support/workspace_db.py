"""A small warehouse for screening/workspace tests: real migrations plus a few records.

Records are inserted directly (not through the nightly append) so each test states exactly the
rows it needs.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def make_warehouse(db_path: Path) -> Path:
    """Create a migrated warehouse at db_path (all migrations, ours included)."""
    from warehouse.db import migrate

    migrate(db_path)
    return db_path


def insert_plain_records(con, rows: list[dict]) -> list[int]:
    """Insert records given as dicts (pmid, title, abstract, ...) directly; returns record_ids."""
    ids = []
    for r in rows:
        r = {"content_hash": "h-" + str(r["pmid"]), **r}
        cols = [c for c in ("pmid", "title", "abstract", "journal", "year", "authors", "mesh", "publication_types", "doi", "content_hash", "first_seen_run") if c in r]
        got = con.execute(
            f"INSERT INTO records ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) RETURNING record_id",
            [r[c] for c in cols],
        ).fetchall()
        ids.append(int(got[0][0]))
    return ids
