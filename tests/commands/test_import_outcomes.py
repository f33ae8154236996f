"""`living-review import-outcomes` and `living-review pool --no-flow` through the CLI (invented data)."""

from __future__ import annotations

import json
import shutil

import pytest

from living_review.cli import main
from support.pooling import FIXTURES, synthetic_config_path
from warehouse.db import connect


@pytest.fixture
def home(lr_home, tmp_path, monkeypatch):
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(synthetic_config_path(tmp_path)))
    return lr_home


def _outcome_rows(db) -> int:
    with connect(db) as con:
        return con.execute("SELECT count(*) FROM outcome_data").fetchall()[0][0]


def test_bad_rows_are_all_listed_and_nothing_is_imported(home, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    lines = (FIXTURES / "synthetic_outcomes.csv").read_text().splitlines()
    lines[2] = lines[2].replace(",3,40,", ",41,40,")        # line 3: trial-a disorganised events > n
    lines[5] = lines[5].replace("trial-b-2005", "trial-q")   # line 6: unknown study
    lines[9] = lines[9].replace(",1.2,", ",0,", 1)           # line 10: SD = 0 (trial-c sensitivity)
    bad.write_text("\n".join(lines) + "\n")
    rc = main(["import-outcomes", str(bad), "--studies", str(FIXTURES / "synthetic_studies.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "3 error(s); nothing imported" in err
    assert f"{bad}: line 3, events_int: events (41) exceed n_int (40)" in err
    assert f"{bad}: line 6, study_id: unknown study 'trial-q'" in err
    assert f"{bad}: line 10, sd_int: must be > 0" in err
    assert _outcome_rows(home / "warehouse.duckdb") == 0
    with connect(home / "warehouse.duckdb") as con:  # the valid studies file was not imported either
        assert con.execute("SELECT count(*) FROM studies").fetchall()[0][0] == 0


def test_a_continuous_arm_of_one_with_an_sd_is_refused(home, tmp_path, capsys):
    bad = tmp_path / "one.csv"
    lines = (FIXTURES / "synthetic_outcomes.csv").read_text().splitlines()
    assert lines[3].startswith("trial-a-2003,sensitivity,,40,,41,")
    lines[3] = lines[3].replace(",,40,,41,", ",,1,,41,")      # line 4: n_int = 1 with an SD
    bad.write_text("\n".join(lines) + "\n")
    rc = main(["import-outcomes", str(bad), "--studies", str(FIXTURES / "synthetic_studies.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "1 error(s); nothing imported" in err
    assert f"{bad}: line 4, n_int: must be at least 2 when an SD is given" in err
    assert _outcome_rows(home / "warehouse.duckdb") == 0


def test_missing_columns_and_unknown_outcome_kind_mismatch(home, tmp_path, capsys):
    f = tmp_path / "o.csv"
    f.write_text("study,outcome,events_int\nx,secure,1\n")
    assert main(["import-outcomes", str(f)]) == 2
    assert "missing column(s) study_id" in capsys.readouterr().err
    assert main(["import-outcomes", str(tmp_path / "absent.csv")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_import_reimport_correction_and_pool(home, tmp_path, capsys):
    outcomes, studies = FIXTURES / "synthetic_outcomes.csv", FIXTURES / "synthetic_studies.csv"
    assert main(["pool", "--no-flow", "--json", "--no-plots"]) == 0
    assert json.loads(capsys.readouterr().out)["message"] == "no outcome data entered yet: nothing is pooled"
    assert main(["import-outcomes", str(outcomes), "--studies", str(studies), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"studies_created": 12, "studies_updated": 0, "studies_unchanged": 0,
                                                   "added": 36, "corrected": 0, "unchanged": 0, "rows": 36}
    assert main(["import-outcomes", str(outcomes)]) == 0
    assert "0 added, 0 corrected (superseding earlier entries), 36 unchanged" in capsys.readouterr().out
    fixed = tmp_path / "fixed.csv"
    shutil.copy(outcomes, fixed)
    fixed.write_text(fixed.read_text().replace("trial-h-2015,secure,18,18,", "trial-h-2015,secure,17,18,"))
    assert main(["import-outcomes", str(fixed)]) == 0
    assert "1 corrected" in capsys.readouterr().out
    assert _outcome_rows(home / "warehouse.duckdb") == 37
    assert main(["pool", "--no-flow", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "First pooled analysis (evidence version 1)" in out and "| secure | primary (REML) | 12 |" in out
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["pooling"]["evidence_version"] == 1 and status["pooling"]["outcome_entries"] == 36


def _fixture_lines() -> list[str]:
    return (FIXTURES / "synthetic_outcomes.csv").read_text().splitlines()


def _import(path, capsys, studies=True) -> tuple[int, str]:
    args = ["import-outcomes", str(path)] + (["--studies", str(FIXTURES / "synthetic_studies.csv")] if studies else [])
    rc = main(args)
    return rc, capsys.readouterr().err


def _duplicated_column(lines):
    """csv.DictReader kept the last of two same-named columns: a row "...,41,,,,,999" under a header
    ending "...,sd_ctl,n_int" was stored with n_int = 999 instead of 40."""
    lines[0] += ",n_int"
    lines[1:] = [ln + ",999" for ln in lines[1:]]
    return "line 1: duplicate column name(s): n_int"


def _extra_field(lines):
    lines[4] += ",EXTRA"  # line 5; DictReader filed it under the key None and imported the row as if whole
    return "line 5: 11 fields, the header has 10"


def _missing_field(lines):
    assert lines[3].endswith(",4.6,1.4")
    lines[3] = lines[3][: -len(",1.4")]  # line 4: the last field (sd_ctl) is missing, not empty
    return "line 4: 9 fields, the header has 10"


@pytest.mark.parametrize("damage", [_duplicated_column, _extra_field, _missing_field],
                         ids=["duplicated-column", "more-fields", "fewer-fields"])
def test_a_file_whose_columns_cannot_be_trusted_is_refused_and_nothing_is_imported(home, tmp_path, capsys, damage):
    lines = _fixture_lines()
    message = damage(lines)
    f = tmp_path / "ragged.csv"
    f.write_text("\n".join(lines) + "\n")
    rc, err = _import(f, capsys)
    assert rc == 2 and "nothing imported" in err
    assert f"{f}: {message}" in err
    assert _outcome_rows(home / "warehouse.duckdb") == 0


def test_the_studies_file_is_checked_the_same_way(home, tmp_path, capsys):
    studies = (FIXTURES / "synthetic_studies.csv").read_text().splitlines()
    studies[0] += ",label"
    studies[1:] = [ln + ",Other label" for ln in studies[1:]]
    studies[2] += ",EXTRA"  # line 3
    s = tmp_path / "studies.csv"
    s.write_text("\n".join(studies) + "\n")
    rc = main(["import-outcomes", str(FIXTURES / "synthetic_outcomes.csv"), "--studies", str(s)])
    err = capsys.readouterr().err
    assert rc == 2 and "nothing imported" in err
    assert f"{s}: line 1: duplicate column name(s): label" in err
    assert f"{s}: line 3: 13 fields, the header has 12" in err
    assert _outcome_rows(home / "warehouse.duckdb") == 0
    with connect(home / "warehouse.duckdb") as con:
        assert con.execute("SELECT count(*) FROM studies").fetchall()[0][0] == 0
