"""Notification messages (pure formatting, milliseconds) and delivery's contract without a Prefect API."""

from __future__ import annotations

import logging
import math
import uuid

import pytest

from living_review import notify
from living_review.settings import get_settings

RUN_ID = uuid.UUID("0b4b5a54-1c2d-4e5f-8a9b-0c1d2e3f4a5b")


def _result(analysis_id, estimate, lb, ub, *, subgroup="", measure="OR", changed=False, reasons=(), pval=0.5):
    ratio = measure in {"OR", "RR"}
    return {"analysis_id": analysis_id, "outcome": analysis_id.split(":")[0], "analysis": analysis_id.split(":")[1],
            "subgroup": subgroup, "measure": measure, "k": 12, "estimate": estimate, "ci_lb": lb, "ci_ub": ub,
            "pval": pval, "exp_estimate": math.exp(estimate) if ratio else None,
            "exp_ci_lb": math.exp(lb) if ratio else None, "exp_ci_ub": math.exp(ub) if ratio else None,
            "conclusion_changed": changed, "change_reasons": list(reasons)}


def test_first_line_is_the_first_non_empty_line_and_bounded():
    assert notify.first_line("\n\n  RuntimeError: boom \nTraceback (most recent call last):\n  x") == "RuntimeError: boom"
    assert notify.first_line(None) == "" and notify.first_line("") == ""
    long = notify.first_line("x" * 1000, limit=50)
    assert len(long) == 50 and long.endswith("…")


def test_scrub_removes_api_key_parameters_and_secret_values():
    text = "GET https://e/esearch.fcgi?db=pubmed&api_key=abc123&term=x failed; key abc123 in /tmp/abc123"
    out = notify.scrub(text, ["abc123"])
    assert "abc123" not in out and "api_key=***&term=x" in out
    assert notify.scrub("nothing secret", []) == "nothing secret"
    assert notify.scrub("empty secrets ignored", ["", None]) == "empty secrets ignored"


def test_secrets_of_settings_are_every_secret_field(monkeypatch):
    monkeypatch.setenv("NCBI_API_KEY", "sekret-987")
    assert notify.secrets_of(get_settings()) == ["sekret-987"]
    monkeypatch.delenv("NCBI_API_KEY")
    assert notify.secrets_of(get_settings()) == []


def test_notify_settings_default_off_and_read_the_environment(monkeypatch):
    monkeypatch.delenv("LIVING_REVIEW_NOTIFY_BLOCK", raising=False)
    monkeypatch.delenv("LIVING_REVIEW_NOTIFY_SUCCESS", raising=False)
    s = get_settings()
    assert s.notify_block is None and s.notify_success is False
    monkeypatch.setenv("LIVING_REVIEW_NOTIFY_BLOCK", "slack-webhook/review-team")
    monkeypatch.setenv("LIVING_REVIEW_NOTIFY_SUCCESS", "1")
    s = get_settings()
    assert s.notify_block == "slack-webhook/review-team" and s.notify_success is True
    monkeypatch.setenv("LIVING_REVIEW_NOTIFY_BLOCK", "  ")
    assert get_settings().notify_block is None  # blank means unset


def test_run_failed_message_names_flow_run_state_and_error_line():
    msg = notify.run_failed("nightly-update", "amber-otter", RUN_ID, "Failed",
                            "RuntimeError: nightly run failed: attachment-rcts: boom\nTraceback ...",
                            url="http://127.0.0.1:4200/runs/flow-run/x")
    assert msg.subject == "living review: nightly-update Failed"
    assert "nightly-update" in msg.body and "amber-otter" in msg.body and str(RUN_ID) in msg.body
    assert "Failed" in msg.body and "RuntimeError: nightly run failed: attachment-rcts: boom" in msg.body
    assert "Traceback" not in msg.body and "http://127.0.0.1:4200/runs/flow-run/x" in msg.body
    assert "no error message" in notify.run_failed("f", "r", RUN_ID, "Crashed", "").body


def test_run_failed_scrubs_before_cutting_so_no_part_of_a_secret_survives():
    key = "k3y-0123456789abcdef"
    error = "x" * 285 + f" /mirror/{key}/ and again {key}"
    body = notify.run_failed("nightly-update", "r", RUN_ID, "Failed", error, secrets=[key]).body
    assert "k3y-" not in body  # cut after scrubbing: not even a prefix of the key is left


def test_changed_conclusions_pair_old_and_new_results():
    old = [_result("secure:primary", 0.30, 0.05, 0.55, pval=0.02),
           _result("secure:primary:by-intervention", 0.2, -0.1, 0.5, subgroup="group"),
           _result("secure:DL", 0.3, 0.1, 0.5)]
    new = [_result("secure:primary", -0.10, -0.45, 0.25, changed=True, pval=0.5,
                   reasons=["direction changed: above the null -> below the null",
                            "significance at alpha = 0.05 changed: p 0.02 -> 0.5", "CI now crosses the null",
                            "OR 1.35 -> 0.905", "k 12 -> 13"]),
           _result("secure:primary:by-intervention", -0.5, -0.9, -0.1, subgroup="group", changed=True,
                   reasons=["CI no longer crosses the null"]),
           _result("secure:DL", 0.29, 0.1, 0.48, reasons=["OR 1.35 -> 1.34"]),
           _result("disorganised:primary", 0.1, -0.2, 0.4, changed=True, reasons=["first estimate (k = 3)"])]
    changes = notify.changed_conclusions(old, new)
    assert [(c["analysis_id"], c["subgroup"]) for c in changes] == [
        ("secure:primary", ""), ("disorganised:primary", ""), ("secure:primary:by-intervention", "group")]
    prim = changes[0]
    assert prim["old"] == "OR 1.35 (1.05 to 1.73)" and prim["new"] == "OR 0.90 (0.64 to 1.28)"
    assert prim["reasons"] == ["direction changed: above the null -> below the null",
                               "significance at alpha = 0.05 changed: p 0.02 -> 0.5", "CI now crosses the null"]
    assert changes[1]["old"] is None

    msg = notify.conclusions_changed_by(notify.run_origin("refresh-pooled-effects", "calm-heron", RUN_ID), 2, 1, old, new)
    assert msg.subject == "living review: pooled conclusions changed (evidence version 2)"
    lines = msg.body.splitlines()
    assert "evidence version 2" in lines[0] and "version 1" in lines[0] and "calm-heron" in lines[0]
    assert ("- secure:primary: OR 1.35 (1.05 to 1.73) → OR 0.90 (0.64 to 1.28); direction changed: above the "
            "null -> below the null; significance at alpha = 0.05 changed: p 0.02 -> 0.5; CI now crosses the null"
            ) in lines
    assert "- secure:primary:by-intervention [group]: OR 1.22 (0.90 to 1.65) → OR 0.61 (0.41 to 0.90); " \
           "CI no longer crosses the null" in lines
    assert "- disorganised:primary: no earlier estimate → OR 1.11 (0.82 to 1.49)" in lines
    assert not any("secure:DL" in ln for ln in lines)


def test_no_conclusion_message_for_a_first_version_or_when_nothing_flipped():
    new = [_result("secure:primary", 0.3, 0.1, 0.5, changed=True, reasons=["first estimate (k = 12)"])]
    assert notify.conclusions_changed_by(notify.run_origin("refresh-pooled-effects", "r", RUN_ID), 1, None, [], new) is None
    unchanged = [_result("secure:primary", 0.3, 0.1, 0.5, reasons=["OR 1.35 -> 1.35"])]
    assert notify.conclusions_changed_by(notify.run_origin("refresh-pooled-effects", "r", RUN_ID), 2, 1, unchanged, unchanged) is None


def test_conclusion_message_is_bounded_and_continuous_measures_stay_on_their_scale():
    old = [_result(f"o{i}:primary", 0.3, 0.1, 0.5, measure="SMD") for i in range(12)]
    new = [_result(f"o{i}:primary", -0.2, -0.4, 0.1, measure="SMD", changed=True, reasons=["CI now crosses the null"])
           for i in range(12)]
    msg = notify.conclusions_changed_by(notify.run_origin("refresh-pooled-effects", "r", RUN_ID), 3, 2, old, new)
    lines = msg.body.splitlines()
    assert "- o0:primary: SMD 0.30 (0.10 to 0.50) → SMD -0.20 (-0.40 to 0.10); CI now crosses the null" in lines
    assert sum(ln.startswith("- ") for ln in lines) == notify.MAX_CHANGES_LISTED
    assert f"and {12 - notify.MAX_CHANGES_LISTED} more" in msg.body
    assert notify.effect({"measure": "OR", "estimate": None}) == "not estimable"


def test_night_digest_has_new_records_records_to_screen_and_recall():
    summary = {"status": "completed", "new_records": 7, "strategies": [{}, {}],
               "ranking": {"recall_estimate": {"recall_lower_bound": 0.962, "confidence": 0.95, "audited": 4,
                                               "records_to_screen_for_target": 0, "unscreened": 131}},
               "pooling": {"changed": False, "message": "evidence unchanged since version 3: nothing written"}}
    msg = notify.night_digest("nightly-update", "brisk-lark", RUN_ID, summary)
    assert msg.subject == "living review: nightly-update Completed: 7 new records"
    assert "7 new records" in msg.body and "131 records to screen" in msg.body
    assert "Recall ≥ 96.2% with 95% confidence" in msg.body and "brisk-lark" in msg.body
    assert len(msg.body.splitlines()) <= 3
    bare = notify.night_digest("nightly-update", "r", RUN_ID, {"new_records": 0, "ranking": {"failed": True}})
    assert "0 new records" in bare.body and "No recall estimate yet" in bare.body


class _FakeBlock:
    def __init__(self, fail: Exception | None = None):
        self.sent, self.fail = [], fail

    def notify(self, body, subject=None):
        if self.fail:
            raise self.fail
        self.sent.append((subject, body))


def test_send_does_nothing_when_no_block_is_named(monkeypatch):
    monkeypatch.delenv("LIVING_REVIEW_NOTIFY_BLOCK", raising=False)
    monkeypatch.setattr(notify, "_load_block", lambda name: pytest.fail("no block should be loaded"))
    assert notify.send(notify.Message("s", "b")) is False


def test_send_scrubs_every_secret_and_reports_failure_as_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("LIVING_REVIEW_NOTIFY_BLOCK", "custom-webhook/x")
    monkeypatch.setenv("NCBI_API_KEY", "sekret-555")
    block = _FakeBlock()
    monkeypatch.setattr(notify, "_load_block", lambda name: block)
    assert notify.send(notify.Message("subject sekret-555", "GET /e?api_key=sekret-555&x=1")) is True
    assert block.sent == [("subject ***", "GET /e?api_key=***&x=1")]

    broken = _FakeBlock(fail=RuntimeError("500 from https://hooks/x?api_key=sekret-555\nmore"))
    monkeypatch.setattr(notify, "_load_block", lambda name: broken)
    logger = logging.getLogger("test-notify")
    with caplog.at_level(logging.WARNING, logger="test-notify"):
        assert notify.send(notify.Message("s", "b"), logger=logger) is False
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "notification not sent" in record.getMessage()
    assert "custom-webhook/x" in record.getMessage() and "sekret-555" not in record.getMessage()


def test_conclusion_message_names_what_stored_the_version():
    old = [_result("secure:primary", 0.30, 0.05, 0.55, pval=0.02)]
    new = [_result("secure:primary", -0.10, -0.45, 0.25, changed=True, reasons=["CI now crosses the null"])]
    origin = "extraction of fossella-2013 saved by ann in the reviewers' workspace"
    msg = notify.conclusions_changed_by(origin, 5, 4, old, new)
    assert msg.subject == "living review: pooled conclusions changed (evidence version 5)"
    assert msg.body.splitlines()[0] == f"Pooled conclusions changed in evidence version 5 (was version 4); {origin}."
    assert notify.conclusions_changed_by(notify.run_origin("refresh-pooled-effects", "calm-heron", RUN_ID), 5, 4, old, new) == \
        notify.conclusions_changed_by(f"refresh-pooled-effects run calm-heron ({RUN_ID})", 5, 4, old, new)
    assert notify.run_origin("refresh-pooled-effects", "calm-heron", RUN_ID) == \
        f"refresh-pooled-effects run calm-heron ({RUN_ID})"


@pytest.mark.parametrize("summary", [
    None,
    {"changed": False, "evidence_version": 3, "conclusions_changed": 0},                        # unchanged evidence
    {"changed": True, "evidence_version": 1, "previous_version": None, "conclusions_changed": 2},  # first version
    {"changed": True, "evidence_version": 4, "previous_version": 3, "conclusions_changed": 0},     # nothing flipped
])
def test_pooling_notify_reads_nothing_and_sends_nothing_without_a_conclusion_change(monkeypatch, tmp_path, summary):
    from living_review import pooling

    monkeypatch.setenv("LIVING_REVIEW_NOTIFY_BLOCK", "custom-webhook/x")
    monkeypatch.setattr(notify, "send", lambda *a, **k: pytest.fail("nothing should be sent"))
    missing = tmp_path / "no-such-dir" / "warehouse.duckdb"  # any read of the warehouse would fail loudly
    monkeypatch.setattr(notify, "scrub", lambda *a, **k: pytest.fail("no warning expected"))
    assert pooling.notify_conclusions_changed(summary, "origin", db_path=missing) is False


def test_pooling_notify_is_silent_when_no_block_is_named(monkeypatch):
    from living_review import pooling

    monkeypatch.delenv("LIVING_REVIEW_NOTIFY_BLOCK", raising=False)
    monkeypatch.setattr(notify, "send", lambda *a, **k: pytest.fail("nothing should be sent"))
    summary = {"changed": True, "evidence_version": 4, "previous_version": 3, "conclusions_changed": 2}
    assert pooling.notify_conclusions_changed(summary, "origin", db_path="/nonexistent/w.duckdb") is False


def test_pooling_notify_never_raises(monkeypatch, tmp_path, caplog):
    from living_review import pooling

    monkeypatch.setenv("LIVING_REVIEW_NOTIFY_BLOCK", "custom-webhook/x")
    summary = {"changed": True, "evidence_version": 4, "previous_version": 3, "conclusions_changed": 2}
    with caplog.at_level(logging.WARNING):
        assert pooling.notify_conclusions_changed(summary, "origin", db_path=tmp_path / "nope" / "w.duckdb") is False
    assert "notification not sent" in caplog.text


def test_failure_reason_scrubs_the_whole_text_before_cutting_it(lr_home, monkeypatch):
    from living_review.notify import failure_reason

    key = "k" * 40
    monkeypatch.setenv("NCBI_API_KEY", key)
    # the key straddles the 300-character cut: cutting first would leave its first part behind
    exc = RuntimeError("x" * 280 + key + " and api_key=other-secret\nsecond line")
    line = failure_reason(exc)
    assert key[:10] not in line and "other-secret" not in line and "second line" not in line
    assert line.startswith("RuntimeError: xxx")


WEBHOOK_TOKEN = "SECRETWEBHOOKTOKEN"  # invented: the secret part of a webhook URL


def test_a_webhook_answering_500_is_a_warning_without_the_blocks_url_or_secrets(monkeypatch, caplog):
    """A webhook URL is a credential (Slack, Teams, custom): httpx's error quotes it whole, and httpx logs
    every request's URL at INFO. Neither may reach a log; the warning still names the block and the status."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from support.webhook_server import WebhookServer

    with WebhookServer(status=500) as hook:
        base = hook.url.rsplit("/", 1)[0]
        block = CustomWebhookNotificationBlock(
            name="review-team", url=f"{base}/services/T0/B0/{WEBHOOK_TOKEN}?sig={{{{sig}}}}",
            json_data={"subject": "{{subject}}", "text": "{{body}}"}, secrets={"sig": "SIGNATURE-77f3"})
        monkeypatch.setenv("LIVING_REVIEW_NOTIFY_BLOCK", "custom-webhook/review-team")
        monkeypatch.setattr(notify, "_load_block", lambda name: block)
        logger = logging.getLogger("test-notify")
        with caplog.at_level(logging.DEBUG):  # the libraries' own request logs too
            assert notify.send(notify.Message("s", "b"), logger=logger) is False
        (post,) = hook.posts
        assert WEBHOOK_TOKEN in post.path and "SIGNATURE-77f3" in post.path  # it went to the secret URL
    (warning,) = [r for r in caplog.records if r.name == "test-notify"]
    line = warning.getMessage()
    assert warning.levelno == logging.WARNING and "notification not sent through custom-webhook/review-team" in line
    assert "HTTPStatusError" in line and "500" in line
    everything = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret in (WEBHOOK_TOKEN, "/services/T0/B0", "SIGNATURE-77f3"):
        assert secret not in everything


def test_block_secrets_are_its_url_and_every_secret_field_and_failure_reasons_hide_them():
    from prefect.blocks.abstract import NotificationError
    from prefect.blocks.notifications import DiscordWebhook, SlackWebhook

    slack = SlackWebhook(url=f"https://hooks.slack.com/services/T0/B0/{WEBHOOK_TOKEN}")
    hidden = notify.block_secrets(slack)
    assert f"https://hooks.slack.com/services/T0/B0/{WEBHOOK_TOKEN}" in hidden
    assert f"/services/T0/B0/{WEBHOOK_TOKEN}" in hidden  # as quoted without the host ("url: /services/...")
    discord = DiscordWebhook(webhook_id="987654321", webhook_token="DISCORD-TOKEN-abc")
    assert {"987654321", "DISCORD-TOKEN-abc"} <= set(notify.block_secrets(discord))

    # Apprise-based blocks fail with an empty NotificationError whose log holds what went wrong
    exc = NotificationError(log=f"[DEBUG]: Slack POST URL: https://hooks.slack.com/services/T0/B0/{WEBHOOK_TOKEN}\n"
                                f"[WARNING]: Socket Exception: url: /services/T0/B0/{WEBHOOK_TOKEN} refused\n"
                                "[WARNING]: Failed to send Slack notification: Internal server error., error=500.")
    line = notify.failure_reason(exc, secrets=hidden)
    assert line.startswith("NotificationError: ") and "error=500" in line
    assert WEBHOOK_TOKEN not in line and "T0/B0" not in line
    # any URL in a failure reason keeps its scheme and host only, secret-looking or not
    line = notify.failure_reason(RuntimeError("POST https://user:pw@example.org:8443/hook/abc?k=v failed"))
    assert line == "RuntimeError: POST https://example.org:8443/… failed"


def test_an_analysis_missing_from_the_new_version_is_a_changed_conclusion():
    """A result the previous version had and the new one lacks (its data retracted, its subgroup emptied)
    is reported as no longer estimable; one that had no estimate before changes nothing."""
    old = [_result("secure:primary", 2.197, 1.185, 3.209, pval=1e-5),
           _result("secure:primary:by-intervention", 2.197, 1.185, 3.209, subgroup="group", pval=1e-5),
           {**_result("secure:DL", 0.0, 0.0, 0.0), "estimate": None, "exp_estimate": None},
           _result("sensitivity:primary", 0.79, 0.34, 1.25, measure="SMD")]
    new = [_result("sensitivity:primary", 0.79, 0.34, 1.25, measure="SMD")]
    changes = notify.changed_conclusions(old, new)
    assert [(c["analysis_id"], c["subgroup"]) for c in changes] == [
        ("secure:primary", ""), ("secure:primary:by-intervention", "group")]
    assert changes[0]["old"] == "OR 9.00 (3.27 to 24.75)" and changes[0]["new"] == "not estimable"
    assert changes[0]["reasons"] == ["no longer estimable"]
    # the refresh's own words, when it says why (here: the analysis left the plan)
    dropped = [{"analysis_id": "secure:primary", "subgroup": "", "conclusion_changed": True,
                "change_reasons": ["no longer reported: analysis removed from the plan (review.toml)"]}]
    assert notify.changed_conclusions(old, new, dropped)[0]["reasons"] == [
        "no longer reported: analysis removed from the plan (review.toml)"]
    msg = notify.conclusions_changed_by("test", 2, 1, old, new)
    assert "- secure:primary: OR 9.00 (3.27 to 24.75) → not estimable; no longer estimable" in msg.body.splitlines()
