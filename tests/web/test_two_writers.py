"""One database, two writers: a 50,000-record nightly append in another process while reviewers
post 1,000 decisions over real HTTP to the workspace server.

Afterwards every record and every decision is there exactly once. Decision latency (p50/p99) is
measured and printed for the README, not asserted (timing lives in benchmarks, not tests).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support.live_server import live_server
from support.web_app import PASSWORD, add_reviewer, csrf_of, fixture_records, nightly_append

APPEND_RECORDS = 50_000
APPEND_BATCH = int(os.environ.get("LR_TWO_WRITERS_BATCH", "500"))  # the nightly's fetch batch (settings default)
SEED_RECORDS = 500          # screened by two reviewers each = 1,000 decisions
REVIEWERS = tuple(f"reviewer{i}" for i in range(8))  # eight people screening at once
WRITER = Path(__file__).resolve().parents[1] / "support" / "nightly_writer.py"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _seed(db):
    import dataclasses

    base = fixture_records()
    recs = [dataclasses.replace(base[i % len(base)], pmid=str(30_000_000 + i), doi=None,
                                title=f"{base[i % len(base)].title} [seed copy {i}]") for i in range(SEED_RECORDS)]
    nightly_append(db, {"attachment-rcts": recs}, source="seed")


def _login(base: str, name: str):
    import httpx

    client = httpx.Client(base_url=base, timeout=60, follow_redirects=True)
    page = client.get("/login")
    r = client.post("/login", data={"csrf_token": csrf_of(page.text), "name": name, "password": PASSWORD})
    assert r.status_code == 200
    return client, csrf_of(r.text)


@pytest.mark.slow
def test_nightly_append_and_reviewers_write_the_same_database(lr_home, capsys):
    from living_review.settings import get_settings
    from warehouse.db import connect, migrate

    settings = get_settings()
    settings.ensure_dirs()
    db = settings.db_path
    migrate(db)
    _seed(db)
    for name in REVIEWERS:
        add_reviewer(db, name)
    with connect(db) as con:
        seed_ids = [r[0] for r in con.execute("SELECT record_id FROM records ORDER BY record_id").fetchall()]
    assert len(seed_ids) == SEED_RECORDS

    with live_server(lr_home, lr_home / "server.log") as base:
        clients = {name: _login(base, name) for name in REVIEWERS}
        # every record gets two different reviewers; each reviewer posts one decision at a time
        jobs = [(rid, REVIEWERS[(k + j) % len(REVIEWERS)], f"{REVIEWERS[(k + j) % len(REVIEWERS)]}-{rid}")
                for k, rid in enumerate(seed_ids) for j in (0, 1)]

        def post(job, *, timed=True):
            rid, name, token = job
            client, csrf = clients[name]
            decision = ("include", "exclude", "maybe")[rid % 3]
            data = {"csrf_token": csrf, "record_id": str(rid), "stage": "title_abstract", "decision": decision,
                    "client_token": token}
            if decision == "exclude":
                data["reason"] = "not an RCT"
            t0 = time.perf_counter()
            r = client.post("/decide", data=data, headers={"accept": "application/json"})
            elapsed = time.perf_counter() - t0
            assert r.status_code == 200, r.text
            return time.time(), elapsed, r.json()["journal_id"]

        page_loads = []

        def screen_as(name, mine):
            out = []
            for i, job in enumerate(mine):
                out.append(post(job))
                if i % 10 == 9:  # a reviewer also loads the next record now and then
                    t0 = time.perf_counter()
                    assert clients[name][0].get("/screen").status_code == 200
                    page_loads.append((time.time(), time.perf_counter() - t0))
            return out

        writer = subprocess.Popen([sys.executable, str(WRITER), str(db), str(APPEND_RECORDS), str(APPEND_BATCH),
                                   "10000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "ready"
            with ThreadPoolExecutor(max_workers=len(REVIEWERS)) as pool:
                per_reviewer = {name: [j for j in jobs if j[1] == name] for name in REVIEWERS}
                futures = [pool.submit(screen_as, name, mine) for name, mine in per_reviewer.items()]
                results = [r for f in futures for r in f.result()]
                # a double submit of the first 20 decisions (same client tokens) adds nothing
                repeats = [post(job) for job in jobs[:20]]
            first20 = {job[2]: None for job in jobs[:20]}
            decisions_done = time.time()
            # journalled decisions reach the warehouse at the app's next turns of the lock
            deadline = time.monotonic() + 120
            while True:
                with connect(db) as con:
                    stored = con.execute("SELECT count(*) FROM screening_decisions").fetchall()[0][0]
                if stored >= len(jobs) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            all_stored = time.time()
            append_running_when_stored = writer.poll() is None
            out, err = writer.communicate(timeout=600)
        finally:
            if writer.poll() is None:
                writer.kill()
        assert writer.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])

    by_token = {job[2]: res[2] for job, res in zip([j for name in REVIEWERS for j in jobs if j[1] == name], results)}
    assert [r[2] for r in repeats] == [by_token[t] for t in first20]
    latencies = sorted(r[1] for r in results)
    during = [r for r in results if summary["started"] <= r[0] <= summary["finished"]]
    p50 = statistics.median(latencies)
    p99 = latencies[int(0.99 * (len(latencies) - 1))]

    with connect(db) as con:
        n_records, n_pmids = con.execute("SELECT count(*), count(DISTINCT pmid) FROM records").fetchall()[0]
        appended = con.execute("SELECT count(*), count(DISTINCT pmid) FROM search_hits WHERE run_id = ?",
                               [summary["run_id"]]).fetchall()[0]
        decisions = con.execute(
            "SELECT count(*), count(DISTINCT client_token), count(DISTINCT (record_id, reviewer)) "
            "FROM screening_decisions").fetchall()[0]
        expected_pairs = con.execute(
            "SELECT count(*) FROM screening_decisions WHERE client_token = reviewer || '-' || CAST(record_id AS VARCHAR)"
        ).fetchall()[0][0]
    assert summary["new"] == APPEND_RECORDS
    assert (n_records, n_pmids) == (SEED_RECORDS + APPEND_RECORDS,) * 2
    assert appended == (APPEND_RECORDS, APPEND_RECORDS)
    assert decisions == (len(jobs), len(jobs), len(jobs))
    assert expected_pairs == len(jobs)

    loads = sorted(t for _, t in page_loads)
    report = {
        "decisions": len(results), "decisions_during_append": len(during), "append_records": APPEND_RECORDS,
        "append_batch": APPEND_BATCH, "append_seconds": round(summary["seconds"], 1),
        "append_batch_mean_ms": round(1000 * summary["batch_mean"]), "append_batch_max_ms": round(1000 * summary["batch_max"]),
        "decision_p50_ms": round(1000 * p50), "decision_p99_ms": round(1000 * p99),
        "decision_max_ms": round(1000 * latencies[-1]),
        "decision_during_append_p99_ms": (round(1000 * sorted(r[1] for r in during)[int(0.99 * (len(during) - 1))])
                                          if during else None),
        "page_load_p50_ms": round(1000 * statistics.median(loads)), "page_load_p99_ms": round(1000 * loads[int(0.99 * (len(loads) - 1))]),
        "page_loads": len(loads),
        "last_decision_to_all_in_warehouse_s": round(all_stored - decisions_done, 1),
        "append_still_running_then": append_running_when_stored,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "two_writers.json").write_text(json.dumps(report, indent=2))
    with capsys.disabled():
        print("\ntwo writers:", json.dumps(report))
