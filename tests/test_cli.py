import argparse
import os
import re
import subprocess
import sys

import pytest

# Prefect binds its console log handler to sys.stderr when first imported: import it here, under the
# session's capture, not inside a capsys test whose stream is closed afterwards (later flow tests' logging
# would then fail with 'I/O operation on closed file').
import flows.nightly  # noqa: E402,F401


def test_cli_turns_prefect_telemetry_off_unless_asked():
    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    code = "import os, living_review.cli; print(os.environ['DO_NOT_TRACK'], os.environ['PREFECT_SERVER_ANALYTICS_ENABLED'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "false"]
    env["DO_NOT_TRACK"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "0"


CONTRACT_COMMANDS = {"nightly", "status", "rank", "simulate", "validate-meta", "import-outcomes", "pool", "ui", "reviewer"}


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(action.choices)


def test_the_parser_has_exactly_the_contract_commands():
    from living_review.cli import build_parser

    assert _subcommands(build_parser()) == CONTRACT_COMMANDS
    out = subprocess.run([sys.executable, "-m", "living_review.cli", "--help"], capture_output=True, text=True, check=True).stdout
    listed = set(re.findall(r"^    (\S+)", out, flags=re.MULTILINE))  # one line per command in --help
    assert listed == CONTRACT_COMMANDS


def test_a_missing_command_module_is_an_error_not_a_silent_skip(monkeypatch):
    from living_review import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "no_such_command"])
    with pytest.raises(ModuleNotFoundError, match="no_such_command"):
        cli.build_parser()


class _Completed:
    """What `nightly_update(..., return_state=True)` returns, for a run that completed."""

    def __init__(self, summary):
        self.summary = summary

    def is_completed(self):
        return True

    def result(self):
        return self.summary


@pytest.fixture
def fake_nightly(monkeypatch):
    """flows.nightly.nightly_update replaced: records the source it was asked for, runs nothing."""
    import flows.nightly

    calls = []

    def nightly_update(source="snapshot", return_state=False):
        calls.append(source)
        return _Completed({"source": source})

    monkeypatch.setattr(flows.nightly, "nightly_update", nightly_update)
    return calls


@pytest.mark.parametrize("value", ["Entrez", "pubmed", "SNAPSHOT"])
def test_a_bad_living_review_source_is_a_clear_error_before_anything_runs(monkeypatch, capsys, fake_nightly, value):
    """LIVING_REVIEW_SOURCE is the default of `nightly --source`: a value --source would refuse used to
    pass argparse unchecked and fail only inside the flow."""
    from living_review.cli import main

    monkeypatch.setenv("LIVING_REVIEW_SOURCE", value)
    assert main(["nightly", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("living-review nightly: error: LIVING_REVIEW_SOURCE=") and "\n" not in err
    assert repr(value) in err and "entrez, snapshot" in err
    assert fake_nightly == []  # the flow never started


@pytest.mark.parametrize("env, argv, expected", [
    (None, [], "snapshot"),                       # the documented default
    ("", [], "snapshot"),                         # blank = unset
    (" entrez ", [], "entrez"),                   # surrounding blanks ignored, as for the other settings
    ("entrez", [], "entrez"),                     # the variable sets the default ...
    ("entrez", ["--source", "snapshot"], "snapshot"),  # ... and the flag overrides it
    ("Entrez", ["--source", "snapshot"], "snapshot"),  # an explicit --source does not use the variable
])
def test_living_review_source_is_the_default_of_nightly_source(monkeypatch, capsys, fake_nightly, env, argv, expected):
    import json

    from living_review.cli import main

    if env is None:
        monkeypatch.delenv("LIVING_REVIEW_SOURCE", raising=False)
    else:
        monkeypatch.setenv("LIVING_REVIEW_SOURCE", env)
    assert main(["nightly", "--json", *argv]) == 0
    assert fake_nightly == [expected] and json.loads(capsys.readouterr().out) == {"source": expected}
