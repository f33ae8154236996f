"""A tiny webhook receiver on 127.0.0.1 for the notification tests: records every request it gets.

    with WebhookServer() as hook:            # answers 200
        ... hook.url ... hook.posts           # RecordedPost(path, headers, body, json)
    with WebhookServer(status=500) as hook:  # answers 500 to everything (a broken receiver)
    hook.hold = threading.Event()             # record each request, answer only once the event is set

`save_webhook_block(url)` saves a Prefect CustomWebhookNotificationBlock posting {"subject", "text"}
to a receiver (needs the session's `prefect_harness`) and returns the LIVING_REVIEW_NOTIFY_BLOCK value.
"""

from __future__ import annotations

import json
import threading
import uuid
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
    hold: threading.Event | None = None  # set: answer; unset: keep the sender waiting (at most 60 s)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with owner._lock:
                    owner.requests.append(RecordedPost(self.command, self.path, dict(self.headers.items()), body))
                if owner.hold is not None:
                    owner.hold.wait(timeout=60)
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
        if self.hold is not None:
            self.hold.set()  # never leave a handler thread waiting
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def save_webhook_block(url: str, timeout: float | None = None) -> str:
    """A CustomWebhookNotificationBlock posting {"subject", "text"} to `url`, saved under a fresh name;
    returns its "<slug>/<name>" for LIVING_REVIEW_NOTIFY_BLOCK. `timeout`: the block's request timeout (s)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    name = f"lr-test-{uuid.uuid4().hex[:10]}"
    extra = {} if timeout is None else {"timeout": timeout}
    CustomWebhookNotificationBlock(name="living-review tests", url=url,
                                   json_data={"subject": "{{subject}}", "text": "{{body}}"}, **extra).save(name)
    return f"custom-webhook/{name}"
