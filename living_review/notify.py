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

The Prefect state hooks that call these live in flows/notifications.py. A new evidence version whose
conclusions changed is reported by `living_review.pooling.notify_conclusions_changed`, called once by
whatever stored the version: the refresh-pooled-effects flow's completion hook, or the web app after
an extraction save (in the background, after the reviewer has the response).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

from living_review.settings import scrub_secrets as scrub  # one scrubbing rule, shared with the Entrez source

log = logging.getLogger(__name__)

PREFIX = "living review"
MAX_CHANGES_LISTED = 8
_CONCLUSION_REASONS = ("direction", "significance", "CI ", "PI ")  # models.living.conclusion_flags' flags


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


def failure_reason(exc: BaseException, settings=None) -> str:
    """An exception as one log-safe line: every secret scrubbed from the whole text first, then cut
    (cutting first could leave part of a secret behind). Never raises."""
    text = f"{type(exc).__name__}: {exc}"
    try:
        if settings is None:
            from living_review.settings import get_settings

            settings = get_settings()
        return first_line(scrub(text, secrets_of(settings)))
    except Exception:  # noqa: BLE001 - a broken environment must not hide the original failure
        try:
            return first_line(scrub(text))
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


def changed_conclusions(old_results: list[dict], new_results: list[dict]) -> list[dict]:
    """The new results flagged `conclusion_changed`, each with its previous effect (None if it had
    none), its new effect and the flags' reasons; overall primary analyses first."""
    old = {(r["analysis_id"], r.get("subgroup") or ""): r for r in old_results}
    out = []
    for r in new_results:
        if not r.get("conclusion_changed"):
            continue
        key = (r["analysis_id"], r.get("subgroup") or "")
        prev = old.get(key)
        out.append({"analysis_id": key[0], "subgroup": key[1], "outcome": r.get("outcome"),
                    "analysis": r.get("analysis"), "old": effect(prev) if prev else None, "new": effect(r),
                    "reasons": [x for x in (r.get("change_reasons") or []) if x.startswith(_CONCLUSION_REASONS)]})
    return sorted(out, key=lambda c: not (c["analysis"] == "primary" and not c["subgroup"]))


def run_origin(flow_name: str, run_name: str, run_id) -> str:
    """Where a flow run's message comes from: 'refresh-pooled-effects run calm-heron (<id>)'."""
    return f"{flow_name} {_run(run_name, run_id)}"


def conclusions_changed_by(origin: str, version: int, previous_version: int | None, old_results: list[dict],
                           new_results: list[dict], url: str | None = None) -> Message | None:
    """Which analyses' conclusions changed between two evidence versions, old → new effect, and what
    stored the new one (`origin`: a flow run, a save in the reviewers' workspace); None when nothing
    changed or this is the first version (a first estimate is not a change)."""
    if previous_version is None:
        return None
    changes = changed_conclusions(old_results, new_results)
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


def send(message: Message, settings=None, logger: logging.Logger | logging.LoggerAdapter | None = None) -> bool:
    """Send `message` through the block named by LIVING_REVIEW_NOTIFY_BLOCK. True when sent; False
    when no block is named (silently) or sending failed (a warning, never an exception)."""
    logger = logger or log
    try:
        if settings is None:
            from living_review.settings import get_settings

            settings = get_settings()
        name = settings.notify_block
        if not name:
            return False
        secrets = secrets_of(settings)
        clean = Message(scrub(message.subject, secrets), scrub(message.body, secrets))
        _notify(_load_block(name), clean)
        return True
    except Exception as exc:  # noqa: BLE001 - a notification must never fail the run it reports on
        where = getattr(settings, "notify_block", None) or "LIVING_REVIEW_NOTIFY_BLOCK"
        logger.warning("notification not sent through %s: %s", where, failure_reason(exc, settings))
        return False
