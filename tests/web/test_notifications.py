"""Conclusion changes saved in the reviewers' workspace are notified, once, after the save's response.

The web app pools inside itself (outside any flow) when outcome data is saved, so it sends the
"pooled conclusions changed" message itself: over real HTTP, through a saved Prefect
CustomWebhookNotificationBlock to a receiver on 127.0.0.1 (tests/support/webhook_server.py).
The warehouse: the web fixtures' records plus the invented trials of tests/fixtures/pooling for one
outcome (secure), pooled once (evidence version 1, OR 1.38, significant) before the app starts.
"""

from __future__ import annotations

import shutil
import threading
import time
from types import SimpleNamespace

import pytest

from support.live_server import free_port
from support.pooling import import_synthetic, synthetic_config_path
from support.web_app import csrf_of, include_at_full_text, login, make_client, record_ids_by_pmid
from support.webhook_server import WebhookServer, save_webhook_block

# An invented large trial pointing the other way: the pooled OR's CI then crosses the null.
FLIP = {"secure.events_int": "40", "secure.n_int": "300", "secure.events_ctl": "160", "secure.n_ctl": "300"}
# An invented small trial in line with the others: a new evidence version, no conclusion changes.
QUIET = {"secure.events_int": "30", "secure.n_int": "40", "secure.events_ctl": "20", "secure.n_ctl": "40"}
SAVED = "Saved fossella-2013: 1 added, 0 corrected. pooled results refreshed."


def _form(csrf: str, outcome: dict) -> dict:
    return {"csrf_token": csrf, "study.study_id": "fossella-2013", "study.label": "Fossella 2013",
            "study.intervention": "group", "study.comparator": "usual care", "study.population": "mothers",
            "study.country": "NL", "study.attachment_measure": "SSP", "study.age_months": "18",
            "study.follow_up_months": "6", **outcome}


def _workspace(tmp_path, template_warehouse, monkeypatch, block: str | None):
    """The app over a copy of the web template warehouse with the synthetic secure trials pooled (v1)."""
    from living_review.config import load_review
    from living_review.pooling import refresh_pooled_effects_now
    from living_review.settings import get_settings
    from living_review.web.app import create_app

    config_path = synthetic_config_path(tmp_path, outcomes=["secure"], sensitivity=False)
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config_path))
    if block:
        monkeypatch.setenv("LIVING_REVIEW_NOTIFY_BLOCK", block)
    settings = get_settings()
    settings.ensure_dirs()
    shutil.copyfile(template_warehouse, settings.db_path)
    config = load_review(config_path)
    import_synthetic(settings.db_path, config)
    first = refresh_pooled_effects_now(settings.db_path, config, plots=False, reports_dir=settings.reports_dir)
    assert first["evidence_version"] == 1
    rid = record_ids_by_pmid(settings.db_path)["23435529"]
    include_at_full_text(settings.db_path, rid)
    return SimpleNamespace(app=create_app(settings, config), db=settings.db_path, rid=rid, config=config)


def _versions(db) -> list[tuple[int, str, int]]:
    """(version, trigger, conclusions_changed) of every stored evidence version."""
    from warehouse.db import connect

    with connect(db) as con:
        return [tuple(r) for r in con.execute(
            "SELECT version, trigger, conclusions_changed FROM evidence_versions ORDER BY version").fetchall()]


def _primary(db, version: int) -> dict:
    from warehouse.db import connect
    from warehouse.pooling import results_of_version

    with connect(db) as con:
        return next(r for r in results_of_version(con, version, studies=False)
                    if r["analysis_id"] == "secure:primary" and not r["subgroup"])


def _or(r: dict) -> str:
    return f"OR {r['exp_estimate']:.2f} ({r['exp_ci_lb']:.2f} to {r['exp_ci_ub']:.2f})"


@pytest.fixture
def webhook(prefect_harness, lr_home, monkeypatch):
    monkeypatch.setenv("LIVING_REVIEW_TASK_RETRIES", "0")
    monkeypatch.delenv("LIVING_REVIEW_NOTIFY_BLOCK", raising=False)
    monkeypatch.delenv("LIVING_REVIEW_NOTIFY_SUCCESS", raising=False)
    with WebhookServer() as server:
        yield server


def test_web_save_that_flips_a_conclusion_sends_one_message_naming_the_outcome(webhook, template_warehouse,
                                                                               tmp_path, monkeypatch):
    from flows.pool import refresh_pooled_effects
    from warehouse import evidence
    from warehouse.db import transaction

    ws = _workspace(tmp_path, template_warehouse, monkeypatch, save_webhook_block(webhook.url))
    c = make_client(ws.app)
    r = c.post(f"/extract/{ws.rid}", data=_form(login(c, "ann"), FLIP))
    assert r.status_code == 200 and SAVED in r.text
    assert _versions(ws.db)[-1][:2] == (2, "web") and _versions(ws.db)[-1][2] >= 1

    (post,) = webhook.posts
    subject, body = post.json["subject"], post.json["text"]
    assert subject == "living review: pooled conclusions changed (evidence version 2)"
    assert "evidence version 2 (was version 1)" in body
    assert "fossella-2013" in body and "ann" in body and "reviewers' workspace" in body
    line = next(ln for ln in body.splitlines() if ln.startswith("- secure:primary: "))
    assert f"{_or(_primary(ws.db, 1))} → {_or(_primary(ws.db, 2))}" in line
    assert "CI now crosses the null" in line

    # The nightly's refresh finds the evidence unchanged: the web's version is not reported again.
    assert refresh_pooled_effects(plots=False)["changed"] is False
    assert len(webhook.posts) == 1

    # A change made elsewhere (a correction imported outside the workspace) is the flow's to report, once.
    with transaction(ws.db) as con:
        evidence.save_outcomes(con, [{"study_id": "fossella-2013", "outcome": "secure", "events_int": 30, "n_int": 40,
                                      "events_ctl": 20, "n_ctl": 40}], ws.config, entered_by="test")
    third = refresh_pooled_effects(plots=False)
    assert third["evidence_version"] == 3 and third["conclusions_changed"] >= 1
    assert len(webhook.posts) == 2
    text = webhook.posts[1].json["subject"] + "\n" + webhook.posts[1].json["text"]
    assert "evidence version 3 (was version 2)" in text and "refresh-pooled-effects" in text
    assert "- secure:primary: " in text


def test_web_save_that_changes_no_conclusion_sends_nothing(webhook, template_warehouse, tmp_path, monkeypatch):
    ws = _workspace(tmp_path, template_warehouse, monkeypatch, save_webhook_block(webhook.url))
    c = make_client(ws.app)
    csrf = login(c, "ann")
    r = c.post(f"/extract/{ws.rid}", data=_form(csrf, QUIET))
    assert r.status_code == 200 and SAVED in r.text
    assert _versions(ws.db)[-1] == (2, "web", 0)  # a new version, no conclusion flipped

    again = c.post(f"/extract/{ws.rid}", data=_form(csrf_of(r.text), QUIET))  # the same numbers again
    assert again.status_code == 200 and "Saved fossella-2013: 0 added, 0 corrected." in again.text
    assert len(_versions(ws.db)) == 2
    assert webhook.requests == []


@pytest.mark.parametrize("receiver", ["http-500", "connection-refused", "no-such-block"])
def test_broken_delivery_does_not_change_the_saves_response(webhook, template_warehouse, tmp_path, monkeypatch,
                                                            caplog, receiver):
    import uuid

    if receiver == "http-500":
        webhook.status = 500
        block = save_webhook_block(webhook.url)
    elif receiver == "connection-refused":
        block = save_webhook_block(f"http://127.0.0.1:{free_port()}/hook")
    else:
        block = "custom-webhook/no-such-block-" + uuid.uuid4().hex[:8]
    ws = _workspace(tmp_path, template_warehouse, monkeypatch, block)
    c = make_client(ws.app)
    with caplog.at_level("WARNING"):
        r = c.post(f"/extract/{ws.rid}", data=_form(login(c, "ann"), FLIP))
    assert r.status_code == 200 and SAVED in r.text and r.url.path == f"/extract/{ws.rid}"
    assert _versions(ws.db)[-1][:2] == (2, "web") and _versions(ws.db)[-1][2] >= 1
    assert len(webhook.posts) == (1 if receiver == "http-500" else 0)
    assert "notification not sent" in caplog.text  # tried, failed, said so in the log
    assert c.get("/results").status_code == 200


def test_the_message_is_sent_after_the_save_response(webhook, template_warehouse, tmp_path, monkeypatch):
    """With a receiver that keeps the request waiting, the reviewer still gets the save's answer at
    once, and the app serves the next page while the message waits (a real uvicorn server)."""
    import httpx
    import uvicorn

    webhook.hold = threading.Event()
    # the block waits up to 60 s for an answer: a send inside the request would hold the response that long
    ws = _workspace(tmp_path, template_warehouse, monkeypatch, save_webhook_block(webhook.url, timeout=60))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(ws.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True, timeout=30) as c:
            csrf = login(c, "ann")
            r = c.post(f"/extract/{ws.rid}", data=_form(csrf, FLIP), follow_redirects=False)
            assert r.status_code == 303 and not webhook.hold.is_set()
            deadline = time.monotonic() + 30
            while not webhook.posts:  # the message is on its way, held by the receiver
                assert time.monotonic() < deadline, "no message was sent"
                time.sleep(0.05)
            page = c.get(r.headers["location"])
            assert page.status_code == 200 and SAVED in page.text
        webhook.hold.set()
        assert len(webhook.posts) == 1 and "secure:primary" in webhook.posts[0].json["text"]
    finally:
        webhook.hold.set()
        server.should_exit = True
        thread.join(timeout=30)
