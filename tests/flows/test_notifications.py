"""Notifications over real HTTP: the flows' state hooks post through a saved Prefect
CustomWebhookNotificationBlock to a webhook receiver on 127.0.0.1 (tests/support/webhook_server.py),
under the session's temporary Prefect API.
"""

from __future__ import annotations

import uuid

import pytest

from support.live_server import free_port
from support.pooling import import_synthetic, synthetic_config, synthetic_config_path
from support.webhook_server import WebhookServer, save_webhook_block

API_KEY = "lrkey-5f0c2a9e71d34b8b"  # invented; must never reach a notification
WEBHOOK_TOKEN = "SECRETWEBHOOKTOKEN"  # invented; a webhook URL's secret path must never reach a log


@pytest.fixture
def night_env(prefect_harness, lr_home, monkeypatch):
    monkeypatch.setenv("LIVING_REVIEW_TASK_RETRIES", "0")
    monkeypatch.delenv("LIVING_REVIEW_NOTIFY_BLOCK", raising=False)
    monkeypatch.delenv("LIVING_REVIEW_NOTIFY_SUCCESS", raising=False)
    return lr_home


@pytest.fixture
def webhook(night_env, monkeypatch):
    with WebhookServer() as server:
        monkeypatch.setenv("LIVING_REVIEW_NOTIFY_BLOCK", save_webhook_block(server.url))
        yield server


def _break_snapshot(tmp_path, monkeypatch):
    """A forced failure whose error text carries the API key: the snapshot folder's name holds it."""
    monkeypatch.setenv("NCBI_API_KEY", API_KEY)
    missing = tmp_path / f"mirror-api_key={API_KEY}" / API_KEY
    monkeypatch.setenv("LIVING_REVIEW_SNAPSHOT_DIR", str(missing))
    return missing


def _run_logs(flow_run_id) -> str:
    """The run's log lines as stored by the API (the log shipper sends them in the background)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 10
        while True:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            text = "\n".join(entry.message for entry in logs)
            if "notification" in text or time.monotonic() > deadline:
                return text
            time.sleep(0.2)


def _synthetic_secure_trials(tmp_path, monkeypatch):
    """The invented secure-attachment trials of tests/fixtures/pooling in the warehouse; (db, config)."""
    from living_review.settings import get_settings

    config_path = synthetic_config_path(tmp_path, outcomes=["secure"], sensitivity=False)
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config_path))
    config = synthetic_config(tmp_path, outcomes=["secure"], sensitivity=False)
    db = get_settings().db_path
    import_synthetic(db, config)
    return db, config


def _add_a_flipping_trial(db, config) -> None:
    """An invented large trial pointing the other way (as in tests/warehouse): the pooled CI crosses the null."""
    from warehouse.db import transaction
    from warehouse.evidence import save_outcomes, save_study

    with transaction(db) as con:
        save_study(con, {"study_id": "synthetic-z", "label": "Synthetic Z", "intervention": "group"}, config)
        save_outcomes(con, [{"study_id": "synthetic-z", "outcome": "secure", "events_int": 40, "n_int": 300,
                             "events_ctl": 160, "n_ctl": 300}], config)


def test_failed_night_sends_one_message_with_the_error_and_without_the_api_key(webhook, tmp_path, monkeypatch):
    from flows.nightly import nightly_update

    _break_snapshot(tmp_path, monkeypatch)
    state = nightly_update(source="snapshot", return_state=True)
    assert state.is_failed()
    assert "snapshot folder not found" in state.message  # the run's own result is not hidden

    (post,) = webhook.posts
    text = post.json["subject"] + "\n" + post.json["text"]
    flow_run_id = state.state_details.flow_run_id
    assert "nightly-update" in text and "Failed" in text and str(flow_run_id) in text
    assert "snapshot folder not found" in text
    assert API_KEY not in post.raw and "api_key=***" in text
    # the error's first line only: no traceback, no second strategy's copy of the same error
    assert "Traceback" not in text and len(post.json["text"].splitlines()) <= 4


def test_successful_night_sends_a_digest_only_when_enabled(webhook, monkeypatch):
    from flows.nightly import nightly_update
    from warehouse.db import transaction
    from living_review.settings import get_settings

    monkeypatch.setenv("LIVING_REVIEW_NOTIFY_SUCCESS", "true")
    first = nightly_update(source="snapshot")
    assert first["status"] == "completed" and first["new_records"] > 0
    (post,) = webhook.posts
    text = post.json["subject"] + "\n" + post.json["text"]
    assert "nightly-update" in text and "Completed" in text and "Failed" not in text
    assert f"{first['new_records']} new records" in text
    unscreened = first["ranking"]["recall_estimate"]["unscreened"]
    assert f"{unscreened} records to screen" in text
    assert "recall" in text.lower()

    monkeypatch.delenv("LIVING_REVIEW_NOTIFY_SUCCESS")
    with transaction(get_settings().db_path) as con:
        con.execute("delete from search_windows")
    second = nightly_update(source="snapshot")
    assert second["status"] == "completed"
    assert len(webhook.posts) == 1  # digest off (the default): a good night is quiet


def test_conclusion_change_sends_one_message_naming_the_outcome(webhook, tmp_path, monkeypatch):
    from flows.pool import refresh_pooled_effects

    db, config = _synthetic_secure_trials(tmp_path, monkeypatch)

    first = refresh_pooled_effects(plots=False)
    assert first["evidence_version"] == 1
    assert webhook.posts == []  # a first pooled analysis is not a change of conclusion

    _add_a_flipping_trial(db, config)
    second = refresh_pooled_effects(plots=False)
    assert second["evidence_version"] == 2 and second["conclusions_changed"] >= 1
    (post,) = webhook.posts
    text = post.json["subject"] + "\n" + post.json["text"]
    assert "refresh-pooled-effects" in text and "evidence version 2" in text
    prim_old, prim_new = first["primary"][0], second["primary"][0]
    line = next(ln for ln in text.splitlines() if ln.startswith("- secure:primary: "))
    assert (f"OR {prim_old['exp_estimate']:.2f} ({prim_old['exp_ci_lb']:.2f} to {prim_old['exp_ci_ub']:.2f})"
            f" → OR {prim_new['exp_estimate']:.2f} ({prim_new['exp_ci_lb']:.2f} to {prim_new['exp_ci_ub']:.2f})") in line
    assert "significance" in line or "direction" in line

    assert refresh_pooled_effects(plots=False)["changed"] is False
    assert len(webhook.posts) == 1  # unchanged evidence: nothing to say


def test_pooling_failure_is_reported_once_standalone_and_once_inside_a_night(webhook, monkeypatch):
    from flows.nightly import nightly_update
    from flows.pool import refresh_pooled_effects
    from living_review import pooling

    def broken(*args, **kwargs):
        raise ValueError("pooling plan could not be read\nsecond line of detail")

    monkeypatch.setattr(pooling, "_resolve", broken)
    state = refresh_pooled_effects(return_state=True)
    assert state.is_failed()
    (post,) = webhook.posts
    text = post.json["subject"] + "\n" + post.json["text"]
    assert "refresh-pooled-effects Failed" in text
    assert "ValueError: pooling plan could not be read" in text and "second line" not in text

    night = nightly_update(source="snapshot", return_state=True)
    assert night.is_failed() and "pooling:" in night.message
    assert len(webhook.posts) == 2  # the night's message only: the nested pooling run does not repeat it
    text = webhook.posts[1].json["subject"] + "\n" + webhook.posts[1].json["text"]
    assert "nightly-update Failed" in text and "pooling: ValueError: pooling plan could not be read" in text


def test_crashed_night_is_reported(webhook, monkeypatch):
    import flows.nightly

    class Crash(BaseException):
        """Not an Exception: Prefect records the run as Crashed, not Failed."""

    def crash(*args, **kwargs):
        raise Crash("worker lost its footing")

    monkeypatch.setattr(flows.nightly, "load_review", crash)
    with pytest.raises(Crash):
        flows.nightly.nightly_update(source="snapshot")
    (post,) = webhook.posts
    text = post.json["subject"] + "\n" + post.json["text"]
    assert "nightly-update" in text and "Crashed" in text and "worker lost its footing" in text


def test_unset_setting_sends_nothing_and_the_flow_still_completes(night_env, tmp_path, monkeypatch):
    from flows.nightly import nightly_update

    with WebhookServer() as server:
        save_webhook_block(server.url)  # a block exists, but no setting names it
        monkeypatch.setenv("LIVING_REVIEW_NOTIFY_SUCCESS", "true")
        assert nightly_update(source="snapshot")["status"] == "completed"
        _break_snapshot(tmp_path, monkeypatch)
        state = nightly_update(source="snapshot", return_state=True)
        assert state.is_failed() and "snapshot folder not found" in state.message
        assert server.requests == []


@pytest.mark.parametrize("receiver", ["http-500", "connection-refused", "no-such-block"])
def test_broken_delivery_does_not_change_a_failed_nights_state(night_env, tmp_path, monkeypatch, receiver):
    from flows.nightly import nightly_update

    with WebhookServer(status=500) as server:
        if receiver == "http-500":  # a Slack-like URL: its path is the credential
            block = save_webhook_block(f"{server.url}/services/T0/B0/{WEBHOOK_TOKEN}")
        elif receiver == "connection-refused":
            block = save_webhook_block(f"http://127.0.0.1:{free_port()}/hook")
        else:
            block = "custom-webhook/no-such-block-" + uuid.uuid4().hex[:8]
        monkeypatch.setenv("LIVING_REVIEW_NOTIFY_BLOCK", block)
        _break_snapshot(tmp_path, monkeypatch)
        state = nightly_update(source="snapshot", return_state=True)
        assert state.is_failed()
        assert state.message.startswith("Flow run encountered an exception: RuntimeError: nightly run failed:")
        assert "snapshot folder not found" in state.message
        assert len(server.posts) == (1 if receiver == "http-500" else 0)
        assert receiver != "http-500" or WEBHOOK_TOKEN in server.posts[0].path
    logs = _run_logs(state.state_details.flow_run_id)
    warnings = [ln for ln in logs.splitlines() if "notification not sent" in ln]
    assert warnings and not any(API_KEY in ln for ln in warnings)
    assert WEBHOOK_TOKEN not in logs and "/services/T0/B0" not in logs  # not the block's URL either
    if receiver == "http-500":
        assert any(block in ln and "500" in ln for ln in warnings)  # still says which block failed, and how


def test_broken_webhook_does_not_change_a_completed_nights_result(webhook, monkeypatch):
    from flows.nightly import nightly_update

    webhook.status = 500
    monkeypatch.setenv("LIVING_REVIEW_NOTIFY_SUCCESS", "true")
    state = nightly_update(source="snapshot", return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert summary["status"] == "completed" and summary["new_records"] > 0
    assert len(webhook.posts) == 1  # it was tried once, answered 500, and the night stays completed
    assert "notification not sent" in _run_logs(state.state_details.flow_run_id)


def test_pool_without_the_flow_notifies_a_changed_conclusion_once(webhook, tmp_path, monkeypatch):
    from living_review.cli import main

    db, config = _synthetic_secure_trials(tmp_path, monkeypatch)
    assert main(["pool", "--no-flow", "--no-plots", "--json"]) == 0
    assert webhook.posts == []  # the first pooled analysis

    _add_a_flipping_trial(db, config)
    assert main(["pool", "--no-flow", "--no-plots", "--json"]) == 0
    (post,) = webhook.posts
    text = post.json["subject"] + "\n" + post.json["text"]
    assert "living-review pool --no-flow" in text and "secure:primary" in text
    assert main(["pool", "--no-flow", "--no-plots", "--json"]) == 0
    assert len(webhook.posts) == 1  # unchanged evidence: nothing more
