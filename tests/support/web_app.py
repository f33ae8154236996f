"""Helpers for web workspace tests: a warehouse filled the nightly way, accounts, logged-in clients."""

from __future__ import annotations

import re
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "web"
PASSWORD = "correct horse battery"


def fixture_records():
    """The six real PubMed records in tests/fixtures/web (see its SOURCES.md), in file order."""
    from models.pubmed import iter_records

    out = []
    for f in sorted(FIXTURES.glob("*.xml")):
        out.extend(iter_records(f))
    return out


def nightly_append(db_path, batches: dict[str, list], source: str = "snapshot") -> int:
    """One completed nightly run appending {strategy: records} the way the flow does; returns nightly_id."""
    from warehouse.records import (append_records, finish_nightly_run, finish_search_run, start_nightly_run,
                                   start_search_run)

    nightly = start_nightly_run(db_path, source, flow_run_id=f"flow-{source}")
    for strategy, records in batches.items():
        run = start_search_run(db_path, nightly, strategy, "test query", source, None, None)
        append_records(db_path, run, strategy, records)
        finish_search_run(db_path, run, "completed", len(records), [])
    finish_nightly_run(db_path, nightly, "completed", {"new": sum(len(r) for r in batches.values())})
    return nightly


def add_reviewer(db_path, name: str, role: str = "reviewer", password: str = PASSWORD) -> None:
    from warehouse import workspace
    from warehouse.db import transaction

    with transaction(db_path) as con:
        workspace.add_reviewer(con, name, password, role)


def include_at_full_text(db, record_id, reviewers=("ann", "bob")) -> None:
    """Both reviewers include the record at title/abstract and at full text: it can be extracted."""
    from warehouse import screening
    from warehouse.db import transaction

    with transaction(db) as con:
        for stage in ("title_abstract", "full_text"):
            for who in reviewers:
                screening.append_decision(con, record_id, who, stage, "include")


def record_ids_by_pmid(db_path) -> dict[str, int]:
    from warehouse.db import connect

    with connect(db_path) as con:
        return {p: int(r) for r, p in con.execute("SELECT record_id, pmid FROM records").fetchall()}


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "page has no CSRF token"
    return m.group(1)


def make_client(app):
    from fastapi.testclient import TestClient

    return TestClient(app, raise_server_exceptions=False, follow_redirects=True)


def login(client, name: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token for later posts."""
    page = client.get("/login")
    r = client.post("/login", data={"csrf_token": csrf_of(page.text), "name": name, "password": password,
                                    "next": "/screen"})
    assert r.status_code == 200, r.text
    return csrf_of(r.text)


def decide(client, csrf: str, record_id: int, decision: str, *, stage: str = "title_abstract", reason: str | None = None,
           token: str | None = None):
    data = {"csrf_token": csrf, "record_id": str(record_id), "stage": stage, "decision": decision}
    if reason:
        data["reason"] = reason
    if token:
        data["client_token"] = token
    return client.post("/decide", data=data, follow_redirects=False)


def build_known_warehouse(db_path) -> dict[str, int]:
    """Two nightly updates and settled decisions with hand-countable PRISMA numbers.

    Records r1..r6 are the six fixture records (file order). Update 1: strategy A finds r1-r4,
    strategy B finds r1, r2 again plus r5 (7 hits, 5 new). Update 2: A finds r3 again and r6
    (2 hits, 1 new). Decisions (2 reviewers per record): r1 included at full text; r2 excluded at
    full text ("no attachment outcome"); r3 excluded at title/abstract ("not an RCT"); r4 in
    conflict; r5 excluded by a lead's resolution ("wrong population"); r6 passed title/abstract,
    full text pending. Returns {"r1": record_id, ...}.
    """
    from warehouse import screening
    from warehouse.db import migrate, transaction

    migrate(db_path)
    recs = fixture_records()
    nightly_append(db_path, {"attachment-rcts": recs[:4], "uk-interventions": [recs[0], recs[1], recs[4]]})
    nightly_append(db_path, {"attachment-rcts": [recs[2], recs[5]]})
    by_pmid = record_ids_by_pmid(db_path)
    r = {f"r{i + 1}": by_pmid[rec.pmid] for i, rec in enumerate(recs)}
    plan = [
        ("r1", "title_abstract", [("ann", "include", None), ("bob", "include", None)]),
        ("r1", "full_text", [("ann", "include", None), ("bob", "include", None)]),
        ("r2", "title_abstract", [("ann", "include", None), ("bob", "include", None)]),
        ("r2", "full_text", [("ann", "exclude", "no attachment outcome"), ("bob", "exclude", "no attachment outcome")]),
        ("r3", "title_abstract", [("ann", "exclude", "not an RCT"), ("bob", "exclude", "not an RCT")]),
        ("r4", "title_abstract", [("ann", "include", None), ("bob", "exclude", "wrong comparator")]),
        ("r5", "title_abstract", [("ann", "maybe", None), ("bob", "include", None)]),
        ("r6", "title_abstract", [("ann", "include", None), ("bob", "include", None)]),
    ]
    with transaction(db_path) as con:
        for key, stage, votes in plan:
            for who, decision, reason in votes:
                screening.append_decision(con, r[key], who, stage, decision, reason=reason)
        screening.append_decision(con, r["r5"], "lee", "title_abstract", "exclude", reason="wrong population",
                                  is_resolution=True)
    return r
