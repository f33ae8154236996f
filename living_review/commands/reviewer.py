"""`living-review reviewer add|list|passwd|role`: the accounts that may log in to the workspace."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("reviewer", help="manage reviewer accounts for the web workspace")
    rsub = p.add_subparsers(dest="reviewer_command", metavar="ACTION")
    add = rsub.add_parser("add", help="create an account (asks for a password)")
    add.add_argument("name")
    add.add_argument("--role", choices=["reviewer", "lead"], default="reviewer")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    lst = rsub.add_parser("list", help="list accounts")
    lst.add_argument("--json", action="store_true")
    pw = rsub.add_parser("passwd", help="set a new password (logs the reviewer out everywhere)")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    role = rsub.add_parser("role", help="change an account's role")
    role.add_argument("name")
    role.add_argument("role", choices=["reviewer", "lead"])
    p.set_defaults(func=run, _parser=p)


def _read_password(args) -> str:
    from living_review.cli import CommandError

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        if not sys.stdin.isatty():
            raise CommandError("no terminal to ask for a password; use --password-stdin")
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Repeat password: ") != password:
            raise CommandError("passwords do not match")
    if not password:
        raise CommandError("empty password")
    return password


def run(args) -> int:
    from living_review.cli import CommandError
    from living_review.settings import get_settings
    from warehouse import workspace
    from warehouse.db import connect, migrate, transaction

    action = getattr(args, "reviewer_command", None)
    if not action:
        args._parser.print_help()
        return 2
    settings = get_settings()
    settings.ensure_dirs()
    migrate(settings.db_path)
    try:
        if action == "add":
            password = _read_password(args)
            with transaction(settings.db_path) as con:
                r = workspace.add_reviewer(con, args.name, password, args.role)
            print(f"reviewer {r.name} added ({r.role})")
        elif action == "passwd":
            password = _read_password(args)
            with transaction(settings.db_path) as con:
                workspace.set_password(con, args.name, password)
            print(f"password changed for {args.name}")
        elif action == "role":
            with transaction(settings.db_path) as con:
                workspace.set_role(con, args.name, args.role)
            print(f"{args.name} is now {args.role}")
        elif action == "list":
            with connect(settings.db_path) as con:
                people = workspace.list_reviewers(con)
            if args.json:
                import json

                print(json.dumps([{"name": r.name, "role": r.role, "active": r.active} for r in people]))
            else:
                for r in people:
                    print(f"{r.name}\t{r.role}" + ("" if r.active else "\tinactive"))
                if not people:
                    print("no reviewers yet: living-review reviewer add NAME --role lead")
    except workspace.AccountError as exc:
        raise CommandError(str(exc)) from None
    return 0
