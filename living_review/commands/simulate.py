"""`living-review simulate`: replay screening of a labelled dataset with the active-learning ranker.

Writes the screening order (priors first) so outside tools can compute work saved. Contract in
issue #4: columns position,record_id,label_included; every record once; deterministic per seed.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="simulate active-learning screening on a labelled CSV",
                              description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="CSV with record_id,title,abstract,label_included")
    p.add_argument("--output", required=True, help="where to write ORDER.csv")
    p.add_argument("--seed", type=int, default=0, help="random seed for the priors and the model (default 0)")
    p.add_argument("--prior-included", type=int, default=1, metavar="K", help="random includes screened first (default 1)")
    p.add_argument("--prior-excluded", type=int, default=1, metavar="K", help="random excludes screened first (default 1)")
    p.add_argument("--audit-fraction", type=float, default=0.0,
                   help="share of each query drawn at random (default 0, as in the benchmark)")
    p.set_defaults(func=run)


REQUIRED = ("record_id", "title", "abstract", "label_included")


def _records(path: str):
    """(first line number, fields) of each non-blank CSV record of `path`, the header included: the
    physical line a record starts on, which a multi-line quoted abstract makes differ from its position."""
    import csv

    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        start = 1
        for fields in reader:
            if len(fields) > 1 or (fields and fields[0].strip()):  # pandas skips blank lines too
                yield start, fields
            start = reader.line_num + 1


def _line_of(path: str, index: int) -> int:
    """The line the data record at `index` (0-based, as pandas read it) starts on; index + 2 if the
    file cannot be re-read."""
    try:
        for i, (line, _) in enumerate(_records(path)):
            if i == index + 1:  # record 0 is the header
                return line
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    return index + 2


def _check_extra_fields(path: str, width: int) -> None:
    """A row with more fields than the header is harmless when the extra fields are empty (a trailing
    comma); with anything in them, the row's columns cannot be trusted (an unquoted comma?): an error."""
    from living_review.cli import CommandError

    try:
        records = list(_records(path))
    except (OSError, UnicodeDecodeError, ValueError):
        return  # pandas read it; nothing more to learn here
    for line, fields in records[1:]:
        if len(fields) > width and any(f.strip() for f in fields[width:]):
            raise CommandError(f"dataset {path}: line {line}: {len(fields)} fields, the header has {width}")


def read_dataset(path: str):
    """Load and check a labelled dataset; raise CommandError with a one-line reason."""
    import warnings

    import pandas as pd

    from living_review.cli import CommandError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            # index_col=False: rows with one field more than the header (a trailing comma) must not
            # turn the first column into the index and shift every other column left
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8", index_col=False)
    except FileNotFoundError:
        raise CommandError(f"dataset not found: {path}") from None
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, IsADirectoryError,
            PermissionError, OSError) as exc:
        raise CommandError(f"cannot read dataset {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    for w in caught:
        if issubclass(w.category, pd.errors.ParserWarning):  # rows longer than the header: fields dropped
            _check_extra_fields(path, len(df.columns))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise CommandError(f"dataset {path} lacks column(s): {', '.join(missing)}")
    if df.empty:
        raise CommandError(f"dataset {path} has no records")
    labels = df["label_included"].str.strip()
    bad = ~labels.isin(["0", "1", "0.0", "1.0"])
    if bad.any():
        index = int(bad.to_numpy().argmax())  # positional: the index labels need not be 0..n-1
        raise CommandError(f"label_included must be 0 or 1 (line {_line_of(path, index)}: "
                           f"{df['label_included'].iloc[index]!r})")
    df["label_included"] = labels.astype(float).astype(int)
    blank = df["record_id"].str.strip() == ""
    if blank.any():
        raise CommandError(f"record_id is empty (line {_line_of(path, int(blank.to_numpy().argmax()))})")
    if df["record_id"].duplicated().any():
        dup = df.loc[df["record_id"].duplicated(), "record_id"].iloc[0]
        raise CommandError(f"record_id {dup!r} occurs more than once")
    return df


def run(args: argparse.Namespace) -> int:
    import csv
    import os

    from living_review.cli import CommandError
    from models.ranking.simulation import SimulationError, SimulationParams, simulate_screening

    if not 0 <= args.seed < 2**32:
        raise CommandError(f"--seed must be within 0 .. 2**32 - 1, got {args.seed}")
    df = read_dataset(args.dataset)
    if not 0 <= args.audit_fraction <= 1:
        raise CommandError("--audit-fraction must be within [0, 1]")
    try:  # title and abstract only: the contract says other columns are ignored
        result = simulate_screening(
            df["title"].tolist(), df["abstract"].tolist(), df["label_included"].tolist(), seed=args.seed,
            prior_included=args.prior_included, prior_excluded=args.prior_excluded,
            params=SimulationParams(audit_fraction=args.audit_fraction))
    except SimulationError as exc:
        raise CommandError(str(exc)) from None
    ids = df["record_id"].tolist()
    labels = df["label_included"].tolist()
    tmp = f"{args.output}.tmp"
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["position", "record_id", "label_included"])
            for pos, i in enumerate(result.order, start=1):
                w.writerow([pos, ids[i], labels[i]])
        os.replace(tmp, args.output)
    except OSError as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    found = sum(labels[i] for i in result.order[: result.n_priors])
    print(f"simulated {len(ids)} records ({sum(labels)} includes, priors {result.n_priors} with {found} includes, "
          f"{result.n_fits} model fits) → {args.output}")
    return 0
