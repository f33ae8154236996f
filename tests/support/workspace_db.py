"""A small warehouse for screening/workspace tests: real migrations plus a few records.

Uses warehouse.db.migrate when the core migration exists; until then (parallel development) it
creates just the two core tables these tests touch, with the columns the shared contract fixes.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

_FALLBACK_DDL = """
CREATE SEQUENCE IF NOT EXISTS record_seq START 1;
CREATE SEQUENCE IF NOT EXISTS decision_seq START 1;
CREATE TABLE IF NOT EXISTS records (
    record_id BIGINT PRIMARY KEY DEFAULT nextval('record_seq'),
    pmid VARCHAR UNIQUE NOT NULL, doi VARCHAR, title VARCHAR, abstract VARCHAR, journal VARCHAR,
    year INTEGER, authors VARCHAR[], mesh VARCHAR[], publication_types VARCHAR[], language VARCHAR,
    keywords VARCHAR[], comments_corrections JSON, history JSON, title_key VARCHAR, content_hash VARCHAR,
    version INTEGER DEFAULT 1, first_seen_run BIGINT, last_updated_run BIGINT,
    created_at TIMESTAMP DEFAULT current_timestamp, updated_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS screening_decisions (
    decision_id BIGINT PRIMARY KEY DEFAULT nextval('decision_seq'),
    record_id BIGINT NOT NULL, reviewer VARCHAR NOT NULL,
    stage VARCHAR NOT NULL CHECK (stage IN ('title_abstract','full_text')),
    decision VARCHAR NOT NULL CHECK (decision IN ('include','exclude','maybe','retract')),
    reason VARCHAR, note VARCHAR, model_version VARCHAR, client_token VARCHAR UNIQUE,
    is_resolution BOOLEAN NOT NULL DEFAULT FALSE, created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
"""

REPO = Path(__file__).resolve().parents[2]


def core_migration_available() -> bool:
    return (REPO / "warehouse" / "migrations" / "001_core.sql").exists() and (REPO / "warehouse" / "db.py").exists()


def make_warehouse(db_path: Path) -> Path:
    """Create a migrated warehouse at db_path."""
    if core_migration_available():
        from warehouse.db import migrate

        migrate(db_path)
    else:
        con = duckdb.connect(str(db_path))
        try:
            con.execute(_FALLBACK_DDL)
        finally:
            con.close()
    return db_path


def insert_plain_records(con, rows: list[dict]) -> list[int]:
    """Insert records given as dicts (pmid, title, abstract, ...) directly; returns record_ids."""
    ids = []
    for r in rows:
        cols = [c for c in ("pmid", "title", "abstract", "journal", "year", "authors", "mesh", "publication_types", "doi") if c in r]
        got = con.execute(
            f"INSERT INTO records ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) RETURNING record_id",
            [r[c] for c in cols],
        ).fetchall()
        ids.append(int(got[0][0]))
    return ids
