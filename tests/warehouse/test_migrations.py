"""Numbered migrations: from empty, from a previous schema, refusals, atomicity."""

from __future__ import annotations

import shutil

import pytest

from warehouse import db
from warehouse.db import MIGRATIONS_DIR, MigrationError

CORE_TABLES = {"nightly_runs", "search_runs", "search_windows", "records", "record_versions", "record_sources",
               "record_aliases", "audit_log", "screening_decisions", "search_hits", "schema_migrations"}


def _tables(path) -> set[str]:
    return {r[0] for r in db.fetchall(path, "SELECT table_name FROM information_schema.tables")}


def test_from_empty_applies_every_file_in_order_once(tmp_path):
    path = tmp_path / "w.duckdb"
    expected = [v for v, _, _ in db.migration_files()]
    assert expected[0] == 1 and expected == sorted(expected)
    assert db.migrate(path) == expected
    assert CORE_TABLES <= _tables(path)
    rows = db.fetchall(path, "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == expected
    assert rows[0][1] == "core" and len(rows[0][2]) == 64 and rows[0][3] is not None
    assert db.migrate(path) == []  # idempotent
    assert db.fetchall(path, "SELECT count(*) FROM schema_migrations") == [(len(expected),)]


def test_from_previous_schema_keeps_data_and_applies_the_rest(tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    shutil.copy(MIGRATIONS_DIR / "001_core.sql", folder)
    path = tmp_path / "w.duckdb"
    assert db.migrate(path, folder) == [1]
    with db.transaction(path) as con:
        con.execute("INSERT INTO records (pmid, title, content_hash) VALUES ('9997', 'Magnetic studies', 'h')")
    # a later release ships more migrations (the real ones, plus a test one numbered after them)
    for f in MIGRATIONS_DIR.glob("*.sql"):
        shutil.copy(f, folder)
    last = max(v for v, _, _ in db.migration_files(folder))
    (folder / f"{last + 1:03d}_extra.sql").write_text(
        "ALTER TABLE records ADD COLUMN flagged BOOLEAN DEFAULT FALSE;\nCREATE TABLE extra (x INTEGER);\n")
    applied = db.migrate(path, folder)
    assert applied == [v for v, _, _ in db.migration_files(folder) if v > 1]
    assert db.fetchall(path, "SELECT pmid, title, flagged FROM records") == [("9997", "Magnetic studies", False)]
    with db.connect(path) as con:
        assert db.schema_version(con) == last + 1


def test_up_to_builds_a_previous_schema(tmp_path):
    path = tmp_path / "w.duckdb"
    assert db.migrate(path, up_to=1) == [1]
    with db.connect(path) as con:
        assert db.schema_version(con) == 1


def test_edited_applied_migration_is_refused(tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    shutil.copy(MIGRATIONS_DIR / "001_core.sql", folder)
    path = tmp_path / "w.duckdb"
    db.migrate(path, folder)
    core = folder / "001_core.sql"
    core.write_text(core.read_text() + "\nCREATE TABLE sneaky (x INTEGER);\n")
    (folder / "002_next.sql").write_text("CREATE TABLE next_one (x INTEGER);\n")
    with pytest.raises(MigrationError, match="001_core.sql was changed after it was applied"):
        db.migrate(path, folder)
    assert "sneaky" not in _tables(path) and "next_one" not in _tables(path)


def test_failing_migration_leaves_nothing_behind(tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    shutil.copy(MIGRATIONS_DIR / "001_core.sql", folder)
    (folder / "002_broken.sql").write_text("CREATE TABLE half_done (x INTEGER);\nCREATE TABLE oops (;\n")
    path = tmp_path / "w.duckdb"
    with pytest.raises(MigrationError, match="002_broken.sql failed"):
        db.migrate(path, folder)
    assert "half_done" not in _tables(path)
    assert db.fetchall(path, "SELECT version FROM schema_migrations") == [(1,)]
    (folder / "002_broken.sql").write_text("CREATE TABLE half_done (x INTEGER);\n")  # fixed: applies now
    assert db.migrate(path, folder) == [2]


@pytest.mark.parametrize("names, message", [
    (["001_a.sql", "001_b.sql"], "two migrations numbered 001"),
    (["001_a.sql", "2_b.sql"], "must look like NNN_name.sql"),
])
def test_bad_migration_folders_are_refused(tmp_path, names, message):
    for name in names:
        (tmp_path / name).write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=message):
        db.migrate(tmp_path / "w.duckdb", tmp_path)


def test_numeric_order_not_discovery_order(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "010_later.sql").write_text("ALTER TABLE t ADD COLUMN b INTEGER;\n")
    (folder / "002_first.sql").write_text("CREATE TABLE t (a INTEGER);\n")
    assert db.migrate(tmp_path / "w.duckdb", folder) == [2, 10]
