"""Blind dual screening: once both reviewers have voted on a record, their votes are final.

The attack: bob includes record R; ann includes R too, so R is settled and the PRISMA diagram's
"Awaiting screening" drops (6 -> 5) and R reaches her full-text queue; had bob excluded, it would
be a conflict and nothing would move. Were ann then free to undo and vote again, "vote, look,
undo" would tell her bob's vote. So once a record has its `reviewers_per_record` votes at a stage
(agreeing or not), a change or undo by either reviewer is refused, audited as `decision.refused`
and reported to them; before the partner votes, undo works as before.
"""

from __future__ import annotations

import json
import re

from support.web_app import decide, include_at_full_text, login, make_client

FINAL = r"record {rid} already has both reviewers&#39; decisions at {where}"


def _awaiting(client) -> int:
    svg = client.get("/prisma.svg").text
    m = re.search(r"Awaiting screening \(n = (\d+)\)", svg)
    return int(m.group(1)) if m else 0


def _screen(client, stage="title_abstract", **params):
    r = client.get("/screen", params={"stage": stage, **params})
    assert r.status_code == 200
    m = re.search(r'data-record-id="(\d+)"', r.text)
    return (int(m.group(1)) if m else None), r.text


def _flashes(html: str) -> list[str]:
    return re.findall(r'<p class="flash error"[^>]*>(.*?)</p>', html, re.S)


def _undo(client, csrf, stage="title_abstract"):
    return client.post("/undo", data={"csrf_token": csrf, "stage": stage}, follow_redirects=False)


def _undo_button(html: str) -> str:
    return re.search(r'<button[^>]*id="btn-undo"[^>]*>', html).group(0)


def _rows(ws, sql, params=()):
    from warehouse.db import connect

    ws.flush()
    with connect(ws.db) as con:
        return con.execute(sql, list(params)).fetchall()


def _votes(ws, rid, stage="title_abstract"):
    from warehouse import screening
    from warehouse.db import connect

    ws.flush()
    with connect(ws.db) as con:
        return screening.current_decisions(con, stage, rid).get(rid, {})


def test_vote_look_undo_cannot_toggle_what_ann_sees(ws):
    ann, bob = make_client(ws.app), make_client(ws.app)
    ca, cb = login(ann, "ann"), login(bob, "bob")
    rid, _ = _screen(ann)
    assert decide(bob, cb, rid, "include").status_code == 303
    assert _awaiting(ann) == 6
    assert decide(ann, ca, rid, "include").status_code == 303
    assert _awaiting(ann) == 5  # settled: she may see that, but her include is now final

    # undo (the u key) is refused: nothing written, audited, and ann is told on the page she lands on
    r = _undo(ann, ca)
    assert r.status_code == 303 and f"record={rid}" not in r.headers["location"]
    _, page = _screen(ann)
    told = _flashes(page)
    assert len(told) == 1 and re.search(
        rf"Your undo on record {rid} was not recorded: " + FINAL.format(rid=rid, where="title/abstract"), told[0]), told
    assert "lead" in told[0]
    assert _awaiting(ann) == 5
    # a re-vote (posted by hand: the queue no longer offers R) is refused when written, and she is told
    reason = ws.config.screening.exclusion_reasons[0]
    assert decide(ann, ca, rid, "exclude", reason=reason, token="tok-ann-again").status_code == 303
    _, page = _screen(ann)
    told = _flashes(page)
    assert len(told) == 1 and re.search(
        rf"Your exclude on record {rid} was not recorded: " + FINAL.format(rid=rid, where="title/abstract"), told[0])
    assert _flashes(_screen(ann)[1]) == []  # told once
    assert _awaiting(ann) == 5
    assert _votes(ws, rid) == {"ann": ("include", None), "bob": ("include", None)}
    assert _rows(ws, "SELECT reviewer, decision FROM screening_decisions WHERE record_id = ? ORDER BY decision_id",
                 [rid]) == [("bob", "include"), ("ann", "include")]
    refused = _rows(ws, "SELECT actor, entity_id, CAST(detail AS VARCHAR) FROM audit_log "
                        "WHERE action = 'decision.refused' ORDER BY id")
    assert [(a, e) for a, e, _ in refused] == [("ann", str(rid)), ("ann", str(rid))]
    details = [json.loads(d) for _, _, d in refused]
    assert details[0]["decision"] == "retract" and details[0]["stage"] == "title_abstract"
    assert "both reviewers' decisions" in details[0]["error"]
    assert details[1]["client_token"] == "tok-ann-again" and "both reviewers' decisions" in details[1]["error"]
    # bob is not told anything about ann's attempts (blind), and the screen does not offer ann a doomed undo
    assert _flashes(_screen(bob)[1]) == []
    assert "disabled" in _undo_button(_screen(ann)[1])


def test_a_conflict_is_final_too_and_goes_to_the_lead(ws):
    """ann excludes where bob included: she cannot undo to try include instead."""
    ann, bob, lee = make_client(ws.app), make_client(ws.app), make_client(ws.app)
    ca, cb, cl = login(ann, "ann"), login(bob, "bob"), login(lee, "lee")
    rid, _ = _screen(ann)
    reason = ws.config.screening.exclusion_reasons[0]
    decide(bob, cb, rid, "include")
    decide(ann, ca, rid, "exclude", reason=reason)
    assert _awaiting(ann) == 6  # a conflict: nothing settled
    assert _undo(ann, ca).status_code == 303
    assert any("was not recorded" in f for f in _flashes(_screen(ann)[1]))
    assert _undo(bob, cb).status_code == 303  # bob's own undo is refused just the same
    assert any(re.search(FINAL.format(rid=rid, where="title/abstract"), f) for f in _flashes(_screen(bob)[1]))
    decide(ann, ca, rid, "include")
    assert _awaiting(ann) == 6  # her include did not land: still a conflict
    assert _votes(ws, rid) == {"ann": ("exclude", reason), "bob": ("include", None)}
    assert f'id="conflict-title_abstract-{rid}"' in lee.get("/conflicts").text
    r = lee.post("/conflicts/resolve", data={"csrf_token": cl, "record_id": rid, "stage": "title_abstract",
                                             "decision": "include"})
    assert r.status_code == 200 and "resolved" in r.text
    assert _awaiting(ann) == 5


def test_undo_still_works_before_the_partner_has_voted(ws):
    ann, bob = make_client(ws.app), make_client(ws.app)
    ca, cb = login(ann, "ann"), login(bob, "bob")
    rid, _ = _screen(ann)
    decide(ann, ca, rid, "include")
    assert "disabled" not in _undo_button(_screen(ann)[1])
    r = _undo(ann, ca)
    assert r.status_code == 303 and f"record={rid}" in r.headers["location"]
    assert _votes(ws, rid) == {}
    shown, page = _screen(ann, record=rid)
    assert shown == rid and "undone" in page and _flashes(page) == []
    reason = ws.config.screening.exclusion_reasons[0]
    decide(ann, ca, rid, "exclude", reason=reason)  # and she decides again
    assert _flashes(_screen(ann)[1]) == []
    assert _votes(ws, rid) == {"ann": ("exclude", reason)}
    decide(bob, cb, rid, "exclude", reason=reason)
    assert "disabled" in _undo_button(_screen(ann)[1])  # now both are in: final
    assert _rows(ws, "SELECT count(*) FROM audit_log WHERE action = 'decision.refused'") == [(0,)]


def test_full_text_votes_are_final_once_both_are_in(ws):
    """Full-text decisions go straight to the warehouse: the refusal is the answer to the post."""
    rid = ws.ids["9997"]
    include_at_full_text(ws.db, rid)  # ann and bob: include at both stages
    ann = make_client(ws.app)
    csrf = login(ann, "ann")
    r = _undo(ann, csrf, stage="full_text")
    assert r.status_code == 303 and "stage=full_text" in r.headers["location"]
    told = _flashes(ann.get(r.headers["location"]).text)
    assert any(re.search(FINAL.format(rid=rid, where="full text"), f) for f in told), told
    j = ann.post("/decide", data={"csrf_token": csrf, "record_id": rid, "stage": "full_text", "decision": "maybe"},
                 headers={"accept": "application/json"})
    assert j.status_code == 409 and "already has both reviewers' decisions at full text" in j.json()["error"]
    assert _votes(ws, rid, "full_text") == {"ann": ("include", None), "bob": ("include", None)}
    assert _rows(ws, "SELECT count(*) FROM audit_log WHERE action = 'decision.refused' AND actor = 'ann'") == [(2,)]
