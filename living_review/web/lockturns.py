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
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable

from warehouse.db import connect, transaction

log = logging.getLogger("living_review.web")
MAX_JOBS_PER_TURN = 64


class LockTurns:
    def __init__(self, db_path, journal=None):
        self.db_path = db_path
        self.journal = journal
        self._q: queue.Queue[tuple[Callable[[Any], Any], Future]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def run(self, fn: Callable[[Any], Any], timeout: float | None = 300) -> Any:
        """Run fn(con) in the next turn and return its result (or raise its exception)."""
        return self.submit(fn).result(timeout=timeout)

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
