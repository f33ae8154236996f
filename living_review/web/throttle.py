"""Login rate limiting: failed logins counted per reviewer name and per client address, durably.

Rule (a sliding window): an attempt is refused, before its password is checked, when the name it
names already has `max_failures` failed logins younger than `window_seconds`, or the client address
has `max_failures_per_address` of them. The answer says when to come back: the moment enough of
those failures have aged out of the window (`retry_after`, seconds).

Counting is a reservation: the check and the recording of the attempt as a failure happen in one
`BEGIN IMMEDIATE` SQLite transaction, before the password is checked. So N simultaneous attempts,
from any number of threads or worker processes, get at most the limit's worth of password checks
(a check-then-record scheme would let all N through while the counter still read 4). A correct
password then clears the name's counter and withdraws the attempt's own address row; the address's
earlier failures stay, or an attacker could reset the address counter by logging in to an account
of their own between guesses. An attempt whose check failed on the server (the warehouse was
unreachable) is withdrawn too (`cancel`): it was not the reviewer's failure.

Where the counters live: in the SQLite file beside the warehouse that already holds the web app's
own state, the decision journal and the published session epochs (`decision_journal.sqlite3`,
journal.py and warehouse/workspace.py), not in DuckDB. A refused attempt must cost next to nothing:
no scrypt, and no turn of the warehouse lock, which waits out a nightly append batch (up to a
second) and is shared by every reviewer's page loads, so hammering /login must not be able to queue
work there. SQLite gives the durability (WAL, synchronous=FULL: a restart does not lift a limit)
and the cross-process atomicity (file locks) with the standard library; the journal already relies
on both. Each failed login is still written to the warehouse's audit log by the login route
(`login.failed`); refused attempts are only logged, for the same reason.

The client address is the socket's peer (`request.client.host`). Behind a reverse proxy every
reviewer shares the proxy's address; forwarded-for headers are not trusted, because any client
can set them.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

SCHEMA = """
CREATE TABLE IF NOT EXISTS login_failures (
    attempt  TEXT NOT NULL,                                   -- one id per login attempt (two rows)
    scope    TEXT NOT NULL CHECK (scope IN ('name', 'address')),
    key      TEXT NOT NULL,                                   -- the reviewer name as typed (trimmed), or the address
    at       REAL NOT NULL                                    -- seconds since the epoch, from the throttle's clock
);
CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures (scope, key, at);
CREATE INDEX IF NOT EXISTS login_failures_at ON login_failures (at);
CREATE INDEX IF NOT EXISTS login_failures_attempt ON login_failures (attempt);
"""
MAX_KEY = 200


def name_key(name: str | None) -> str:
    """The counter key of a typed reviewer name: trimmed, as `workspace.authenticate` trims it."""
    return (name or "").strip()[:MAX_KEY]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds until an attempt would be allowed (refused attempts only)
    scope: str | None = None  # what refused it: "name" or "address"
    attempt: str | None = None  # the reservation of an allowed attempt


class LoginThrottle:
    def __init__(self, path: Path, *, max_failures: int = 5, max_failures_per_address: int = 5,
                 window_seconds: float = 900, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.max_failures = int(max_failures)
        self.max_failures_per_address = int(max_failures_per_address)
        self.window = float(window_seconds)
        self.clock = clock  # injectable: tests move time instead of sleeping
        self._lock = threading.Lock()
        self._sql = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._sql.execute("PRAGMA journal_mode=WAL")
        self._sql.execute("PRAGMA synchronous=FULL")
        self._sql.executescript(SCHEMA)

    def _transaction(self, fn):
        with self._lock:
            self._sql.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._sql)
                self._sql.execute("COMMIT")
                return result
            except BaseException:
                if self._sql.in_transaction:
                    self._sql.execute("ROLLBACK")
                raise

    def begin(self, name: str | None, address: str | None) -> Verdict:
        """Refuse the attempt, or let it through and count it as a failure until `succeeded`/`cancel`."""
        now = float(self.clock())
        cutoff = now - self.window
        keys = (("name", name_key(name), self.max_failures),
                ("address", (address or "unknown")[:MAX_KEY], self.max_failures_per_address))

        def work(sql):
            sql.execute("DELETE FROM login_failures WHERE at <= ?", (cutoff,))  # aged out: forget them
            refused: tuple[float, str] | None = None
            for scope, key, limit in keys:
                times = [t for (t,) in sql.execute(
                    "SELECT at FROM login_failures WHERE scope = ? AND key = ? AND at > ? ORDER BY at",
                    (scope, key, cutoff))]
                if len(times) >= limit:
                    # allowed again once all but limit-1 of them have aged out
                    wait = times[len(times) - limit] + self.window - now
                    if refused is None or wait > refused[0]:
                        refused = (wait, scope)
            if refused is not None:
                return Verdict(False, max(1, math.ceil(refused[0] - 1e-9)), refused[1])
            attempt = uuid.uuid4().hex
            sql.executemany("INSERT INTO login_failures (attempt, scope, key, at) VALUES (?, ?, ?, ?)",
                            [(attempt, scope, key, now) for scope, key, _ in keys])
            return Verdict(True, attempt=attempt)

        return self._transaction(work)

    def succeeded(self, verdict: Verdict, name: str) -> None:
        """The password was right: clear the name's failures and withdraw this attempt's address row."""
        def work(sql):
            sql.execute("DELETE FROM login_failures WHERE scope = 'name' AND key = ?", (name_key(name),))
            sql.execute("DELETE FROM login_failures WHERE attempt = ?", (verdict.attempt,))

        self._transaction(work)

    def cancel(self, verdict: Verdict) -> None:
        """Withdraw an attempt that could not be checked (a server fault is not the reviewer's failure)."""
        if verdict.attempt:
            self._transaction(lambda sql: sql.execute("DELETE FROM login_failures WHERE attempt = ?",
                                                      (verdict.attempt,)))

    def failures(self, scope: str, key: str) -> int:
        """Failures of one name or address inside the window now."""
        with self._lock:
            return int(self._sql.execute(
                "SELECT count(*) FROM login_failures WHERE scope = ? AND key = ? AND at > ?",
                (scope, key, float(self.clock()) - self.window)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._sql.close()
