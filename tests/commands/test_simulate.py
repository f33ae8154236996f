"""`living-review simulate` contract (issue #4): output columns, completeness, priors, determinism, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from living_review.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "screening" / "antihistamines_80.csv"


def read_order(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["position", "record_id", "label_included"]
        return list(reader)


def test_writes_every_record_once_in_order_priors_first(tmp_path):
    out = tmp_path / "order.csv"
    assert main(["simulate", "--dataset", str(FIXTURE), "--output", str(out), "--seed", "4",
                 "--prior-included", "2", "--prior-excluded", "3"]) == 0
    rows = read_order(out)
    src = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False)
    assert [int(r["position"]) for r in rows] == list(range(1, len(src) + 1))
    assert sorted(r["record_id"] for r in rows) == sorted(src["record_id"])
    truth = dict(zip(src["record_id"], src["label_included"]))
    assert all(truth[r["record_id"]] == r["label_included"] for r in rows)
    assert [r["label_included"] for r in rows[:5]] == ["1", "1", "0", "0", "0"]


def test_deterministic_for_a_seed_and_default_priors_are_one_and_one(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    for p, seed in ((a, "1"), (b, "1"), (c, "2")):
        assert main(["simulate", "--dataset", str(FIXTURE), "--output", str(p), "--seed", seed]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert sorted(r["label_included"] for r in read_order(a)[:2]) == ["0", "1"]


def test_extra_columns_are_ignored(tmp_path):
    df = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False).head(30)
    df["doi"] = "x"
    df.to_csv(tmp_path / "d.csv", index=False)
    assert main(["simulate", "--dataset", str(tmp_path / "d.csv"), "--output", str(tmp_path / "o.csv")]) == 0
    assert len(read_order(tmp_path / "o.csv")) == 30


@pytest.mark.parametrize("case", ["missing_column", "unreadable", "absent", "too_few_includes", "bad_label"])
def test_bad_input_is_one_line_error_exit_2(tmp_path, capsys, case):
    data = tmp_path / "d.csv"
    args = []
    df = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False).head(30)
    if case == "missing_column":
        df.drop(columns=["abstract"]).to_csv(data, index=False)
    elif case == "unreadable":
        data.write_bytes(b"\xff\xfe\x00\x81garbage\x00\n\x93")
    elif case == "absent":
        data = tmp_path / "nope.csv"
    elif case == "too_few_includes":
        df.to_csv(data, index=False)
        args = ["--prior-included", str(int(df["label_included"].astype(int).sum()) + 1)]
    elif case == "bad_label":
        df.loc[3, "label_included"] = "yes"
        df.to_csv(data, index=False)
    out = tmp_path / "o.csv"
    assert main(["simulate", "--dataset", str(data), "--output", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("living-review simulate: error:") and "\n" not in err
    assert not out.exists()
