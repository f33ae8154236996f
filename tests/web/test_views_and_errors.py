"""Results, PRISMA, audit, exports through HTTP, and bad requests answered with 4xx (never 500)."""

from __future__ import annotations

import csv
import io


from support.web_app import login, make_client


def test_prisma_page_and_svg_match_the_warehouse(known_ws):
    app, r, _ = known_ws
    c = make_client(app)
    login(c, "ann")
    page = c.get("/prisma")
    assert page.status_code == 200
    assert "Records identified from PubMed (n = 9)" in page.text
    assert "Reports excluded (n = 1)" in page.text and "no attachment outcome (n = 1)" in page.text
    svg = c.get("/prisma.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and "Records screened (n = 5)" in svg.text
    assert "Awaiting screening (n = 1)" in svg.text  # 6 records after de-duplication, 1 not yet settled
    first_update = c.get("/prisma.svg", params={"update": 0})
    assert "Records identified from PubMed (n = 7)" in first_update.text
    assert c.get("/prisma.svg", params={"update": 9}).status_code == 404


def test_prisma_changes_when_a_lead_resolves(known_ws):
    app, r, _ = known_ws
    lead = make_client(app)
    csrf = login(lead, "lee")
    before = lead.get("/prisma.svg").text
    assert "Records excluded (n = 2)" in before and "Awaiting screening (n = 1)" in before
    resp = lead.post("/conflicts/resolve", data={"csrf_token": csrf, "record_id": r["r4"], "stage": "title_abstract",
                                                 "decision": "exclude", "reason": "wrong comparator"})
    assert resp.status_code == 200 and "resolved" in resp.text
    after = lead.get("/prisma.svg").text
    assert "Records excluded (n = 3)" in after and "Awaiting screening" not in after
    assert f'id="conflict-title_abstract-{r["r4"]}"' not in lead.get("/conflicts").text


def test_exports_over_http(known_ws):
    app, r, _ = known_ws
    c = make_client(app)
    login(c, "lee")
    rec = c.get("/export/records.csv")
    assert rec.status_code == 200 and rec.headers["content-type"].startswith("text/csv")
    assert 'attachment; filename="records.csv"' == rec.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(rec.text)))
    assert len(rows) == 6 and {row["title_abstract_reason"] for row in rows} >= {"not an RCT", "wrong population"}
    ris = c.get("/export/records.ris")
    assert ris.status_code == 200 and ris.text.count("TY  - JOUR") == 6
    dec = list(csv.DictReader(io.StringIO(c.get("/export/decisions.csv").text)))
    assert len(dec) == 17 and all(d["reviewer"] and d["created_at"] for d in dec)


def test_progress_audit_and_results_pages(known_ws):
    app, r, settings = known_ws
    lead, ann = make_client(app), make_client(app)
    login(lead, "lee")
    login(ann, "ann")
    prog = ann.get("/progress")
    assert prog.status_code == 200 and "Last nightly run" in prog.text and "completed" in prog.text
    assert "flow-snapshot" in prog.text  # the Prefect flow-run id recorded by the nightly run
    assert "ann · bob" not in prog.text  # kappa per pair: leads only (blind screening)
    assert "ann · bob" in lead.get("/progress").text
    audit_lead = lead.get("/audit").text
    audit_ann = ann.get("/audit").text
    assert "wrong population" in audit_lead  # the lead's resolution
    assert "resolution" not in audit_ann.split("<h2>Events</h2>")[0]  # reviewers see only their own decisions
    res = ann.get("/results")
    assert res.status_code == 200


def _events(html: str) -> str:
    """The audit page's Events table (after its heading)."""
    assert "<h2>Events</h2>" in html
    return html.split("<h2>Events</h2>", 1)[1]


def test_audit_events_that_carry_a_decision_stay_blind_for_reviewers(known_ws):
    app, r, settings = known_ws
    from warehouse import workspace
    from warehouse.db import transaction

    lead, ann, bob = make_client(app), make_client(app), make_client(app)
    csrf = login(lead, "lee")
    login(ann, "ann")
    login(bob, "bob")
    resp = lead.post("/conflicts/resolve", data={"csrf_token": csrf, "record_id": r["r4"], "stage": "title_abstract",
                                                 "decision": "exclude", "reason": "not primary research"})
    assert resp.status_code == 200
    with transaction(settings.db_path) as con:  # as journal.py writes it when the warehouse refuses bob's vote
        workspace.audit(con, "bob", "decision.refused", "record", r["r6"],
                        {"client_token": "bob-secret-token", "error": "no record", "decided_at": "2024-01-01"})

    lead_events = _events(lead.get("/audit").text)
    assert "conflict.resolve" in lead_events and "not primary research" in lead_events  # the lead sees everything
    assert "decision.refused" in lead_events and "bob-secret-token" in lead_events
    for who, client in (("ann", ann), ("bob", bob)):
        html = client.get("/audit").text
        events = _events(html)
        assert "conflict.resolve" not in events and "not primary research" not in events, who
        assert "&#34;decision&#34;" not in events and "exclude" not in events, who
        assert f"<td>{who}</td><td>login</td>" in events, who  # their own, decision-free events stay
        # the record page carries no events, and the resolution row stays hidden there too
        page = client.get(f"/records/{r['r4']}").text
        assert "not primary research" not in page and ">resolution</span>" not in page, who
    assert "bob-secret-token" not in _events(ann.get("/audit").text)  # another reviewer's refused vote
    assert "bob-secret-token" in _events(bob.get("/audit").text)  # their own is theirs to see


def test_report_files_are_served_only_from_the_reports_folder(known_ws):
    app, r, settings = known_ws
    (settings.reports_dir / "forest_secure.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (settings.home / "secret.txt").write_text("no")
    c = make_client(app)
    assert c.get("/reports/forest_secure.png").status_code == 401
    login(c, "ann")
    assert c.get("/reports/forest_secure.png").status_code == 200
    for bad in ("/reports/../secret.txt", "/reports/%2e%2e/secret.txt", "/reports/..%2fsecret.txt",
                "/reports/../web_secret.key", "/reports/nothing.png", "/reports/forest_secure.exe"):
        assert c.get(bad).status_code in (400, 404), bad


BAD_POSTS = [
    ("/decide", {"record_id": "abc", "stage": "title_abstract", "decision": "include"}),
    ("/decide", {"record_id": "-3", "stage": "title_abstract", "decision": "include"}),
    ("/decide", {"record_id": "99999999", "stage": "title_abstract", "decision": "include"}),
    ("/decide", {"record_id": "1", "stage": "abstract", "decision": "include"}),
    ("/decide", {"record_id": "1", "stage": "title_abstract", "decision": "retract"}),
    ("/decide", {"record_id": "1", "stage": "title_abstract", "decision": "exclude"}),
    ("/decide", {"record_id": "1", "stage": "title_abstract", "decision": "exclude", "reason": "I don't like it"}),
    ("/decide", {"record_id": "1" * 40, "stage": "title_abstract", "decision": "include"}),
    ("/decide", {"record_id": "1", "stage": "title_abstract", "decision": "include", "client_token": "x" * 500}),
    ("/decide", {}),
    ("/undo", {"stage": "nope"}),
    ("/conflicts/resolve", {"record_id": "1", "stage": "title_abstract", "decision": "maybe"}),
    ("/extract/abc", {}),
    ("/extract/0", {}),
]
BAD_GETS = ["/screen?stage=x", "/screen?skip=-1", "/screen?skip=zz", "/screen?record=abc", "/extract/abc",
            "/extract/99999999", "/prisma.svg?update=-1", "/prisma.svg?update=a", "/audit?page_no=x", "/nowhere",
            "/static/../app.py"]


def test_bad_requests_get_4xx_with_a_message_never_500(known_ws):
    app, r, _ = known_ws
    c = make_client(app)
    csrf = login(c, "lee")
    for path, data in BAD_POSTS:
        resp = c.post(path, data={"csrf_token": csrf, **data})
        assert 400 <= resp.status_code < 500, (path, data, resp.status_code)
        assert "Traceback" not in resp.text and resp.text.strip(), (path, data)
    for path in BAD_GETS:
        resp = c.get(path)
        assert 400 <= resp.status_code < 500, (path, resp.status_code)
        assert "Traceback" not in resp.text
    # a body that is not a form at all
    resp = c.post("/decide", content=b"\xff\xfe\x00garbage", headers={"content-type": "multipart/form-data; boundary=x"})
    assert 400 <= resp.status_code < 500
    resp = c.post("/decide", data={"csrf_token": csrf, "record_id": "1"}, headers={"accept": "application/json"})
    assert resp.status_code == 400 and "error" in resp.json()


def test_an_unexpected_server_fault_shows_no_stack_trace(known_ws, monkeypatch):
    app, r, _ = known_ws
    from warehouse import workspace

    def broken(*a, **k):
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(workspace, "prisma_counts", broken)
    c = make_client(app)
    login(c, "ann")
    resp = c.get("/prisma")
    assert resp.status_code == 500
    assert "secret internals" not in resp.text and "Traceback" not in resp.text and "ref " in resp.text


def test_failed_logins_are_shown_to_leads_only(known_ws):
    from support.web_app import csrf_of

    app, _, _ = known_ws
    stranger = make_client(app)
    page = stranger.get("/login")
    # a password typed into the name box ends up as the failed login's name
    resp = stranger.post("/login", data={"csrf_token": csrf_of(page.text), "name": "Correct-Horse-9",
                                         "password": "whatever", "next": "/screen"})
    assert resp.status_code == 401
    lead, ann = make_client(app), make_client(app)
    login(lead, "lee")
    login(ann, "ann")
    assert "Correct-Horse-9" in _events(lead.get("/audit").text)
    assert "Correct-Horse-9" not in ann.get("/audit").text
