"""`living-review validate-meta`: recompute metafor reference cases with the Python engine.

Contract (issue #3): computes every case from the CSVs in --data-dir without reading any
`expected*` field, writes {case_id: {field: value}} to --output, and when expectations are present
prints one line per failing case plus a summary. Exit 0 when all pass (or there is nothing to check),
1 when any case fails or cannot be computed, 2 for unusable input (one-line error).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("validate-meta", help="check the meta-analysis engine against reference cases",
                              description="Recompute metafor reference cases with the Python engine and compare them.")
    p.add_argument("--cases", required=True, help="cases JSON (list of cases, format in shared/data/meta/SOURCES.md)")
    p.add_argument("--data-dir", required=True, help="folder holding <dataset>.csv for every case")
    p.add_argument("--output", required=True, help="where to write RESULTS.json")
    p.set_defaults(func=run)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_cases(path: str) -> list[dict]:
    from living_review.cli import CommandError

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise CommandError(f"cases file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"cannot read cases file {path}: {_first_line(exc)}") from None
    if isinstance(data, dict) and isinstance(data.get("cases"), list):
        data = data["cases"]
    if not isinstance(data, list) or not all(isinstance(c, dict) for c in data):
        raise CommandError(f"cases file {path} must hold a JSON list of case objects")
    seen = set()
    for i, case in enumerate(data):
        for key in ("id", "dataset", "analysis"):
            if not isinstance(case.get(key), str) or not case[key]:
                raise CommandError(f"case #{i + 1} has no '{key}'")
        if case["id"] in seen:
            raise CommandError(f"duplicate case id {case['id']!r}")
        seen.add(case["id"])
    return data


def read_table(path: Path) -> dict[str, list[str]]:
    """A CSV as {column: [raw strings]} (empty field = missing)."""
    import csv

    from living_review.cli import CommandError

    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise CommandError(f"data file {path} is empty")
            columns: dict[str, list[str]] = {name: [] for name in header}
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise CommandError(f"data file {path} line {lineno}: {len(row)} fields, header has {len(header)}")
                for name, value in zip(header, row):
                    columns[name].append(value)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CommandError(f"cannot read data file {path}: {_first_line(exc)}") from None
    return columns


def run(args: argparse.Namespace) -> int:
    from living_review.cli import CommandError
    from models.meta.cases import ANALYSES, check_case, run_case

    cases = load_cases(args.cases)
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise CommandError(f"data directory not found: {data_dir}")
    for case in cases:
        if case["analysis"] not in ANALYSES:
            raise CommandError(f"case {case['id']!r}: unknown analysis kind {case['analysis']!r} "
                               f"(known: {', '.join(ANALYSES)})")
    tables: dict[str, dict] = {}
    for name in sorted({c["dataset"] for c in cases}):
        csv_path = data_dir / f"{name}.csv"
        if not csv_path.is_file():
            raise CommandError(f"missing CSV for dataset {name!r}: {csv_path}")
        tables[name] = read_table(csv_path)

    results: dict[str, dict] = {}
    n_checked = n_pass = n_error = 0
    failures: list[str] = []
    for case in cases:
        blind = {key: val for key, val in case.items() if not key.startswith("expected")}
        try:
            result = run_case(blind, tables[case["dataset"]])
        except Exception as exc:  # one bad case must not stop the run
            results[case["id"]] = {"error": f"{type(exc).__name__}: {_first_line(exc)}"}
            n_error += 1
            failures.append(f"ERROR {case['id']}: {results[case['id']]['error']}")
            if "expected" in case:
                n_checked += 1
            continue
        results[case["id"]] = result
        if "expected" in case:
            n_checked += 1
            ok, detail = check_case(result, case)
            if ok:
                n_pass += 1
            else:
                failures.append(f"FAIL {case['id']}: {detail}")

    out_path = Path(args.output)
    try:
        if out_path.parent and not out_path.parent.exists():
            out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {out_path}: {_first_line(exc)}") from None

    for line in failures:
        print(line)
    if n_checked:
        print(f"validate-meta: {n_pass}/{n_checked} cases pass, {n_checked - n_pass} fail"
              f" ({n_error} could not be computed); results in {out_path}")
    else:
        print(f"validate-meta: computed {len(cases) - n_error}/{len(cases)} cases (no expectations to check);"
              f" results in {out_path}")
    return 0 if not failures else 1
