"""`living-review reviewer add|list|passwd|role` (accounts for the web workspace)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from living_review.cli import main


def run_cli(monkeypatch, capsys, argv, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _hash_of(name):
    from living_review.settings import get_settings
    from warehouse.db import connect

    with connect(get_settings().db_path) as con:
        return con.execute("SELECT password_hash, role FROM reviewers WHERE name = ?", [name]).fetchall()


def test_add_list_passwd_role(lr_home, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, ["reviewer", "add", "ann", "--role", "lead", "--password-stdin"],
                           "a long password\n")
    assert code == 0 and "ann" in out and "lead" in out
    (h, role), = _hash_of("ann")
    assert role == "lead" and h.startswith("scrypt$") and "a long password" not in h
    code, out, _ = run_cli(monkeypatch, capsys, ["reviewer", "add", "bob", "--password-stdin"], "another password\n")
    code, out, _ = run_cli(monkeypatch, capsys, ["reviewer", "list", "--json"])
    assert json.loads(out) == [{"name": "ann", "role": "lead", "active": True},
                               {"name": "bob", "role": "reviewer", "active": True}]
    code, out, _ = run_cli(monkeypatch, capsys, ["reviewer", "passwd", "bob", "--password-stdin"], "changed password\n")
    assert code == 0
    from warehouse import workspace
    from warehouse.db import connect
    from living_review.settings import get_settings

    with connect(get_settings().db_path) as con:
        assert workspace.authenticate(con, "bob", "changed password") is not None
        assert workspace.authenticate(con, "bob", "another password") is None
    code, out, _ = run_cli(monkeypatch, capsys, ["reviewer", "role", "bob", "lead"])
    assert code == 0 and _hash_of("bob")[0][1] == "lead"


def test_user_errors_are_one_line_exit_2(lr_home, monkeypatch, capsys):
    run_cli(monkeypatch, capsys, ["reviewer", "add", "ann", "--password-stdin"], "a long password\n")
    for argv, stdin, msg in [
        (["reviewer", "add", "ann", "--password-stdin"], "a long password\n", "already exists"),
        (["reviewer", "add", "cy", "--password-stdin"], "short\n", "at least 8"),
        (["reviewer", "add", "cy", "--password-stdin"], "\n", "empty password"),
        (["reviewer", "add", "bad name!", "--password-stdin"], "a long password\n", "reviewer name"),
        (["reviewer", "passwd", "ghost", "--password-stdin"], "a long password\n", "no reviewer"),
        (["reviewer", "add", "cy"], "", "--password-stdin"),  # no terminal to ask on
    ]:
        code, out, err = run_cli(monkeypatch, capsys, argv, stdin)
        assert code == 2, argv
        assert msg in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_installed_command_reads_password_from_stdin(lr_home):
    exe = [sys.executable, "-m", "living_review.cli"]
    p = subprocess.run(exe + ["reviewer", "add", "dee", "--password-stdin"], input="a long password\n",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(exe + ["reviewer", "list"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.split() == ["dee", "reviewer"]
