"""Workspace queries: password hashing, accounts, queue, PRISMA counts, exports."""

from __future__ import annotations

import csv
import io

import pytest

from support.web_app import build_known_warehouse
from warehouse import workspace as w


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    db = tmp_path_factory.mktemp("known") / "w.duckdb"
    return db, build_known_warehouse(db)


def test_password_hash_is_salted_scrypt_and_verifies():
    h1, h2 = w.hash_password("s3cret password"), w.hash_password("s3cret password")
    assert h1 != h2 and h1.startswith("scrypt$16384$8$1$")
    assert w.verify_password("s3cret password", h1)
    assert not w.verify_password("s3cret passworD", h1)
    assert not w.verify_password("s3cret password", "md5$abc")
    assert not w.verify_password("x", "garbage")


def test_accounts_validate_names_roles_and_passwords(tmp_path):
    from warehouse.db import migrate, transaction

    db = tmp_path / "a.duckdb"
    migrate(db)
    with transaction(db) as con:
        w.add_reviewer(con, "ann", "long enough", "lead")
        for name, pw, role, msg in [("ann", "long enough", "reviewer", "already exists"),
                                    ("<b>x</b>", "long enough", "reviewer", "name"),
                                    ("bob", "short", "reviewer", "8 characters"),
                                    ("bob", "long enough", "admin", "role")]:
            with pytest.raises(w.AccountError, match=msg):
                w.add_reviewer(con, name, pw, role)
        assert [(r.name, r.role) for r in w.list_reviewers(con)] == [("ann", "lead")]
        assert w.authenticate(con, "ann", "long enough").name == "ann"
        assert w.authenticate(con, "ann", "wrong one") is None
        assert w.authenticate(con, "nobody", "long enough") is None
        epoch = w.get_reviewer(con, "ann").session_epoch
        w.set_role(con, "ann", "reviewer")
        assert w.get_reviewer(con, "ann").role == "reviewer" and w.get_reviewer(con, "ann").session_epoch == epoch + 1
        w.set_password(con, "ann", "long enough too")
    import sqlite3

    # every epoch bump is also published beside the warehouse, for the web app's lock-free decision path
    published = sqlite3.connect(w.session_store_path(db)).execute(
        "SELECT name, epoch, active FROM reviewer_sessions").fetchall()
    assert published == [("ann", epoch + 2, 1)]
    with transaction(db) as con:
        with pytest.raises(w.AccountError, match="no reviewer"):
            w.set_password(con, "ghost", "long enough")
        actions = [a for (a,) in con.execute("SELECT action FROM audit_log ORDER BY id").fetchall()]
        assert actions == ["reviewer.add", "reviewer.role", "reviewer.passwd"]
        hashes = con.execute("SELECT password_hash FROM reviewers").fetchall()
        assert "long enough" not in hashes[0][0]


def test_prisma_counts_on_a_known_warehouse(known):
    from warehouse.db import connect

    db, r = known
    with connect(db) as con:
        cum, updates = w.prisma_counts(con, 2)
    assert (cum.identified, cum.duplicates, cum.screened) == (9, 3, 6)
    assert (cum.excluded_screening, cum.awaiting_screening) == (2, 1)
    assert (cum.sought, cum.assessed, cum.awaiting_full_text, cum.included) == (3, 2, 1, 1)
    assert cum.excluded_full_text == {"no attachment outcome": 1}
    assert cum.by_strategy == {"attachment-rcts": 6, "uk-interventions": 3}
    u1, u2 = updates
    assert (u1.identified, u1.duplicates, u1.screened, u1.excluded_screening, u1.sought, u1.assessed, u1.included) == \
        (7, 2, 5, 2, 2, 2, 1)
    assert u1.by_strategy == {"attachment-rcts": 4, "uk-interventions": 3}
    assert (u2.identified, u2.duplicates, u2.screened, u2.sought, u2.assessed, u2.awaiting_full_text) == (2, 1, 1, 1, 0, 1)


def test_prisma_svg_shows_the_numbers_and_escapes_reasons(known):
    from living_review.web.prisma_svg import prisma_svg

    db, _ = known
    from warehouse.db import connect

    with connect(db) as con:
        cum, _ = w.prisma_counts(con, 2)
    cum.excluded_full_text["<script>x</script> & co"] = 2
    svg = prisma_svg(cum, "Cumulative")
    assert svg.startswith("<svg") and "Records identified from PubMed (n = 9)" in svg
    assert "Duplicate records (n = 3)" in svg and "Studies included in review (n = 1)" in svg
    assert "&lt;script&gt;x&lt;/script&gt; &amp; co (n = 2)" in svg and "<script>" not in svg
    import xml.dom.minidom

    xml.dom.minidom.parseString(svg)  # well-formed


def test_queue_hides_decided_settled_and_resolved_records(known):
    from warehouse.db import connect

    db, r = known
    with connect(db) as con:
        q_ann = w.queue(con, "ann", "title_abstract", 2)
        q_new = w.queue(con, "cy", "title_abstract", 2)
        q_new3 = w.queue(con, "cy", "title_abstract", 3)
        q_ft = w.queue(con, "cy", "full_text", 2)
        scored = w.queue(con, "cy", "title_abstract", 3, scores={r["r1"]: 0.1, r["r4"]: 0.9})
    assert q_ann == [] and q_new == []  # every record has two current decisions or a resolution
    assert set(q_new3) == {r["r1"], r["r2"], r["r3"], r["r4"], r["r6"]}  # r5 is resolved
    assert q_ft == [r["r6"]]  # r1, r2 have two full-text decisions already
    assert scored[:2] == [r["r4"], r["r1"]]


def test_progress_counts(known):
    from warehouse.db import connect

    db, r = known
    with connect(db) as con:
        ta, ft = w.progress(con, "ann", 2)
    assert (ta.eligible, ta.settled, ta.included, ta.excluded, ta.conflicts, ta.remaining) == (6, 5, 3, 2, 1, 1)
    assert (ft.eligible, ft.settled, ft.included, ft.excluded, ft.remaining) == (3, 2, 1, 1, 1)
    assert ta.mine_done == 6 and ft.mine_done == 2


def test_exports_carry_decisions_reasons_and_reviewers(known):
    from warehouse.db import connect

    db, r = known
    with connect(db) as con:
        rows = w.export_records(con, 2)
        records_csv = w.records_csv(rows)
        ris = w.records_ris(rows)
        decisions = w.decisions_csv(con)
    table = {row["record_id"]: row for row in csv.DictReader(io.StringIO(records_csv))}
    assert table[str(r["r3"])]["title_abstract_decision"] == "exclude"
    assert table[str(r["r3"])]["title_abstract_reason"] == "not an RCT"
    assert table[str(r["r2"])]["full_text_reason"] == "no attachment outcome"
    assert table[str(r["r4"])]["title_abstract_decision"] == ""
    assert table[str(r["r4"])]["title_abstract_votes"] == "ann: include; bob: exclude (wrong comparator)"
    assert ris.count("TY  - JOUR") == 6 and ris.count("ER  - ") == 6
    assert "N1  - full_text: exclude (no attachment outcome)" in ris
    assert "AN  - 23435529" in ris and "DO  - 10.1200/JCO.2012.44.6112" in ris
    assert all(line[:2].isupper() and line[2:6] == "  - " for line in ris.splitlines() if line)
    drows = list(csv.DictReader(io.StringIO(decisions)))
    assert len(drows) == 17 and {"reviewer", "created_at", "stage", "reason", "is_resolution"} <= set(drows[0])
    res = [d for d in drows if d["is_resolution"] == "True"]
    assert len(res) == 1 and res[0]["reviewer"] == "lee" and res[0]["reason"] == "wrong population"


def test_csv_cells_that_look_like_formulas_are_neutralised():
    rows = [{"record_id": 1, "pmid": "1", "doi": None, "title": "=HYPERLINK(\"http://x\")", "journal": "+j", "year": 2020,
             "authors": ["@a"], "title_abstract_decision": "", "title_abstract_reason": "", "full_text_decision": "",
             "full_text_reason": "", "title_abstract_votes": "", "full_text_votes": ""}]
    out = list(csv.reader(io.StringIO(w.records_csv(rows))))[1]
    assert out[3].startswith("'=") and out[4] == "'+j" and out[6] == "'@a"


def test_record_history_has_versions_sources_aliases_and_decisions_in_time_order(tmp_path):
    import dataclasses

    from support.web_app import fixture_records, nightly_append, record_ids_by_pmid
    from warehouse import screening
    from warehouse.db import connect, migrate, transaction

    db = tmp_path / "h.duckdb"
    migrate(db)
    recs = fixture_records()
    first = recs[0]  # PMID 32437181, doi:10.1037/amp0000660
    nightly_append(db, {"attachment-rcts": [first, recs[1]], "uk-interventions": [first]})
    corrected = dataclasses.replace(first, title="Risk and resilience (corrected title)")
    merged = dataclasses.replace(recs[2], pmid="99000002", doi=first.doi)  # another PMID, the same DOI
    nightly_append(db, {"attachment-rcts": [corrected, merged]})
    rid, other = record_ids_by_pmid(db)[first.pmid], record_ids_by_pmid(db)[recs[1].pmid]
    with transaction(db) as con:
        late = screening.append_decision(con, rid, "ann", "title_abstract", "include", model_version="m1",
                                         created_at="2026-03-02 10:00:00")
        early = screening.append_decision(con, rid, "bob", "title_abstract", "exclude", reason="not an RCT",
                                          note="no control group", created_at="2026-03-01 09:00:00")
        resolution = screening.append_decision(con, rid, "lee", "title_abstract", "include", is_resolution=True,
                                               created_at="2026-03-03 08:00:00")
        screening.append_decision(con, other, "ann", "title_abstract", "exclude", reason="x")  # another record
    with connect(db) as con:
        h = w.record_history(con, rid)
        assert w.record_history(con, 99_999_999) is None
    assert h["record"]["title"] == "Risk and resilience (corrected title)" and h["record"]["version"] == 2
    assert [v["version"] for v in h["versions"]] == [2, 1]  # newest first
    v2, v1 = h["versions"]
    assert v2["current"] and not v1["current"]
    assert v1["data"]["title"] == first.title and v2["data"]["title"] == corrected.title
    assert "title" in v2["changed"] and v1["changed"] == []
    assert [(s["strategy"], s["pmid_seen"], s["matched_by"]) for s in h["sources"]] == [
        ("attachment-rcts", first.pmid, "new"), ("uk-interventions", first.pmid, "pmid"),
        ("attachment-rcts", first.pmid, "pmid")]
    assert all(s["nightly_id"] is not None for s in h["sources"])
    assert [(a["pmid"], a["matched_by"]) for a in h["aliases"]] == [("99000002", "doi")]
    decisions = h["decisions"]
    assert [d["decision_id"] for d in decisions] == [early, late, resolution]  # time order, not id order
    assert (decisions[0]["reviewer"], decisions[0]["reason"], decisions[0]["note"]) == (
        "bob", "not an RCT", "no control group")
    assert decisions[1]["model_version"] == "m1" and decisions[2]["is_resolution"]


# --------------------------------------------------------------------------------------------
# reviewers_per_record is enforced where a vote is appended


@pytest.fixture
def vote_db(tmp_path):
    import duckdb

    from support.workspace_db import insert_plain_records, make_warehouse

    db = make_warehouse(tmp_path / "votes.duckdb")
    con = duckdb.connect(str(db))
    ids = insert_plain_records(con, [{"pmid": str(2000 + i), "title": f"t{i}", "abstract": "a"} for i in range(3)])
    yield con, ids
    con.close()


def test_a_third_reviewers_vote_is_refused_once_two_have_voted(vote_db):
    from warehouse import screening

    con, (rid, other, third) = vote_db
    first = w.append_decision(con, rid, "ann", "title_abstract", "include", reviewers_per_record=2, client_token="t-ann")
    w.append_decision(con, rid, "bob", "title_abstract", "include", reviewers_per_record=2)
    with pytest.raises(w.RecordFullError, match=r"already has the 2 reviewers' decisions it needs") as refused:
        w.append_decision(con, rid, "cat", "title_abstract", "exclude", reason="not an RCT", reviewers_per_record=2)
    assert isinstance(refused.value, screening.DecisionError)  # the journal and the app already handle these
    assert screening.current_decisions(con, "title_abstract", rid)[rid].keys() == {"ann", "bob"}
    assert screening.settled_decisions(con, "title_abstract", 2) == {rid: "include"}  # agreement kept
    assert screening.conflicts(con, "title_abstract", 2) == []
    # a replayed post of ann's original vote is still the same row, not a refusal
    assert w.append_decision(con, rid, "ann", "title_abstract", "include", reviewers_per_record=2,
                             client_token="t-ann") == first
    # the voters' own votes are now final too (test_votes_are_final_once_every_reviewer_has_voted)
    with pytest.raises(w.RecordFullError, match="both reviewers' decisions"):
        w.append_decision(con, rid, "ann", "title_abstract", "maybe", reviewers_per_record=2)
    # other records and the other stage are not affected
    w.append_decision(con, other, "cat", "title_abstract", "include", reviewers_per_record=2)
    w.append_decision(con, rid, "cat", "full_text", "include", reviewers_per_record=2)
    # an undo made before the record is complete frees the slot; then the one who left cannot come
    # back over the new second reviewer
    w.append_decision(con, third, "dan", "title_abstract", "include", reviewers_per_record=2)
    w.append_decision(con, third, "dan", "title_abstract", "retract", reviewers_per_record=2)
    w.append_decision(con, third, "cat", "title_abstract", "include", reviewers_per_record=2)
    w.append_decision(con, third, "eve", "title_abstract", "include", reviewers_per_record=2)
    with pytest.raises(w.RecordFullError, match="it needs"):
        w.append_decision(con, third, "dan", "title_abstract", "include", reviewers_per_record=2)
    assert screening.current_decisions(con, "title_abstract", third)[third].keys() == {"cat", "eve"}
    assert screening.current_decisions(con, "title_abstract", rid)[rid].keys() == {"ann", "bob"}


def test_a_resolved_record_takes_no_new_reviewer(vote_db):
    from warehouse import screening

    con, (_, _, rid) = vote_db
    w.append_decision(con, rid, "ann", "title_abstract", "include", reviewers_per_record=3)
    w.append_decision(con, rid, "bob", "title_abstract", "exclude", reason="x", reviewers_per_record=3)
    screening.append_decision(con, rid, "lee", "title_abstract", "include", is_resolution=True)
    with pytest.raises(w.RecordFullError, match="resolved"):
        w.append_decision(con, rid, "cat", "title_abstract", "include", reviewers_per_record=3)
    w.append_decision(con, rid, "bob", "title_abstract", "include", reviewers_per_record=3)  # own vote: allowed
    screening.append_decision(con, rid, "lee", "title_abstract", "retract", is_resolution=True)
    w.append_decision(con, rid, "cat", "title_abstract", "include", reviewers_per_record=3)  # no longer resolved


def _rows(con, rid):
    return con.execute("SELECT count(*) FROM screening_decisions WHERE record_id = ?", [rid]).fetchall()[0][0]


def test_votes_are_final_once_every_reviewer_has_voted(vote_db):
    """vote, look, undo: once both votes are in (agreeing or not), neither reviewer may change or undo theirs."""
    from warehouse import screening

    con, (agreed, split, _) = vote_db
    # before the partner votes, a reviewer may change and undo at will
    w.append_decision(con, agreed, "ann", "title_abstract", "exclude", reason="x", reviewers_per_record=2)
    w.append_decision(con, agreed, "ann", "title_abstract", "retract", reviewers_per_record=2)
    w.append_decision(con, agreed, "ann", "title_abstract", "maybe", reviewers_per_record=2)
    w.append_decision(con, agreed, "ann", "title_abstract", "include", reviewers_per_record=2)
    first_bob = w.append_decision(con, agreed, "bob", "title_abstract", "include", reviewers_per_record=2,
                                  client_token="t-bob")
    w.append_decision(con, split, "ann", "title_abstract", "include", reviewers_per_record=2)
    w.append_decision(con, split, "bob", "title_abstract", "exclude", reason="x", reviewers_per_record=2)
    settled_before = screening.settled_decisions(con, "title_abstract", 2)
    conflicts_before = [(c.record_id, c.votes) for c in screening.conflicts(con, "title_abstract", 2)]
    assert settled_before == {agreed: "include"} and [r for r, _ in conflicts_before] == [split]
    for rid in (agreed, split):
        n = _rows(con, rid)
        for who, decision, reason in [("ann", "retract", None), ("ann", "exclude", "x"), ("bob", "retract", None),
                                      ("bob", "maybe", None), ("ann", "include", None)]:
            with pytest.raises(w.RecordFullError, match=r"already has both reviewers' decisions at title/abstract"
                               ) as refused:
                w.append_decision(con, rid, who, "title_abstract", decision, reason=reason, reviewers_per_record=2)
            assert isinstance(refused.value, screening.DecisionError)  # the journal and the app handle these
            assert f"record {rid} " in str(refused.value) and "lead" in str(refused.value)
        assert _rows(con, rid) == n  # nothing written
    assert screening.settled_decisions(con, "title_abstract", 2) == settled_before
    assert [(c.record_id, c.votes) for c in screening.conflicts(con, "title_abstract", 2)] == conflicts_before
    # a replayed post of bob's vote is still the same row, not a refusal
    assert w.append_decision(con, agreed, "bob", "title_abstract", "include", reviewers_per_record=2,
                             client_token="t-bob") == first_bob
    # a retract from someone with no vote there changes nothing and tells nothing: not refused
    w.append_decision(con, agreed, "cat", "title_abstract", "retract", reviewers_per_record=2)
    # the other stage is its own: full-text votes on the same record are still open
    w.append_decision(con, agreed, "ann", "full_text", "include", reviewers_per_record=2)
    w.append_decision(con, agreed, "ann", "full_text", "retract", reviewers_per_record=2)


def test_a_lead_still_resolves_and_withdraws_a_resolution_on_final_votes(vote_db):
    from warehouse import screening

    con, (_, split, _) = vote_db
    w.append_decision(con, split, "ann", "title_abstract", "include", reviewers_per_record=2)
    w.append_decision(con, split, "bob", "title_abstract", "exclude", reason="x", reviewers_per_record=2)
    screening.append_decision(con, split, "lee", "title_abstract", "include", is_resolution=True)
    assert screening.settled_decisions(con, "title_abstract", 2) == {split: "include"}
    with pytest.raises(w.RecordFullError):
        w.append_decision(con, split, "bob", "title_abstract", "retract", reviewers_per_record=2)
    screening.append_decision(con, split, "lee", "title_abstract", "retract", is_resolution=True)
    assert [c.record_id for c in screening.conflicts(con, "title_abstract", 2)] == [split]  # back to the lead


def test_final_votes_with_three_reviewers_per_record(vote_db):
    con, (rid, _, _) = vote_db
    w.append_decision(con, rid, "ann", "title_abstract", "include", reviewers_per_record=3)
    w.append_decision(con, rid, "bob", "title_abstract", "include", reviewers_per_record=3)
    w.append_decision(con, rid, "bob", "title_abstract", "retract", reviewers_per_record=3)  # 2 of 3: still open
    w.append_decision(con, rid, "bob", "title_abstract", "include", reviewers_per_record=3)
    w.append_decision(con, rid, "cat", "title_abstract", "exclude", reason="x", reviewers_per_record=3)
    with pytest.raises(w.RecordFullError, match=r"already has all 3 reviewers' decisions"):
        w.append_decision(con, rid, "ann", "title_abstract", "retract", reviewers_per_record=3)


def test_one_reviewer_per_record_keeps_undo(vote_db):
    """With one reviewer per record there is no partner whose vote could leak: the vote may change."""
    from warehouse import screening

    con, (rid, _, _) = vote_db
    w.append_decision(con, rid, "ann", "title_abstract", "include", reviewers_per_record=1)
    w.append_decision(con, rid, "ann", "title_abstract", "retract", reviewers_per_record=1)
    w.append_decision(con, rid, "ann", "title_abstract", "exclude", reason="x", reviewers_per_record=1)
    assert screening.settled_decisions(con, "title_abstract", 1) == {rid: "exclude"}
