"""Short messages for maintainers about flow runs, sent through a saved Prefect notification block.

Two halves, kept apart so the formatting is tested in milliseconds without Prefect:

- **Formatting** (pure): `run_failed`, `conclusions_changed_by` (a flow run's origin is
  `run_origin`), `night_digest` build a `Message` (subject + a few lines of body); `first_line`, `scrub`,
  `effect`, `changed_conclusions` help.
- **Delivery**: `send(message)` loads the block named by `LIVING_REVIEW_NOTIFY_BLOCK`
  ("<block-type-slug>/<block-name>", e.g. "custom-webhook/review-team" or "slack-webhook/ops"),
  scrubs every secret of the settings out of the text and calls the block's `notify`. Unset setting:
  nothing is sent and nothing is said. Any failure (no such block, HTTP 500, refused connection) is
  logged as a warning and `send` returns False: a notification never fails or hides a run's result.
  A block's URL is a credential (a Slack, Teams or custom webhook URL carries its token in the path):
  the warning keeps the block's name, the error's type and status, and of any URL only its scheme and
  host; the block's URL and secret fields are scrubbed from it and from the HTTP libraries' own log
  lines while the block is loaded and used (`block_secrets`, `hide_urls`).

The Prefect state hooks that call these live in flows/notifications.py. A new evidence version whose
conclusions changed is reported by `living_review.pooling.notify_conclusions_changed`, called once by
whatever stored the version: the refresh-pooled-effects flow's completion hook, or the web app after
an extraction save (in the background, after the reviewer has the response).
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from living_review.settings import scrub_secrets as scrub  # one scrubbing rule, shared with the Entrez source

log = logging.getLogger(__name__)

PREFIX = "living review"
MAX_CHANGES_LISTED = 8
_CONCLUSION_REASONS = ("no longer estimable", "now estimable", "direction", "significance", "CI ",
                       "PI ")  # models.living.conclusion_flags' flags


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


# ---------------------------------------------------------------------------------------------
# Formatting (pure)


def first_line(text: Any, limit: int = 300) -> str:
    """The first non-empty line of `text`, stripped and cut to `limit` characters."""
    for line in str(text or "").splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def secrets_of(settings) -> list[str]:
    """The values of every SecretStr setting (today: NCBI_API_KEY) that is set."""
    from pydantic import SecretStr

    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [v.get_secret_value() for v in values if isinstance(v, SecretStr) and v.get_secret_value()]


_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*)://([^\s'\"<>`]+)")
_HOST_SCHEMES = {"http", "https", "ws", "wss"}


def hide_urls(text: str) -> str:
    """`text` with every URL cut to its scheme and host ('https://hooks.slack.com/…'): a webhook URL's
    path, query and user info are its credentials. Other schemes (Apprise's 'slack://T…/B…/…' puts
    tokens where the host would be) keep their scheme only."""

    def cut(m: re.Match) -> str:
        scheme, rest = m.group(1), m.group(2)
        if scheme.lower() not in _HOST_SCHEMES:
            return f"{scheme}://…"
        netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
        host = netloc.rsplit("@", 1)[-1]
        return f"{scheme}://{host}" + ("/…" if len(netloc) < len(rest) or host != netloc else "")

    return _URL.sub(cut, text)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            yield from _strings(v)
    elif value is not None and not isinstance(value, (bool, int, float)):
        yield str(value)  # e.g. a pydantic URL


def block_secrets(block) -> list[str]:
    """What of a notification block must never be logged: its `url` (plain or SecretStr; also its path
    and query alone, user name and password, as error texts quote them apart from the host) and the
    value of every secret field (SecretStr, SecretDict: tokens, keys, a custom webhook's `secrets`).
    Longest first, so that a URL is scrubbed before its path. Never raises."""
    from urllib.parse import urlsplit

    found: list[str] = []
    for name in getattr(type(block), "model_fields", None) or {}:
        try:
            value = getattr(block, name, None)
            secret = hasattr(value, "get_secret_value")
            if secret:
                value = value.get_secret_value()
            if secret or name == "url":
                found.extend(_strings(value))
        except Exception:  # noqa: BLE001
            continue
    out: set[str] = set()
    for value in found:
        out.add(value)
        if "://" in value:
            try:
                parts = urlsplit(value)
                out.update({parts.path + (f"?{parts.query}" if parts.query else ""), parts.query,
                            parts.username or "", parts.password or ""})
                if parts.path.strip("/"):
                    out.add(parts.path)
            except ValueError:
                pass
    return sorted((v for v in out if v and v.strip("/?")), key=len, reverse=True)


def _detail(exc: BaseException) -> str:
    """The exception's text; for Prefect's NotificationError (Apprise-based blocks), whose text is
    empty, the warnings Apprise logged while sending."""
    text = str(exc)
    log_text = getattr(exc, "log", None)
    if not text.strip() and isinstance(log_text, str):
        lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
        warned = [ln for ln in lines if ln.startswith(("[WARNING]", "[ERROR]", "[CRITICAL]"))]
        text = "; ".join(warned or lines[-1:])
    return text


def failure_reason(exc: BaseException, settings=None, secrets: Iterable[str | None] = ()) -> str:
    """An exception as one log-safe line: URLs cut to scheme and host, then every secret (the
    settings' and `secrets`, e.g. a block's) scrubbed from the whole text, then cut (cutting first
    could leave part of a secret behind). Never raises."""
    secrets = list(secrets)
    try:
        text = hide_urls(f"{type(exc).__name__}: {_detail(exc)}")
    except Exception:  # noqa: BLE001
        return type(exc).__name__
    try:
        if settings is None:
            from living_review.settings import get_settings

            settings = get_settings()
        return first_line(scrub(text, secrets_of(settings) + secrets))
    except Exception:  # noqa: BLE001 - a broken environment must not hide the original failure
        try:
            return first_line(scrub(text, secrets))
        except Exception:  # noqa: BLE001
            return type(exc).__name__


def _run(run_name: str, run_id) -> str:
    return f"run {run_name} ({run_id})"


def _with_url(lines: list[str], url: str | None) -> str:
    return "\n".join(lines + ([url] if url else []))


def run_failed(flow_name: str, run_name: str, run_id, state_name: str, error: str | None,
               url: str | None = None, secrets: Iterable[str | None] = ()) -> Message:
    """A failed or crashed run: flow, run name and id, state, and the error's first line (scrubbed
    before it is cut, so a cut can never leave part of a secret behind)."""
    line = first_line(scrub(error or "", secrets)) or "(no error message)"
    return Message(f"{PREFIX}: {flow_name} {state_name}",
                   _with_url([f"Flow {flow_name}, {_run(run_name, run_id)} ended {state_name}.", f"Error: {line}"], url))


def effect(r: dict) -> str:
    """'OR 1.35 (1.05 to 1.73)': ratio measures on the natural scale, others as estimated, no PI."""
    from living_review.pooling import format_effect

    return format_effect(r, pi=False)


def changed_conclusions(old_results: list[dict], new_results: list[dict],
                        dropped: list[dict] | None = None) -> list[dict]:
    """The new results flagged `conclusion_changed`, each with its previous effect (None if it had
    none), its new effect and the flags' reasons, and every previous result with an estimate that the
    new version no longer has ("not estimable": its data were withdrawn, its subgroup emptied); overall
    primary analyses first. `dropped` (the refresh summary's list) gives the reasons for the latter
    when known, else "no longer estimable"."""
    old = {(r["analysis_id"], r.get("subgroup") or ""): r for r in old_results}
    why = {(d["analysis_id"], d.get("subgroup") or ""): d.get("change_reasons") for d in dropped or []}
    out = []
    for r in new_results:
        key = (r["analysis_id"], r.get("subgroup") or "")
        prev = old.pop(key, None)
        if not r.get("conclusion_changed"):
            continue
        out.append({"analysis_id": key[0], "subgroup": key[1], "outcome": r.get("outcome"),
                    "analysis": r.get("analysis"), "old": effect(prev) if prev else None, "new": effect(r),
                    "reasons": [x for x in (r.get("change_reasons") or []) if x.startswith(_CONCLUSION_REASONS)]})
    for key, prev in old.items():  # in the previous version, not in this one
        if prev.get("estimate") is None:
            continue
        out.append({"analysis_id": key[0], "subgroup": key[1], "outcome": prev.get("outcome"),
                    "analysis": prev.get("analysis"), "old": effect(prev), "new": effect({}),
                    "reasons": list(why.get(key) or ["no longer estimable"])})
    return sorted(out, key=lambda c: not (c["analysis"] == "primary" and not c["subgroup"]))


def run_origin(flow_name: str, run_name: str, run_id) -> str:
    """Where a flow run's message comes from: 'refresh-pooled-effects run calm-heron (<id>)'."""
    return f"{flow_name} {_run(run_name, run_id)}"


def conclusions_changed_by(origin: str, version: int, previous_version: int | None, old_results: list[dict],
                           new_results: list[dict], url: str | None = None,
                           dropped: list[dict] | None = None) -> Message | None:
    """Which analyses' conclusions changed between two evidence versions, old → new effect (an analysis
    the new version no longer has: → not estimable), and what stored the new one (`origin`: a flow run,
    a save in the reviewers' workspace); None when nothing changed or this is the first version (a
    first estimate is not a change). `dropped`: see `changed_conclusions`."""
    if previous_version is None:
        return None
    changes = changed_conclusions(old_results, new_results, dropped)
    if not changes:
        return None
    lines = [f"Pooled conclusions changed in evidence version {version} (was version {previous_version}); "
             f"{origin}."]
    for c in changes[:MAX_CHANGES_LISTED]:
        label = c["analysis_id"] + (f" [{c['subgroup']}]" if c["subgroup"] else "")
        text = f"- {label}: {c['old'] or 'no earlier estimate'} → {c['new']}"
        lines.append("; ".join([text, *c["reasons"]]))
    if len(changes) > MAX_CHANGES_LISTED:
        lines.append(f"… and {len(changes) - MAX_CHANGES_LISTED} more (see the What's new artifact)")
    return Message(f"{PREFIX}: pooled conclusions changed (evidence version {version})", _with_url(lines, url))


def night_digest(flow_name: str, run_name: str, run_id, summary: dict, url: str | None = None) -> Message:
    """One line on a completed night: new records, records left to screen, the recall estimate."""
    from models.summary import describe_recall

    new = summary.get("new_records", 0)
    ranking = summary.get("ranking") or {}
    recall = ranking.get("recall_estimate") or {}
    line = f"{flow_name} {_run(run_name, run_id)}: {new} new records"
    if recall.get("unscreened") is not None:
        line += f"; {recall['unscreened']} records to screen"
    return Message(f"{PREFIX}: {flow_name} Completed: {new} new records",
                   _with_url([line + ".", describe_recall(None if ranking.get("failed") else recall)], url))


# ---------------------------------------------------------------------------------------------
# Delivery


def _load_block(name: str):
    """The saved notification block "<block-type-slug>/<block-name>" from the Prefect API."""
    from prefect.blocks.core import Block

    if "/" not in name:
        raise ValueError(f"LIVING_REVIEW_NOTIFY_BLOCK={name!r} is not '<block-type-slug>/<block-name>' "
                         "(e.g. 'custom-webhook/review-team'; `prefect block ls` lists them)")
    return Block.load(name, _sync=True)


def _notify(block, message: Message) -> None:
    """Call the block's notify synchronously, raising on failure (Apprise-based blocks only report
    failures inside `raise_on_failure()`)."""
    import contextlib
    import inspect

    guard = block.raise_on_failure() if hasattr(block, "raise_on_failure") else contextlib.nullcontext()
    with guard:
        notify = block.notify
        result = notify(message.body, subject=message.subject, _sync=True) if hasattr(notify, "aio") \
            else notify(message.body, subject=message.subject)
        if inspect.isawaitable(result):
            from prefect.utilities.asyncutils import run_coro_as_sync

            run_coro_as_sync(result)


# The libraries that talk to the block's URL and log it: httpx (every request's URL, at INFO) and
# Apprise (the URL it posts to, at DEBUG; its warnings become a NotificationError's text).
_LIBRARY_LOGGERS = ("httpx", "apprise")


class _HideBlockSecrets(logging.Filter):
    """Rewrites each record of the logger it is attached to: URLs cut to scheme and host, the block's
    secrets (`hidden`, filled in once the block is loaded) scrubbed."""

    def __init__(self, hidden: list[str]):
        super().__init__()
        self.hidden = hidden

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = scrub(hide_urls(record.getMessage()), self.hidden), None
        except Exception:  # noqa: BLE001 - never lose or break a log line
            pass
        return True


@contextlib.contextmanager
def _library_logs_hiding(hidden: list[str]) -> Iterator[None]:
    """While a block is loaded and used, its URL and secrets stay out of the HTTP libraries' logs."""
    flt = _HideBlockSecrets(hidden)
    loggers = [logging.getLogger(n) for n in _LIBRARY_LOGGERS]
    for lg in loggers:
        lg.addFilter(flt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(flt)


def send(message: Message, settings=None, logger: logging.Logger | logging.LoggerAdapter | None = None) -> bool:
    """Send `message` through the block named by LIVING_REVIEW_NOTIFY_BLOCK. True when sent; False
    when no block is named (silently) or sending failed (a warning naming the block and the error,
    never its URL or secrets; never an exception)."""
    logger = logger or log
    hidden: list[str] = []  # the block's secrets, once it is loaded
    try:
        if settings is None:
            from living_review.settings import get_settings

            settings = get_settings()
        name = settings.notify_block
        if not name:
            return False
        secrets = secrets_of(settings)
        clean = Message(scrub(message.subject, secrets), scrub(message.body, secrets))
        with _library_logs_hiding(hidden):
            block = _load_block(name)
            hidden.extend(block_secrets(block))
            _notify(block, clean)
        return True
    except Exception as exc:  # noqa: BLE001 - a notification must never fail the run it reports on
        where = getattr(settings, "notify_block", None) or "LIVING_REVIEW_NOTIFY_BLOCK"
        logger.warning("notification not sent through %s: %s", where, failure_reason(exc, settings, hidden))
        return False
