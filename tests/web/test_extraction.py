"""Data extraction: validation next to each field, nothing half-saved, ownership, re-pooling."""

from __future__ import annotations

import re

from support.web_app import csrf_of, include_at_full_text, login, make_client


def _count(db, table):
    from warehouse.db import connect

    with connect(db) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def _form(csrf, **overrides):
    data = {
        "csrf_token": csrf, "study.study_id": "fossella-2013", "study.label": "Fossella 2013",
        "study.intervention": "VIPP-SD", "study.comparator": "usual care", "study.population": "mothers",
        "study.country": "NL", "study.attachment_measure": "SSP", "study.age_months": "18",
        "study.follow_up_months": "6",
        "secure.events_int": "30", "secure.n_int": "40", "secure.events_ctl": "20", "secure.n_ctl": "40",
    }
    data.update(overrides)
    return data


def test_invalid_field_is_shown_next_to_it_and_nothing_is_saved_then_corrected(ws, monkeypatch):
    from living_review.web import integrations

    refreshed = []
    monkeypatch.setattr(integrations, "refresh_pooled_effects", lambda **kw: (refreshed.append(kw["trigger"]) or True, "pooled results refreshed"))
    rid = ws.ids["23435529"]
    include_at_full_text(ws.db, rid)
    c = make_client(ws.app)
    csrf = login(c, "ann")
    listing = c.get("/extract").text
    assert f'href="/extract/{rid}"' in listing
    form = c.get(f"/extract/{rid}")
    assert 'value="fossella-2013"' in form.text  # suggested from first author + year
    bad = c.post(f"/extract/{rid}", data=_form(csrf, **{"secure.events_int": "45", "sensitivity.sd_int": "-1",
                                                         "sensitivity.mean_int": "1", "sensitivity.n_int": "40",
                                                         "sensitivity.mean_ctl": "0.5", "sensitivity.sd_ctl": "1",
                                                         "sensitivity.n_ctl": "40"}))
    assert bad.status_code == 400
    assert re.search(r'id="err-secure-events_int">events \(45\) exceed n_int \(40\)', bad.text)
    assert re.search(r'id="err-sensitivity-sd_int">must be &gt; 0', bad.text)
    assert 'value="45"' in bad.text  # what the reviewer typed is kept for correction
    assert _count(ws.db, "studies") == 0 and _count(ws.db, "outcome_data") == 0  # nothing half-saved
    assert refreshed == []
    good = c.post(f"/extract/{rid}", data=_form(csrf_of(bad.text), **{"secure.events_int": "35"}))
    assert good.status_code == 200 and "Saved fossella-2013" in good.text and "pooled results refreshed" in good.text
    assert _count(ws.db, "studies") == 1 and _count(ws.db, "outcome_data") == 1
    assert refreshed == ["web"]
    from warehouse import evidence
    from warehouse.db import connect

    with connect(ws.db) as con:
        entry = evidence.current_entries(con)[("fossella-2013", "secure")]
        study = evidence.list_studies(con)[0]
    assert (entry["events_int"], entry["n_int"], entry["events_ctl"], entry["n_ctl"]) == (35, 40, 20, 40)
    assert entry["entered_by"] == "ann" and entry["source"] == "web"
    assert study["record_id"] == rid and study["pmid"] == "23435529" and study["created_by"] == "ann"


def test_study_field_errors_are_reported_too(ws):
    rid = ws.ids["23435529"]
    include_at_full_text(ws.db, rid)
    c = make_client(ws.app)
    csrf = login(c, "ann")
    r = c.post(f"/extract/{rid}", data=_form(csrf, **{"study.intervention": "Homeopathy", "study.age_months": "old",
                                                     "study.study_id": "Not A Slug"}))
    assert r.status_code == 400
    assert 'id="err-study-intervention"' in r.text and 'id="err-study-age_months"' in r.text
    assert 'id="err-study-study_id"' in r.text
    r = c.post(f"/extract/{rid}", data={"csrf_token": csrf, "study.study_id": "x-2013", "study.label": "X",
                                        "study.intervention": "ABC"})
    assert r.status_code == 400 and "at least one outcome" in r.text
    assert _count(ws.db, "studies") == 0


def test_only_the_owner_or_a_lead_edits_an_extraction(ws, monkeypatch):
    from living_review.web import integrations

    monkeypatch.setattr(integrations, "refresh_pooled_effects", lambda **kw: (True, "pooled results refreshed"))
    rid = ws.ids["23435529"]
    include_at_full_text(ws.db, rid)
    ann, bob, lee = make_client(ws.app), make_client(ws.app), make_client(ws.app)
    ca, cb, cl = login(ann, "ann"), login(bob, "bob"), login(lee, "lee")
    assert ann.post(f"/extract/{rid}", data=_form(ca)).status_code == 200
    assert "only a lead can change it" in bob.get(f"/extract/{rid}").text
    r = bob.post(f"/extract/{rid}", data=_form(cb, **{"secure.events_int": "10"}))
    assert r.status_code == 403
    r = lee.post(f"/extract/{rid}", data=_form(cl, **{"secure.events_int": "31"}))
    assert r.status_code == 200 and "1 corrected" in r.text
    assert _count(ws.db, "outcome_data") == 2  # the correction supersedes, nothing overwritten


def test_records_not_included_at_full_text_cannot_be_extracted(ws):
    rid = ws.ids["9997"]
    c = make_client(ws.app)
    csrf = login(c, "ann")
    assert c.get(f"/extract/{rid}").status_code == 400
    assert c.post(f"/extract/{rid}", data=_form(csrf)).status_code == 400
    assert c.get("/extract/99999999").status_code == 404
    assert _count(ws.db, "studies") == 0


def test_missing_pooling_capability_is_a_message_not_an_error(ws, monkeypatch):
    from living_review.web import integrations

    monkeypatch.setattr(integrations, "_module", lambda name: None)
    rid = ws.ids["23435529"]
    include_at_full_text(ws.db, rid)
    c = make_client(ws.app)
    csrf = login(c, "ann")
    r = c.post(f"/extract/{rid}", data=_form(csrf))
    assert r.status_code == 200 and "refresh on the next nightly run" in r.text
    assert c.get("/results").status_code == 200


SENSITIVITY = {"sensitivity.mean_int": "4.1", "sensitivity.sd_int": "1.2", "sensitivity.n_int": "40",
               "sensitivity.mean_ctl": "3.6", "sensitivity.sd_ctl": "1.1", "sensitivity.n_ctl": "38"}


def test_a_continuous_arm_of_one_is_refused_next_to_its_field(ws):
    rid = ws.ids["23435529"]
    include_at_full_text(ws.db, rid)
    c = make_client(ws.app)
    csrf = login(c, "ann")
    r = c.post(f"/extract/{rid}", data=_form(csrf, **{**SENSITIVITY, "sensitivity.n_ctl": "1"}))
    assert r.status_code == 400
    assert re.search(r'id="err-sensitivity-n_ctl">must be at least 2 when an SD is given', r.text)
    assert _count(ws.db, "studies") == 0 and _count(ws.db, "outcome_data") == 0


def test_blanking_an_outcome_withdraws_its_data(ws, monkeypatch):
    from living_review.web import integrations
    from warehouse import evidence
    from warehouse.db import connect

    refreshed = []
    monkeypatch.setattr(integrations, "refresh_pooled_effects",
                        lambda **kw: (refreshed.append(kw["trigger"]) or True, "pooled results refreshed"))
    rid = ws.ids["23435529"]
    include_at_full_text(ws.db, rid)
    ann, bob, lee = make_client(ws.app), make_client(ws.app), make_client(ws.app)
    ca, cb, cl = login(ann, "ann"), login(bob, "bob"), login(lee, "lee")
    assert ann.post(f"/extract/{rid}", data=_form(ca, **SENSITIVITY)).status_code == 200
    assert _count(ws.db, "outcome_data") == 2 and refreshed == ["web"]
    blank_secure = {f"secure.{f}": "" for f in ("events_int", "n_int", "events_ctl", "n_ctl")}
    # only the extraction's owner or a lead may withdraw, as for corrections
    r = bob.post(f"/extract/{rid}", data=_form(cb, **SENSITIVITY, **blank_secure))
    assert r.status_code == 403 and _count(ws.db, "outcome_data") == 2
    r = ann.post(f"/extract/{rid}", data=_form(ca, **SENSITIVITY, **blank_secure))
    assert r.status_code == 200
    assert "0 added, 0 corrected, 1 withdrawn (secure)" in r.text and "pooled results refreshed" in r.text
    assert refreshed == ["web", "web"]
    assert 'name="secure.events_int" type="text" value=""' in r.text  # the form shows it empty now
    with connect(ws.db) as con:
        assert set(evidence.current_entries(con)) == {("fossella-2013", "sensitivity")}
        assert [e["outcome"] for e in evidence.current_evidence_rows(con)] == ["sensitivity"]  # what is pooled
        history = evidence.outcome_history(con, "fossella-2013", "secure")
        assert [(h["retracted"], h["entered_by"]) for h in history] == [(False, "ann"), (True, "ann")]
        assert history[1]["supersedes"] == history[0]["entry_id"]
        audits = con.execute("SELECT actor, entity_id, CAST(detail AS VARCHAR) FROM audit_log "
                             "WHERE action = 'outcome.retract'").fetchall()
        assert [(a, e) for a, e, _ in audits] == [("ann", "fossella-2013")] and '"secure"' in audits[0][2]
        # disorganised was never entered: blank and untouched, nothing is appended for it
        assert evidence.outcome_history(con, "fossella-2013", "disorganised") == []
    # saving the same blank form again withdraws nothing more and refreshes nothing
    r = ann.post(f"/extract/{rid}", data=_form(ca, **SENSITIVITY, **blank_secure))
    assert r.status_code == 200 and "withdrawn" not in r.text and refreshed == ["web", "web"]
    # a lead may withdraw the last outcome too: the study then has no current data
    blank_sens = {k: "" for k in SENSITIVITY}
    r = lee.post(f"/extract/{rid}", data=_form(cl, **blank_sens, **blank_secure))
    assert r.status_code == 200 and "1 withdrawn (sensitivity)" in r.text
    assert _count(ws.db, "outcome_data") == 4
    with connect(ws.db) as con:
        assert evidence.current_entries(con) == {}
        assert con.execute("SELECT count(*) FROM audit_log WHERE action = 'outcome.retract'").fetchall() == [(2,)]
    r = lee.post(f"/extract/{rid}", data=_form(cl, **blank_sens, **blank_secure))  # nothing left to withdraw
    assert r.status_code == 400 and "at least one outcome" in r.text
