"""A nightly-style writer for the two-writers test, run as its own process.

Appends N records in batches through `warehouse.records.append_records`, exactly as the nightly
flow does. The records are the real fixture records re-keyed (new PMIDs, numbered titles, no DOI)
so that each one is new; nothing here pretends to be evidence.

usage: python nightly_writer.py DB_PATH N BATCH FIRST_PMID
Prints "ready" before the first batch and a JSON summary at the end.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.web_app import fixture_records  # noqa: E402


def rekeyed(base, start: int, stop: int, first_pmid: int):
    return [dataclasses.replace(base[i % len(base)], pmid=str(first_pmid + i), doi=None,
                                title=f"{base[i % len(base)].title} [re-keyed copy {i}]")
            for i in range(start, stop)]


def main() -> None:
    from warehouse.records import append_records, finish_nightly_run, finish_search_run, start_nightly_run, start_search_run

    db, n, batch, first_pmid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    base = fixture_records()
    nightly = start_nightly_run(db, "two-writers-test", flow_run_id="two-writers")
    run = start_search_run(db, nightly, "attachment-rcts", "re-keyed fixture records", "two-writers-test", None, None)
    print("ready", flush=True)
    t0 = time.perf_counter()
    started = time.time()
    batch_seconds = []
    new = 0
    for start in range(0, n, batch):
        t = time.perf_counter()
        counts = append_records(db, run, "attachment-rcts", rekeyed(base, start, min(n, start + batch), first_pmid))
        batch_seconds.append(time.perf_counter() - t)
        new += counts.new
    finished = time.time()
    finish_search_run(db, run, "completed", n, [])
    finish_nightly_run(db, nightly, "completed", {"new_records": new})
    print(json.dumps({"new": new, "batches": len(batch_seconds), "seconds": time.perf_counter() - t0,
                      "started": started, "finished": finished, "run_id": run,
                      "batch_max": max(batch_seconds), "batch_mean": sum(batch_seconds) / len(batch_seconds)}),
          flush=True)


if __name__ == "__main__":
    main()
