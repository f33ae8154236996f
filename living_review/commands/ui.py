"""`living-review ui`: serve the reviewers' workspace (screening, conflicts, extraction, results)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("ui", help="serve the reviewers' web workspace")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.set_defaults(func=run)


def run(args) -> int:
    import uvicorn

    from living_review.settings import get_settings
    from living_review.web.app import create_app

    settings = get_settings()
    app = create_app(settings)
    print(f"living-review workspace on http://{args.host}:{args.port}/  (warehouse {settings.db_path})")
    # proxy_headers=False: the client address is the socket's peer. uvicorn would otherwise take it
    # from X-Forwarded-For on loopback connections, and any client could then pick a fresh address
    # for every attempt and step around the per-address login limit.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, proxy_headers=False)
    return 0
