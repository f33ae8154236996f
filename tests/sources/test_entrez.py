"""EntrezSource through the real Bio.Entrez against a local E-utilities server replaying real XML.

Most tests inject a no-wait limiter and a recording sleep so that back-off is checked by its
decisions, not by waiting; two tests use the real process-wide limiter and measure the spacing of
request arrivals at the server.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import date
from pathlib import Path

import pytest

from living_review.sources import BatchError, RateLimitError, SourceError
from living_review.sources.base import RateLimitedBatchError, Source
from living_review.sources.entrez import EntrezSource, RateLimiter, shared_limiter
from models.pubmed import iter_records
from support.eutils_server import EutilsServer, Fault

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pubmed"
SECRET = "SECRET-KEY-0123456789abcdef"
EVERYTHING = (date(1970, 1, 1), date(2030, 12, 31))


class NoWait:
    """Limiter stand-in: no spacing (spacing has its own tests)."""

    def acquire(self) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    with EutilsServer.from_files(sorted(FIXTURES.glob("*.xml"))) as srv:
        yield srv


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def source(server, sleeps) -> EntrezSource:
    reset(server)
    return EntrezSource(base_url=server.base_url, email="reviewer@example.org", limiter=NoWait(),
                        sleep=sleeps.append, rng=random.Random(7), backoff_base=1.0)


def local_records() -> dict[str, str]:
    return {r.pmid: r.content_hash() for p in FIXTURES.glob("*.xml") for r in iter_records(p)}


# -- happy path ---------------------------------------------------------------------------------


def test_search_then_fetch_in_batches_returns_every_record_intact(source, server):
    assert isinstance(source, Source)
    result = source.search("all[sb]", *EVERYTHING)
    expected = local_records()
    assert result.count == len(expected) == 9
    assert sorted(result.pmids) == sorted(expected)
    assert result.history is not None and result.history.count == 9
    assert result.warnings == [] and result.complete
    fetched = []
    for retstart in range(0, result.count, 4):
        fetched += source.fetch_batch(result.history, retstart, 4)
    assert [r.pmid for r in fetched] == result.pmids
    assert {r.pmid: r.content_hash() for r in fetched} == expected

    search = server.calls("esearch")[0].params
    assert search["db"] == "pubmed" and search["usehistory"] == "y" and search["datetype"] == "crdt"
    assert (search["mindate"], search["maxdate"]) == ("1970/01/01", "2030/12/31")
    assert search["retmax"] == "9999" and search["term"] == "all[sb]"
    assert search["tool"] == "living-review" and search["email"] == "reviewer@example.org"
    assert "api_key" not in search
    fetch = server.calls("efetch")
    assert [(c.params["retstart"], c.params["retmax"]) for c in fetch] == [("0", "4"), ("4", "4"), ("8", "4")]
    assert all(c.params["retmode"] == "xml" and c.params["WebEnv"] == result.history.webenv
               and c.params["query_key"] == result.history.query_key for c in fetch)


def test_window_is_on_the_create_date(source):
    # 30849835 was created (crdt) 2019-03-10 but has entry date 1999-06-01
    march = source.search("all[sb]", date(2019, 3, 10), date(2019, 3, 10))
    assert march.pmids == ["30849835"]
    assert source.search("all[sb]", date(1999, 6, 1), date(1999, 6, 1)).count == 0


def test_mdat_search_is_on_the_modification_date(source, server):
    # 30386702: created (crdt) 2018-11-03, DateRevised 2020-10-01
    day = date(2020, 10, 1)
    assert source.search("all[sb]", day, day).count == 0
    assert source.search("all[sb]", day, day, date_type="mdat").pmids == ["30386702"]
    assert server.calls("esearch")[-1].params["datetype"] == "mdat"
    server.modified["9997"] = "2020/10/01"  # a test's own modification date wins over DateRevised
    assert source.search("all[sb]", day, day, date_type="mdat").pmids == ["30386702", "9997"]
    with pytest.raises(ValueError, match="date type"):
        source.search("all[sb]", day, day, date_type="pdat")


def test_a_revised_record_is_served_with_its_new_content(source, server):
    from support.eutils_server import retraction

    before = {r.pmid: r for r in source.fetch_batch(source.post(["27797938"]), 0, 1)}["27797938"]
    server.revise("27797938", retraction(date(2030, 1, 12)))
    try:
        day = date(2030, 1, 12)
        result = source.search("all[sb]", day, day, date_type="mdat")
        assert result.pmids == ["27797938"]
        (after,) = source.fetch_batch(result.history, 0, 5)
        assert after.title == "[Retracted] " + before.title
        assert after.publication_types == before.publication_types + ["Retracted Publication"]
        assert after.comments_corrections[-1]["ref_type"] == "RetractionIn"
        assert after.content_hash() != before.content_hash()
    finally:
        server.load(FIXTURES / "pubmed4.xml")  # the module's server is shared: serve the real record again


def test_query_is_sent_and_evaluated(source):
    result = source.search('"Randomized Controlled Trial"[pt]', *EVERYTHING)
    assert result.pmids == ["23435529"]
    assert result.translation == '"Randomized Controlled Trial"[pt]'


def test_post_then_fetch_uses_http_post(source, server):
    history = source.post(["9997", "12091962", "404404"])
    records = source.fetch_batch(history, 0, 10)
    assert [r.pmid for r in records] == ["9997", "12091962"]  # an unknown PMID is simply absent
    assert server.calls("epost")[0].method == "POST"


def test_empty_result_has_no_history(source):
    result = source.search("all[sb]", date(2030, 1, 1), date(2030, 1, 2))
    assert (result.count, result.pmids, result.history) == (0, [], None)


# -- PubMed's own warnings and errors ------------------------------------------------------------


def test_phrase_not_found_is_a_warning_not_an_error(source, server):
    server.inject("esearch", Fault(phrase_not_found="abcXYZ"))
    result = source.search("abcXYZ", *EVERYTHING)
    assert result.count == 0 and result.history is None
    assert result.warnings == ["phrase not found: abcXYZ", "PubMed says: No items found."]


def test_error_element_in_a_200_search_is_an_error(source, server):
    server.inject("esearch", Fault(body=b"<eSearchResult><ERROR>Invalid query</ERROR></eSearchResult>"))
    with pytest.raises(SourceError, match="PubMed error: Invalid query"):
        source.search("all[sb]", *EVERYTHING)


def test_epost_error_element_is_an_error(source, server):
    server.inject("epost", Fault(body=b"<ePostResult><ERROR>Empty ID list; Nothing to store</ERROR></ePostResult>"))
    with pytest.raises(SourceError, match="Nothing to store"):
        source.post(["1"])


def test_error_body_in_efetch_is_a_batch_error(source, server):
    history = source.search("all[sb]", *EVERYTHING).history
    server.inject("efetch", Fault(body=b'<?xml version="1.0"?>\n<eFetchResult><ERROR>Cannot retrieve history data. '
                                       b"retstart: 12000</ERROR></eFetchResult>"))
    with pytest.raises(BatchError) as info:
        source.fetch_batch(history, 4, 4)
    assert (info.value.retstart, info.value.retmax) == (4, 4)
    assert "Cannot retrieve history data" in str(info.value) and "retstart=4 retmax=4" in str(info.value)


def test_truncated_efetch_is_a_batch_error_with_the_line(source, server):
    history = source.search("all[sb]", *EVERYTHING).history
    server.inject("efetch", Fault(truncate=True))
    with pytest.raises(BatchError, match=r"retstart=0 retmax=9: .*line \d+") as info:
        source.fetch_batch(history, 0, 9)
    assert "truncated" in info.value.cause
    assert len(server.calls("efetch")) == 1  # bad data is not retried blindly; the flow decides


def test_unknown_history_is_a_batch_error(source):
    from living_review.sources import History

    with pytest.raises(BatchError, match="Cannot retrieve history data"):
        source.fetch_batch(History("MCID_gone", "1", 5), 0, 5)


# -- back-off ---------------------------------------------------------------------------------------


def test_backs_off_then_succeeds_honouring_retry_after(source, server, sleeps):
    server.inject("esearch", Fault(status=429, retry_after="3"), Fault(status=503), Fault(drop=True))
    result = source.search("all[sb]", *EVERYTHING)
    assert result.count == 9
    assert [c.status for c in server.calls("esearch")] == [429, 503, -1, 200]
    assert len(sleeps) == 3
    assert sleeps[0] >= 3.0  # Retry-After honoured
    assert 0 <= sleeps[1] <= 2.0 and 0 <= sleeps[2] <= 4.0  # full jitter under base * 2**n


def test_retry_after_as_http_date_is_understood(source, server, sleeps):
    server.inject("efetch", Fault(status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"))
    history = source.post(["9997"])
    assert [r.pmid for r in source.fetch_batch(history, 0, 1)] == ["9997"]
    assert len(sleeps) == 1 and sleeps[0] <= 1.0  # a date in the past means "now"


def test_gives_up_after_bounded_tries_with_a_clear_error(source, server, sleeps):
    server.inject("esearch", *[Fault(status=500)] * 6)
    with pytest.raises(SourceError, match=r"gave up after 6 tries; last error: HTTP 500") as info:
        source.search("all[sb]", *EVERYTHING)
    assert not isinstance(info.value, RateLimitError)
    assert len(server.calls("esearch")) == 6 and len(sleeps) == 5
    # full jitter: the sleep before try n+1 is within [0, min(cap, base * 2**(n-1))]
    assert all(0.0 <= s <= min(source.backoff_cap, source.backoff_base * 2 ** i) for i, s in enumerate(sleeps))


def test_persistent_429_is_a_rate_limit_error(source, server):
    server.inject("esearch", *[Fault(status=429)] * 6)
    with pytest.raises(RateLimitError, match="gave up after 6 tries"):
        source.search("all[sb]", *EVERYTHING)


def test_persistent_429_on_a_batch_is_both_batch_and_rate_limit_error(source, server):
    history = source.post(["9997"])
    server.inject("efetch", *[Fault(status=429)] * 6)
    with pytest.raises(RateLimitedBatchError) as info:
        source.fetch_batch(history, 0, 1)
    assert isinstance(info.value, BatchError) and isinstance(info.value, RateLimitError)
    assert info.value.retstart == 0


def test_excessive_retry_after_fails_at_once(source, server, sleeps):
    server.inject("esearch", Fault(status=429, retry_after="3600"))
    with pytest.raises(RateLimitError, match="Retry-After"):
        source.search("all[sb]", *EVERYTHING)
    assert sleeps == [] and len(server.calls("esearch")) == 1


@pytest.mark.parametrize("status", [400, 404, 414])
def test_other_client_errors_are_not_retried(source, server, sleeps, status):
    server.inject("esearch", Fault(status=status))
    with pytest.raises(SourceError, match=f"HTTP {status}.*not retried"):
        source.search("all[sb]", *EVERYTHING)
    assert len(server.calls("esearch")) == 1 and sleeps == []


def test_connection_refused_is_retried_then_reported(sleeps):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = EntrezSource(base_url=f"http://127.0.0.1:{port}/entrez/eutils/", email="t@example.org", limiter=NoWait(),
                          sleep=sleeps.append, max_tries=3)
    with pytest.raises(SourceError, match="gave up after 3 tries; last error: connection error"):
        source.search("all[sb]", *EVERYTHING)
    assert len(sleeps) == 2


# -- the API key never leaks -------------------------------------------------------------------------


def reset(server: EutilsServer) -> None:
    server.requests.clear()
    server._faults.clear()
    server.modified.clear()


def test_api_key_is_sent_but_never_appears_in_errors_logs_or_repr(server, sleeps, caplog):
    reset(server)
    keyed = EntrezSource(base_url=server.base_url, email="t@example.org", api_key=SECRET, limiter=NoWait(), sleep=sleeps.append)
    caplog.set_level(logging.DEBUG)
    keyed.search("all[sb]", *EVERYTHING)
    assert server.calls("esearch")[-1].params["api_key"] == SECRET
    echo = f"<eSearchResult><ERROR>bad request ?db=pubmed&amp;api_key={SECRET}&amp;term=x</ERROR></eSearchResult>"
    messages = []
    for endpoint, fault in [("esearch", Fault(body=echo.encode())),
                            ("esearch", Fault(status=400)),
                            *[("esearch", Fault(status=500))] * 6]:
        server.inject(endpoint, fault)
    for _ in range(3):
        with pytest.raises(SourceError) as info:
            keyed.search("all[sb]", *EVERYTHING)
        messages.append(str(info.value))
        messages.append(repr(info.value))
        # no raw urllib error (whose attributes hold the URL with the key) travels with ours
        assert info.value.__cause__ is None
        assert info.value.__context__ is None or info.value.__suppress_context__
    assert "api_key=***" in messages[0]
    assert all(SECRET not in m for m in messages)
    assert SECRET not in caplog.text and SECRET not in repr(keyed)


def test_from_settings_reads_url_email_and_key(monkeypatch, lr_home):
    from living_review.settings import get_settings

    monkeypatch.setenv("LIVING_REVIEW_EUTILS_URL", "http://127.0.0.1:9/entrez/eutils")
    monkeypatch.setenv("NCBI_EMAIL", "someone@example.org")
    monkeypatch.setenv("NCBI_API_KEY", SECRET)
    source = EntrezSource.from_settings(get_settings())
    assert source.base_url == "http://127.0.0.1:9/entrez/eutils/"
    assert source.email == "someone@example.org" and source.api_key == SECRET
    assert source.limiter is shared_limiter(10.0)
    monkeypatch.delenv("NCBI_API_KEY")
    unkeyed = EntrezSource.from_settings(get_settings())
    assert unkeyed.limiter is shared_limiter(3.0) and unkeyed.limiter is not source.limiter


# -- politeness with real time ------------------------------------------------------------------------


def max_in_any_window(times: list[float], width: float = 1.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


def hammer(source: EntrezSource, threads: int, calls_each: int) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(calls_each):
                source.search("all[sb]", date(2019, 3, 10), date(2019, 3, 10))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors


def test_no_more_than_3_requests_per_second_without_key_across_8_threads(server):
    reset(server)
    source = EntrezSource(base_url=server.base_url, email="t@example.org", limiter=RateLimiter(3.0))
    hammer(source, threads=8, calls_each=1)
    arrivals = [c.at for c in server.calls("esearch")]
    assert len(arrivals) == 8
    assert max_in_any_window(arrivals) <= 3


def test_no_more_than_10_requests_per_second_with_key_across_8_threads(server):
    reset(server)
    source = EntrezSource(base_url=server.base_url, email="t@example.org", api_key=SECRET)
    assert source.limiter is shared_limiter(10.0)
    hammer(source, threads=8, calls_each=3)
    arrivals = [c.at for c in server.calls("esearch")]
    assert len(arrivals) == 24
    assert max_in_any_window(arrivals) <= 10
    assert max_in_any_window(arrivals) >= 5  # the limiter does not serialise far below the allowance


def test_rate_limiter_spacing_with_a_fake_clock():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(3.0, clock=lambda: now[0], sleep=sleep)
    starts = []
    for _ in range(7):
        limiter.acquire()
        starts.append(now[0])
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(abs(g - 1.1 / 3) < 1e-9 for g in gaps)
    assert max_in_any_window(starts) == 3


def test_spacing_check_detects_a_burst_without_the_limiter(server):
    """Control for the two tests above: with no limiter, 8 threads do exceed 3 requests/s."""
    reset(server)
    source = EntrezSource(base_url=server.base_url, email="t@example.org", limiter=NoWait())
    hammer(source, threads=8, calls_each=1)
    assert max_in_any_window([c.at for c in server.calls("esearch")]) > 3


def test_transient_flag_separates_permanent_from_retryable_failures(source, server):
    server.inject("esearch", Fault(status=400))
    with pytest.raises(SourceError) as rejected:
        source.search("all[sb]", *EVERYTHING)
    assert rejected.value.transient is False
    server.inject("esearch", *[Fault(status=503)] * 6)
    with pytest.raises(SourceError) as overloaded:
        source.search("all[sb]", *EVERYTHING)
    assert overloaded.value.transient is True


def test_count_above_the_cap_is_reported_for_window_splitting(server, source):
    server.id_cap = 4
    try:
        result = source.search("all[sb]", *EVERYTHING)
    finally:
        server.id_cap = 10_000
    assert result.count == 9 and len(result.pmids) == 4 and not result.complete


def test_routing_survives_someone_replacing_bio_entrez_urlopen(source, server, monkeypatch):
    import urllib.request

    from Bio import Entrez

    monkeypatch.setattr(Entrez, "urlopen", urllib.request.urlopen)  # e.g. the stack-notes recipe
    server.inject("esearch", Fault(status=400))
    with pytest.raises(SourceError, match="not retried"):  # still ours: routed, converted, scrubbed
        source.search("all[sb]", *EVERYTHING)
    assert source.search("all[sb]", *EVERYTHING).count == 9
    assert Entrez.max_tries == 1
