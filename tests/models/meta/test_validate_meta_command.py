"""`living-review validate-meta` end to end: output shape, exit codes, bad inputs."""

from __future__ import annotations

import json
import shutil

import pytest
from support.meta_cases import META_FIXTURES, load_cases

from living_review.cli import main

PUBLIC = list(load_cases("reference_cases.json"))


def _shape(value):
    if isinstance(value, dict):
        return {key: _shape(val) for key, val in value.items()}
    if isinstance(value, list):
        return ("list", len(value))
    return "str" if isinstance(value, str) else "scalar"


def _run(tmp_path, cases, data_dir=META_FIXTURES, name="cases.json"):
    cases_path = tmp_path / name
    cases_path.write_text(json.dumps(cases))
    out = tmp_path / "results.json"
    code = main(["validate-meta", "--cases", str(cases_path), "--data-dir", str(data_dir), "--output", str(out)])
    return code, out


def test_public_cases_pass_with_same_keys_and_shapes(tmp_path, capsys):
    code, out = _run(tmp_path, PUBLIC)
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "63/63 cases pass" in printed
    results = json.loads(out.read_text())
    assert list(results) == [c["id"] for c in PUBLIC]
    for case in PUBLIC:
        assert _shape(results[case["id"]]) == _shape(case["expected"]), case["id"]


def test_failing_case_gets_a_line_and_nonzero_exit(tmp_path, capsys):
    case = json.loads(json.dumps(next(c for c in PUBLIC if c["id"] == "rma_bcg_rr_dl")))
    case["expected"]["estimate"] += 0.01
    code, out = _run(tmp_path, [case, PUBLIC[0]])
    printed = capsys.readouterr().out
    assert code == 1
    assert "FAIL rma_bcg_rr_dl: estimate" in printed
    assert "1/2 cases pass" in printed


def test_no_expectations_exit_zero_and_output_independent_of_expected(tmp_path, capsys):
    blind = [{k: v for k, v in c.items() if not k.startswith("expected")} for c in PUBLIC[:12]]
    code, out = _run(tmp_path, blind)
    assert code == 0
    assert "no expectations" in capsys.readouterr().out
    poisoned = json.loads(json.dumps(PUBLIC[:12]))
    for case in poisoned:
        case["expected"] = {"estimate": 42}
    (tmp_path / "p").mkdir()
    code2, out2 = _run(tmp_path / "p", poisoned)
    assert code2 == 1
    assert json.loads(out.read_text()) == json.loads(out2.read_text())


def test_uncomputable_case_is_an_error_entry_not_a_crash(tmp_path, capsys):
    bad = json.loads(json.dumps(next(c for c in PUBLIC if c["id"] == "rma_bcg_rr_reml")))
    bad["id"] = "broken"
    bad["inputs"]["ai"] = "no_such_column"
    code, out = _run(tmp_path, [bad, PUBLIC[5]])
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert code == 1
    assert "no_such_column" in results["broken"]["error"]
    assert "error" not in results[PUBLIC[5]["id"]]
    assert "ERROR broken" in printed


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.update(analysis="bayes"), "unknown analysis kind 'bayes'"),
        (lambda c: c.update(dataset="dat.nowhere"), "missing CSV for dataset 'dat.nowhere'"),
    ],
)
def test_bad_case_file_is_a_one_line_error(tmp_path, capsys, mutate, message):
    case = json.loads(json.dumps(PUBLIC[0]))
    mutate(case)
    code, out = _run(tmp_path, [case])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unreadable_inputs_are_one_line_errors(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text("[{not json")
    out = tmp_path / "r.json"
    assert main(["validate-meta", "--cases", str(broken), "--data-dir", str(META_FIXTURES), "--output", str(out)]) == 2
    assert "cannot read cases file" in capsys.readouterr().err
    assert main(["validate-meta", "--cases", str(tmp_path / "none.json"), "--data-dir", str(META_FIXTURES),
                 "--output", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "obj.json").write_text('{"a": 1}')
    assert main(["validate-meta", "--cases", str(tmp_path / "obj.json"), "--data-dir", str(META_FIXTURES),
                 "--output", str(out)]) == 2
    assert "JSON list" in capsys.readouterr().err


def test_csv_with_ragged_row_is_reported(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(META_FIXTURES / "dat.hine1989.csv", data / "dat.hine1989.csv")
    with open(data / "dat.hine1989.csv", "a") as fh:
        fh.write("7,1,2\n")
    case = next(c for c in PUBLIC if c["dataset"] == "dat.hine1989")
    code, _ = _run(tmp_path, [case], data_dir=data)
    assert code == 2
    assert "line 8" in capsys.readouterr().err
