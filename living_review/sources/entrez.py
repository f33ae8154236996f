"""PubMed over NCBI E-utilities through Bio.Entrez, with the politeness NCBI asks for.

Why the extra machinery around Bio.Entrez (measured in docs/stack-notes §5):
* its URLs are hard-coded, so requests are re-routed per call to `settings.eutils_url` (a local
  replay server in tests) by a thread-aware `urlopen` wrapper;
* its throttle is not thread-safe and it retries 429/5xx instantly, so this module owns one
  process-wide limiter (3 req/s, 10 with an API key, whatever the number of threads) and an
  exponential back-off with full jitter that honours Retry-After, bounded in tries;
* efetch XML is parsed by models.pubmed (streaming), not Entrez.read.
The API key travels in the query string: it is scrubbed from every message this module produces.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import logging
import random
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Callable
from urllib.error import HTTPError, URLError

from lxml import etree

from living_review.settings import NCBI_EUTILS_URL, scrub_secrets  # the URL: Bio.Entrez's hard-coded base, re-routed per call
from living_review.sources.base import (
    MAX_IDS_PER_SEARCH,
    BatchError,
    History,
    RateLimitedBatchError,
    RateLimitError,
    SearchResult,
    SourceError,
    check_date_type,
)
from models.pubmed import PubmedParseError, iter_records
from models.records import Record

log = logging.getLogger(__name__)

TOOL = "living-review"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


# --------------------------------------------------------------------------------------------
# Rate limiting (process-wide, thread-safe)
# --------------------------------------------------------------------------------------------


class RateLimiter:
    """Spaces request starts at least `1/rate` s apart across all threads that share it."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        # A 10% margin (Biopython uses 0.37 s for 3/s) keeps every 1-second window at <= rate
        # arrivals even when threads are scheduled late on a busy machine.
        self.interval = 1.1 / rate
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next_slot = 0.0

    def acquire(self) -> None:
        with self._lock:  # reserve a slot; sleep outside the lock so others can queue behind
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.interval
        wait = slot - self._clock()
        if wait > 0:
            self._sleep(wait)


_LIMITERS: dict[float, RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(rate: float) -> RateLimiter:
    """One limiter per rate for the whole process (3/s without key, 10/s with)."""
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(rate)
        if limiter is None:
            limiter = _LIMITERS[rate] = RateLimiter(rate)
        return limiter


# --------------------------------------------------------------------------------------------
# Routing Bio.Entrez to the configured base URL, and turning transport errors into our own
# --------------------------------------------------------------------------------------------


class _Transport(Exception):
    """Raised through Bio.Entrez._open (which catches only URLError/HTTPError), so that it never
    retries on its own: back-off is ours."""

    def __init__(self, status: int | None, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.status, self.reason, self.retry_after = status, reason, retry_after


_route = threading.local()
_install_lock = threading.Lock()
_routed_urlopen = None  # our wrapper, as installed on Bio.Entrez


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _install() -> None:
    """Wrap Bio.Entrez.urlopen (again, if someone replaced it since); outside our calls (no route
    set) the wrapper behaves exactly like what it wraps."""
    global _routed_urlopen
    from Bio import Entrez

    if Entrez.urlopen is _routed_urlopen:
        return
    with _install_lock:
        if Entrez.urlopen is _routed_urlopen:
            return

        real_urlopen = Entrez.urlopen

        def routed_urlopen(request, *args, **kwargs):
            base = getattr(_route, "base", None)
            if base is None:
                return real_urlopen(request, *args, **kwargs)
            request.full_url = request.full_url.replace(NCBI_EUTILS_URL, base)
            kwargs.setdefault("timeout", getattr(_route, "timeout", 60.0))
            try:
                response = real_urlopen(request, *args, **kwargs)
                body = response.read()  # read here: a dropped connection is a transport error
                response.close()
                return _Body(body, response.headers)
            except HTTPError as exc:
                retry_after = _parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                detail = ""
                try:
                    detail = exc.read(300).decode("utf-8", "replace").strip()
                except Exception:  # noqa: BLE001 - the body is only a hint
                    pass
                raise _Transport(exc.code, f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else ""),
                                 retry_after) from None
            except (URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise _Transport(None, f"connection error: {type(exc).__name__}: {reason}") from None

        # Bio.Entrez warns on every call without an email; EntrezSource says it once instead.
        warnings.filterwarnings("ignore", message=r"\s*Email address is not specified", category=UserWarning)
        Entrez.urlopen = _routed_urlopen = routed_urlopen
        Entrez.max_tries = 1  # no instant retries inside Bio.Entrez; we back off ourselves


class _Body(io.BytesIO):
    """An already-read response body, shaped like the handle Bio.Entrez expects."""

    def __init__(self, body: bytes, headers):
        super().__init__(body)
        self.headers = headers
        self.url = ""


# --------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------


@dataclass
class EntrezSource:
    """PubMed through E-utilities. One instance per run; thread-safe."""

    base_url: str = NCBI_EUTILS_URL
    email: str | None = None
    api_key: str | None = field(default=None, repr=False)
    tool: str = TOOL
    max_tries: int = 6
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    max_retry_after: float = 300.0
    timeout: float = 120.0
    limiter: RateLimiter | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random, repr=False)
    name: str = "entrez"

    def __post_init__(self) -> None:
        if not self.base_url.endswith("/"):
            self.base_url += "/"
        if self.limiter is None:
            self.limiter = shared_limiter(10.0 if self.api_key else 3.0)
        if self.max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        if not self.email:
            log.warning("NCBI_EMAIL is not set: NCBI asks every E-utilities user for a contact email")
        _install()

    @classmethod
    def from_settings(cls, settings, **overrides) -> "EntrezSource":
        key = settings.ncbi_api_key.get_secret_value() if settings.ncbi_api_key else None
        return cls(base_url=settings.eutils_url, email=settings.ncbi_email, api_key=key or None, **overrides)

    # -- plumbing ------------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """Remove the API key from any text (URLs, error bodies) before it leaves this module."""
        return scrub_secrets(text, [self.api_key])

    def _call(self, what: str, function_name: str, **params) -> bytes:
        """One E-utility call with rate limiting and bounded exponential back-off."""
        from Bio import Entrez

        params.setdefault("tool", self.tool)
        if self.email:
            params.setdefault("email", self.email)
        if self.api_key:
            params.setdefault("api_key", self.api_key)
        function = getattr(Entrez, function_name)
        last_error = ""
        for attempt in range(1, self.max_tries + 1):
            _install()
            self.limiter.acquire()
            Entrez._open.previous = 0.0  # our limiter already spaced this call: skip Bio's sleep
            _route.base, _route.timeout = self.base_url, self.timeout
            failure: _Transport | None = None
            try:
                handle = function(**params)
                body = handle.read()
                return body if isinstance(body, bytes) else body.encode("utf-8")
            except _Transport as exc:
                failure = exc
            except (HTTPError, URLError, OSError, http.client.HTTPException) as raw:
                # Only if something bypassed our urlopen wrapper: never let the raw error (its
                # attributes hold the URL with the key) escape.
                headers = getattr(raw, "headers", None)
                failure = _Transport(getattr(raw, "code", None), f"{type(raw).__name__}: {getattr(raw, 'reason', raw)}",
                                     _parse_retry_after(headers.get("Retry-After")) if headers else None)
            finally:
                _route.base = None
            last_error = self.scrub(failure.reason)
            self._back_off_or_raise(what, failure, last_error, attempt)
        error_class = RateLimitError if last_error.startswith("HTTP 429") else SourceError
        raise error_class(f"{what}: gave up after {self.max_tries} tries; last error: {last_error}")

    def _back_off_or_raise(self, what: str, failure: _Transport, message: str, attempt: int) -> None:
        """Sleep before the next try (full jitter, at least Retry-After), or raise if retrying is pointless."""
        if failure.status is not None and failure.status not in RETRYABLE_STATUS:
            raise SourceError(f"{what}: {message} (not retried)", transient=False)
        if attempt == self.max_tries:
            return
        delay = self.rng.uniform(0.0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))
        if failure.retry_after is not None:
            if failure.retry_after > self.max_retry_after:
                raise RateLimitError(
                    f"{what}: NCBI asked to wait {failure.retry_after:.0f} s (Retry-After), more than "
                    f"the {self.max_retry_after:.0f} s this run accepts: {message}",
                    transient=False,
                )
            delay = max(delay, failure.retry_after)
        log.warning("%s: %s; try %d/%d, retrying in %.2f s", what, message, attempt, self.max_tries, delay)
        self.sleep(delay)

    # -- the Source API ----------------------------------------------------------------------

    def search(self, query: str, mindate: date, maxdate: date, date_type: str = "crdt") -> SearchResult:
        """ESearch on one [crdt] window, or with date_type="mdat" on PubMed's modification date."""
        check_date_type(date_type)
        what = f"esearch {mindate:%Y/%m/%d}-{maxdate:%Y/%m/%d}" + ("" if date_type == "crdt" else f" [{date_type}]")
        body = self._call(
            what, "esearch", db="pubmed", term=query, usehistory="y", datetype=date_type,
            mindate=f"{mindate:%Y/%m/%d}", maxdate=f"{maxdate:%Y/%m/%d}", retmax=MAX_IDS_PER_SEARCH,
        )
        return self._parse_search(what, body)

    def _parse_search(self, what: str, body: bytes) -> SearchResult:
        root = _xml(body, what, self.scrub)
        if root.tag != "eSearchResult":
            raise SourceError(f"{what}: expected <eSearchResult>, got <{root.tag}>")
        warnings: list[str] = []
        for kind, label in (("PhraseNotFound", "phrase not found"), ("FieldNotFound", "field not found"),
                            ("QuotedPhraseNotFound", "quoted phrase not found"),
                            ("PhraseIgnored", "phrase ignored"), ("OutputMessage", "PubMed says")):
            for el in root.iter(kind):
                if _flat(el):
                    warnings.append(f"{label}: {_flat(el)}")
        count_text = _flat(root.find("Count"))
        if not count_text.isdigit():
            raise SourceError(f"{what}: eSearchResult without a Count")
        count = int(count_text)
        pmids = [_flat(i) for i in root.iterfind("IdList/Id") if _flat(i)]
        translation = _flat(root.find("QueryTranslation")) or None
        webenv, query_key = _flat(root.find("WebEnv")), _flat(root.find("QueryKey"))
        history = History(webenv, query_key, count) if count and webenv and query_key else None
        if count and history is None:
            raise SourceError(f"{what}: eSearchResult without WebEnv/QueryKey (usehistory ignored?)")
        return SearchResult(count=count, pmids=pmids, history=history, warnings=warnings,
                            translation=translation)

    def post(self, pmids: list[str]) -> History:
        if not pmids:
            raise ValueError("post() needs at least one PMID")
        what = f"epost of {len(pmids)} ids"
        body = self._call(what, "epost", db="pubmed", id=",".join(str(p) for p in pmids))
        root = _xml(body, what, self.scrub)
        webenv, query_key = _flat(root.find("WebEnv")), _flat(root.find("QueryKey"))
        if not webenv or not query_key:
            raise SourceError(f"{what}: ePostResult without WebEnv/QueryKey")
        return History(webenv, query_key, len(pmids))

    def fetch_batch(self, history: History, retstart: int, retmax: int) -> list[Record]:
        what = f"efetch retstart={retstart} retmax={retmax}"
        try:
            body = self._call(
                what, "efetch", db="pubmed", retmode="xml", WebEnv=history.webenv,
                query_key=history.query_key, retstart=retstart, retmax=retmax,
            )
        except SourceError as exc:
            message = str(exc).removeprefix(what + ": ")
            error_class = RateLimitedBatchError if isinstance(exc, RateLimitError) else BatchError
            raise error_class(message, retstart=retstart, retmax=retmax, cause=message,
                              transient=exc.transient) from None
        try:
            return list(iter_records(io.BytesIO(body)))
        except PubmedParseError as exc:
            message = self.scrub(str(exc)).replace("<stream>: ", "")
            raise BatchError(message, retstart=retstart, retmax=retmax, cause=message) from None


def _xml(body: bytes, what: str, scrub: Callable[[str], str]) -> etree._Element:
    """An esearch/epost reply's root; malformed XML or an <ERROR> element inside a 200 reply fails."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"{what}: malformed XML from E-utilities: {scrub(str(exc))}") from None
    errors = [_flat(e) for e in root.iter("ERROR")]
    if errors:
        raise SourceError(f"{what}: PubMed error: {scrub('; '.join(errors))}")
    return root


def _flat(el) -> str:
    return "".join(el.itertext()).strip() if el is not None else ""
