"""Screening log semantics: idempotent appends, current/settled decisions, conflicts, kappa."""

from __future__ import annotations

import duckdb
import pytest

from support.workspace_db import insert_plain_records, make_warehouse
from warehouse import screening as s


@pytest.fixture
def con(tmp_path):
    db = make_warehouse(tmp_path / "w.duckdb")
    c = duckdb.connect(str(db))
    yield c
    c.close()


@pytest.fixture
def ids(con):
    return insert_plain_records(con, [{"pmid": str(1000 + i), "title": f"t{i}", "abstract": "a"} for i in range(6)])


def test_bad_inputs_are_rejected_before_writing(con, ids):
    r = ids[0]
    with pytest.raises(s.DecisionError, match="stage"):
        s.append_decision(con, r, "ann", "abstract", "include")
    with pytest.raises(s.DecisionError, match="decision"):
        s.append_decision(con, r, "ann", "title_abstract", "yes")
    with pytest.raises(s.DecisionError, match="reviewer"):
        s.append_decision(con, r, "  ", "title_abstract", "include")
    with pytest.raises(s.DecisionError, match="no record"):
        s.append_decision(con, 999999, "ann", "title_abstract", "include")
    with pytest.raises(s.DecisionError, match="resolution"):
        s.append_decision(con, r, "lead", "title_abstract", "maybe", is_resolution=True)
    assert con.execute("SELECT count(*) FROM screening_decisions").fetchall()[0][0] == 0


def test_client_token_makes_append_idempotent(con, ids):
    r = ids[0]
    first = s.append_decision(con, r, "ann", "title_abstract", "include", client_token="tok-1")
    again = s.append_decision(con, r, "ann", "title_abstract", "exclude", client_token="tok-1")
    assert again == first
    rows = con.execute("SELECT decision FROM screening_decisions").fetchall()
    assert rows == [("include",)]
    other = s.append_decision(con, r, "ann", "title_abstract", "exclude", reason="not an RCT", client_token="tok-2")
    assert other != first


def test_reason_is_kept_only_for_exclusions(con, ids):
    r = ids[0]
    s.append_decision(con, r, "ann", "title_abstract", "include", reason="not an RCT")
    s.append_decision(con, r, "bob", "title_abstract", "exclude", reason="not an RCT")
    votes = s.current_decisions(con)[r]
    assert votes == {"ann": ("include", None), "bob": ("exclude", "not an RCT")}


def test_latest_row_is_current_and_retract_undoes(con, ids):
    r = ids[0]
    s.append_decision(con, r, "ann", "title_abstract", "exclude", reason="wrong population")
    s.append_decision(con, r, "ann", "title_abstract", "include")
    assert s.reviewer_decision(con, r, "ann") == ("include", None)
    s.append_decision(con, r, "ann", "title_abstract", "retract")
    assert s.reviewer_decision(con, r, "ann") is None
    assert r not in s.decided_record_ids(con, "ann")
    # nothing was overwritten: three rows remain
    assert con.execute("SELECT count(*) FROM screening_decisions").fetchall()[0][0] == 3


def test_settled_needs_enough_agreeing_reviewers(con, ids):
    a, b, c, d, e, f = ids
    for rid, votes in {
        a: [("ann", "include"), ("bob", "include")],        # settled include
        b: [("ann", "exclude"), ("bob", "exclude")],        # settled exclude
        c: [("ann", "include")],                            # one reviewer only
        d: [("ann", "include"), ("bob", "exclude")],        # conflict
        e: [("ann", "maybe"), ("bob", "maybe")],            # maybe never settles
        f: [("ann", "include"), ("bob", "include"), ("bob", "retract")],  # retract reopens
    }.items():
        for who, dec in votes:
            s.append_decision(con, rid, who, "title_abstract", dec, reason="other" if dec == "exclude" else None)
    assert s.settled_decisions(con, "title_abstract", 2) == {a: "include", b: "exclude"}
    assert s.settled_decisions(con, "title_abstract", 1) == {a: "include", b: "exclude", c: "include", f: "include"}
    assert s.settled_decisions(con, "full_text", 2) == {}
    kinds = {cf.record_id: cf.kind for cf in s.conflicts(con, "title_abstract", 2)}
    assert kinds == {d: "disagreement", e: "undecided"}


def test_resolution_settles_and_wins(con, ids):
    a, b = ids[:2]
    s.append_decision(con, a, "ann", "title_abstract", "include")
    s.append_decision(con, a, "bob", "title_abstract", "exclude", reason="not an RCT")
    s.append_decision(con, a, "lead", "title_abstract", "exclude", reason="not an RCT", is_resolution=True)
    # unanimous agreement overruled by a lead
    s.append_decision(con, b, "ann", "title_abstract", "include")
    s.append_decision(con, b, "bob", "title_abstract", "include")
    s.append_decision(con, b, "lead", "title_abstract", "exclude", reason="duplicate", is_resolution=True)
    assert s.settled_decisions(con) == {a: "exclude", b: "exclude"}
    assert s.settled_details(con)[b] == ("exclude", "duplicate")
    assert s.conflicts(con) == []
    # the lead's resolution is not a third screening vote
    assert set(s.current_decisions(con)[a]) == {"ann", "bob"}
    # retracting the resolution reopens the conflict
    s.append_decision(con, a, "lead", "title_abstract", "retract", is_resolution=True)
    assert a not in s.settled_decisions(con)
    assert [cf.record_id for cf in s.conflicts(con)] == [a]


def test_cohens_kappa_known_values():
    # 2x2 table: both yes 20, both no 15, a-yes/b-no 5, a-no/b-yes 10 -> po 0.7, pe 0.5, kappa 0.4
    pairs = [("include", "include")] * 20 + [("exclude", "exclude")] * 15
    pairs += [("include", "exclude")] * 5 + [("exclude", "include")] * 10
    assert s.cohens_kappa(pairs) == pytest.approx(0.4)
    assert s.cohens_kappa([("include", "include")] * 3) is None  # undefined: no variation
    assert s.cohens_kappa([]) is None
    assert s.cohens_kappa([("include", "exclude"), ("exclude", "include")]) == pytest.approx(-1.0)


def test_kappa_by_pair_uses_current_decisions(con, ids):
    a, b, c, d = ids[:4]
    for rid, x, y in [(a, "include", "include"), (b, "exclude", "exclude"), (c, "include", "exclude"), (d, "exclude", "exclude")]:
        s.append_decision(con, rid, "ann", "title_abstract", x)
        s.append_decision(con, rid, "bob", "title_abstract", y)
    s.append_decision(con, a, "cy", "title_abstract", "include")
    got = {(p.reviewer_a, p.reviewer_b): p for p in s.kappa_by_pair(con)}
    ab = got[("ann", "bob")]
    assert ab.n == 4 and ab.agreement == pytest.approx(0.75)
    assert ab.kappa == pytest.approx(0.5)  # po .75, pe .5
    assert got[("ann", "cy")].n == 1 and got[("bob", "cy")].n == 1
    assert got[("ann", "cy")].kappa is None


def test_last_decision_walks_back_for_repeated_undo(con, ids):
    a, b = ids[:2]
    s.append_decision(con, a, "ann", "title_abstract", "include")
    s.append_decision(con, b, "ann", "title_abstract", "exclude", reason="other")
    s.append_decision(con, a, "bob", "title_abstract", "include")
    assert s.last_decision(con, "ann")["record_id"] == b
    s.append_decision(con, b, "ann", "title_abstract", "retract")
    assert s.last_decision(con, "ann")["record_id"] == a
    s.append_decision(con, a, "ann", "title_abstract", "retract")
    assert s.last_decision(con, "ann") is None


def test_decision_time_can_be_given_for_journalled_decisions(con, ids):
    from datetime import datetime

    s.append_decision(con, ids[0], "ann", "title_abstract", "include", created_at=datetime(2026, 1, 2, 3, 4, 5))
    s.append_decision(con, ids[1], "ann", "title_abstract", "include")
    got = [r[0] for r in con.execute("SELECT created_at FROM screening_decisions ORDER BY decision_id").fetchall()]
    assert got[0] == datetime(2026, 1, 2, 3, 4, 5) and got[1].year >= 2026
