"""The decision journal and the shared warehouse turn: exactly once, in order, with the decision time."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from living_review.web.journal import DecisionJournal
from living_review.web.lockturns import LockTurns
from support.web_app import build_known_warehouse


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    db = tmp_path_factory.mktemp("journal-template") / "w.duckdb"
    return db, build_known_warehouse(db)


@pytest.fixture
def wh(tmp_path, known):
    import shutil

    db = tmp_path / "w.duckdb"
    shutil.copyfile(known[0], db)
    return db, known[1], DecisionJournal(tmp_path / "journal.sqlite3", db, background=False)


def _rows(db, sql):
    from warehouse.db import connect

    with connect(db) as con:
        return con.execute(sql).fetchall()


def _entry(record_id, token, decision="include", reviewer="cy"):
    return dict(client_token=token, record_id=record_id, reviewer=reviewer, stage="title_abstract", decision=decision,
                reason=None, note=None, model_version="m7")


def test_journal_is_idempotent_and_flushes_exactly_once(wh):
    db, r, journal = wh
    before = _rows(db, "SELECT count(*) FROM screening_decisions")[0][0]
    seq, dup = journal.record(**_entry(r["r4"], "tok-1"))
    assert (journal.record(**_entry(r["r4"], "tok-1", decision="exclude")) == (seq, True)) and not dup
    journal.record(**_entry(r["r4"], "tok-2", decision="retract"))
    assert journal.pending_count() == 2
    assert journal.flush() == 2 and journal.pending_count() == 0 and journal.flush() == 0
    rows = _rows(db, "SELECT client_token, decision, model_version FROM screening_decisions "
                     "WHERE reviewer = 'cy' ORDER BY decision_id")
    assert rows == [("tok-1", "include", "m7"), ("tok-2", "retract", "m7")]  # in journal order
    assert _rows(db, "SELECT count(*) FROM screening_decisions")[0][0] == before + 2
    assert journal.decision_id(seq) is not None


def test_a_crash_between_commit_and_mark_adds_nothing_on_replay(wh):
    from warehouse.db import transaction

    db, r, journal = wh
    journal.record(**_entry(r["r1"], "tok-crash"))
    with transaction(db) as con:
        journal.append_pending(con)  # committed, but the process "dies" before journal.mark
    assert journal.pending_count() == 1
    journal.flush()
    assert _rows(db, "SELECT count(*) FROM screening_decisions WHERE client_token = 'tok-crash'") == [(1,)]
    assert journal.pending_count() == 0


def test_rows_survive_a_restart_and_keep_the_decision_time(wh, tmp_path):
    db, r, journal = wh
    journal.record(**_entry(r["r2"], "tok-restart"))
    decided = datetime.utcnow()
    reopened = DecisionJournal(tmp_path / "journal.sqlite3", db, background=False)
    assert reopened.pending_count() == 1
    reopened.flush()
    (at,) = _rows(db, "SELECT created_at FROM screening_decisions WHERE client_token = 'tok-restart'")[0]
    assert abs(at - decided) < timedelta(seconds=5)


def test_a_refused_row_is_kept_with_its_error_and_not_retried(wh):
    db, r, journal = wh
    journal.record(**_entry(99_999_999, "tok-ghost"))
    journal.record(**_entry(r["r3"], "tok-ok"))
    journal.flush()
    assert journal.pending_count() == 0
    assert _rows(db, "SELECT client_token FROM screening_decisions WHERE client_token LIKE 'tok-%'") == [("tok-ok",)]
    err = journal._sql.execute("SELECT error FROM journal WHERE client_token = 'tok-ghost'").fetchone()[0]
    assert "no record" in err
    assert _rows(db, "SELECT actor, action FROM audit_log WHERE action = 'decision.refused'") == [("cy", "decision.refused")]


def test_lock_turns_run_jobs_in_their_own_transactions_after_flushing(wh):
    db, r, journal = wh
    turns = LockTurns(db, journal)
    journal.record(**_entry(r["r5"], "tok-turn"))

    def sees_the_journalled_decision(con):
        return con.execute("SELECT count(*) FROM screening_decisions WHERE client_token = 'tok-turn'").fetchall()[0][0]

    def fails_after_writing(con):
        con.execute("INSERT INTO audit_log (actor, action) VALUES ('t', 'should roll back')")
        raise ValueError("boom")

    futures = [turns.submit(fails_after_writing), turns.submit(sees_the_journalled_decision)]
    with pytest.raises(ValueError, match="boom"):
        futures[0].result(timeout=30)
    assert futures[1].result(timeout=30) == 1
    assert _rows(db, "SELECT count(*) FROM audit_log WHERE action = 'should roll back'") == [(0,)]
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(turns.run(lambda con: i))) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(20))


def test_a_decision_is_journalled_only_under_the_published_session_epoch(wh):
    db, r, journal = wh
    entry = _entry(r["r4"], "tok-s1")
    assert journal.record(**entry, session_epoch=1) is None  # nothing published for cy yet: not vouched for
    journal.publish_session("cy", 2, True)
    assert journal.record(**entry, session_epoch=1) is None  # an older session
    journal.publish_session("cy", 1, True)  # a stale reader cannot lower the epoch again
    assert journal.record(**entry, session_epoch=1) is None
    seq, dup = journal.record(**entry, session_epoch=2)
    assert not dup and journal.pending_count() == 1
    journal.publish_session("cy", 3, False)  # deactivated
    assert journal.record(**_entry(r["r4"], "tok-s2"), session_epoch=3) is None
    assert journal.pending_count() == 1


def test_an_epoch_published_before_a_failed_commit_only_sends_decisions_the_slow_way(wh):
    """set_password publishes before COMMIT; if the warehouse then rolls back, the journal fails closed."""
    from warehouse import workspace
    from warehouse.db import connect, transaction

    db, r, journal = wh
    with transaction(db) as con:
        workspace.add_reviewer(con, "cy", "long enough password")
    with connect(db) as con:
        epoch = workspace.get_reviewer(con, "cy").session_epoch
    store = workspace.session_store_path(db)
    reopened = DecisionJournal(store, db, background=False)
    reopened.publish_session("cy", epoch, True)
    with pytest.raises(RuntimeError, match="crash"):
        with transaction(db) as con:
            workspace.set_password(con, "cy", "a new long password")
            raise RuntimeError("crash before commit")
    with connect(db) as con:
        assert workspace.get_reviewer(con, "cy").session_epoch == epoch  # the warehouse kept the old epoch
    assert reopened.record(**_entry(r["r4"], "tok-f1"), session_epoch=epoch) is None


def test_a_vote_beyond_reviewers_per_record_is_refused_when_written(wh, tmp_path):
    db, r, _ = wh
    journal = DecisionJournal(tmp_path / "capped.sqlite3", db, background=False, reviewers_per_record=2)
    journal.record(**_entry(r["r6"], "tok-third", decision="exclude"))  # ann and bob already agreed: include
    # r4 is a conflict (ann include, bob exclude): both votes are in, so bob's change is refused too
    journal.record(**_entry(r["r4"], "tok-bob-again", decision="include", reviewer="bob"))
    journal.record(**_entry(r["r4"], "tok-bob-undo", decision="retract", reviewer="bob"))
    journal.flush()
    assert journal.pending_count() == 0
    err = journal._sql.execute("SELECT error FROM journal WHERE client_token = 'tok-third'").fetchone()[0]
    assert "already has the 2 reviewers' decisions it needs" in err
    for token in ("tok-bob-again", "tok-bob-undo"):
        err = journal._sql.execute("SELECT error FROM journal WHERE client_token = ?", (token,)).fetchone()[0]
        assert "already has both reviewers' decisions at title/abstract" in err
    assert _rows(db, "SELECT count(*) FROM screening_decisions WHERE client_token LIKE 'tok-%'") == [(0,)]
    assert _rows(db, "SELECT actor, entity_id FROM audit_log WHERE action = 'decision.refused' ORDER BY id") == [
        ("cy", str(r["r6"])), ("bob", str(r["r4"])), ("bob", str(r["r4"]))]


def test_a_change_before_the_partner_votes_is_written_and_refused_after(wh, tmp_path):
    db, r, _ = wh
    journal = DecisionJournal(tmp_path / "capped.sqlite3", db, background=False, reviewers_per_record=2)

    def ft(token, decision, reviewer="cy"):  # r6 passed title/abstract; nobody has voted at full text
        return {**_entry(r["r6"], token, decision=decision, reviewer=reviewer), "stage": "full_text"}

    for token, decision in (("tok-1", "include"), ("tok-2", "retract"), ("tok-3", "include")):
        journal.record(**ft(token, decision))
    journal.record(**ft("tok-bob", "include", reviewer="bob"))
    journal.record(**ft("tok-4", "retract"))  # after bob's vote, in journal order: refused
    journal.flush()
    assert _rows(db, "SELECT client_token FROM screening_decisions WHERE client_token LIKE 'tok-%' "
                     "ORDER BY decision_id") == [("tok-1",), ("tok-2",), ("tok-3",), ("tok-bob",)]
    err = journal._sql.execute("SELECT error FROM journal WHERE client_token = 'tok-4'").fetchone()[0]
    assert "already has both reviewers' decisions at full text" in err
