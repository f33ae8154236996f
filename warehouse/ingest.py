"""Bulk ingest of PubMed XML files (a snapshot folder, baseline/update files): parse in parallel, append in order.

Why a pipeline: parsing is CPU-bound Python (`models.pubmed.iter_records`), appending is SQL under
the database lock. Worker processes parse and prepare article chunks (`prepare_batch`), the calling
process only appends, one transaction per chunk, in file order, so the result is the same as a
sequential `append_records` over the same records.

Why strip `<ReferenceList>` first: in efetch answers with cited references it is most of the bytes
(73% in the project's fixtures) and the parser ignores it (an article's own DOI is in its
ArticleIdList). By the DTD, ReferenceList elements are the last children of PubmedData, so cutting
from the first `<ReferenceList` to the last `</ReferenceList>` of a PubmedArticle removes exactly
them; `tests/warehouse/test_ingest.py` checks the records are identical either way.
"""

from __future__ import annotations

import gzip
import io
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from warehouse.records import AppendCounts, PreparedBatch, append_prepared, prepare_batch

_SET_OPEN = b"<PubmedArticleSet"
_SET_CLOSE = b"</PubmedArticleSet>"
_ENDS = (b"</PubmedArticle>", b"</PubmedBookArticle>")
_BLOCK = 8 << 20


@dataclass
class IngestResult:
    records: int = 0
    batches: int = 0
    counts: AppendCounts = field(default_factory=AppendCounts)


def _open(path: Path):
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def iter_chunks(path: str | os.PathLike, articles_per_chunk: int) -> Iterator[bytes]:
    """Split one PubmedArticleSet file into well-formed PubmedArticleSet chunks, streaming.

    A file that does not look like a PubmedArticleSet is passed on whole, so the parser reports
    the error with its own message.
    """
    path = Path(path)
    with _open(path) as fh:
        buf = fh.read(_BLOCK)
        start = buf.find(_SET_OPEN)
        while start < 0 and len(buf) < 4 * _BLOCK:  # the prolog is short; a missing root is an error
            more = fh.read(_BLOCK)
            if not more:
                break
            buf += more
            start = buf.find(_SET_OPEN)
        gt = buf.find(b">", start) if start >= 0 else -1
        if start < 0 or gt < 0:
            yield buf + fh.read()
            return
        buf = buf[gt + 1:]
        parts: list[bytes] = []  # finished articles of the current chunk from earlier blocks
        pos = chunk_start = count = 0
        next_end = {end: buf.find(end) for end in _ENDS}  # cached: each tag is searched once per byte
        while True:
            found = [(i, end) for end, i in next_end.items() if i >= 0]
            if found:
                i, end = min(found)
                pos = i + len(end)
                next_end[end] = buf.find(end, pos)
                count += 1
                if count == articles_per_chunk:
                    parts.append(buf[chunk_start:pos])
                    yield b"".join([b"<PubmedArticleSet>", *parts, _SET_CLOSE])
                    parts, count, chunk_start = [], 0, pos
                continue
            more = fh.read(_BLOCK)
            if not more:
                break
            parts.append(buf[chunk_start:pos])  # the working buffer keeps only the unfinished article
            buf = buf[pos:] + more
            pos = chunk_start = 0
            # an end tag may straddle the block boundary: rescan from the start of the kept tail
            next_end = {end: buf.find(end) for end in _ENDS}
        buf = buf[chunk_start:]
        rest = b"".join(parts) + buf
        close = rest.rfind(_SET_CLOSE)
        body = rest[:close] if close >= 0 else rest  # no closing tag: let the parser call it truncated
        if count or body.strip():
            yield b"<PubmedArticleSet>" + body + (_SET_CLOSE if close >= 0 else b"")


def strip_reference_lists(chunk: bytes) -> bytes:
    """Remove the trailing ReferenceList elements of every PubmedArticle in a chunk."""
    if b"<ReferenceList" not in chunk:
        return chunk
    out = []
    pos = 0
    book_end = -2  # cached position of the next </PubmedBookArticle> (-1: none left)
    while True:
        start = chunk.find(b"<ReferenceList", pos)
        if start < 0:
            break
        article_end = chunk.find(b"</PubmedArticle>", start)
        if book_end != -1 and book_end < start:
            book_end = chunk.find(b"</PubmedBookArticle>", start)
        if article_end < 0 or (0 <= book_end < article_end):
            # inside a book article (references are not trailing there): keep as is
            nxt = book_end + len(b"</PubmedBookArticle>") if book_end >= 0 else len(chunk)
            out.append(chunk[pos:nxt])
            pos = nxt
            continue
        last = chunk.rfind(b"</ReferenceList>", start, article_end)
        if last < 0:
            out.append(chunk[pos:article_end])
            pos = article_end
            continue
        out.append(chunk[pos:start])
        pos = last + len(b"</ReferenceList>")
    out.append(chunk[pos:])
    return b"".join(out)


def parse_chunk(chunk: bytes, strip_references: bool = True) -> PreparedBatch:
    """Worker: parse one chunk and prepare its records for the append."""
    from models.pubmed import iter_records

    if strip_references:
        chunk = strip_reference_lists(chunk)
    return prepare_batch(iter_records(io.BytesIO(chunk)))


def _parse_task(args: tuple[bytes, bool]) -> PreparedBatch:
    return parse_chunk(*args)


def ingest_files(
    db_path: str | os.PathLike,
    run_id: str,
    strategy: str,
    paths: Iterable[str | os.PathLike],
    batch_size: int = 2000,
    workers: int | None = None,
    strip_references: bool = True,
) -> IngestResult:
    """Parse every file and append its records, one transaction per `batch_size` articles.

    `workers=0` parses in this process (no pool); default: one worker per spare core, at least one.
    """
    if workers is None:
        workers = max(1, (os.cpu_count() or 2) - 1)
    result = IngestResult()
    totals = [0, 0, 0, 0]

    def absorb(batch: PreparedBatch) -> None:
        counts = append_prepared(db_path, run_id, strategy, batch)
        result.records += len(batch)
        result.batches += 1
        for i, v in enumerate((counts.new, counts.duplicates, counts.updated, counts.unchanged)):
            totals[i] += v

    chunks = ((chunk, strip_references) for path in paths for chunk in iter_chunks(path, batch_size))
    if workers == 0:
        for args in chunks:
            absorb(_parse_task(args))
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads/DuckDB
        with ctx.Pool(workers) as pool:
            pending: deque = deque()
            for args in chunks:
                pending.append(pool.apply_async(_parse_task, (args,)))
                if len(pending) > 2 * workers:  # bounded read-ahead: memory stays flat in file size
                    absorb(pending.popleft().get())
            while pending:
                absorb(pending.popleft().get())
    result.counts = AppendCounts(*totals)
    return result
