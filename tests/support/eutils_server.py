"""A local E-utilities double on 127.0.0.1 that replays real PubMed XML and injects faults by script.

It answers `esearch.fcgi`, `epost.fcgi` and `efetch.fcgi` (GET and POST) the way NCBI does: esearch
builds a real-format eSearchResult (Count, RetMax, QueryKey, WebEnv, IdList, QueryTranslation)
over the loaded articles, filtered by the window (mindate/maxdate) and by the query (evaluated with
models.query); efetch serves the real article XML for ids or history windows.

The window is on the create date (`datetype=crdt`, the default: the `entrez` history date) or on
the modification date (`datetype=mdat`): `server.modified[pmid]` if a test set one, else the
article's `<DateRevised>`, else its create date (a record never revised was last changed when
created). Other datetypes are refused (400). `server.revise(pmid, edit)` changes the XML PubMed
serves for a PMID (e.g. a retraction: the title, a publication type, a new DateRevised), as
PubMed does when it maintains a record after it was indexed.
Every request is recorded with its arrival time (time.monotonic) for spacing checks.

Faults are queued per endpoint and consumed one per request:
    server.inject("efetch", Fault(status=429, retry_after="1"), Fault(truncate=True))
PMIDs in `server.withheld` are listed by esearch but never returned by efetch (a 200 answer without
them), as PubMed does for a record deleted or withdrawn after it was indexed.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from lxml import etree

from models.pubmed import DATE_REVISED, iter_records
from models.query import QuerySyntaxError, compile_query

ESEARCH_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8" ?>\n'
    b'<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
    b'"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n'
)
EPOST_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8" ?>\n'
    b'<!DOCTYPE ePostResult PUBLIC "-//NLM//DTD epost 20090526//EN" '
    b'"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20090526/epost.dtd">'
)
EFETCH_HEAD = (
    b'<?xml version="1.0" ?>\n'
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
)


@dataclass
class Fault:
    """One scripted misbehaviour for the next request to an endpoint."""

    status: int | None = None  # answer with this HTTP status (e.g. 429, 500, 503, 400)
    retry_after: str | None = None  # Retry-After header value
    body: bytes | None = None  # 200 with this body instead (e.g. an <ERROR> document)
    truncate: bool = False  # 200 with the real answer cut in half
    drop: bool = False  # close the connection without answering
    phrase_not_found: str | None = None  # esearch: Count 0 + ErrorList/PhraseNotFound


@dataclass
class RecordedRequest:
    at: float  # time.monotonic() on arrival
    endpoint: str  # "esearch" | "epost" | "efetch" | other path
    method: str
    params: dict[str, str]
    status: int = 0


@dataclass
class _Article:
    pmid: str
    xml: bytes
    record: object  # models.records.Record


@dataclass
class EutilsServer:
    """Start with `with EutilsServer.from_files(paths) as server:`; use `server.base_url`."""

    articles: dict[str, _Article] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    id_cap: int = 10_000  # PubMed's ESearch returns at most the first 10,000 ids; lower it in tests
    withheld: set[str] = field(default_factory=set)  # efetch leaves these PMIDs out of its answers
    modified: dict[str, str] = field(default_factory=dict)  # pmid -> [mdat] 'YYYY/MM/DD' (overrides DateRevised)

    def __post_init__(self) -> None:
        self._faults: dict[str, list[Fault]] = {}
        self._histories: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()
        self._webenv_counter = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up -----------------------------------------------------------------------------

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> "EutilsServer":
        server = cls()
        for path in paths:
            server.load(path)
        return server

    def load(self, path: str | Path) -> None:
        """Load the PubmedArticle/PubmedBookArticle elements of a real EFetch file."""
        self.load_bytes(Path(path).read_bytes())

    def load_bytes(self, data: bytes) -> None:
        """Load (or replace, by PMID) the articles of a PubmedArticleSet document."""
        records = {r.pmid: r for r in iter_records(data)}
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
        for elem in root:
            if elem.tag not in ("PubmedArticle", "PubmedBookArticle"):
                continue
            pmid = (elem.findtext("MedlineCitation/PMID") or elem.findtext("BookDocument/PMID") or "").strip()
            elem.tail = "\n"
            with self._lock:
                self.articles[pmid] = _Article(pmid, etree.tostring(elem, encoding="utf-8"), records[pmid])

    def revise(self, pmid: str, edit: Callable[[etree._Element], None]) -> None:
        """Change what PubMed serves for `pmid`: `edit` alters its PubmedArticle element in place."""
        elem = etree.fromstring(self.articles[pmid].xml, etree.XMLParser(resolve_entities=False, no_network=True))
        edit(elem)
        self.load_bytes(b"<PubmedArticleSet>" + etree.tostring(elem, encoding="utf-8") + b"</PubmedArticleSet>")

    def modification_date(self, article: "_Article") -> str:
        """The article's [mdat] as 'YYYY/MM/DD': the test's override, else DateRevised, else [crdt]."""
        override = self.modified.get(article.pmid)
        if override:
            return override.replace("-", "/")
        history = article.record.history
        return (history.get(DATE_REVISED) or history.get("entrez", ""))[:10].replace("-", "/")

    def inject(self, endpoint: str, *faults: Fault) -> None:
        with self._lock:
            self._faults.setdefault(endpoint, []).extend(faults)

    def _next_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(endpoint)
            return queue.pop(0) if queue else None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/entrez/eutils/"

    def start(self) -> "EutilsServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                server._handle(self, parse_qs(urlsplit(self.path).query))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                params = parse_qs(urlsplit(self.path).query)
                params.update(parse_qs(body))
                server._handle(self, params)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "EutilsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def calls(self, endpoint: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    # -- request handling --------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, raw: dict[str, list[str]]) -> None:
        arrived = time.monotonic()
        params = {k: v[-1] for k, v in raw.items()}
        endpoint = urlsplit(handler.path).path.rstrip("/").rsplit("/", 1)[-1].replace(".fcgi", "")
        recorded = RecordedRequest(arrived, endpoint, handler.command, params)
        with self._lock:
            self.requests.append(recorded)
        fault = self._next_fault(endpoint)
        if fault and fault.drop:
            recorded.status = -1
            handler.close_connection = True
            try:
                handler.connection.shutdown(2)
            except OSError:
                pass
            return
        if fault and fault.status:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._send(handler, recorded, fault.status, b"<html><body>error</body></html>", headers, "text/html")
            return
        if fault and fault.body is not None:
            self._send(handler, recorded, 200, fault.body)
            return
        try:
            if endpoint == "esearch":
                body = self._esearch(params, fault)
            elif endpoint == "epost":
                body = self._epost(params)
            elif endpoint == "efetch":
                body = self._efetch(params)
            else:
                self._send(handler, recorded, 404, b"unknown endpoint", content_type="text/plain")
                return
        except _BadRequest as exc:
            self._send(handler, recorded, 400, str(exc).encode(), content_type="text/plain")
            return
        if fault and fault.truncate:
            body = body[: len(body) // 2]
        self._send(handler, recorded, 200, body)

    def _send(self, handler, recorded: RecordedRequest, status: int, body: bytes,
              headers: dict[str, str] | None = None, content_type: str = "text/xml; charset=UTF-8") -> None:
        recorded.status = status
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _new_history(self, pmids: list[str], webenv: str | None = None) -> tuple[str, str]:
        with self._lock:
            webenv = webenv or f"MCID_local{next(self._webenv_counter):08d}"
            key = str(1 + sum(1 for w, _ in self._histories if w == webenv))
            self._histories[(webenv, key)] = list(pmids)
        return webenv, key

    def _esearch(self, params: dict[str, str], fault: Fault | None) -> bytes:
        if params.get("db") != "pubmed":
            raise _BadRequest("db must be pubmed")
        term = params.get("term", "")
        if fault and fault.phrase_not_found:
            phrase = escape(fault.phrase_not_found)
            return ESEARCH_HEAD + (
                "<eSearchResult><Count>0</Count><RetMax>0</RetMax><RetStart>0</RetStart><IdList/>"
                f"<TranslationSet/><QueryTranslation>({phrase}[All Fields])</QueryTranslation>"
                f"<ErrorList><PhraseNotFound>{phrase}</PhraseNotFound></ErrorList>"
                "<WarningList><OutputMessage>No items found.</OutputMessage></WarningList></eSearchResult>"
            ).encode()
        try:
            query = compile_query(term)
        except QuerySyntaxError as exc:
            return ESEARCH_HEAD + f"<eSearchResult><ERROR>{escape(str(exc))}</ERROR></eSearchResult>".encode()
        low, high, date_type = _window(params)
        hits = []
        with self._lock:
            articles = list(self.articles.values())
        for article in articles:
            if date_type == "mdat":
                when = self.modification_date(article)
            else:
                when = article.record.history.get("entrez", "")[:10].replace("-", "/")
            if (low is None or when >= low) and (high is None or when <= high) and query.matches(article.record):
                hits.append(article.pmid)
        hits.sort(key=int, reverse=True)  # newest first, as PubMed's default order
        retstart = int(params.get("retstart", 0))
        retmax = int(params.get("retmax", 20))
        shown = hits[: self.id_cap][retstart: retstart + retmax]
        history = ""
        if params.get("usehistory") == "y":
            webenv, key = self._new_history(hits, params.get("WebEnv"))
            history = f"<QueryKey>{key}</QueryKey><WebEnv>{webenv}</WebEnv>"
        ids = "".join(f"<Id>{p}</Id>\n" for p in shown)
        return ESEARCH_HEAD + (
            f"<eSearchResult><Count>{len(hits)}</Count><RetMax>{len(shown)}</RetMax>"
            f"<RetStart>{retstart}</RetStart>{history}<IdList>\n{ids}</IdList><TranslationSet/>"
            f"<QueryTranslation>{escape(term)}</QueryTranslation></eSearchResult>"
        ).encode()

    def _epost(self, params: dict[str, str]) -> bytes:
        if params.get("db") != "pubmed":
            return EPOST_HEAD + f"<ePostResult>\n\t<ERROR>Invalid db name specified: {escape(params.get('db', ''))}</ERROR>\n</ePostResult>\n".encode()
        ids = [i.strip() for i in params.get("id", "").split(",") if i.strip()]
        if not ids:
            return EPOST_HEAD + b"<ePostResult>\n\t<ERROR>Empty ID list; Nothing to store</ERROR>\n</ePostResult>\n"
        webenv, key = self._new_history(ids, params.get("WebEnv"))
        return EPOST_HEAD + f"<ePostResult>\n\t<QueryKey>{key}</QueryKey>\n\t<WebEnv>{webenv}</WebEnv>\n</ePostResult>\n".encode()

    def _efetch(self, params: dict[str, str]) -> bytes:
        if params.get("db") != "pubmed":
            raise _BadRequest("db must be pubmed")
        if params.get("id"):
            pmids = [i.strip() for i in params["id"].split(",") if i.strip()]
        else:
            webenv, key = params.get("WebEnv", ""), params.get("query_key", "")
            with self._lock:
                stored = self._histories.get((webenv, key))
            if stored is None:
                return (b'<?xml version="1.0" encoding="UTF-8" ?>\n<eFetchResult>\n\t<ERROR>Cannot retrieve '
                        + f"history data. query_key: {escape(key)}, WebEnv: {escape(webenv)}".encode()
                        + b"</ERROR>\n</eFetchResult>\n")
            retstart = int(params.get("retstart", 0))
            retmax = int(params.get("retmax", 20))
            pmids = stored[retstart: retstart + retmax]
        body = b"".join(self.articles[p].xml for p in pmids if p in self.articles and p not in self.withheld)
        return EFETCH_HEAD + b"<PubmedArticleSet>\n" + body + b"</PubmedArticleSet>\n"


class _BadRequest(Exception):
    pass


def retraction(on: date) -> Callable[[etree._Element], None]:
    """An edit for `EutilsServer.revise` (or any PubmedArticle element): the record as PubMed
    maintains a retracted paper: "[Retracted] " before the title, the "Retracted Publication" type,
    a RetractionIn link (RefSource only: no notice PMID is invented) and DateRevised set to `on`.
    Test data made from a real record, not a real PubMed record."""

    def edit(article: etree._Element) -> None:
        citation = article.find("MedlineCitation")
        title = citation.find("Article/ArticleTitle")
        title.text = "[Retracted] " + (title.text or "")
        kind = etree.SubElement(citation.find("Article/PublicationTypeList"), "PublicationType", UI="D016441")
        kind.text = "Retracted Publication"
        links = citation.find("CommentsCorrectionsList")
        if links is None:
            links = etree.SubElement(citation, "CommentsCorrectionsList")
        link = etree.SubElement(links, "CommentsCorrections", RefType="RetractionIn")
        etree.SubElement(link, "RefSource").text = "Test fixture: retraction notice"
        revised = citation.find("DateRevised")
        if revised is None:
            revised = etree.SubElement(citation, "DateRevised")
        for tag, value in (("Year", f"{on:%Y}"), ("Month", f"{on:%m}"), ("Day", f"{on:%d}")):
            (revised.find(tag) if revised.find(tag) is not None else etree.SubElement(revised, tag)).text = value

    return edit


def _window(params: dict[str, str]) -> tuple[str | None, str | None, str]:
    """mindate/maxdate as comparable 'YYYY/MM/DD' bounds, and the datetype (crdt or mdat modelled)."""
    low, high = params.get("mindate"), params.get("maxdate")
    if (low is None) != (high is None):
        raise _BadRequest("mindate and maxdate must be used together")
    date_type = params.get("datetype", "crdt")
    if low is None:
        return None, None, date_type
    if date_type not in ("crdt", "mdat"):
        raise _BadRequest("this double only models datetype=crdt and datetype=mdat")

    def pad(value: str, upper: bool) -> str:
        parts = value.split("/")
        if len(parts) == 1:
            parts += ["12" if upper else "01"]
        if len(parts) == 2:
            parts += ["31" if upper else "01"]
        try:
            y, m, d = (int(p) for p in parts)
        except ValueError:
            raise _BadRequest(f"bad date {value!r}") from None
        return f"{y:04d}/{m:02d}/{d:02d}"

    return pad(low, False), pad(high, True), date_type
