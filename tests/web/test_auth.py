"""Accounts in the browser: login, logout, CSRF, stale sessions, roles."""

from __future__ import annotations

from support.web_app import PASSWORD, csrf_of, decide, login, make_client


def _decision_count(ws) -> int:
    from warehouse.db import connect

    ws.flush()
    with connect(ws.db) as con:
        return con.execute("SELECT count(*) FROM screening_decisions").fetchall()[0][0]


def test_pages_need_login(ws):
    c = make_client(ws.app)
    for path in ("/screen", "/progress", "/prisma", "/results", "/extract", "/audit"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    assert c.get("/export/records.csv").status_code == 401
    assert c.get("/prisma.svg").status_code == 401


def test_wrong_password_is_refused_without_saying_which_part(ws):
    c = make_client(ws.app)
    page = c.get("/login")
    for name, pw in (("ann", "wrong password"), ("nobody", PASSWORD)):
        r = c.post("/login", data={"csrf_token": csrf_of(page.text), "name": name, "password": pw})
        assert r.status_code == 401
        assert "Unknown reviewer or wrong password." in r.text
    assert c.get("/screen", follow_redirects=False).status_code == 303


def test_login_then_logout(ws):
    c = make_client(ws.app)
    csrf = login(c, "ann")
    page = c.get("/screen")
    assert page.status_code == 200 and "ann" in page.text and 'id="record"' in page.text
    r = c.post("/logout", data={"csrf_token": csrf})
    assert r.status_code == 200 and "Log in" in r.text
    assert c.get("/screen", follow_redirects=False).status_code == 303


def test_logout_ends_the_session_itself_not_only_the_browser_cookie(ws):
    """A copy of the cookie taken before logging out (another tab, a stolen copy) is dead afterwards."""
    rid = sorted(ws.ids.values())[0]
    c = make_client(ws.app)
    csrf = login(c, "ann")
    copied = c.cookies.get("lr_session")
    assert c.post("/logout", data={"csrf_token": csrf}).status_code == 200
    replay = make_client(ws.app)
    replay.cookies.set("lr_session", copied)
    r = replay.get("/screen", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    replay.cookies.set("lr_session", copied)
    assert decide(replay, csrf, rid, "include").status_code == 401  # the form's token was valid: the session is not
    replay.cookies.set("lr_session", copied)
    r = replay.post("/decide", data={"csrf_token": csrf, "record_id": str(rid), "stage": "title_abstract",
                                     "decision": "exclude", "reason": ws.config.screening.exclusion_reasons[0]},
                    headers={"accept": "application/json"})
    assert r.status_code == 401
    assert _decision_count(ws) == 0 and ws.app.state.journal.pending_count() == 0
    # logging in again gives a working session; the copied cookie stays dead
    again = make_client(ws.app)
    csrf2 = login(again, "ann")
    assert decide(again, csrf2, rid, "include").status_code == 303
    replay.cookies.set("lr_session", copied)
    assert replay.get("/screen", follow_redirects=False).status_code == 303
    assert _decision_count(ws) == 1


def test_logout_ends_the_reviewers_sessions_on_every_device(ws):
    """Logging out bumps the reviewer's session epoch, as `reviewer passwd` does: all their sessions end."""
    laptop, tablet, other = make_client(ws.app), make_client(ws.app), make_client(ws.app)
    csrf = login(laptop, "ann")
    login(tablet, "ann")
    login(other, "bob")
    assert laptop.post("/logout", data={"csrf_token": csrf}).status_code == 200
    assert tablet.get("/screen", follow_redirects=False).status_code == 303
    assert other.get("/screen", follow_redirects=False).status_code == 200  # someone else's session is untouched


def test_session_cookie_is_signed_and_httponly(ws):
    c = make_client(ws.app)
    login(c, "ann")
    cookie = c.cookies.get("lr_session")
    assert cookie and "ann" not in cookie  # base64 + signature, not a readable name
    c.cookies.set("lr_session", cookie[:-4] + ("AAAA" if not cookie.endswith("AAAA") else "BBBB"))
    assert c.get("/screen", follow_redirects=False).status_code == 303  # tampered -> logged out
    c2 = make_client(ws.app)
    r = c2.get("/login")
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=lax" in r.headers["set-cookie"].lower()


def test_password_change_ends_existing_sessions(ws):
    from warehouse import workspace
    from warehouse.db import transaction

    c = make_client(ws.app)
    login(c, "ann")
    with transaction(ws.db) as con:
        workspace.set_password(con, "ann", "another long password")
    assert c.get("/screen", follow_redirects=False).status_code == 303


def test_state_changes_need_the_csrf_token(ws):
    c = make_client(ws.app)
    csrf = login(c, "ann")
    rid = next(iter(ws.ids.values()))
    for token in (None, "", "forged-token"):
        data = {"record_id": str(rid), "stage": "title_abstract", "decision": "include"}
        if token is not None:
            data["csrf_token"] = token
        r = c.post("/decide", data=data)
        assert r.status_code == 403
        assert "security token" in r.text
    assert c.post("/undo", data={"stage": "title_abstract"}).status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    assert c.post("/extract/1", data={}).status_code == 403
    assert _decision_count(ws) == 0
    assert decide(c, csrf, rid, "include").status_code == 303
    assert _decision_count(ws) == 1


def test_login_form_itself_needs_csrf(ws):
    c = make_client(ws.app)
    r = c.post("/login", data={"name": "ann", "password": PASSWORD})
    assert r.status_code == 403
    assert c.get("/screen", follow_redirects=False).status_code == 303


def test_open_redirect_after_login_is_refused(ws):
    c = make_client(ws.app)
    page = c.get("/login")
    r = c.post("/login", data={"csrf_token": csrf_of(page.text), "name": "ann", "password": PASSWORD,
                               "next": "//evil.example/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/screen"


def test_reviewer_cannot_use_lead_pages(ws):
    c = make_client(ws.app)
    csrf = login(c, "ann")
    assert c.get("/conflicts").status_code == 403
    assert c.get("/exports").status_code == 403
    for kind in ("records.csv", "records.ris", "decisions.csv"):
        assert c.get(f"/export/{kind}").status_code == 403
    rid = next(iter(ws.ids.values()))
    r = c.post("/conflicts/resolve", data={"csrf_token": csrf, "record_id": str(rid), "stage": "title_abstract",
                                           "decision": "include"})
    assert r.status_code == 403
    assert _decision_count(ws) == 0
    lead = make_client(ws.app)
    login(lead, "lee")
    assert lead.get("/conflicts").status_code == 200


def _post_decision(c, csrf, rid, token):
    return c.post("/decide", data={"csrf_token": csrf, "record_id": str(rid), "stage": "title_abstract",
                                   "decision": "include", "client_token": token},
                  headers={"accept": "application/json"})


def test_password_change_stops_journalled_decisions_of_old_sessions_at_once(ws, monkeypatch, capsys):
    """The journal's fast path (no warehouse lock) must not trust a session that `reviewer passwd` ended."""
    import io
    import sys

    from living_review.cli import main

    c = make_client(ws.app)
    csrf = login(c, "ann")
    rids = sorted(ws.ids.values())
    first = _post_decision(c, csrf, rids[0], "before-passwd")
    assert first.status_code == 200 and first.json()["journal_id"] is not None  # took the journal path
    monkeypatch.setattr(sys, "stdin", io.StringIO("another long password\n"))
    assert main(["reviewer", "passwd", "ann", "--password-stdin"]) == 0
    capsys.readouterr()
    late = _post_decision(c, csrf, rids[1], "after-passwd")
    assert late.status_code == 401 and "log in" in late.json()["error"]
    assert ws.app.state.journal._sql.execute(
        "SELECT count(*) FROM journal WHERE client_token = 'after-passwd'").fetchone() == (0,)
    c2 = make_client(ws.app)
    csrf2 = login(c2, "ann", "another long password")
    again = _post_decision(c2, csrf2, rids[1], "new-session")
    assert again.status_code == 200 and again.json()["journal_id"] is not None  # the new session is fast again
    assert _decision_count(ws) == 2


def test_role_change_ends_old_sessions_on_the_journal_path_too(ws):
    from warehouse import workspace
    from warehouse.db import transaction

    c = make_client(ws.app)
    csrf = login(c, "bob")
    rid = min(ws.ids.values())
    assert _post_decision(c, csrf, rid, "bob-1").status_code == 200
    with transaction(ws.db) as con:
        workspace.set_role(con, "bob", "lead")
    assert _post_decision(c, csrf, rid, "bob-2").status_code == 401
    assert _decision_count(ws) == 1
