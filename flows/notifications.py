"""Prefect state hooks that tell maintainers about flow runs; the messages are living_review.notify's.

Attached in the flow decorators:

    nightly-update          on_failure, on_crashed → notify_run_failed
                            on_completion          → notify_night_digest (only if LIVING_REVIEW_NOTIFY_SUCCESS)
    refresh-pooled-effects  on_failure, on_crashed → notify_run_failed (top-level runs only: inside a
                                                     nightly run the nightly's own failure reports it)
                            on_completion          → notify_conclusions_changed (the versions this run
                                                     stored; a version saved from the reviewers' workspace
                                                     is the web app's to report, see living_review.pooling)

Hooks run in the flow's process after its final state is set. Each returns at once when
LIVING_REVIEW_NOTIFY_BLOCK is unset, and none raises: a problem is a warning in the run's log and
the run keeps the state and result it had.
"""

from __future__ import annotations

import functools
import logging

from living_review import notify

log = logging.getLogger(__name__)
_PREFECT_PREFIX = "Flow run encountered an exception: "


def _run_logger(flow, flow_run):
    """The flow run's logger (its lines reach the Prefect UI), else this module's."""
    try:
        from prefect.logging.loggers import flow_run_logger

        return flow_run_logger(flow_run, flow)
    except Exception:  # noqa: BLE001
        return log


def _hook(fn):
    """Run `fn(flow, flow_run, state, settings, logger)` only when a block is named; never raise."""

    @functools.wraps(fn)
    def hook(flow, flow_run, state) -> None:
        logger = _run_logger(flow, flow_run)
        try:
            from living_review.settings import get_settings

            settings = get_settings()
            if not settings.notify_block:
                return
            fn(flow, flow_run, state, settings, logger)
        except Exception as exc:  # noqa: BLE001 - the run's own state must not depend on its notification
            logger.warning("notification not sent: %s", notify.failure_reason(exc))

    return hook


def _url(flow_run) -> str | None:
    """The run's page in the Prefect UI, when a UI URL is configured."""
    try:
        from prefect.utilities.urls import url_for

        return url_for("flow-run", obj_id=flow_run.id)
    except Exception:  # noqa: BLE001
        return None


def _result(state):
    return state.result(raise_on_failure=False, _sync=True)


def _error(state) -> str:
    """`Type: message` of the exception that ended the run, else the state's message."""
    try:
        exc = _result(state)
    except Exception:  # noqa: BLE001 - e.g. a crash whose result was never stored
        exc = None
    text = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else (state.message or "")
    return text.replace(_PREFECT_PREFIX, "")  # nested sub-flow failures repeat Prefect's preamble


@_hook
def notify_run_failed(flow, flow_run, state, settings, logger) -> None:
    """A failed or crashed run: flow, run, state and the error's first line, secrets scrubbed."""
    if getattr(flow_run, "parent_task_run_id", None) is not None:
        return  # a sub-flow: its parent's run fails too and says why
    message = notify.run_failed(flow.name, flow_run.name, flow_run.id, state.name, _error(state), _url(flow_run),
                                secrets=notify.secrets_of(settings))
    notify.send(message, settings, logger)


@_hook
def notify_night_digest(flow, flow_run, state, settings, logger) -> None:
    """One line after a completed night, when LIVING_REVIEW_NOTIFY_SUCCESS is on."""
    if not settings.notify_success:
        return
    summary = _result(state)
    if isinstance(summary, dict):
        notify.send(notify.night_digest(flow.name, flow_run.name, flow_run.id, summary, _url(flow_run)), settings, logger)


@_hook
def notify_conclusions_changed(flow, flow_run, state, settings, logger) -> None:
    """After a refresh that stored a new evidence version with conclusion flags: which analyses
    changed, old → new estimate and CI. The same call the web app makes after an extraction save
    (living_review.pooling.notify_conclusions_changed), each for the versions it stored itself."""
    from living_review import pooling

    db_path = (flow_run.parameters or {}).get("db_path") or settings.db_path
    pooling.notify_conclusions_changed(_result(state), notify.run_origin(flow.name, flow_run.name, flow_run.id),
                                       db_path=db_path, settings=settings, url=_url(flow_run), logger=logger)
