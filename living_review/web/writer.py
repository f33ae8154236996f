"""Group commit for reviewers' decisions: concurrent posts share one short transaction.

Every write to the warehouse waits for the cross-process lock, and each locked open/commit/close
costs tens of milliseconds (DuckDB checkpoints when the last connection closes). Serving each
click with its own transaction caps the app at ~10 decisions a second and makes every click queue
behind the others while the nightly append holds the lock. Here one thread owns the app's
decision writes: it takes everything that arrived while it waited for the lock and writes it in
one transaction, so a busy minute costs a few lock turns instead of hundreds.

A job is a function `fn(con) -> result`. It must check before it writes (raise first, then
append), so that a job refused with an expected error leaves the shared transaction clean; an
unexpected error aborts the batch, which is then retried job by job so one bad job cannot sink
the others.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable

from warehouse.db import transaction

log = logging.getLogger("living_review.web")
MAX_BATCH = 200


class GroupWriter:
    def __init__(self, db_path, expected: tuple[type[BaseException], ...]):
        self.db_path = db_path
        self.expected = expected
        self._q: queue.Queue[tuple[Callable[[Any], Any], Future]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, fn: Callable[[Any], Any]) -> Future:
        fut: Future = Future()
        self._ensure_thread()
        self._q.put((fn, fut))
        return fut

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="decision-writer", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            batch = [self._q.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            except Exception as exc:  # noqa: BLE001 - the batch failed as a whole: one by one
                if len(batch) == 1:
                    batch[0][1].set_exception(exc)
                    continue
                log.warning("decision batch of %d failed (%s); retrying one by one", len(batch), exc)
                for job in batch:
                    try:
                        self._write([job])
                    except Exception as one_exc:  # noqa: BLE001
                        job[1].set_exception(one_exc)

    def _write(self, batch) -> None:
        outcomes: list[tuple[Future, Any, BaseException | None]] = []
        with transaction(self.db_path) as con:
            for fn, fut in batch:
                try:
                    outcomes.append((fut, fn(con), None))
                except self.expected as exc:
                    outcomes.append((fut, None, exc))
        for fut, result, exc in outcomes:  # only after COMMIT: a reply means it is stored
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)
