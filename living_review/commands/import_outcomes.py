"""`living-review import-outcomes FILE.csv [--studies STUDIES.csv]`: load extracted outcome data.

Outcomes CSV columns (header required; empty cell = not given):
    study_id,outcome,events_int,n_int,events_ctl,n_ctl,mean_int,sd_int,mean_ctl,sd_ctl
  - binary outcomes (review.toml kind = "binary"): events_int, n_int, events_ctl, n_ctl (whole numbers,
    0 <= events <= n, n > 0); the mean/sd cells stay empty.
  - continuous outcomes: mean_int, sd_int, n_int, mean_ctl, sd_ctl, n_ctl (SD > 0, n > 0); events empty.
  - one row per study x outcome; `outcome` is a name from review.toml [[outcomes]].
Studies CSV columns (optional file; creates or updates the included studies first):
    study_id,label,intervention,comparator,population,risk_group,country,attachment_measure,
    age_months,follow_up_months,pmid
  - study_id a lower-case slug ("bernard-2012"), label as shown on forest plots, intervention from
    review.toml `interventions`, attachment_measure from `attachment_measures`.

Every row of both files is validated and every error is listed (file, line number, field). A column
name given twice, or a row with more or fewer fields than the header, is an error of the file's
structure: those are listed, and that file's cells are not checked further. If any row is bad
nothing is imported; otherwise everything goes in one transaction. Re-importing the same
values changes nothing; a changed value appends a correction that supersedes the old entry.
"""

from __future__ import annotations

import json


def register(sub) -> None:
    import argparse

    p = sub.add_parser("import-outcomes", help="validate and import outcome data (and studies) from CSV",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="outcomes CSV (study_id,outcome,events_int,n_int,events_ctl,n_ctl,mean_int,sd_int,mean_ctl,sd_ctl)")
    p.add_argument("--studies", help="studies CSV (study_id,label,intervention,comparator,population,risk_group,"
                                     "country,attachment_measure,age_months,follow_up_months,pmid)")
    p.add_argument("--entered-by", default=None, help="who extracted the data (default: $USER)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def read_csv(path) -> tuple[list[str], list[dict], list[str]]:
    """Header, rows and structure errors of a CSV file (UTF-8, BOM tolerated; blank lines skipped).

    The structure errors ("<file>: line N: ...") are a column name given twice (which of the two cells
    would count?) and a row with more or fewer fields than the header (a stray or missing comma shifts
    every later cell): csv.DictReader would keep the last of two same-named columns, file extra fields
    under the key None and fill missing ones with None, all silently."""
    import csv
    from collections import Counter
    from pathlib import Path

    from living_review.cli import CommandError

    p = Path(path)
    errors: list[str] = []
    rows: list[dict] = []
    header: list[str] = []
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            start = 1
            for fields in reader:
                line, start = start, reader.line_num + 1
                if not fields:
                    continue  # a blank line (as DictReader)
                if not header:
                    header = [h.strip() for h in fields]
                    dups = [name for name, n in Counter(h for h in header if h).items() if n > 1]
                    if dups:
                        errors.append(f"{path}: line {line}: duplicate column name(s): {', '.join(dups)}")
                    continue
                if len(fields) != len(header):
                    errors.append(f"{path}: line {line}: {len(fields)} field{'s' if len(fields) != 1 else ''}, "
                                  f"the header has {len(header)}")
                rows.append(dict(zip(header, fields)))
    except FileNotFoundError:
        raise CommandError(f"file not found: {p}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CommandError(f"{p}: not a readable UTF-8 CSV file ({exc})") from None
    return header, rows, errors


def _header_errors(path, header: list[str], required: tuple[str, ...], columns: tuple[str, ...],
                   extra: tuple[str, ...] = ()) -> list[str]:
    """Line-1 errors: required columns missing, columns neither known nor in `extra`."""
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c and c not in columns and c not in extra]
    errors = []
    if missing:
        errors.append(f"{path}: line 1: missing column(s) {', '.join(missing)}; expected {','.join(columns)}")
    if unknown:
        errors.append(f"{path}: line 1: unknown column(s) {', '.join(unknown)}; expected {','.join(columns)}")
    return errors


def import_files(outcomes_path, studies_path=None, *, db_path=None, config=None, entered_by=None) -> dict:
    """Validate both files completely, then import in one transaction. Returns counts, or raises
    ImportRejected with every error."""
    import os
    from pathlib import Path

    from living_review.config import load_review
    from living_review.settings import get_settings
    from warehouse.db import connect, migrate, transaction
    from warehouse.evidence import (OUTCOME_COLUMNS, STUDY_COLUMNS, known_study_ids, parse_outcome_rows,
                                    parse_study_rows, save_outcomes, save_study)

    config = config if config is not None else load_review()
    db_path = Path(db_path) if db_path else get_settings().db_path
    entered_by = entered_by or os.environ.get("USER") or "import"
    errors: list[str] = []
    # A file whose structure is wrong (a column name twice, a row with too many or too few fields)
    # has only those errors listed: its cells cannot be trusted to be under the right column.
    o_header, o_rows, o_structure = read_csv(outcomes_path)
    errors += _header_errors(outcomes_path, o_header, ("study_id", "outcome"), OUTCOME_COLUMNS, extra=("note",))
    errors += o_structure
    studies: list[dict] = []
    listed_studies: set[str] = set()  # ids in the studies file, valid or not (their errors are listed there)
    if studies_path:
        s_header, s_rows, s_structure = read_csv(studies_path)
        errors += _header_errors(studies_path, s_header, ("study_id", "label", "intervention"), STUDY_COLUMNS)
        errors += s_structure
        listed_studies = {str(r.get("study_id") or "").strip() for r in s_rows} - {""}
        if not s_structure:
            studies, s_errors = parse_study_rows(s_rows, config, first_row=2)
            errors += [f"{studies_path}: line {e.row}, {e.field}: {e.message}" for e in s_errors]
    migrate(db_path)
    with connect(db_path) as con:
        known = known_study_ids(con)
    known |= listed_studies
    if not o_structure:
        _, o_errors = parse_outcome_rows(o_rows, config, known, first_row=2)
        errors += [f"{outcomes_path}: line {e.row}, {e.field}: {e.message}" for e in o_errors]
    if not o_rows:
        errors.append(f"{outcomes_path}: no data rows")
    if errors:
        raise ImportRejected(errors)
    counts = {"studies_created": 0, "studies_updated": 0, "studies_unchanged": 0}
    with transaction(db_path) as con:
        for s in studies:
            status = save_study(con, s, created_by=entered_by)
            counts[f"studies_{status}"] += 1
        counts.update(save_outcomes(con, o_rows, config, entered_by=entered_by,
                                    source=f"import:{Path(outcomes_path).name}"))
    counts["rows"] = len(o_rows)
    return counts


class ImportRejected(Exception):
    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__(f"{len(errors)} error(s)")


def run(args) -> int:
    import sys

    from living_review.cli import CommandError

    try:
        counts = import_files(args.file, args.studies, entered_by=args.entered_by)
    except ImportRejected as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        raise CommandError(f"{len(exc.errors)} error(s); nothing imported") from None
    if args.json:
        print(json.dumps(counts))
    else:
        print(f"imported {counts['rows']} row(s): {counts['added']} added, {counts['corrected']} corrected "
              f"(superseding earlier entries), {counts['unchanged']} unchanged; studies: "
              f"{counts['studies_created']} created, {counts['studies_updated']} updated, "
              f"{counts['studies_unchanged']} unchanged")
        if counts["added"] or counts["corrected"]:
            print("evidence changed: run `living-review pool` (or wait for the nightly run) to refresh pooled effects")
    return 0
