"""The per-record page: details, provenance, versions and the append-only decision history, kept blind."""

from __future__ import annotations

import dataclasses
import re


from support.web_app import decide, fixture_records, login, make_client, nightly_append, \
    record_ids_by_pmid

SCRIPT_TITLE = '<script>alert("title")</script> Attachment & <b>security</b> in "foster" care'
SCRIPT_ABSTRACT = ("BACKGROUND: <img src=x onerror=alert(1)> secure attachment & sensitivity.\n"
                   "METHODS: randomised; a < b && c > d; </p><script>alert('abstract')</script>")


def _rows(db, sql, params=()):
    from warehouse.db import connect

    with connect(db) as con:
        return con.execute(sql, list(params)).fetchall()


def _history(html: str) -> str:
    m = re.search(r'<section id="decisions".*?</section>', html, re.S)
    assert m, "page has no decision history"
    return m.group(0)


def _shown_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr id="decision-(\d+)"', _history(html))]


def test_the_lead_sees_every_decision_and_resolution_in_time_order(known_ws):
    app, r, settings = known_ws
    from warehouse import screening
    from warehouse.db import transaction

    with transaction(settings.db_path) as con:  # decided earliest, written last (as a journalled decision can be)
        backdated = screening.append_decision(con, r["r5"], "cy", "title_abstract", "include",
                                              model_version="tfidf-7", created_at="2020-01-01 08:00:00")
    lead = make_client(app)
    login(lead, "lee")
    page = lead.get(f"/records/{r['r5']}")
    assert page.status_code == 200
    expected = [i for i, in _rows(settings.db_path, "SELECT decision_id FROM screening_decisions WHERE record_id = ? "
                                                    "ORDER BY created_at, decision_id", [r["r5"]])]
    assert len(expected) == 4 and expected[0] == backdated
    assert _shown_ids(page.text) == expected  # every row, oldest first
    history = _history(page.text)
    for text in ("ann", "bob", "lee", "cy", "maybe", "wrong population", "resolution", "tfidf-7", "2020-01-01 08:00"):
        assert text in history, text
    assert "Title &amp; abstract" in history


def test_the_page_shows_the_record_where_it_was_found_and_its_versions(known_ws):
    app, r, settings = known_ws
    c = make_client(app)
    login(c, "ann")
    html = c.get(f"/records/{r['r1']}").text
    rec = fixture_records()[0]
    assert rec.title[:40] in html
    assert f"https://pubmed.ncbi.nlm.nih.gov/{rec.pmid}/" in html and f"https://doi.org/{rec.doi}" in html
    assert rec.journal in html and str(rec.year) in html
    found = re.search(r'<section id="sources".*?</section>', html, re.S).group(0)
    assert "attachment-rcts" in found and "uk-interventions" in found  # found by both strategies
    versions = re.search(r'<section id="versions".*?</section>', html, re.S).group(0)
    assert "Version 1" in versions and "current" in versions


def test_a_reviewer_sees_only_their_own_decisions(known_ws):
    app, r, settings = known_ws
    ann, lead = make_client(app), make_client(app)
    login(ann, "ann")
    login(lead, "lee")
    for key in ("r4", "r5"):  # r4: bob disagreed ("wrong comparator"); r5: the lead resolved it
        mine = [i for i, in _rows(settings.db_path, "SELECT decision_id FROM screening_decisions "
                                                    "WHERE record_id = ? AND reviewer = 'ann'", [r[key]])]
        everyone = [i for i, in _rows(settings.db_path, "SELECT decision_id FROM screening_decisions "
                                                        "WHERE record_id = ?", [r[key]])]
        html = ann.get(f"/records/{r[key]}").text
        assert sorted(_shown_ids(html)) == sorted(mine) and len(everyone) > len(mine)
        history = _history(html)
        assert not re.search(r"\b(bob|lee)\b", history)
        assert "wrong comparator" not in history and "wrong population" not in history
        assert ">resolution</span>" not in history and "Blind screening" in history
        assert sorted(_shown_ids(lead.get(f"/records/{r[key]}").text)) == sorted(everyone)


def test_blind_screening_stays_blind_before_and_after_the_second_decision(ws):
    ann, bob = make_client(ws.app), make_client(ws.app)
    ca, cb = login(ann, "ann"), login(bob, "bob")
    rid = ws.ids["9997"]
    assert decide(ann, ca, rid, "exclude", reason="not an RCT").status_code == 303
    before = _history(bob.get(f"/records/{rid}").text)
    assert _shown_ids(before) == [] and "not an RCT" not in before and not re.search(r"\bann\b", before)
    # Deciding does not unblind either: a reviewer could otherwise decide, look, undo and decide again.
    assert decide(bob, cb, rid, "include").status_code == 303
    after = _history(bob.get(f"/records/{rid}").text)
    assert len(_shown_ids(after)) == 1 and "not an RCT" not in after and not re.search(r"\bann\b", after)


def test_titles_abstracts_earlier_versions_and_notes_render_inert(ws):
    hostile = dataclasses.replace(fixture_records()[0], pmid="99000001", doi=None, title=SCRIPT_TITLE,
                                  abstract=SCRIPT_ABSTRACT)
    nightly_append(ws.db, {"attachment-rcts": [hostile]})
    newer = dataclasses.replace(hostile, title='<script>alert("v2")</script> Revised & <i>retitled</i>')
    nightly_append(ws.db, {"attachment-rcts": [newer]})
    rid = record_ids_by_pmid(ws.db)["99000001"]
    c = make_client(ws.app)
    csrf = login(c, "ann")
    r = c.post("/decide", data={"csrf_token": csrf, "record_id": rid, "stage": "title_abstract",
                                "decision": "maybe", "note": "<script>alert('note')</script> ask <b>lee</b>"},
               follow_redirects=False)
    assert r.status_code == 303
    html = c.get(f"/records/{rid}").text
    assert "<script" not in html and "<img src=x" not in html and "<b>" not in html and "<i>retitled" not in html
    assert "&lt;script&gt;alert(&#34;v2&#34;)&lt;/script&gt;" in html  # the current title
    assert "&lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt;" in html  # version 1's title, kept
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "a &lt; b &amp;&amp; c &gt; d" in html
    assert "&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt; ask &lt;b&gt;lee&lt;/b&gt;" in _history(html)
    versions = re.search(r'<section id="versions".*?</section>', html, re.S).group(0)
    assert "Version 2" in versions and "Version 1" in versions and "title" in versions


def test_unknown_or_bad_record_ids_get_an_error_page_not_a_stack_trace(known_ws):
    app, r, _ = known_ws
    anonymous = make_client(app)
    first = anonymous.get(f"/records/{r['r1']}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/login?next=/records/")
    c = make_client(app)
    login(c, "lee")
    missing = c.get("/records/99999999")
    assert missing.status_code == 404 and "There is no record 99999999" in missing.text
    assert "Not found" in missing.text and "Traceback" not in missing.text
    for bad in ("/records/abc", "/records/0", "/records/-1", "/records/" + "9" * 40):
        resp = c.get(bad)
        assert 400 <= resp.status_code < 500, bad
        assert "Traceback" not in resp.text
    assert c.get("/records/99999999", headers={"accept": "application/json"}).json() == {
        "error": "There is no record 99999999."}


def test_decisions_still_in_the_journal_are_shown(ws, monkeypatch):
    journal = ws.app.state.journal
    journal.background = False  # nothing writes the journal to the warehouse behind the test's back
    ann, bob = make_client(ws.app), make_client(ws.app)
    ca = login(ann, "ann")
    login(bob, "bob")
    rid = ws.ids["9997"]

    def post(decision, token, **extra):
        resp = ann.post("/decide", data={"csrf_token": ca, "record_id": rid, "stage": "title_abstract",
                                         "decision": decision, "client_token": token, **extra},
                        headers={"accept": "application/json"})
        assert resp.status_code == 200 and resp.json()["journal_id"] is not None  # journalled, not yet written
        return resp

    post("include", "journal-1")
    assert journal.pending_count() == 1
    html = ann.get(f"/records/{rid}").text  # the page's warehouse turn writes the journal first
    assert journal.pending_count() == 0 and len(_shown_ids(html)) == 1

    def stuck(con):
        raise RuntimeError("warehouse refused the write")

    monkeypatch.setattr(journal, "append_pending", stuck)  # the write keeps failing: rows stay journalled
    post("maybe", "journal-2", note="pending note")
    html = ann.get(f"/records/{rid}").text
    history = _history(html)
    assert journal.pending_count() == 1 and len(_shown_ids(html)) == 1
    assert "pending note" in history and "not yet in the warehouse" in history
    assert "pending note" not in _history(bob.get(f"/records/{rid}").text)  # blind in the journal too


def test_pages_that_list_records_link_to_the_record_page(known_ws):
    app, r, _ = known_ws
    lead, ann = make_client(app), make_client(app)
    login(lead, "lee")
    login(ann, "ann")
    assert f'href="/records/{r["r4"]}"' in lead.get("/conflicts").text
    audit = lead.get("/audit").text
    assert all(f'href="/records/{r[k]}"' in audit for k in ("r1", "r4", "r5"))
    assert f'href="/records/{r["r1"]}"' in ann.get("/extract").text
    assert f'href="/records/{r["r1"]}"' in ann.get(f"/extract/{r['r1']}").text
