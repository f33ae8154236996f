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
    """The contract: other columns are ignored, even ones our production model would use as features."""
    df = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False).head(30)
    df.to_csv(tmp_path / "plain.csv", index=False)
    df["doi"] = "x"
    df["mesh"] = ["Attachment; Infant" if i % 2 else "Histamine Antagonists" for i in range(len(df))]
    df["publication_types"] = "Randomized Controlled Trial"
    df.to_csv(tmp_path / "d.csv", index=False)
    for name in ("plain", "d"):
        assert main(["simulate", "--dataset", str(tmp_path / f"{name}.csv"), "--output", str(tmp_path / f"{name}-o.csv"),
                     "--seed", "2"]) == 0
    assert len(read_order(tmp_path / "d-o.csv")) == 30
    assert (tmp_path / "d-o.csv").read_bytes() == (tmp_path / "plain-o.csv").read_bytes()


@pytest.mark.parametrize("case", ["missing_column", "unreadable", "absent", "too_few_includes", "bad_label",
                                  "blank_id", "negative_seed", "huge_seed", "output_is_a_directory"])
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
    elif case == "blank_id":
        df.loc[5, "record_id"] = " "
        df.to_csv(data, index=False)
    elif case in ("negative_seed", "huge_seed"):
        df.to_csv(data, index=False)
        args = ["--seed", "-1" if case == "negative_seed" else str(2**32)]
    out = tmp_path / "o.csv"
    if case == "output_is_a_directory":
        df.to_csv(data, index=False)
        out.mkdir()
    assert main(["simulate", "--dataset", str(data), "--output", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("living-review simulate: error:") and "\n" not in err
    assert not out.exists() or (case == "output_is_a_directory" and out.is_dir())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {data.name, out.name} & {p.name for p in tmp_path.iterdir()})  # no half-written ORDER.csv.tmp left
    if case == "blank_id":
        assert "line 7" in err  # header + rows 0..5


def _lines(df: pd.DataFrame, trailing: str = "") -> str:
    """`df` as CSV text, each data row ending in `trailing` (e.g. "," for a trailing comma)."""
    rows = df.to_csv(index=False, lineterminator="\n").splitlines()
    return "\n".join([rows[0]] + [r + trailing for r in rows[1:]]) + "\n"


def test_a_trailing_comma_on_every_data_row_is_harmless(tmp_path, capsys):
    """One more (empty) field than the header on each row made pandas take record_id for the index and
    shift every column left; the bad-label check then crashed with a traceback."""
    df = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False).head(30)
    df["record_id"] = [f"r{i}" for i in range(1, 31)]
    data, out, ref = tmp_path / "d.csv", tmp_path / "o.csv", tmp_path / "ref.csv"
    data.write_text(_lines(df, trailing=","), encoding="utf-8")
    (tmp_path / "plain.csv").write_text(_lines(df), encoding="utf-8")
    assert main(["simulate", "--dataset", str(data), "--output", str(out), "--seed", "3"]) == 0
    assert main(["simulate", "--dataset", str(tmp_path / "plain.csv"), "--output", str(ref), "--seed", "3"]) == 0
    assert out.read_bytes() == ref.read_bytes()  # the same records, labels and order as without the commas
    assert capsys.readouterr().err == ""


def test_extra_fields_with_data_are_an_error_naming_the_line(tmp_path, capsys):
    df = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False).head(30)
    rows = _lines(df, trailing=",").splitlines()
    rows[4] = rows[4] + "stray"  # line 5: a fifth field with something in it (a shifted row?)
    data, out = tmp_path / "d.csv", tmp_path / "o.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert main(["simulate", "--dataset", str(data), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("living-review simulate: error:") and "\n" not in err
    assert "line 5: 5 fields, the header has 4" in err
    assert not out.exists()


@pytest.mark.parametrize("trailing", ["", ","])
def test_a_bad_label_names_its_line(tmp_path, capsys, trailing):
    df = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False).head(30)
    df.loc[6, "label_included"] = "yes"  # data row 7 = line 8
    data, out = tmp_path / "d.csv", tmp_path / "o.csv"
    data.write_text(_lines(df, trailing), encoding="utf-8")
    assert main(["simulate", "--dataset", str(data), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "living-review simulate: error: label_included must be 0 or 1 (line 8: 'yes')"


def test_a_bad_label_after_multi_line_abstracts_and_blank_lines_names_its_physical_line(tmp_path, capsys):
    data, out = tmp_path / "d.csv", tmp_path / "o.csv"
    data.write_text('record_id,title,abstract,label_included\n'
                    'a1,T one,"first line\nsecond line",1\n'   # lines 2-3
                    '\n'                                       # line 4: blank, skipped
                    'a2,T two,plain,0\n'                       # line 5
                    'a3,T three,plain,maybe\n', encoding="utf-8")  # line 6
    assert main(["simulate", "--dataset", str(data), "--output", str(out)]) == 2
    assert "(line 6: 'maybe')" in capsys.readouterr().err


def test_bom_and_record_ids_stay_text(tmp_path):
    df = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False).head(30)
    df["record_id"] = [f"{i:03d}" for i in range(30)]  # leading zeros: text, not numbers
    data, out = tmp_path / "d.csv", tmp_path / "o.csv"
    data.write_bytes(b"\xef\xbb\xbf" + _lines(df, trailing=",").encode("utf-8"))
    assert main(["simulate", "--dataset", str(data), "--output", str(out)]) == 0
    assert sorted(r["record_id"] for r in read_order(out)) == sorted(df["record_id"])
