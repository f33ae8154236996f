"""Locked short-lived connections: transactions, threads, processes, kernel waits, fairness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from warehouse import db

REPO = Path(__file__).resolve().parents[2]


def _child(code: str, *args: str) -> subprocess.Popen:
    """A python child with the repo importable; prints lines the test reads."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def wh(tmp_path) -> Path:
    path = tmp_path / "nested" / "dir" / "warehouse.duckdb"
    db.migrate(path)
    return path


def _counter(path: Path) -> None:
    with db.transaction(path) as con:
        con.execute("CREATE TABLE IF NOT EXISTS counter (n INTEGER)")
        con.execute("INSERT INTO counter VALUES (0)")


def test_connect_creates_parent_dirs_and_lock_file(wh):
    assert wh.exists()
    assert db.lock_path(wh).name == "warehouse.duckdb.lock"
    assert db.lock_path(wh).exists()


def test_transaction_commits(wh):
    with db.transaction(wh) as con:
        con.execute("INSERT INTO audit_log (actor, action) VALUES ('ann', 'test')")
    assert db.fetchall(wh, "SELECT actor, action FROM audit_log") == [("ann", "test")]


def test_transaction_rolls_back_and_reraises(wh):
    with pytest.raises(ZeroDivisionError):
        with db.transaction(wh) as con:
            con.execute("INSERT INTO audit_log (actor, action) VALUES ('ann', 'test')")
            1 / 0
    assert db.fetchall(wh, "SELECT count(*) FROM audit_log") == [(0,)]
    # the lock was released: another transaction goes through
    with db.transaction(wh) as con:
        con.execute("INSERT INTO audit_log (actor, action) VALUES ('bob', 'after')")
    assert db.fetchall(wh, "SELECT actor FROM audit_log") == [("bob",)]


def test_sql_error_inside_transaction_rolls_back(wh):
    with pytest.raises(duckdb.Error):
        with db.transaction(wh) as con:
            con.execute("INSERT INTO audit_log (actor, action) VALUES ('ann', 'test')")
            con.execute("INSERT INTO no_such_table VALUES (1)")
    assert db.fetchall(wh, "SELECT count(*) FROM audit_log") == [(0,)]


def test_reentry_from_same_thread_reuses_connection_and_joins_transaction(wh):
    with pytest.raises(RuntimeError):
        with db.transaction(wh) as outer:
            outer.execute("INSERT INTO audit_log (actor, action) VALUES ('ann', 'outer')")
            with db.connect(wh) as inner:  # would deadlock on its own lock if not re-entrant
                assert inner is outer
            with db.transaction(wh) as nested:
                nested.execute("INSERT INTO audit_log (actor, action) VALUES ('ann', 'nested')")
            raise RuntimeError("outer fails after the nested block")
    assert db.fetchall(wh, "SELECT count(*) FROM audit_log") == [(0,)]


def test_threads_of_one_process_serialise(wh):
    _counter(wh)
    errors = []

    def bump():
        try:
            for _ in range(15):
                with db.transaction(wh) as con:
                    n = con.execute("SELECT n FROM counter").fetchall()[0][0]
                    con.execute("UPDATE counter SET n = ?", [n + 1])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.fetchall(wh, "SELECT n FROM counter") == [(60,)]


_BUMP = """
import sys
from warehouse import db
path, times = sys.argv[1], int(sys.argv[2])
for _ in range(times):
    with db.transaction(path) as con:
        n = con.execute("SELECT n FROM counter").fetchall()[0][0]
        con.execute("UPDATE counter SET n = ?", [n + 1])
print("done")
"""


def test_two_processes_serialise_without_lost_updates(wh):
    """Without the lock the second process could not even open the file (DuckDB IOException)."""
    _counter(wh)
    children = [_child(_BUMP, str(wh), "25") for _ in range(2)]
    outs = [c.communicate(timeout=60) for c in children]
    assert [c.returncode for c in children] == [0, 0], outs
    assert db.fetchall(wh, "SELECT n FROM counter") == [(50,)]


_HOLD = """
import sys, time
from warehouse import db
with db.transaction(sys.argv[1]) as con:
    con.execute("INSERT INTO audit_log (actor, action) VALUES ('child', 'held')")
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""

_WAIT = """
import sys
from warehouse import db
print("waiting", flush=True)
with db.connect(sys.argv[1]) as con:
    print("got", con.execute("SELECT count(*) FROM audit_log").fetchall()[0][0], flush=True)
"""


def _syscall_or_wchan(pid: int) -> tuple[str, str]:
    def read(name):
        try:
            return Path(f"/proc/{pid}/{name}").read_text().strip()
        except OSError:
            return ""
    return read("syscall").split(" ")[0], read("wchan")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_lock_wait_is_a_kernel_wait(wh):
    """A waiter sleeps inside flock(2), not in a polling loop (which a busy writer starves)."""
    holder = _child(_HOLD, str(wh), "30")
    try:
        assert holder.stdout.readline().strip() == "holding"
        waiter = _child(_WAIT, str(wh))
        assert waiter.stdout.readline().strip() == "waiting"
        flock_nr = {"x86_64": "73", "aarch64": "32"}.get(os.uname().machine)
        state = ("", "")
        for _ in range(200):  # until the waiter has reached its blocking call
            state = _syscall_or_wchan(waiter.pid)
            if state[0] == flock_nr or "lock" in state[1]:
                break
            time.sleep(0.02)
        assert state[0] == flock_nr or "lock" in state[1], state
        cpu_before = _cpu_ticks(waiter.pid)
        time.sleep(0.5)
        assert _cpu_ticks(waiter.pid) - cpu_before <= 1  # asleep, not spinning
    finally:
        holder.kill()  # the kernel drops a dead holder's flock, so the waiter proceeds
        holder.wait()
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert out.strip() == "got 0"  # the killed holder's insert was never committed


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


_BUSY_WRITER = """
import sys, time
from warehouse import db
path = sys.argv[1]
print("start", flush=True)
for _ in range(int(sys.argv[2])):
    with db.transaction(path) as con:      # back-to-back, no gap between batches
        con.execute("UPDATE counter SET n = n + 1")
        time.sleep(0.03)
"""


def test_waiter_is_not_starved_by_a_back_to_back_writer(wh):
    """Fairness as an ordering fact: while we wait, the writer completes at most one more batch."""
    _counter(wh)
    writer = _child(_BUSY_WRITER, str(wh), "400")
    try:
        assert writer.stdout.readline().strip() == "start"
        time.sleep(0.3)
        overtakes = []
        for _ in range(15):
            before = db.fetchall(wh, "SELECT n FROM counter")[0][0]
            with db.connect(wh) as con:
                after = con.execute("SELECT n FROM counter").fetchall()[0][0]
            overtakes.append(after - before)
        # The turnstile guarantees it: only the batch already running when we asked may finish first.
        assert max(overtakes) <= 1, overtakes
    finally:
        writer.kill()
        writer.wait()


_KILLED_MID_TXN = """
import sys, time
from warehouse import db
with db.transaction(sys.argv[1]) as con:
    con.execute("INSERT INTO audit_log (actor, action) SELECT 'child', 'row ' || i FROM range(5000) t(i)")
    con.execute("INSERT INTO nightly_runs (source) VALUES ('snapshot')")
    print("inserted", flush=True)
    time.sleep(60)
"""


def test_process_killed_mid_transaction_leaves_nothing(wh):
    child = _child(_KILLED_MID_TXN, str(wh))
    assert child.stdout.readline().strip() == "inserted"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert db.fetchall(wh, "SELECT count(*) FROM audit_log") == [(0,)]
    assert db.fetchall(wh, "SELECT count(*) FROM nightly_runs") == [(0,)]
    with db.transaction(wh) as con:  # and the file is usable afterwards
        con.execute("INSERT INTO nightly_runs (source) VALUES ('snapshot')")
    assert db.fetchall(wh, "SELECT count(*) FROM nightly_runs") == [(1,)]


def test_fetch_helpers(wh):
    with db.transaction(wh) as con:
        con.execute("INSERT INTO audit_log (actor, action, entity_id) VALUES ('ann', 'x', ?)", ["42"])
    assert db.fetchall(wh, "SELECT entity_id FROM audit_log WHERE actor = ?", ["ann"]) == [("42",)]
    frame = db.fetch_df(wh, "SELECT actor, \"at\" FROM audit_log")
    assert list(frame["actor"]) == ["ann"]


_FOREIGN_HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])       # no warehouse lock: like a DuckDB CLI left open
print("open", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_foreign_holder_is_waited_for_then_reported(wh, monkeypatch):
    holder = _child(_FOREIGN_HOLDER, str(wh), "1.0")
    assert holder.stdout.readline().strip() == "open"
    with db.connect(wh) as con:  # retried with backoff until the holder lets go
        assert con.execute("SELECT count(*) FROM audit_log").fetchall() == [(0,)]
    holder.wait(timeout=30)
    holder = _child(_FOREIGN_HOLDER, str(wh), "30")
    try:
        assert holder.stdout.readline().strip() == "open"
        monkeypatch.setattr(db, "FOREIGN_LOCK_TIMEOUT_S", 0.3)
        with pytest.raises(db.WarehouseBusyError, match="does not use warehouse.duckdb.lock"):
            with db.connect(wh):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_times_are_stored_in_utc_whatever_the_servers_time_zone(tmp_path):
    """current_timestamp defaults must agree with the UTC times the web journal writes, or histories
    that sort decisions by time put an undo before the decision it undid (on any non-UTC server)."""
    repo = Path(__file__).resolve().parents[2]
    script = (
        "import sys\n"
        "from warehouse import db\n"
        "with db.transaction(sys.argv[1]) as con:\n"
        "    con.execute('CREATE TABLE t (stamped TIMESTAMP DEFAULT current_timestamp, x INTEGER)')\n"
        "    con.execute('INSERT INTO t (x) VALUES (1)')\n"
        "    print(con.execute('SELECT stamped FROM t').fetchone()[0].isoformat())\n"
    )
    env = {**os.environ, "TZ": "America/New_York", "PYTHONPATH": str(repo)}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "tz.duckdb")], env=env, cwd=repo,
                         capture_output=True, text=True, check=True).stdout.strip()
    from datetime import datetime, timezone

    stored = datetime.fromisoformat(out)
    utc_now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert abs((utc_now - stored).total_seconds()) < 120  # New York local time would be 4–5 hours off
