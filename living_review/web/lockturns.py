"""One warehouse turn for many requests: the app's reads and writes share each lock acquisition.

The warehouse lock alternates fairly between contenders (warehouse/db.py), so when the nightly
append holds it for half a second per batch, every separate acquisition by the app costs up to
one batch of waiting. Eight reviewers loading pages would each wait their own turn, one batch
apart. Here a single thread takes the lock on behalf of everything queued, writes journalled
decisions first (read-your-writes), then runs each job in its own transaction on the same
connection, so a busy moment costs one turn, not one per request.

A job is `fn(con) -> result`; it runs inside BEGIN…COMMIT (ROLLBACK and its exception go back to
its caller alone). Code inside a job may call `warehouse.db.connect/transaction` on the same
path: they re-enter this thread's connection.

Timeouts: `run` waits `timeout` seconds for the job's turn. A job still queued then (the lock
held elsewhere all that time) is withdrawn and never runs, and the caller gets `TurnTimeout`:
nothing was saved. A job that has already started holds the lock and is in its transaction, so
`run` waits for it and reports what really happened (its result or its own exception).
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

from warehouse.db import connect, transaction

log = logging.getLogger("living_review.web")
MAX_JOBS_PER_TURN = 64
DEFAULT_TIMEOUT = 300.0  # seconds a caller waits for its job's turn (read when a LockTurns is made)


class TurnTimeout(TimeoutError):
    """The job did not get a turn in time and was withdrawn: it never ran, so nothing was saved."""


class LockTurns:
    def __init__(self, db_path, journal=None, timeout: float | None = None):
        self.db_path = db_path
        self.journal = journal
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self._q: queue.Queue[tuple[Callable[[Any], Any], Future]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def run(self, fn: Callable[[Any], Any], timeout: float | None = None) -> Any:
        """Run fn(con) in the next turn and return its result (or raise its exception).

        If its turn has not come within `timeout` seconds (default `self.timeout`), the job is
        withdrawn before it runs and TurnTimeout is raised; a job already running is waited for.
        """
        fut = self.submit(fn)
        wait = self.timeout if timeout is None else timeout
        try:
            return fut.result(timeout=wait)
        except FutureTimeout:
            if fut.cancel():  # still queued: the turn loop skips it (set_running_or_notify_cancel)
                raise TurnTimeout(f"the warehouse was busy for {wait:g} s, so the request was withdrawn "
                                  f"before it ran: nothing was saved") from None
        # it started before it could be withdrawn: it holds the lock now, and its outcome is the truth
        return fut.result()

    def submit(self, fn: Callable[[Any], Any]) -> Future:
        fut: Future = Future()
        self._ensure_thread()
        self._q.put((fn, fut))
        return fut

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="warehouse-turns", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            batch = [self._q.get()]
            while len(batch) < MAX_JOBS_PER_TURN:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            try:
                self._turn(batch)
            except Exception as exc:  # noqa: BLE001 - could not even open the warehouse
                log.exception("warehouse turn failed")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)

    def _turn(self, batch) -> None:
        with connect(self.db_path) as con:
            if self.journal is not None:
                try:
                    with transaction(self.db_path) as tcon:  # re-enters this thread's connection
                        done = self.journal.append_pending(tcon)
                except Exception:  # noqa: BLE001 - the rows stay journalled; the next turn retries
                    log.exception("writing journalled decisions failed; will retry")
                else:
                    self.journal.mark(done)
            for fn, fut in batch:
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    with transaction(self.db_path) as tcon:
                        result = fn(tcon)
                except BaseException as exc:  # noqa: BLE001 - goes back to its caller alone
                    fut.set_exception(exc)
                else:
                    fut.set_result(result)
            del con
