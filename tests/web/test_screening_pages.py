"""Screening through the app: escaping, blinding, queue, idempotent posts, undo, the full-text stage."""

from __future__ import annotations

import dataclasses

from support.web_app import decide, fixture_records, login, make_client, nightly_append, record_ids_by_pmid

SCRIPT_TITLE = '<script>alert("title")</script> Attachment & <b>security</b> in "foster" care'
SCRIPT_ABSTRACT = ("BACKGROUND: <img src=x onerror=alert(1)> secure attachment & sensitivity.\n"
                   "METHODS: randomised; a < b && c > d; </p><script>alert('abstract')</script>")


def _current(ws, record_id, reviewer, stage="title_abstract"):
    from warehouse import screening
    from warehouse.db import connect

    ws.flush()
    with connect(ws.db) as con:
        return screening.reviewer_decision(con, record_id, reviewer, stage)


def _rows(ws, sql, params=()):
    from warehouse.db import connect

    ws.flush()
    with connect(ws.db) as con:
        return con.execute(sql, list(params)).fetchall()


def _screen_record_id(client, stage="title_abstract", **params):
    import re

    r = client.get("/screen", params={"stage": stage, **params})
    assert r.status_code == 200
    m = re.search(r'data-record-id="(\d+)"', r.text)
    return (int(m.group(1)) if m else None), r.text


def test_titles_and_abstracts_are_escaped_and_still_highlighted(ws):
    # a real fixture record re-keyed under a new PMID with hostile markup in title and abstract
    hostile = dataclasses.replace(fixture_records()[0], pmid="99000001", doi=None, title=SCRIPT_TITLE,
                                  abstract=SCRIPT_ABSTRACT)
    nightly_append(ws.db, {"attachment-rcts": [hostile]})
    rid = record_ids_by_pmid(ws.db)["99000001"]
    c = make_client(ws.app)
    login(c, "ann")
    shown, html = _screen_record_id(c, record=rid)
    assert shown == rid
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>security" not in html
    assert "&lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "a &lt; b &amp;&amp; c &gt; d" in html
    assert "<mark>Attachment</mark>" in html and "<mark>randomised</mark>" in html
    assert '<strong class="section">BACKGROUND</strong>' in html  # structured sections kept
    # a highlight term never splits an entity: "lt"/"amp" are not terms, but check none is broken
    assert "&<mark>" not in html


def test_record_page_shows_the_bibliographic_details(ws):
    c = make_client(ws.app)
    login(c, "ann")
    rid = ws.ids["23435529"]
    shown, html = _screen_record_id(c, record=rid)
    assert shown == rid
    assert "https://pubmed.ncbi.nlm.nih.gov/23435529/" in html
    assert "https://doi.org/10.1200/JCO.2012.44.6112" in html
    assert "Fossella F" in html and 'class="chip mesh"' in html and "Randomized Controlled Trial" in html
    assert html.count('<strong class="section">') >= 3
    for key in ("<kbd>i</kbd>", "<kbd>e</kbd>", "<kbd>m</kbd>", "<kbd>u</kbd>", "<kbd>n</kbd>"):
        assert key in html


def test_double_submit_with_the_same_token_is_recorded_once(ws):
    c = make_client(ws.app)
    csrf = login(c, "ann")
    rid = ws.ids["9997"]
    first = decide(c, csrf, rid, "exclude", reason="not an RCT", token="tok-abc")
    second = decide(c, csrf, rid, "exclude", reason="not an RCT", token="tok-abc")
    assert first.status_code == second.status_code == 303
    rows = _rows(ws, "SELECT reviewer, decision, reason, client_token FROM screening_decisions")
    assert rows == [("ann", "exclude", "not an RCT", "tok-abc")]
    j1 = c.post("/decide", data={"csrf_token": csrf, "record_id": rid, "stage": "title_abstract", "decision": "maybe",
                                 "client_token": "tok-json"}, headers={"accept": "application/json"})
    j2 = c.post("/decide", data={"csrf_token": csrf, "record_id": rid, "stage": "title_abstract", "decision": "maybe",
                                 "client_token": "tok-json"}, headers={"accept": "application/json"})
    assert j1.json()["journal_id"] == j2.json()["journal_id"]
    assert _rows(ws, "SELECT count(*) FROM screening_decisions WHERE client_token = 'tok-json'") == [(1,)]


def test_blind_dual_screening_and_queue(ws):
    ann, bob, lee = make_client(ws.app), make_client(ws.app), make_client(ws.app)
    ca, cb = login(ann, "ann"), login(bob, "bob")
    login(lee, "lee")
    rid, _ = _screen_record_id(ann)
    assert decide(ann, ca, rid, "include").status_code == 303
    # ann's queue no longer offers it; bob still sees it and nothing of ann's decision
    next_for_ann, _ = _screen_record_id(ann)
    assert next_for_ann != rid
    shown, html = _screen_record_id(bob, record=rid)
    assert shown == rid
    import re

    assert not re.search(r"\bann\b", html) and 'class="d include"' not in html
    # bob disagrees: a conflict, not settled; the lead's third view does not queue it (2 reviewers done)
    decide(bob, cb, rid, "exclude", reason="wrong population")
    from warehouse import workspace
    from warehouse.db import connect

    ws.flush()
    with connect(ws.db) as con:
        assert rid not in workspace.queue(con, "lee", "title_abstract", 2)
        assert rid in workspace.queue(con, "lee", "title_abstract", 3)  # a third reviewer when 3 are required
    conflicts = lee.get("/conflicts").text
    assert f'id="conflict-title_abstract-{rid}"' in conflicts and "wrong population" in conflicts


def test_undo_retracts_only_my_own_last_decision(ws):
    ann, bob = make_client(ws.app), make_client(ws.app)
    ca, cb = login(ann, "ann"), login(bob, "bob")
    rid = ws.ids["9997"]
    decide(ann, ca, rid, "include")
    r = bob.post("/undo", data={"csrf_token": cb, "stage": "title_abstract"})
    assert r.status_code == 200 and "Nothing to undo" in r.text
    assert _current(ws, rid, "ann") == ("include", None)
    r = ann.post("/undo", data={"csrf_token": ca, "stage": "title_abstract"}, follow_redirects=False)
    assert r.status_code == 303 and f"record={rid}" in r.headers["location"]
    assert _current(ws, rid, "ann") is None
    shown, html = _screen_record_id(ann, record=rid)
    assert shown == rid and "undone" in html
    decisions = _rows(ws, "SELECT reviewer, decision FROM screening_decisions ORDER BY decision_id")
    assert decisions == [("ann", "include"), ("ann", "retract")]  # appended, never overwritten


def test_an_over_long_client_token_is_refused_everywhere_not_cut(ws):
    c = make_client(ws.app)
    csrf = login(c, "ann")
    rid = ws.ids["9997"]
    long_token = "x" * 101
    r = c.post("/decide", data={"csrf_token": csrf, "record_id": rid, "stage": "title_abstract",
                                "decision": "include", "client_token": long_token})
    assert r.status_code == 400 and "client_token is too long" in r.text
    decide(c, csrf, rid, "include")
    r = c.post("/undo", data={"csrf_token": csrf, "stage": "title_abstract", "client_token": long_token})
    assert r.status_code == 400 and "client_token is too long" in r.text
    assert _current(ws, rid, "ann") == ("include", None)  # nothing undone by the refused request


def test_every_decision_carries_stage_reason_time_and_model_version(ws, monkeypatch):
    from living_review.web import integrations

    monkeypatch.setattr(integrations, "model_version", lambda con: "tfidf-lr@2026-11-28")
    c = make_client(ws.app)
    csrf = login(c, "ann")
    decide(c, csrf, ws.ids["9997"], "exclude", reason="not an RCT", token="t1")
    (row,) = _rows(ws, "SELECT reviewer, stage, decision, reason, model_version, created_at IS NOT NULL "
                          "FROM screening_decisions")
    assert row == ("ann", "title_abstract", "exclude", "not an RCT", "tfidf-lr@2026-11-28", True)


def test_full_text_stage_follows_title_abstract_includes(ws):
    ann, bob = make_client(ws.app), make_client(ws.app)
    ca, cb = login(ann, "ann"), login(bob, "bob")
    rid = ws.ids["23435529"]
    r = decide(ann, ca, rid, "include", stage="full_text")
    assert r.status_code == 400 and "title/abstract" in r.text
    assert _screen_record_id(ann, stage="full_text")[0] is None
    decide(ann, ca, rid, "include")
    decide(bob, cb, rid, "include")
    assert _screen_record_id(ann, stage="full_text")[0] == rid
    assert decide(ann, ca, rid, "include", stage="full_text").status_code == 303
    assert _current(ws, rid, "ann", "full_text") == ("include", None)


def test_queue_follows_ranking_scores_when_present(ws, monkeypatch):
    from living_review.web import integrations

    ordered = sorted(ws.ids.values())
    scores = {rid: float(i) for i, rid in enumerate(ordered)}  # highest record_id = most relevant
    monkeypatch.setattr(integrations, "ranking_scores", lambda con: (scores, "m1"))
    c = make_client(ws.app)
    login(c, "ann")
    shown, html = _screen_record_id(c)
    assert shown == ordered[-1] and "ranked by relevance" in html
    assert _screen_record_id(c, skip=1)[0] == ordered[-2]


def test_a_failing_ranker_degrades_to_recency(ws, monkeypatch):
    import types

    from living_review.web import integrations

    def boom(con):
        raise RuntimeError("model file corrupt")

    fake = types.SimpleNamespace(latest_scores=boom, latest_recall_estimate=boom)
    monkeypatch.setattr(integrations, "_module", lambda name: fake if name == "warehouse.ranking" else None)
    c = make_client(ws.app)
    login(c, "ann")
    shown, html = _screen_record_id(c)
    assert shown is not None and "newest first" in html
    assert c.get("/progress").status_code == 200


def test_real_ranking_state_orders_the_queue_stamps_decisions_and_shows_recall(ws):
    from warehouse import ranking
    from warehouse.db import transaction

    ordered = sorted(ws.ids.values())
    with transaction(ws.db) as con:
        ranking.store_model_version(con, "tfidf-test-1", "trained", "fp", {}, {}, {}, 10, 2, None)
        ranking.store_scores(con, "tfidf-test-1", [(rid, 0.1 * i, 0.1 * i, len(ordered) - i, False)
                                                   for i, rid in enumerate(ordered)])
        ranking.store_recall_estimate(con, {"recall_lower_bound": 0.93, "confidence": 0.95, "target": 0.95,
                                            "records_to_screen_for_target": 12, "screened": 40, "unscreened": 6,
                                            "found": 5, "audited": 10, "audit_hits": 0}, "tfidf-test-1", None)
    c = make_client(ws.app)
    csrf = login(c, "ann")
    shown, html = _screen_record_id(c)
    assert shown == ordered[-1] and "ranked by relevance" in html  # highest score first
    decide(c, csrf, shown, "include", token="ranked-1")
    assert _rows(ws, "SELECT model_version FROM screening_decisions WHERE client_token = 'ranked-1'") == [("tfidf-test-1",)]
    progress = c.get("/progress").text
    assert "≥ 93.0%" in progress and "95% confidence" in progress and "tfidf-test-1" in progress


def test_a_third_reviewer_cannot_turn_an_agreement_into_a_conflict(ws):
    """ann, bob and cat are all shown the same record; cat's vote, the third, is refused and cat is told."""
    import re

    from support.web_app import add_reviewer
    from warehouse import screening, workspace
    from warehouse.db import connect

    add_reviewer(ws.db, "cat")
    clients = {n: make_client(ws.app) for n in ("ann", "bob", "cat")}
    csrf = {n: login(c, n) for n, c in clients.items()}
    shown = {n: _screen_record_id(c)[0] for n, c in clients.items()}
    rid = shown["ann"]
    assert rid is not None and shown == {"ann": rid, "bob": rid, "cat": rid}  # opened at the same time
    reason = ws.config.screening.exclusion_reasons[0]
    assert decide(clients["ann"], csrf["ann"], rid, "include").status_code == 303
    assert decide(clients["bob"], csrf["bob"], rid, "include").status_code == 303
    assert decide(clients["cat"], csrf["cat"], rid, "exclude", reason=reason, token="tok-cat").status_code == 303
    next_for_cat, html = _screen_record_id(clients["cat"])
    assert re.search(r'class="flash error"[^>]*>Your exclude on record \d+ was not recorded: .*already has the 2 '
                     r"reviewers&#39; decisions it needs", html), html
    assert next_for_cat != rid  # and the queue does not offer it again
    assert "was not recorded" not in clients["cat"].get("/screen").text  # told once
    ws.flush()
    with connect(ws.db) as con:
        assert screening.current_decisions(con, "title_abstract", rid)[rid] == {"ann": ("include", None),
                                                                              "bob": ("include", None)}
        assert screening.settled_decisions(con, "title_abstract", 2)[rid] == "include"
        assert rid not in {c.record_id for c in screening.conflicts(con, "title_abstract", 2)}
        assert rid in workspace.eligible_for_stage(con, "full_text", 2)  # still goes on to full text
        refused = con.execute("SELECT actor, entity_id, CAST(detail AS VARCHAR) FROM audit_log "
                              "WHERE action = 'decision.refused'").fetchall()
    assert len(refused) == 1 and refused[0][:2] == ("cat", str(rid)) and "tok-cat" in refused[0][2]
    # and with both votes in, bob's own vote is final too (tests/web/test_final_votes.py)
    assert decide(clients["bob"], csrf["bob"], rid, "maybe").status_code == 303
    assert _current(ws, rid, "bob") == ("include", None)


def test_a_third_full_text_vote_is_refused_at_once(ws):
    """Full-text decisions go straight to the warehouse: the refusal is the answer to the post."""
    from support.web_app import add_reviewer, include_at_full_text

    add_reviewer(ws.db, "cat")
    rid = ws.ids["9997"]
    include_at_full_text(ws.db, rid)  # ann and bob: include at both stages
    cat = make_client(ws.app)
    csrf = login(cat, "cat")
    assert _screen_record_id(cat, stage="full_text")[0] != rid  # not offered: it has its two reviewers
    r = decide(cat, csrf, rid, "include", stage="full_text")
    assert r.status_code == 303 and "stage=full_text" in r.headers["location"]
    page = cat.get(r.headers["location"]).text
    assert "Your include on record" in page and "was not recorded" in page
    j = cat.post("/decide", data={"csrf_token": csrf, "record_id": rid, "stage": "full_text", "decision": "maybe"},
                 headers={"accept": "application/json"})
    assert j.status_code == 409 and "already has the 2 reviewers" in j.json()["error"]
    assert _rows(ws, "SELECT count(*) FROM screening_decisions WHERE reviewer = 'cat'") == [(0,)]
    assert _rows(ws, "SELECT count(*) FROM audit_log WHERE action = 'decision.refused' AND actor = 'cat'") == [(2,)]
