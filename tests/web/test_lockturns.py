"""LockTurns.run's timeout tells the truth: a job that timed out before its turn never runs; one that
had started is waited for and its real outcome reported."""

from __future__ import annotations

import threading
import time

import pytest

from living_review.web import lockturns
from living_review.web.lockturns import LockTurns


@pytest.fixture
def db(tmp_path):
    from warehouse.db import migrate

    path = tmp_path / "warehouse.duckdb"
    migrate(path)
    return path


def _count(db, action: str) -> int:
    from warehouse.db import connect

    with connect(db) as con:
        return con.execute("SELECT count(*) FROM audit_log WHERE action = ?", [action]).fetchall()[0][0]


def _hold_lock(db, seconds: float) -> threading.Thread:
    """Another thread holds the warehouse lock for `seconds` (as the nightly append does per batch)."""
    from warehouse.db import connect

    held = threading.Event()

    def hold():
        with connect(db):
            held.set()
            time.sleep(seconds)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(30)
    return t


def _write(action: str):
    def job(con):
        con.execute("INSERT INTO audit_log (actor, action) VALUES ('t', ?)", [action])
        return "written"
    return job


def test_a_job_that_times_out_waiting_for_its_turn_is_withdrawn_and_never_written(db):
    turns = LockTurns(db)
    holder = _hold_lock(db, 2.0)
    started = time.monotonic()
    with pytest.raises(TimeoutError) as timed_out:
        turns.run(_write("late write"), timeout=0.5)
    assert time.monotonic() - started < 1.5  # the caller is answered at its timeout, not after the lock
    holder.join()
    assert turns.run(lambda con: "next turn") == "next turn"  # the turn the withdrawn job was queued for is over
    assert _count(db, "late write") == 0
    assert "nothing was saved" in str(timed_out.value)
    assert isinstance(lockturns.TurnTimeout("x"), TimeoutError)


def _run_past_its_timeout(db, body, timeout: float) -> tuple[dict, dict]:
    """Run `body(con)` through LockTurns.run(timeout=...) in a thread; the job starts at once and is
    held until the caller's timeout has passed. Returns (outcome at the timeout, final outcome)."""
    turns = LockTurns(db)
    running, release = threading.Event(), threading.Event()
    outcome: dict = {}

    def job(con):
        running.set()
        release.wait(30)
        return body(con)

    def caller():
        try:
            outcome["value"] = turns.run(job, timeout=timeout)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    submitted = time.monotonic()
    t = threading.Thread(target=caller)
    t.start()
    assert running.wait(30)
    time.sleep(max(0.0, submitted + timeout + 0.5 - time.monotonic()))  # the caller's timeout has passed mid-job
    at_timeout = dict(outcome)
    release.set()
    t.join(30)
    return at_timeout, outcome


def test_a_job_already_running_at_the_timeout_is_waited_for_and_its_result_returned(db):
    at_timeout, outcome = _run_past_its_timeout(db, _write("slow write"), timeout=1.0)
    assert at_timeout == {}  # still waiting for the job, not answered with a timeout
    assert outcome == {"value": "written"}
    assert _count(db, "slow write") == 1


def test_a_job_already_running_at_the_timeout_that_fails_reports_its_own_error(db):
    def fails(con):
        _write("rolled back")(con)
        raise ValueError("the job's own error")

    at_timeout, outcome = _run_past_its_timeout(db, fails, timeout=0.5)
    assert at_timeout == {}
    assert isinstance(outcome.get("error"), ValueError)
    assert _count(db, "rolled back") == 0


def test_the_workspace_answers_503_when_the_warehouse_stays_busy_and_saves_nothing(lr_home, template_warehouse,
                                                                                    monkeypatch):
    import shutil

    from living_review.config import load_review
    from living_review.settings import get_settings
    from living_review.web.app import create_app
    from support.web_app import decide, login, make_client
    from warehouse.db import connect

    monkeypatch.setattr(lockturns, "DEFAULT_TIMEOUT", 0.5, raising=False)
    settings = get_settings()
    settings.ensure_dirs()
    shutil.copyfile(template_warehouse, settings.db_path)
    app = create_app(settings, load_review(settings.config_path))
    c = make_client(app)
    csrf = login(c, "ann")
    with connect(settings.db_path) as con:
        rid = int(con.execute("SELECT min(record_id) FROM records").fetchall()[0][0])
    assert decide(c, csrf, rid, "include", token="before-busy").status_code == 303
    assert c.get("/screen").status_code == 200  # written to the warehouse at this turn

    holder = _hold_lock(settings.db_path, 2.0)
    r = c.post("/undo", data={"csrf_token": csrf, "stage": "title_abstract"}, follow_redirects=False)
    assert r.status_code == 503 and "nothing was saved" in r.text and r.headers.get("retry-after")
    holder.join()
    assert c.get("/screen").status_code == 200  # the next turn, after the one the undo was queued for
    with connect(settings.db_path) as con:
        rows = con.execute("SELECT decision FROM screening_decisions WHERE reviewer = 'ann' ORDER BY decision_id"
                           ).fetchall()
    assert rows == [("include",)]  # the undo that timed out did not happen later behind the reviewer's back
