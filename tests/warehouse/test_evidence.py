"""warehouse.evidence: validation lists every error, saving is all-or-nothing and append-only.

Study ids and numbers below are invented test data.
"""

from __future__ import annotations

import pytest

from living_review.config import load_review
from support.pooling import REPO
from warehouse.db import connect, migrate, transaction
from warehouse.evidence import (EvidenceValidationError, current_evidence, current_evidence_rows, outcome_history,
                                parse_outcome_rows, retract_outcome, save_outcomes, save_study,
                                validate_outcome_rows, validate_study_rows)


@pytest.fixture(scope="module")
def config():
    return load_review(REPO / "review.toml")


@pytest.fixture
def db(tmp_path, config):
    path = tmp_path / "w.duckdb"
    migrate(path)
    with transaction(path) as con:
        for sid in ("synthetic-a", "synthetic-b"):
            save_study(con, {"study_id": sid, "label": sid.title(), "intervention": "Other"}, config, created_by="t")
    return path


GOOD = {"study_id": "synthetic-a", "outcome": "secure", "events_int": "20", "n_int": "40", "events_ctl": "15",
        "n_ctl": "41"}


def test_every_error_is_listed_with_row_and_field(config):
    rows = [
        dict(GOOD),                                                            # row 2: fine
        dict(GOOD, study_id="nobody", events_int="41"),                        # row 3: unknown study, events > n
        dict(GOOD, outcome="happiness"),                                       # row 4: unknown outcome
        dict(GOOD, study_id="synthetic-b", n_int="0", events_ctl="2.5"),       # row 5: n = 0, non-integer
        {"study_id": "synthetic-a", "outcome": "sensitivity", "mean_int": "5", "sd_int": "0", "n_int": "10",
         "mean_ctl": "x", "sd_ctl": "1", "n_ctl": "10"},                       # row 6: SD 0, mean not a number
        dict(GOOD, mean_int="3.2"),                                            # row 7: duplicate, continuous field
        {"study_id": "synthetic-b", "outcome": "disorganised", "events_int": "3", "n_int": "30"},  # row 8: missing
    ]
    errors = validate_outcome_rows(rows, config, {"synthetic-a", "synthetic-b"})
    got = {(e.row, e.field) for e in errors}
    assert got == {
        (3, "study_id"), (3, "events_int"),
        (4, "outcome"),
        (5, "n_int"), (5, "events_ctl"),
        (6, "sd_int"), (6, "mean_ctl"),
        (7, "outcome"), (7, "mean_int"),
        (8, "events_ctl"), (8, "n_ctl"),
    }
    msgs = {(e.row, e.field): e.message for e in errors}
    assert "exceed" in msgs[(3, "events_int")] and "> 0" in msgs[(5, "n_int")]
    assert "duplicate" in msgs[(7, "outcome")] and "first on row 2" in msgs[(7, "outcome")]
    assert str(errors[0]).startswith("row 3, study_id:")


def test_value_errors_say_what_was_expected(config):
    rows = [dict(GOOD, events_int="-1", n_ctl="4.5"),
            {"study_id": "synthetic-a", "outcome": "sensitivity", "mean_int": "five", "sd_int": "-0.5", "n_int": "10",
             "mean_ctl": "1", "sd_ctl": "1", "n_ctl": "10"}]
    msgs = {(e.row, e.field): e.message for e in validate_outcome_rows(rows, config, {"synthetic-a"})}
    assert msgs == {(2, "events_int"): "must be >= 0, got -1",
                    (2, "n_ctl"): "must be a whole number, got '4.5'",
                    (3, "mean_int"): "must be a number, got 'five'",
                    (3, "sd_int"): "must be > 0, got -0.5"}


def test_valid_rows_are_typed(config):
    parsed, errors = parse_outcome_rows([dict(GOOD, n_ctl="41.0")], config, {"synthetic-a"})
    assert errors == []
    assert parsed[0]["events_int"] == 20 and parsed[0]["n_ctl"] == 41 and parsed[0]["mean_int"] is None


def test_study_rows_need_vocabulary_intervention_and_slug(config):
    errors = validate_study_rows([
        {"study_id": "Bad Id", "label": "", "intervention": "Hugging"},
        {"study_id": "ok-1", "label": "Ok", "intervention": "VIPP", "attachment_measure": "XYZ", "age_months": "-1"},
    ], config)
    assert {(e.row, e.field) for e in errors} == {(2, "study_id"), (2, "label"), (2, "intervention"),
                                                 (3, "attachment_measure"), (3, "age_months")}


def test_invalid_rows_write_nothing(db, config):
    with pytest.raises(EvidenceValidationError) as exc:
        with transaction(db) as con:
            save_outcomes(con, [dict(GOOD), dict(GOOD, study_id="synthetic-b", events_ctl="99")], config)
    assert [(e.row, e.field) for e in exc.value.errors] == [(3, "events_ctl")]
    with connect(db) as con:
        assert con.execute("SELECT count(*) FROM outcome_data").fetchall()[0][0] == 0


def test_identical_resave_is_a_no_op_and_a_change_supersedes(db, config):
    with transaction(db) as con:
        assert save_outcomes(con, [GOOD], config, entered_by="t") == {"added": 1, "corrected": 0, "unchanged": 0}
    with transaction(db) as con:
        assert save_outcomes(con, [dict(GOOD, n_ctl=41)], config) == {"added": 0, "corrected": 0, "unchanged": 1}
    with transaction(db) as con:
        assert save_outcomes(con, [dict(GOOD, events_ctl="16")], config) == {"added": 0, "corrected": 1,
                                                                             "unchanged": 0}
    with connect(db) as con:
        hist = outcome_history(con, "synthetic-a", "secure")
        assert len(hist) == 2 and hist[1]["supersedes"] == hist[0]["entry_id"]
        rows = current_evidence_rows(con)
        assert [(r["study_id"], r["events_ctl"]) for r in rows] == [("synthetic-a", 16)]
        df = current_evidence(con)
        assert list(df["events_ctl"]) == [16] and list(df["label"]) == ["Synthetic-A"]


def test_retraction_removes_current_data_but_keeps_history(db, config):
    with transaction(db) as con:
        save_outcomes(con, [GOOD], config)
        assert retract_outcome(con, "synthetic-a", "secure", entered_by="t", note="wrong table")
        assert not retract_outcome(con, "synthetic-a", "secure")
    with connect(db) as con:
        assert current_evidence_rows(con) == []
        assert len(outcome_history(con, "synthetic-a", "secure")) == 2
    with transaction(db) as con:  # re-entering the same data after a retraction adds it again
        assert save_outcomes(con, [GOOD], config)["added"] == 1


def test_study_update_bumps_version_and_keeps_old(db, config):
    with transaction(db) as con:
        assert save_study(con, {"study_id": "synthetic-a", "label": "Synthetic-A", "intervention": "Other"},
                          config) == "unchanged"
        assert save_study(con, {"study_id": "synthetic-a", "label": "Synthetic-A", "intervention": "VIPP"},
                          config) == "updated"
        with pytest.raises(EvidenceValidationError):
            save_study(con, {"study_id": "synthetic-a", "label": "x", "intervention": "Hugging"}, config)
    with connect(db) as con:
        assert con.execute("SELECT version, intervention FROM studies WHERE study_id = 'synthetic-a'").fetchall() == \
            [(2, "VIPP")]
        assert con.execute("SELECT count(*) FROM study_versions WHERE study_id = 'synthetic-a'").fetchall()[0][0] == 2


def test_a_continuous_arm_with_an_sd_needs_at_least_two_participants(db, config):
    cont = {"study_id": "synthetic-a", "outcome": "sensitivity", "mean_int": "5", "sd_int": "1.2", "n_int": "1",
            "mean_ctl": "4", "sd_ctl": "1.1", "n_ctl": "1"}
    rows = [cont, dict(cont, study_id="synthetic-b", n_int="2", n_ctl="0")]
    msgs = {(e.row, e.field): e.message for e in validate_outcome_rows(rows, config, {"synthetic-a", "synthetic-b"})}
    assert msgs == {(2, "n_int"): "must be at least 2 when an SD is given (an SD is undefined for one participant), got 1",
                    (2, "n_ctl"): "must be at least 2 when an SD is given (an SD is undefined for one participant), got 1",
                    (3, "n_ctl"): "must be > 0, got 0"}  # one message per problem
    with pytest.raises(EvidenceValidationError):
        with transaction(db) as con:
            save_outcomes(con, [cont], config)
    with connect(db) as con:
        assert con.execute("SELECT count(*) FROM outcome_data").fetchall()[0][0] == 0
    # a binary arm of one child is still fine, and so is a continuous arm of two
    assert validate_outcome_rows([dict(GOOD, events_int="1", n_int="1"), dict(cont, n_int="2", n_ctl="2")],
                                 config, {"synthetic-a"}) == []
