"""Login rate limiting: failures per reviewer name and per client address, durable, with an injected clock."""

from __future__ import annotations

import time

import pytest

from support.web_app import PASSWORD, csrf_of, make_client

T0 = 1_900_000_000.0  # a fixed "now" for the injected clock


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _client(app, address: str):
    from fastapi.testclient import TestClient

    return TestClient(app, raise_server_exceptions=False, follow_redirects=True, client=(address, 50000))


def _try(client, name: str, password: str):
    page = client.get("/login")
    return client.post("/login", data={"csrf_token": csrf_of(page.text), "name": name, "password": password,
                                       "next": "/screen"}, follow_redirects=False)


@pytest.fixture
def clock(ws) -> Clock:
    c = Clock()
    ws.app.state.login_throttle.clock = c
    return c


@pytest.fixture
def password_checks(monkeypatch) -> list[str]:
    """Names whose password the app actually checked (calls to workspace.authenticate)."""
    from warehouse import workspace

    calls: list[str] = []
    real = workspace.authenticate

    def counting(con, name, password):
        calls.append(name)
        return real(con, name, password)

    monkeypatch.setattr(workspace, "authenticate", counting)
    return calls


def test_sixth_attempt_after_five_failures_is_refused_even_with_the_right_password(ws, clock, password_checks):
    attacker = _client(ws.app, "10.0.0.1")
    for i in range(5):
        r = _try(attacker, "ann", f"wrong password {i}")
        assert r.status_code == 401, i
        clock.now += 10  # failures at T0, T0+10, ..., T0+40; the 6th attempt comes at T0+50
    assert len(password_checks) == 5
    r = _try(attacker, "ann", PASSWORD)
    assert r.status_code == 429
    assert "Too many failed logins" in r.text and "ann" in r.text
    assert r.headers["Retry-After"] == str(900 - 50)  # until the oldest of the five is 15 minutes old
    assert len(password_checks) == 5  # refused without checking the password
    assert attacker.get("/screen", follow_redirects=False).status_code == 303  # not logged in
    # the name is limited wherever the attempt comes from ...
    elsewhere = _client(ws.app, "10.0.0.2")
    assert _try(elsewhere, "ann", PASSWORD).status_code == 429
    # ... while another reviewer logs in as usual
    r = _try(elsewhere, "bob", PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/screen"
    assert elsewhere.get("/screen").status_code == 200


def test_json_clients_get_the_429_as_json_with_retry_after(ws, clock):
    c = _client(ws.app, "10.0.0.3")
    for _ in range(5):
        _try(c, "ann", "wrong password")
    page = c.get("/login")
    r = c.post("/login", data={"csrf_token": csrf_of(page.text), "name": "ann", "password": PASSWORD},
               headers={"accept": "application/json"})
    assert r.status_code == 429 and "Too many failed logins" in r.json()["error"]
    assert r.headers["Retry-After"] == "900"


def test_time_passing_lifts_the_limit(ws, clock):
    c = _client(ws.app, "10.0.0.4")
    for _ in range(5):
        assert _try(c, "ann", "wrong password").status_code == 401
        clock.now += 10
    clock.now = T0 + 899  # the first failure is still inside the 15-minute window
    r = _try(c, "ann", PASSWORD)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    clock.now = T0 + 900  # it has aged out: four failures in the window, one attempt allowed
    r = _try(c, "ann", PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/screen"


def test_a_successful_login_clears_the_name_counter(ws, clock):
    first, second = _client(ws.app, "10.0.1.1"), _client(ws.app, "10.0.1.2")
    for _ in range(4):
        assert _try(first, "ann", "wrong password").status_code == 401
    assert _try(first, "ann", PASSWORD).status_code == 303
    for _ in range(4):  # four more: eight in the window had the success not cleared the counter
        assert _try(second, "ann", "wrong password").status_code == 401
    assert _try(second, "ann", PASSWORD).status_code == 303


def test_failures_from_one_address_are_limited_separately_and_a_success_does_not_clear_them(ws, clock):
    spray = _client(ws.app, "10.0.2.1")
    for i in range(4):  # four different names, so no name counter is near its limit
        assert _try(spray, f"guess{i}", "wrong password").status_code == 401
    assert _try(spray, "bob", PASSWORD).status_code == 303  # a success from the address ...
    assert _try(spray, "guess4", "wrong password").status_code == 401  # ... is not counted as a failure
    r = _try(spray, "lee", PASSWORD)  # but did not clear the address's four earlier failures: five now
    assert r.status_code == 429 and "address" in r.text
    assert _try(_client(ws.app, "10.0.2.2"), "lee", PASSWORD).status_code == 303


def test_the_limit_survives_a_restart_of_the_app(ws, clock):
    from living_review.web.app import create_app

    c = _client(ws.app, "10.0.3.1")
    for _ in range(5):
        _try(c, "ann", "wrong password")
    restarted = create_app(ws.settings, ws.config)
    restarted.state.login_throttle.clock = clock
    assert _try(_client(restarted, "10.0.3.2"), "ann", PASSWORD).status_code == 429


def test_limits_are_settings(lr_home, monkeypatch, ws):
    from living_review.settings import get_settings
    from living_review.web.app import create_app

    defaults = get_settings()
    assert (defaults.login_max_failures, defaults.login_max_failures_per_address,
            defaults.login_window_seconds) == (5, 5, 900)
    monkeypatch.setenv("LIVING_REVIEW_LOGIN_MAX_FAILURES", "2")
    monkeypatch.setenv("LIVING_REVIEW_LOGIN_MAX_FAILURES_PER_ADDRESS", "3")
    monkeypatch.setenv("LIVING_REVIEW_LOGIN_WINDOW", "60")
    settings = get_settings()
    assert (settings.login_max_failures, settings.login_max_failures_per_address,
            settings.login_window_seconds) == (2, 3, 60)
    app = create_app(settings, ws.config)
    app.state.login_throttle.clock = Clock()
    c = _client(app, "10.0.4.1")
    for _ in range(2):
        assert _try(c, "ann", "wrong password").status_code == 401
    r = _try(c, "ann", PASSWORD)
    assert r.status_code == 429 and r.headers["Retry-After"] == "60"
    assert _try(c, "bob", "wrong password").status_code == 401  # the address's third failure
    assert _try(c, "lee", PASSWORD).status_code == 429


WORKER = """
import sys, time
from living_review.web.throttle import LoginThrottle
throttle = LoginThrottle(sys.argv[1])
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
print(sum(throttle.begin("ann", sys.argv[3]).allowed for _ in range(3)))
"""


def test_concurrent_attempts_from_several_processes_cannot_exceed_the_limit(tmp_path):
    """Worker processes share the counters, and the check reserves the attempt atomically."""
    import subprocess
    import sys

    from living_review.web.throttle import LoginThrottle

    path = tmp_path / "state.sqlite3"
    LoginThrottle(path)  # create the table once
    start = time.time() + 3.0  # every process imports first, then all try at once
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), repr(start), f"10.9.0.{i}"],
                              stdout=subprocess.PIPE, text=True) for i in range(6)]
    allowed = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(allowed) == 5  # 18 tries, every one a failure: 5 let through
    assert not LoginThrottle(path).begin("ann", "10.9.1.1").allowed


def test_throttle_unit_retry_after_and_cancel(tmp_path):
    from living_review.web.throttle import LoginThrottle

    clock = Clock()
    t = LoginThrottle(tmp_path / "s.sqlite3", max_failures=2, max_failures_per_address=10, window_seconds=100,
                      clock=clock)
    a = t.begin(" ann ", "1.1.1.1")
    assert a.allowed and a.retry_after == 0
    t.cancel(a)  # a server fault while checking the password is not the reviewer's failure
    t.begin("ann", "1.1.1.1")
    clock.now += 30
    t.begin("ann", "1.1.1.1")
    blocked = t.begin("ann", "1.1.1.2")
    assert not blocked.allowed and blocked.scope == "name" and blocked.retry_after == 70
    clock.now += 70
    assert t.begin("ann", "1.1.1.2").allowed
    assert LoginThrottle(tmp_path / "s.sqlite3").clock is time.time  # the real clock by default


def test_a_server_fault_while_checking_the_password_is_not_counted_as_a_failure(ws, clock, monkeypatch):
    from warehouse import workspace

    real = workspace.authenticate

    def broken(con, name, password):
        raise RuntimeError("warehouse trouble")

    monkeypatch.setattr(workspace, "authenticate", broken)
    c = _client(ws.app, "10.0.5.1")
    for _ in range(6):
        assert _try(c, "ann", PASSWORD).status_code == 500
    monkeypatch.setattr(workspace, "authenticate", real)
    assert _try(c, "ann", PASSWORD).status_code == 303


def test_ui_command_takes_the_client_address_from_the_socket_not_forwarded_headers(lr_home, monkeypatch):
    """uvicorn's default trusts X-Forwarded-For on loopback: a client could then pick a fresh address
    for every attempt and step around the per-address limit."""
    import uvicorn

    from living_review.cli import main
    from living_review.settings import get_settings
    from warehouse.db import migrate

    migrate(get_settings().db_path)
    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    assert main(["ui", "--port", "8765"]) == 0
    assert seen["proxy_headers"] is False and seen["host"] == "127.0.0.1"


def test_the_app_closes_the_throttle_when_it_stops(lr_home):
    import sqlite3

    from fastapi.testclient import TestClient

    from living_review.settings import get_settings
    from living_review.web.app import create_app
    from warehouse.db import migrate

    settings = get_settings()
    migrate(settings.db_path)
    app = create_app(settings)
    with TestClient(app):
        pass
    with pytest.raises(sqlite3.ProgrammingError):  # closed: no connection left open per app
        app.state.login_throttle.failures("name", "ann")
