"""Short-lived DuckDB connections behind a cross-process file lock, and numbered SQL migrations.

DuckDB lets one process hold a database file at a time: a second process cannot even open it
read-only while the first is connected (stack notes §6). So every user (nightly flow, web app,
CLI) opens the file only for the duration of one unit of work, while holding an exclusive
`flock` on `<db>.lock`. Waiting happens in the kernel (`flock` blocks), not in a polling loop: a
poller keeps missing the short gaps between a busy writer's batches and starves.

Fairness: a plain `flock` does not queue waiters, so a writer that releases and immediately
re-locks (the nightly append, batch after batch) can win again and again. A second lock file,
`<db>.lock.queue`, is a turnstile: a contender holds it while it waits for the main lock, so a
releasing holder that wants the lock back has to queue behind the waiter. Contenders therefore
alternate, which keeps a reviewer's single-row decision under a batch's duration.

`flock` locks belong to an open file description, so two threads of one process that each open
the lock file also exclude each other; a thread that re-enters (a `connect` inside its own
`transaction`) gets the connection it already holds instead of deadlocking on itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{3})_([A-Za-z0-9_\-]+)\.sql$")


# A process that opens the file without our lock (a DuckDB CLI, a stray script) makes
# duckdb.connect fail at once; we retry with backoff for this long before giving up.
FOREIGN_LOCK_TIMEOUT_S = 15.0


class WarehouseBusyError(RuntimeError):
    """The database file is held by a process that does not use the warehouse lock."""


class MigrationError(RuntimeError):
    """A migration cannot be applied safely (edited after it was applied, duplicate number, SQL error)."""


# Per-thread record of databases this thread already holds: {resolved path: [connection, depth, in_txn]}.
_held = threading.local()


def _held_map() -> dict[str, list[Any]]:
    m = getattr(_held, "m", None)
    if m is None:
        m = _held.m = {}
    return m


def lock_path(db_path: str | os.PathLike) -> Path:
    """The lock file that guards `db_path` (`<db>.lock`)."""
    p = Path(db_path)
    return p.with_name(p.name + ".lock")


@contextmanager
def _file_lock(db_path: Path) -> Iterator[None]:
    """Exclusive flock on `<db>.lock`, queued fairly through the `<db>.lock.queue` turnstile."""
    main_path = lock_path(db_path)
    queue_path = main_path.with_name(main_path.name + ".queue")
    queue_fd = os.open(queue_path, os.O_RDWR | os.O_CREAT, 0o644)
    main_fd = -1
    try:
        fcntl.flock(queue_fd, fcntl.LOCK_EX)  # blocking kernel wait, releases the GIL
        try:
            main_fd = os.open(main_path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(main_fd, fcntl.LOCK_EX)
        finally:
            fcntl.flock(queue_fd, fcntl.LOCK_UN)
            os.close(queue_fd)
            queue_fd = -1
        yield
    finally:
        if queue_fd >= 0:
            os.close(queue_fd)
        if main_fd >= 0:
            fcntl.flock(main_fd, fcntl.LOCK_UN)
            os.close(main_fd)


@contextmanager
def connect(db_path: str | os.PathLike) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection held only for this block, under the database's lock (autocommit)."""
    path = Path(db_path).expanduser().resolve()
    key = str(path)
    held = _held_map()
    if key in held:  # re-entry from the same thread: reuse, never self-deadlock
        entry = held[key]
        entry[1] += 1
        try:
            yield entry[0]
        finally:
            entry[1] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(path):
        con = _open_duckdb(key)
        held[key] = [con, 1, False]
        try:
            yield con
        finally:
            del held[key]
            con.close()


def _open_duckdb(key: str) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + FOREIGN_LOCK_TIMEOUT_S
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(key)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                raise WarehouseBusyError(
                    f"{key} is held by another process that does not use {lock_path(key).name} "
                    f"(gave up after {FOREIGN_LOCK_TIMEOUT_S:.0f} s): {exc}") from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)
            continue
        # Every stored time is UTC: DuckDB's current_timestamp would otherwise be cast to the server's
        # local time, while the web journal and Python code write UTC, and histories sort by these times.
        con.execute("SET TimeZone = 'UTC'")
        return con


@contextmanager
def transaction(db_path: str | os.PathLike) -> Iterator[duckdb.DuckDBPyConnection]:
    """One BEGIN…COMMIT under the lock; ROLLBACK and re-raise on any error.

    Nested inside another `transaction` of the same thread it joins the outer one (the outer
    block decides commit or rollback).
    """
    with connect(db_path) as con:
        entry = _held_map()[str(Path(db_path).expanduser().resolve())]
        if entry[2]:
            yield con
            return
        con.execute("BEGIN TRANSACTION")
        entry[2] = True
        try:
            yield con
        except BaseException:
            entry[2] = False
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # the transaction may already be aborted; the error that matters is re-raised
            raise
        else:
            entry[2] = False
            con.execute("COMMIT")


def fetchall(db_path: str | os.PathLike, sql: str, params: Sequence[Any] | dict | None = None) -> list[tuple]:
    """Run one read query under the lock and return all rows (the connection is closed after)."""
    with connect(db_path) as con:
        return con.execute(sql, params or []).fetchall()


def fetch_df(db_path: str | os.PathLike, sql: str, params: Sequence[Any] | dict | None = None):
    """Run one read query under the lock and return a pandas DataFrame."""
    with connect(db_path) as con:
        return con.execute(sql, params or []).df()


# ---------------------------------------------------------------------------------------------
# migrations


def migration_files(migrations_dir: str | os.PathLike | None = None) -> list[tuple[int, str, Path]]:
    """`(version, name, path)` for every `NNN_name.sql`, in numeric order; duplicate numbers refused."""
    folder = Path(migrations_dir) if migrations_dir else MIGRATIONS_DIR
    found: dict[int, tuple[int, str, Path]] = {}
    for f in sorted(folder.glob("*.sql")):
        m = _MIGRATION_NAME.match(f.name)
        if not m:
            raise MigrationError(f"migration file name must look like NNN_name.sql: {f.name}")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"two migrations numbered {version:03d}: {found[version][2].name} and {f.name}")
        found[version] = (version, m.group(2), f)
    return [found[v] for v in sorted(found)]


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL,
    checksum VARCHAR NOT NULL,
    applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp
)
"""


def migrate(
    db_path: str | os.PathLike,
    migrations_dir: str | os.PathLike | None = None,
    up_to: int | None = None,
) -> list[int]:
    """Apply pending migrations in order, one transaction each; return the versions applied now.

    Idempotent. Refuses (MigrationError) when an applied migration's file has changed since, so
    two databases with the same version number always have the same schema. `up_to` stops at a
    given version (tests use it to build a database at a previous schema).
    """
    files = migration_files(migrations_dir)
    applied_now: list[int] = []
    with connect(db_path) as con:
        con.execute(_BOOKKEEPING)
        applied = {v: (n, c) for v, n, c in con.execute(
            "SELECT version, name, checksum FROM schema_migrations").fetchall()}
        for version, name, path in files:
            text = path.read_text(encoding="utf-8")
            checksum = _checksum(text)
            if version in applied:
                if applied[version][1] != checksum:
                    raise MigrationError(
                        f"migration {path.name} was changed after it was applied to {db_path} "
                        f"(checksum {applied[version][1][:12]} recorded, {checksum[:12]} now); "
                        "add a new numbered migration instead of editing an applied one")
                continue
            if up_to is not None and version > up_to:
                break
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(text)
                con.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
                            [version, name, checksum])
            except duckdb.Error as exc:
                con.execute("ROLLBACK")
                raise MigrationError(f"migration {path.name} failed: {exc}") from exc
            con.execute("COMMIT")
            applied_now.append(version)
    return applied_now


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """Highest applied migration number (0 for an empty database)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'").fetchall()[0][0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]
