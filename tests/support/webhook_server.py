"""A tiny webhook receiver on 127.0.0.1 for the notification tests: records every request it gets.

    with WebhookServer() as hook:            # answers 200
        ... hook.url ... hook.posts           # RecordedPost(path, headers, body, json)
    with WebhookServer(status=500) as hook:  # answers 500 to everything (a broken receiver)
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class RecordedPost:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body.decode("utf-8"))

    @property
    def raw(self) -> str:
        """Everything that arrived (request line, headers, body) as text, for "never contains" checks."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}\n{head}\n\n{self.body.decode('utf-8', 'replace')}"


@dataclass
class WebhookServer:
    status: int = 200
    requests: list[RecordedPost] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with owner._lock:
                    owner.requests.append(RecordedPost(self.command, self.path, dict(self.headers.items()), body))
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                payload = b'{"ok": true}' if owner.status < 400 else b'{"error": "broken on purpose"}'
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = do_GET = _record

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hook"

    @property
    def posts(self) -> list[RecordedPost]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    def __enter__(self) -> "WebhookServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
