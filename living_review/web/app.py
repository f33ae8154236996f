"""The reviewers' workspace: log in, screen with the keyboard, resolve conflicts, extract, see results.

Server-rendered (FastAPI + Jinja2, autoescape on for every template) with a little plain JavaScript
for the keyboard. The nightly flow appends to the same DuckDB file and DuckDB admits one process
at a time, so warehouse work happens in short locked turns shared by queued requests
(lockturns.py), each request in its own transaction. A title/abstract decision does not wait for
a turn: it goes to the decision journal (journal.py) after its session epoch is checked there,
and reaches the warehouse at the next turn.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

from living_review.config import ReviewConfig, load_review
from living_review.settings import Settings, get_settings
from living_review.web import integrations
from living_review.web.prisma_svg import prisma_svg
from living_review.web.journal import DecisionJournal
from living_review.web.lockturns import LockTurns, TurnTimeout
from living_review.web.render import abstract_sections, highlight, study_label, study_slug
from living_review.web.throttle import LoginThrottle
from warehouse import evidence, screening, workspace
from warehouse.db import connect, migrate, transaction

log = logging.getLogger("living_review.web")
HERE = Path(__file__).resolve().parent
STAGE_LABELS = {"title_abstract": "Title & abstract", "full_text": "Full text"}
SESSION_COOKIE = "lr_session"
SESSION_MAX_AGE = 12 * 3600
# Audit-log actions whose details carry nobody's screening decision; the rest (conflict.resolve,
# decision.refused and any added later) are blinded like decision rows: the actor and leads see them.
# login.failed is not here: the name typed may be a password typed into the wrong box (leads only)
DECISION_FREE_EVENTS = frozenset({"login", "logout", "reviewer.add", "reviewer.passwd",
                                  "reviewer.role", "export", "extraction.save", "outcome.retract"})


class BadRequest(HTTPException):
    def __init__(self, detail: str, status_code: int = 400):
        super().__init__(status_code=status_code, detail=detail)


def _secret_key(settings: Settings) -> str:
    """Session-signing secret kept in LIVING_REVIEW_HOME (created once, owner-only)."""
    path = settings.home / "web_secret.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    settings.home.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def _client_token(form) -> str | None:
    """The idempotency token of a form post; too long is refused (cutting it could make two collide)."""
    token = str(form.get("client_token") or "").strip() or None
    if token and len(token) > 100:
        raise BadRequest("client_token is too long")
    return token


def _int(value: Any, name: str, *, minimum: int | None = None) -> int:
    text = str(value).strip()
    if len(text) > 30:
        raise BadRequest(f"{name} is too large")
    try:
        n = int(text)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a whole number") from None
    if minimum is not None and n < minimum:
        raise BadRequest(f"{name} must be at least {minimum}")
    if abs(n) > 2**62:
        raise BadRequest(f"{name} is too large")
    return n


def _stage(value: Any) -> str:
    stage = str(value or "title_abstract")
    if stage not in screening.STAGES:
        raise BadRequest(f"unknown stage {stage!r}; expected one of {', '.join(screening.STAGES)}")
    return stage


def _decision_fields(form, allowed: tuple[str, ...], not_allowed: str) -> tuple[str, int, str, str | None]:
    """(stage, record_id, decision, reason) of a decision or resolution form; decision one of `allowed`."""
    stage = _stage(form.get("stage"))
    record_id = _int(form.get("record_id"), "record_id", minimum=1)
    decision = str(form.get("decision") or "")
    if decision not in allowed:
        raise BadRequest(not_allowed)
    return stage, record_id, decision, str(form.get("reason") or "").strip() or None


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:
        return "–"
    return f"{v:.{digits}f}"


def _pval(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _duration(seconds: float) -> str:
    """'15 minutes', '1 minute', '40 seconds': how long, for people."""
    seconds = max(1, math.ceil(seconds))
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def create_app(settings: Settings | None = None, config: ReviewConfig | None = None) -> FastAPI:
    settings = settings or get_settings()
    config = config or load_review(settings.config_path)
    settings.ensure_dirs()
    migrate(settings.db_path)
    db_path = settings.db_path
    rpr = config.screening.reviewers_per_record
    reasons = list(config.screening.exclusion_reasons)
    terms = list(config.screening.highlight_terms)

    # settings.home / "decision_journal.sqlite3"; the same file holds the published session epochs
    journal = DecisionJournal(workspace.session_store_path(Path(db_path).resolve()), db_path,
                              reviewers_per_record=rpr)
    turns = LockTurns(db_path, journal)
    # Failed-login counters live in the same SQLite file (see throttle.py for why not the warehouse)
    throttle = LoginThrottle(journal.path, max_failures=settings.login_max_failures,
                             max_failures_per_address=settings.login_max_failures_per_address,
                             window_seconds=settings.login_window_seconds)
    journal.flush_via = lambda: turns.run(lambda con: None)
    # What the fast decision path may trust without the warehouse lock: the reviewer's session
    # epoch as published in the journal's file (checked per decision, see journal.record) and
    # record ids known to exist (records are never deleted).
    with connect(db_path) as con:
        known_records: set[int] = {int(r[0]) for r in con.execute("SELECT record_id FROM records").fetchall()}

    @asynccontextmanager
    async def lifespan(app):
        journal.start()  # whatever a previous run left journalled goes to the warehouse now
        yield
        await run_in_threadpool(journal.close)
        await run_in_threadpool(throttle.close)

    app = FastAPI(title="Living review workspace", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["highlight"] = lambda text: highlight(text, terms)
    env.filters["fmt"] = _fmt
    env.filters["pval"] = _pval
    env.globals.update(STAGE_LABELS=STAGE_LABELS, review_title=config.title, reasons=reasons)
    templates = Jinja2Templates(env=env)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # ---------------------------------------------------------------- helpers

    def csrf_token(request: Request) -> str:
        tok = request.session.get("csrf")
        if not tok:
            tok = request.session["csrf"] = secrets.token_urlsafe(32)
        return tok

    def check_csrf(request: Request, form) -> None:
        sent = form.get("csrf_token") or request.headers.get("x-csrf-token") or ""
        expected = request.session.get("csrf") or ""
        if not expected or not secrets.compare_digest(str(sent), str(expected)):
            raise BadRequest("The form's security token is missing or out of date: reload the page and try again.", 403)

    def session_user(request: Request, con) -> workspace.Reviewer | None:
        name = request.session.get("user")
        if not name:
            return None
        r = workspace.get_reviewer(con, name)
        if r is not None:
            journal.publish_session(r.name, r.session_epoch, bool(r.active))
        if r is None or not r.active or r.session_epoch != request.session.get("epoch"):
            request.session.pop("user", None)
            request.session.pop("epoch", None)
            return None
        return r

    def require_user(request: Request, con) -> workspace.Reviewer:
        user = session_user(request, con)
        if user is None:
            raise BadRequest("Please log in.", 401)
        return user

    def require_lead(user: workspace.Reviewer) -> None:
        if not user.is_lead:
            raise BadRequest("Only a lead reviewer can do this.", 403)

    def blind(user: workspace.Reviewer, decisions: list[dict]) -> list[dict]:
        """Blind dual screening: a reviewer sees their own decisions only; a lead sees everyone's.

        The one rule (`sees`) for every page that shows decision rows (audit log, record pages) or
        events that carry a decision (`blind_events`, audit log); the screening page never shows
        another reviewer's vote, and conflicts, the team's progress figures (conflicts, settled and
        in-progress counts, each pair's kappa: /progress) and exports are for leads.
        It stays strict after the reviewer has decided: undo would otherwise let a reviewer decide,
        look at the other vote, undo and decide again. Resolutions are a lead's rows, so hidden too.
        """
        return [d for d in decisions if sees(user, d["reviewer"])]

    def sees(user: workspace.Reviewer, owner: str | None) -> bool:
        """The blinding rule itself: a lead sees everyone's; a reviewer sees their own only."""
        return user.is_lead or owner == user.name

    def blind_events(user: workspace.Reviewer, entries: list[dict]) -> list[dict]:
        """Hidden, not redacted: that a record was resolved or voted on already tells its screeners the other vote."""
        return [e for e in entries if e["action"] in DECISION_FREE_EVENTS or sees(user, e["actor"])]

    def flash(request: Request, message: str, kind: str = "ok") -> None:
        request.session.setdefault("flash", [])
        request.session["flash"] = request.session["flash"][-4:] + [[kind, message]]

    JOURNALLED = "journalled"  # session key: seqs of this session's journalled decisions not yet known written

    def not_recorded(what: str, record_id, why: str) -> str:
        return f"Your {what} on record {record_id} was not recorded: {why}."

    def report_refused(request: Request) -> None:
        """Flash, once, each of this session's journalled decisions the warehouse has since refused."""
        seqs = request.session.get(JOURNALLED)
        if not seqs:
            return
        outcomes = journal.outcomes(seqs)
        keep = []
        for seq in seqs:
            row = outcomes.get(seq)
            if row is None or row["decision_id"] is not None:
                continue
            if row["error"]:
                flash(request, not_recorded(row["decision"], row["record_id"], row["error"]), "error")
            else:
                keep.append(seq)  # not written yet: look again on the next page
        if keep:
            request.session[JOURNALLED] = keep
        else:
            request.session.pop(JOURNALLED, None)

    def render(request: Request, name: str, ctx: dict, status: int = 200) -> HTMLResponse:
        ctx = dict(ctx)
        report_refused(request)
        ctx.setdefault("user", None)
        ctx["request"] = request
        ctx["csrf"] = csrf_token(request)
        ctx["flashes"] = request.session.pop("flash", [])
        ctx["path"] = request.url.path
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    def wants_json(request: Request) -> bool:
        return "application/json" in request.headers.get("accept", "")

    def login_redirect(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    def page(request: Request, builder, *, lead_only: bool = False):
        """Run a page builder in the app's next warehouse turn (lockturns.py); None user → login redirect."""

        def job(con):
            user = session_user(request, con)
            if user is None:
                return None, login_redirect(request)
            if lead_only:
                require_lead(user)
            ctx = builder(con, user)
            ctx["user"] = user
            return ctx, None

        return turns.run(job)

    model_version_cache: list = [0.0, None]

    def current_model_version(con) -> str | None:
        """The ranking model version, re-read at most every 5 s (it changes once a night)."""
        now = time.monotonic()
        if now - model_version_cache[0] > 5.0:
            model_version_cache[:] = [now, integrations.model_version(con)]
        return model_version_cache[1]

    # ---------------------------------------------------------------- errors

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "Request not allowed."
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is no such page."
        if wants_json(request) or request.url.path.startswith("/api/"):
            return JSONResponse({"error": detail}, status_code=exc.status_code)
        try:
            return render(request, "error.html", {"status": exc.status_code, "message": detail}, exc.status_code)
        except Exception:  # noqa: BLE001
            return PlainTextResponse(detail, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        msg = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', [])[1:]) or 'request'}: {e.get('msg')}" for e in exc.errors())
        return PlainTextResponse(f"Bad request: {msg}", status_code=400)

    @app.middleware("http")
    async def catch_all(request: Request, call_next):
        try:
            response = await call_next(request)
        except TurnTimeout as exc:  # withdrawn before it ran (lockturns.py): true that nothing was saved
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            message = ("The warehouse is busy (the nightly update may be writing to it), so this request was "
                       "withdrawn before it ran: nothing was saved. Try again in a moment.")
            headers = {"Retry-After": "30"}
            if wants_json(request):
                return JSONResponse({"error": message}, status_code=503, headers=headers)
            return PlainTextResponse(message, status_code=503, headers=headers)
        except Exception as exc:  # noqa: BLE001 - never a stack trace to the browser
            ref = uuid.uuid4().hex[:8]
            log.exception("unhandled error %s on %s %s", ref, request.method, request.url.path)
            if isinstance(exc, (ValueError, TypeError, KeyError, LookupError, UnicodeError)):
                return PlainTextResponse(f"Bad request: the server could not use it (ref {ref}).", status_code=400)
            return PlainTextResponse(f"Something went wrong on the server (ref {ref}); nothing was half-saved.",
                                     status_code=500)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    # ---------------------------------------------------------------- login

    def _safe_next(target: str | None) -> str:
        if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
            return target
        return "/screen"

    def _too_many_logins(request: Request, target: str, name: str, verdict) -> Response:
        window = _duration(settings.login_window_seconds)
        wait = _duration(verdict.retry_after)
        if verdict.scope == "name":
            message = (f"Too many failed logins for reviewer “{name.strip()[:64]}” in the last {window}: "
                       f"try again in {wait}.")
        else:
            message = f"Too many failed logins from your network address in the last {window}: try again in {wait}."
        headers = {"Retry-After": str(verdict.retry_after)}
        if wants_json(request):
            return JSONResponse({"error": message}, status_code=429, headers=headers)
        response = render(request, "login.html", {"next": target, "error": message}, 429)
        response.headers.update(headers)
        return response

    @app.get("/login")
    def login_page(request: Request, next: str = "/screen"):
        return render(request, "login.html", {"next": _safe_next(next), "error": None})

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        check_csrf(request, form)
        name, password = str(form.get("name") or ""), str(form.get("password") or "")
        target = _safe_next(str(form.get("next") or ""))
        address = request.client.host if request.client else None
        verdict = await run_in_threadpool(throttle.begin, name, address)
        if not verdict.allowed:
            log.warning("login refused (too many failures for the %s): name %r from %s",
                        verdict.scope, name[:64], address)
            return _too_many_logins(request, target, name, verdict)

        def work():
            with transaction(db_path) as con:
                user = workspace.authenticate(con, name, password)
                workspace.audit(con, user.name if user else (name[:64] or "?"),
                                "login" if user else "login.failed", "reviewer", name[:64])
                return user

        try:
            user = await run_in_threadpool(work)
        except BaseException:
            await run_in_threadpool(throttle.cancel, verdict)  # not the reviewer's failure
            raise
        if user is None:  # the attempt stays counted as a failure
            return render(request, "login.html", {"next": target, "error": "Unknown reviewer or wrong password."}, 401)
        await run_in_threadpool(throttle.succeeded, verdict, name)
        await run_in_threadpool(journal.publish_session, user.name, user.session_epoch, bool(user.active))
        request.session.clear()
        request.session.update(user=user.name, epoch=user.session_epoch, csrf=secrets.token_urlsafe(32))
        return RedirectResponse(target, status_code=303)

    @app.post("/logout")
    async def logout(request: Request):
        form = await request.form()
        check_csrf(request, form)
        if request.session.get("user"):
            def work(con):
                user = session_user(request, con)
                if user is None:  # already ended (a password change, a logout elsewhere): nothing left to end
                    return
                # The cookie is signed, not stored, so clearing it in this browser would leave any copy of
                # it valid until it expires. Logging out ends the session on the server instead, the way
                # `reviewer passwd` does: the reviewer's session epoch goes up and is published before
                # this transaction commits (journal.py), so every page and the journal's fast decision
                # path refuse the old epoch. That ends all of the reviewer's sessions, on every device.
                workspace.end_sessions(con, user.name)
                workspace.audit(con, user.name, "logout", "reviewer", user.name)
            await run_in_threadpool(turns.run, work)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    def home(request: Request):
        return RedirectResponse("/screen", status_code=303)

    # ---------------------------------------------------------------- screening

    @app.get("/screen")
    def screen(request: Request, stage: str = "title_abstract", skip: str = "0", record: str | None = None):
        stage_ = _stage(stage)
        skip_ = _int(skip, "skip", minimum=0)
        wanted = _int(record, "record", minimum=0) if record else None

        def build(con, user):
            scores, _ = integrations.ranking_scores(con)
            q = workspace.queue(con, user.name, stage_, rpr, scores)
            idx = 0
            if wanted is not None and wanted in q:
                idx = q.index(wanted)
            elif q:
                idx = skip_ % len(q)
            rec = workspace.get_record(con, q[idx]) if q else None
            if rec:
                known_records.add(rec["record_id"])
            current_model_version(con)  # keep the fast decision path's model version fresh
            done = len(screening.decided_record_ids(con, user.name, stage_))
            # what `u` would undo, and whether that would be refused (its votes are final): the button says so
            last = screening.last_decision(con, user.name, stage_)
            undo_final = last is not None and workspace.vote_refusal(
                con, last["record_id"], user.name, stage_, rpr, "retract") is not None
            return {
                "stage": stage_, "record": rec, "position": idx, "queue_len": len(q), "done": done,
                "undo_final": undo_final,
                "sections": abstract_sections(rec["abstract"]) if rec else [],
                "client_token": uuid.uuid4().hex, "ranked": bool(scores),
                "score": (scores or {}).get(rec["record_id"]) if rec else None,
                "next_skip": idx + 1,
            }

        ctx, redirect = page(request, build)
        return redirect or render(request, "screen.html", ctx)

    def _eligible(con, record_id: int, stage: str) -> None:
        if workspace.get_record(con, record_id) is None:
            raise BadRequest(f"There is no record {record_id}.", 404)
        if stage == "full_text":
            allowed = workspace.eligible_for_stage(con, stage, rpr) or set()
            if record_id not in allowed:
                raise BadRequest("This record has not passed title/abstract screening, so it cannot be screened at full text.")

    @app.post("/decide")
    async def decide(request: Request):
        form = await request.form()
        check_csrf(request, form)
        stage, record_id, decision, reason = _decision_fields(
            form, ("include", "exclude", "maybe"), "decision must be include, exclude or maybe")
        if decision == "exclude":
            if reason is None:
                raise BadRequest("An exclusion needs a reason: press 1–8 after e.")
            if reason not in reasons:
                raise BadRequest(f"Unknown exclusion reason {reason!r}.")
        note = (str(form.get("note") or "").strip() or None)
        if note and len(note) > 2000:
            raise BadRequest("note is too long (2,000 characters at most)")
        token = _client_token(form)
        skip = _int(form.get("skip") or 0, "skip", minimum=0)

        session_name, session_epoch = request.session.get("user"), request.session.get("epoch")
        if not session_name:
            raise BadRequest("Please log in.", 401)
        journalled = None
        if stage == "title_abstract" and record_id in known_records and isinstance(session_epoch, int):
            # validated without the warehouse: journal it and answer (see journal.py), provided the
            # session's epoch is still the published one (checked in the journal's own transaction)
            journalled = await run_in_threadpool(lambda: journal.record(
                client_token=token or f"srv-{uuid.uuid4().hex}", record_id=record_id, reviewer=session_name,
                stage=stage, decision=decision, reason=reason, note=note, model_version=model_version_cache[1],
                session_epoch=session_epoch))
        if journalled is not None:
            seq, duplicate = journalled
            decision_id = journal.decision_id(seq) if duplicate else None
            if not duplicate:  # should the warehouse refuse it when written, the next page says so
                request.session[JOURNALLED] = (request.session.get(JOURNALLED) or [])[-49:] + [seq]
        else:  # full text, an unknown record, or a session the journal cannot vouch for: ask the warehouse
            def work(con):
                user = require_user(request, con)
                _eligible(con, record_id, stage)
                version = current_model_version(con)
                try:
                    did = workspace.append_decision(con, record_id, user.name, stage, decision, reason=reason,
                                                    note=note, model_version=version, client_token=token,
                                                    reviewers_per_record=rpr)
                except workspace.RecordFullError as exc:  # refused before any write: audit it, as the journal does
                    workspace.audit_refusal(con, user.name, record_id, str(exc), client_token=token, stage=stage,
                                            decision=decision)
                    return None, str(exc)
                except screening.DecisionError as exc:
                    raise BadRequest(str(exc)) from None
                known_records.add(record_id)
                return did, None

            (decision_id, refusal), seq = await run_in_threadpool(turns.run, work), None
            if refusal:  # the record already has its reviewers (or a resolution)
                message = not_recorded(decision, record_id, refusal)
                if wants_json(request):
                    return JSONResponse({"error": message}, status_code=409)
                flash(request, message, "error")
                return RedirectResponse(f"/screen?{urlencode({'stage': stage, 'skip': skip})}", status_code=303)
        if wants_json(request):
            return JSONResponse({"status": "recorded", "decision_id": decision_id, "journal_id": seq})
        return RedirectResponse(f"/screen?{urlencode({'stage': stage, 'skip': skip})}", status_code=303)

    @app.post("/undo")
    async def undo(request: Request):
        form = await request.form()
        check_csrf(request, form)
        stage = _stage(form.get("stage"))
        token = _client_token(form)

        def work(con):
            user = require_user(request, con)
            if token:
                seen = con.execute("SELECT record_id FROM screening_decisions WHERE client_token = ?", [token]).fetchall()
                if seen:
                    return int(seen[0][0]), None
            last = screening.last_decision(con, user.name, stage)
            if last is None:
                return None, None
            try:  # refused once the record has all its votes: they are final (workspace.vote_refusal)
                workspace.append_decision(con, last["record_id"], user.name, stage, "retract", client_token=token,
                                          reviewers_per_record=rpr)
            except workspace.RecordFullError as exc:  # refused before any write: audit it, as /decide does
                workspace.audit_refusal(con, user.name, last["record_id"], str(exc), client_token=token, stage=stage,
                                        decision="retract")
                return last["record_id"], str(exc)
            return last["record_id"], None

        rid, refusal = await run_in_threadpool(turns.run, work)
        if rid is None:
            flash(request, "Nothing to undo.", "warn")
            return RedirectResponse(f"/screen?stage={stage}", status_code=303)
        if refusal:
            flash(request, not_recorded("undo", rid, refusal), "error")
            return RedirectResponse(f"/screen?{urlencode({'stage': stage})}", status_code=303)
        flash(request, "Your last decision was undone: decide again.")
        return RedirectResponse(f"/screen?{urlencode({'stage': stage, 'record': rid})}", status_code=303)

    # ---------------------------------------------------------------- conflicts, progress

    @app.get("/conflicts")
    def conflicts_page(request: Request):
        def build(con, user):
            items = []
            for stage in screening.STAGES:
                for c in screening.conflicts(con, stage, rpr):
                    items.append({"stage": stage, "conflict": c, "record": workspace.get_record(con, c.record_id),
                                  "token": uuid.uuid4().hex})
            return {"items": items, "kappas": {s: screening.kappa_by_pair(con, s) for s in screening.STAGES}}

        ctx, redirect = page(request, build, lead_only=True)
        return redirect or render(request, "conflicts.html", ctx)

    @app.post("/conflicts/resolve")
    async def resolve(request: Request):
        form = await request.form()
        check_csrf(request, form)
        stage, record_id, decision, reason = _decision_fields(
            form, ("include", "exclude"), "a resolution is include or exclude")
        if decision == "exclude" and reason not in reasons:
            raise BadRequest("Choose an exclusion reason for the resolution.")
        token = _client_token(form)

        def work(con):
            user = require_user(request, con)
            require_lead(user)
            _eligible(con, record_id, stage)
            did = screening.append_decision(con, record_id, user.name, stage, decision, reason=reason,
                                            client_token=token, is_resolution=True)
            workspace.audit(con, user.name, "conflict.resolve", "record", record_id,
                            {"stage": stage, "decision": decision, "reason": reason, "decision_id": did})
            return did

        did = await run_in_threadpool(turns.run, work)
        if wants_json(request):
            return JSONResponse({"decision_id": did})
        flash(request, f"Record {record_id} resolved: {decision}.")
        return RedirectResponse("/conflicts", status_code=303)

    @app.get("/progress")
    def progress_page(request: Request):
        def build(con, user):
            scores, version = integrations.ranking_scores(con)
            stages = workspace.progress(con, user.name, rpr, scores)
            ctx = {"recall": integrations.recall_estimate(con), "model_version": version,
                   "nightly": workspace.last_nightly_run(con), "rpr": rpr, "team": user.is_lead}
            if user.is_lead:
                ctx["stages"] = stages
                ctx["kappas"] = {s: screening.kappa_by_pair(con, s) for s in screening.STAGES}
            else:
                # Blind screening (see `blind`): conflicts, settled include/exclude and in-progress
                # counts and each pair's kappa all move with another reviewer's vote, so a reviewer
                # who votes, looks, undoes and votes again would learn it. A reviewer gets their own
                # figures only (their decisions and their queue); the team's are for leads.
                ctx["stages"] = [{"stage": s.stage, "mine_done": s.mine_done, "mine_remaining": s.mine_remaining}
                                 for s in stages]
            return ctx

        ctx, redirect = page(request, build)
        return redirect or render(request, "progress.html", ctx)

    # ---------------------------------------------------------------- one record's history

    def _journalled(record_id: int, written: set[str]) -> list[dict]:
        """The record's decisions still in the journal, as decision rows marked `pending`.

        Runs inside a warehouse turn, which has just written the journal (lockturns.py), so these
        were journalled since or their write failed; either way they are decisions made.
        """
        out = []
        for row in journal.pending_for_record(record_id):
            if row["client_token"] in written:
                continue
            try:
                at = datetime.fromisoformat(row["decided_at"])
            except (TypeError, ValueError):
                at = None
            # the warehouse's decision-row shape (workspace.DECISION_KEYS); what the journal lacks is set here
            out.append({**{k: row.get(k) for k in workspace.DECISION_KEYS}, "is_resolution": False,
                        "created_at": at, "pending": True, "seq": row["seq"]})
        return out

    @app.get("/records/{record_id}")
    def record_page(request: Request, record_id: str):
        rid = _int(record_id, "record id", minimum=1)

        def build(con, user):
            history = workspace.record_history(con, rid)
            if history is None:
                raise BadRequest(f"There is no record {rid}.", 404)
            decisions = history["decisions"]
            decisions = decisions + _journalled(rid, {d["client_token"] for d in decisions if d["client_token"]})
            decisions.sort(key=lambda d: (d["created_at"] or datetime.max, d.get("pending", False),
                                          d["decision_id"] or d.get("seq") or 0))
            found: dict[str, dict] = {}
            for s in history["sources"]:
                f = found.setdefault(s["strategy"], {"strategy": s["strategy"], "first": s, "runs": 0, "pmids": []})
                f["runs"] += 1
                f["last"] = s
                if s["pmid_seen"] not in f["pmids"]:
                    f["pmids"].append(s["pmid_seen"])
            rec = history["record"]
            return {"record": rec, "sections": abstract_sections(rec["abstract"]), "versions": history["versions"],
                    "found": list(found.values()), "aliases": history["aliases"],
                    "decisions": blind(user, decisions)}

        ctx, redirect = page(request, build)
        return redirect or render(request, "record.html", ctx)

    # ---------------------------------------------------------------- extraction

    def _included_at_full_text(con) -> list[int]:
        return sorted(r for r, d in screening.settled_decisions(con, "full_text", rpr).items() if d == "include")

    def _study_for_record(con, record_id: int) -> dict | None:
        rows = evidence.rows_as_dicts(
            con.execute("SELECT * FROM studies WHERE record_id = ? ORDER BY created_at LIMIT 1", [record_id]))
        return rows[0] if rows else None

    def _current_outcomes(con, study_id: str | None, entries: dict | None = None) -> dict[str, dict]:
        """The study's current outcome entries; `entries` = `evidence.current_entries(con)` if already read."""
        if not study_id:
            return {}
        if entries is None:
            entries = evidence.current_entries(con)
        return {o: row for (sid, o), row in entries.items() if sid == study_id}

    @app.get("/extract")
    def extract_list(request: Request):
        def build(con, user):
            entries = evidence.current_entries(con)  # once, not once per study
            items = []
            for rid in _included_at_full_text(con):
                rec = workspace.get_record(con, rid)
                study = _study_for_record(con, rid)
                outcomes = _current_outcomes(con, study["study_id"], entries) if study else {}
                items.append({"record": rec, "study": study, "n_outcomes": len(outcomes)})
            return {"items": items}

        ctx, redirect = page(request, build)
        return redirect or render(request, "extract_list.html", ctx)

    def _form_fields() -> dict[str, list[str]]:
        return {o.name: list(evidence.BINARY_REQUIRED if o.kind == "binary" else evidence.CONTINUOUS_REQUIRED)
                for o in config.outcomes}

    def _extract_ctx(con, user, record_id: int, values: dict | None = None, errors: dict | None = None) -> dict:
        rec = workspace.get_record(con, record_id)
        if rec is None:
            raise BadRequest(f"There is no record {record_id}.", 404)
        if record_id not in _included_at_full_text(con):
            raise BadRequest("Only studies included at full text can be extracted.")
        study = _study_for_record(con, record_id)
        if values is None:
            values = {}
            if study:
                for f in (c for c in evidence.STUDY_COLUMNS if c != "pmid"):
                    v = study.get(f)
                    values[f"study.{f}"] = "" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
                for oname, row in _current_outcomes(con, study["study_id"]).items():
                    for f, v in row.items():
                        if v is not None and f in evidence.VALUE_FIELDS:
                            values[f"{oname}.{f}"] = f"{v:g}" if isinstance(v, float) else str(v)
            else:
                values["study.study_id"] = study_slug(rec["authors"], rec["year"], f"record-{record_id}")
                values["study.label"] = study_label(rec["authors"], rec["year"])
        can_edit = study is None or user.is_lead or study.get("created_by") in (None, user.name)
        return {"record": rec, "study": study, "values": values, "errors": errors or {}, "can_edit": can_edit,
                "outcomes": config.outcomes, "fields": _form_fields(), "interventions": config.interventions,
                "measures": config.attachment_measures}

    @app.get("/extract/{record_id}")
    def extract_form(request: Request, record_id: str):
        rid = _int(record_id, "record id", minimum=1)
        ctx, redirect = page(request, lambda con, user: _extract_ctx(con, user, rid))
        return redirect or render(request, "extract_form.html", ctx)

    FIELD_LABELS = {"events_int": "events (intervention)", "n_int": "n (intervention)", "events_ctl": "events (control)",
                    "n_ctl": "n (control)", "mean_int": "mean (intervention)", "sd_int": "SD (intervention)",
                    "mean_ctl": "mean (control)", "sd_ctl": "SD (control)"}
    env.globals["FIELD_LABELS"] = FIELD_LABELS

    @app.post("/extract/{record_id}")
    async def extract_save(request: Request, record_id: str):
        rid = _int(record_id, "record id", minimum=1)
        form = await request.form()
        check_csrf(request, form)
        values = {k: str(v)[:500] for k, v in form.items() if "." in k}  # "study.x" and "<outcome>.x" fields
        fields = _form_fields()
        study = {f: values.get(f"study.{f}", "").strip() for f in evidence.STUDY_COLUMNS if f != "pmid"}
        outcome_rows: list[dict] = []
        row_outcome: list[str] = []
        blank_outcomes: list[str] = []
        for oname, names in fields.items():
            raw = {f: values.get(f"{oname}.{f}", "").strip() for f in names}
            if not any(raw.values()):
                blank_outcomes.append(oname)  # not reported by this study, or its data withdrawn (below)
                continue
            outcome_rows.append({"study_id": study["study_id"], "outcome": oname, **raw})
            row_outcome.append(oname)

        def work(con):
            user = require_user(request, con)
            ctx = _extract_ctx(con, user, rid, values)
            rec, existing = ctx["record"], ctx["study"]
            study["pmid"] = rec["pmid"]
            errors: dict[str, str] = {}
            if existing and study["study_id"] != existing["study_id"]:
                errors["study.study_id"] = f"this record's study is {existing['study_id']!r}; the id cannot change"
            other = con.execute("SELECT record_id, created_by FROM studies WHERE study_id = ?", [study["study_id"]]).fetchall()
            if other and other[0][0] not in (None, rid):
                errors["study.study_id"] = f"{study['study_id']!r} is already used by another record"
            owner = existing.get("created_by") if existing else (other[0][1] if other else None)
            if owner not in (None, user.name) and not user.is_lead:
                raise BadRequest(f"This extraction belongs to {owner}; only a lead can edit it.", 403)
            for e in evidence.validate_study_rows([study], config, first_row=0):
                errors.setdefault(f"study.{e.field}", e.message)
            # an outcome emptied on the form while it has current data: that data is withdrawn (retracted);
            # the same people who may correct it (the extraction's owner or a lead, checked above) may do so
            current = _current_outcomes(con, existing["study_id"]) if existing else {}
            withdraw = [o for o in blank_outcomes if o in current]
            if not outcome_rows and not withdraw:
                errors["outcomes"] = "enter the data of at least one outcome"
            known = evidence.known_study_ids(con) | {study["study_id"]}
            for e in evidence.validate_outcome_rows(outcome_rows, config, known, first_row=0):
                oname = row_outcome[e.row] if 0 <= e.row < len(row_outcome) else "outcomes"
                key = f"{oname}.{e.field}" if e.field in FIELD_LABELS else (
                    "study.study_id" if e.field == "study_id" else f"{oname}.outcome")
                errors.setdefault(key, e.message)
            ctx["user"] = user
            if errors:
                ctx["errors"] = errors
                return ctx, None
            created = evidence.save_study(con, study, config, created_by=user.name, record_id=rid)
            counts = evidence.save_outcomes(con, outcome_rows, config, entered_by=user.name, source="web")
            withdrawn = []
            for oname in withdraw:
                entry_id = current[oname]["entry_id"]
                if evidence.retract_outcome(con, study["study_id"], oname, entered_by=user.name,
                                            note="withdrawn in the reviewers' workspace (all fields emptied)"):
                    withdrawn.append(oname)
                    workspace.audit(con, user.name, "outcome.retract", "study", study["study_id"],
                                    {"record_id": rid, "outcome": oname, "retracted_entry_id": entry_id})
            counts["withdrawn"] = len(withdrawn)
            workspace.audit(con, user.name, "extraction.save", "study", study["study_id"],
                            {"record_id": rid, "study": created, **counts, "withdrawn_outcomes": withdrawn})
            ctx["withdrawn"] = withdrawn
            return ctx, counts

        ctx, counts = await run_in_threadpool(turns.run, work)
        if counts is None:
            return render(request, "extract_form.html", ctx, 400)
        changed = counts.get("added", 0) + counts.get("corrected", 0) + counts.get("withdrawn", 0)
        message = f"Saved {study['study_id']}: {counts.get('added', 0)} added, {counts.get('corrected', 0)} corrected"
        if ctx.get("withdrawn"):
            message += f", {len(ctx['withdrawn'])} withdrawn ({', '.join(ctx['withdrawn'])})"
        message += "."
        stored: list[dict] = []  # the summary of the evidence version this save's refresh stored, if any
        if changed:
            _, note = await run_in_threadpool(lambda: integrations.refresh_pooled_effects(
                db_path=db_path, config=config, reports_dir=settings.reports_dir, trigger="web",
                on_new_version=stored.append))
            message += f" {note}."
        flash(request, message)
        response = RedirectResponse(f"/extract/{rid}", status_code=303)
        if stored and settings.notify_block:
            # This app stored the version, outside any flow: it tells maintainers if conclusions changed,
            # after the response is sent (loading the Prefect block and the HTTP call never hold up the
            # reviewer; a failure is a warning in the log).
            origin = f"extraction of {study['study_id']} saved by {ctx['user'].name} in the reviewers' workspace"
            response.background = BackgroundTask(integrations.notify_conclusions_changed, stored[-1], origin,
                                                 db_path=db_path, settings=settings)
        return response

    # ---------------------------------------------------------------- results, PRISMA, audit, exports

    @app.get("/results")
    def results_page(request: Request):
        def build(con, user):
            results = integrations.pooled_results(con)
            by_outcome: dict[str, list[dict]] = {}
            for r in results or []:
                by_outcome.setdefault(str(r.get("outcome") or ""), []).append(r)
            labels = {o.name: o.label for o in config.outcomes}
            for rows in by_outcome.values():  # the primary analysis first, then subgroups, then sensitivity
                rows.sort(key=lambda r: (r.get("analysis") != "primary", bool(r.get("subgroup_var")),
                                         str(r.get("analysis")), str(r.get("subgroup") or "")))
            plots: dict[str, list[tuple[str, str]]] = {}
            for outcome, rows in by_outcome.items():
                seen: set[str] = set()
                for r in rows:
                    path = r.get("forest_plot")
                    if path and path not in seen:
                        seen.add(path)
                        caption = f"{r.get('analysis')}" + (f" by {r['subgroup_var']}" if r.get("subgroup_var") else "")
                        plots.setdefault(outcome, []).append((path, caption))
            return {"available": results is not None, "by_outcome": by_outcome, "labels": labels, "plots": plots,
                    "version": results[0].get("evidence_version") if results else None,
                    "refreshed": results[0].get("created_at") if results else None}

        ctx, redirect = page(request, build)
        return redirect or render(request, "results.html", ctx)

    @app.get("/reports/{name:path}")
    def report_file(request: Request, name: str):
        if turns.run(lambda con: session_user(request, con)) is None:
            raise BadRequest("Please log in.", 401)
        base = settings.reports_dir.resolve()
        try:
            target = (base / name).resolve()
        except (OSError, ValueError):
            raise BadRequest("bad file name") from None
        if base not in target.parents or target.suffix.lower() not in (".png", ".svg", ".pdf", ".csv", ".json"):
            raise BadRequest("There is no such report.", 404)
        if not target.is_file():
            raise BadRequest("There is no such report.", 404)
        return FileResponse(target)

    def _prisma(con):
        return workspace.prisma_counts(con, rpr)

    @app.get("/prisma")
    def prisma_page(request: Request):
        def build(con, user):
            cumulative, updates = _prisma(con)
            return {"cumulative": cumulative, "updates": list(reversed(updates)),
                    "svg": prisma_svg(cumulative, "Cumulative, all updates")}

        ctx, redirect = page(request, build)
        if redirect:
            return redirect
        from markupsafe import Markup

        ctx["svg"] = Markup(ctx["svg"])  # built from escaped parts in prisma_svg
        return render(request, "prisma.html", ctx)

    @app.get("/prisma.svg")
    def prisma_file(request: Request, update: str | None = None):
        def job(con):
            if session_user(request, con) is None:
                raise BadRequest("Please log in.", 401)
            return _prisma(con)

        cumulative, updates = turns.run(job)
        if update is None:
            svg = prisma_svg(cumulative, "PRISMA 2020 flow: cumulative")
        else:
            idx = _int(update, "update", minimum=0)
            if idx >= len(updates):
                raise BadRequest(f"There is no update {idx}.", 404)
            svg = prisma_svg(updates[idx], f"PRISMA 2020 flow: {updates[idx].label}")
        return Response(svg, media_type="image/svg+xml")

    @app.get("/audit")
    def audit_page(request: Request, page_no: str = "0"):
        n = _int(page_no, "page_no", minimum=0)

        def build(con, user):
            decisions = blind(user, workspace.recent_decisions(con, 200, 200 * n))
            entries = blind_events(user, workspace.audit_entries(con, 200, 200 * n))
            return {"entries": entries, "decisions": decisions, "page_no": n,
                    "nightly": workspace.last_nightly_run(con)}

        ctx, redirect = page(request, build)
        return redirect or render(request, "audit.html", ctx)

    def _export(request: Request, kind: str) -> Response:
        def job(con):
            user = require_user(request, con)
            require_lead(user)  # exports show every reviewer's votes: leads only (blinding)
            if kind == "decisions.csv":
                body, media = workspace.decisions_csv(con), "text/csv; charset=utf-8"
            else:
                rows = workspace.export_records(con, rpr)
                if kind == "records.csv":
                    body, media = workspace.records_csv(rows), "text/csv; charset=utf-8"
                else:
                    body, media = workspace.records_ris(rows), "application/x-research-info-systems; charset=utf-8"
            workspace.audit(con, user.name, "export", "export", kind, {})
            return body, media

        body, media = turns.run(job)
        return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{kind}"'})

    @app.get("/export/records.csv")
    def export_records_csv(request: Request):
        return _export(request, "records.csv")

    @app.get("/export/records.ris")
    def export_records_ris(request: Request):
        return _export(request, "records.ris")

    @app.get("/export/decisions.csv")
    def export_decisions_csv(request: Request):
        return _export(request, "decisions.csv")

    @app.get("/exports")
    def exports_page(request: Request):
        ctx, redirect = page(request, lambda con, user: {}, lead_only=True)
        return redirect or render(request, "exports.html", ctx)

    @app.get("/healthz")
    def healthz():
        return PlainTextResponse("ok")

    app.add_middleware(SessionMiddleware, secret_key=_secret_key(settings), session_cookie=SESSION_COOKIE,
                       max_age=SESSION_MAX_AGE, same_site="lax", https_only=False)
    app.state.settings = settings
    app.state.config = config
    app.state.journal = journal
    app.state.login_throttle = throttle
    return app
