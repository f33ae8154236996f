"""`living-review` command line: one sub-command per module in living_review/commands/.

Each command module defines `register(subparsers)` which adds its parser and sets `func`, a callable
taking the parsed args and returning an exit code. Command modules import heavy libraries inside
their functions so that `living-review --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# The project's Prefect runs keep to loopback: no telemetry unless the user asks for it.
for _name, _value in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("DO_NOT_TRACK", "1")):
    os.environ.setdefault(_name, _value)

COMMAND_MODULES = [
    "nightly",
    "status",
    "rank",
    "simulate",
    "validate_meta",
    "import_outcomes",
    "pool",
    "ui",
    "reviewer",
]


class CommandError(Exception):
    """A user-facing failure: printed as one line on stderr, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="living-review", description="A living systematic review of parenting interventions for child attachment.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        # Every listed command is part of the CLI's contract: a missing module is an error (an
        # ImportError naming it), never a command silently left out of the parser.
        importlib.import_module(f"living_review.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"living-review {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
