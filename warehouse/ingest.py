"""Bulk ingest of PubMed XML files (a snapshot folder, baseline/update files): parse in parallel, append in order.

Why a pipeline: parsing is CPU-bound Python (`models.pubmed.iter_records`), appending is SQL under
the database lock. Worker processes parse and prepare article chunks (`prepare_batch`), the calling
process only appends, one transaction per chunk, in file order, so the result is the same as a
sequential `append_records` over the same records. What crosses between processes is small: byte
ranges one way, a `PreparedBatch` of plain column lists the other.

Update files' `<DeleteCitation>` PMIDs travel with their batch and are recorded in the same
transaction as its records (`note_deletions`: the records stay, `deleted_records` lists them).

A file without its closing `</PubmedArticleSet>` (cut off) always fails, also when the cut falls
right after a chunk's last article; a truncated .gz fails with a PubmedParseError naming the file.
Batches before the damaged one stay committed (one batch = one transaction), nothing after it.
"""

from __future__ import annotations

import dataclasses

import gc
import gzip
import io
import mmap
import multiprocessing
import os
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from models.pubmed import PubmedParseError
from models.records import Record
from warehouse.db import transaction
from warehouse.records import AppendCounts, PreparedBatch, append_prepared, note_deletions, prepare_batch

_SET_OPEN = b"<PubmedArticleSet"
_SET_CLOSE = b"</PubmedArticleSet>"
_ENDS = (b"</PubmedArticle>", b"</PubmedBookArticle>")
_BLOCK = 8 << 20


@dataclass
class IngestResult:
    records: int = 0
    batches: int = 0
    counts: AppendCounts = field(default_factory=AppendCounts)
    deleted: int = 0  # PMIDs named by <DeleteCitation> blocks (recorded in record_deletions)


def _open(path: Path):
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


# A piece of work for a parser: chunk bytes, or (path, start, end, closed) of a plain file.
Piece = bytes | tuple[str, int, int, bool]


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as probe:
        return probe.read(2) == b"\x1f\x8b"


def iter_pieces(path: str | os.PathLike, articles_per_chunk: int) -> Iterator[Piece]:
    """Chunks of `articles_per_chunk` articles; for plain files only their byte ranges.

    Ranges let the worker read its own bytes, so this process only scans for end tags (in an
    mmap, no copies) instead of copying and pickling every article to the worker.
    """
    path = Path(path)
    if path.stat().st_size == 0 or _is_gzip(path):
        yield from _iter_stream_chunks(path, articles_per_chunk)
        return
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        start = mm.find(_SET_OPEN)
        gt = mm.find(b">", start) if start >= 0 else -1
        if gt < 0:
            yield mm[:]
            return
        pos = chunk_start = gt + 1
        count = 0
        next_end = {end: mm.find(end, pos) for end in _ENDS}
        while True:
            found = [(i, end) for end, i in next_end.items() if i >= 0]
            if not found:
                break
            i, end = min(found)
            pos = i + len(end)
            next_end[end] = mm.find(end, pos)
            count += 1
            if count == articles_per_chunk:
                yield (str(path), chunk_start, pos, True)
                chunk_start, count = pos, 0
        close = mm.rfind(_SET_CLOSE, chunk_start)
        body_end = close if close >= 0 else len(mm)
        # No closing tag: the remainder goes to the parser unclosed, even if it is only whitespace,
        # so a file cut right after a chunk's last article is reported as truncated.
        if count or close < 0 or mm[chunk_start:body_end].strip():
            yield (str(path), chunk_start, body_end, close >= 0)


def _read_piece(piece: Piece) -> tuple[bytes, bytes, bytes]:
    """(prefix, body, suffix) of a piece: joined, a well-formed PubmedArticleSet."""
    if isinstance(piece, bytes):
        return b"", piece, b""
    path, start, end, closed = piece
    with open(path, "rb") as fh:
        fh.seek(start)
        body = fh.read(end - start)
    return b"<PubmedArticleSet>", body, (_SET_CLOSE if closed else b"")


# A parser process reads its byte ranges into one reused buffer: a fresh 50 MB `bytes` per batch
# costs more in page faults than the copy itself.
_buffer = bytearray()


def _read_into_buffer(piece: tuple[str, int, int, bool]) -> int:
    global _buffer
    path, start, end, _ = piece
    size = end - start
    if len(_buffer) < size:
        _buffer = bytearray(size + (size >> 3))
    with open(path, "rb") as fh:
        fh.seek(start)
        view = memoryview(_buffer)
        try:
            got = fh.readinto(view[:size])
        finally:
            view.release()
    return got


def load_piece(piece: Piece) -> bytes:
    """The well-formed PubmedArticleSet bytes of a piece."""
    prefix, body, suffix = _read_piece(piece)
    return prefix + body + suffix if prefix or suffix else body


def iter_chunks(path: str | os.PathLike, articles_per_chunk: int) -> Iterator[bytes]:
    """Split one PubmedArticleSet file (plain or gzip) into well-formed PubmedArticleSet chunks.

    A file that does not look like a PubmedArticleSet is passed on whole, so the parser reports
    the error with its own message.
    """
    for piece in iter_pieces(path, articles_per_chunk):
        yield load_piece(piece)


def _iter_stream_chunks(path: Path, articles_per_chunk: int) -> Iterator[bytes]:
    """iter_chunks for streams (gzip): read in blocks, keep only the unfinished article.

    A truncated or corrupt gzip stream raises PubmedParseError naming the file (chunks read
    before the damage have been yielded).
    """
    try:
        yield from _read_stream_chunks(path, articles_per_chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise PubmedParseError(f"{path}: truncated or unreadable compressed stream: {exc}") from exc


def _read_stream_chunks(path: Path, articles_per_chunk: int) -> Iterator[bytes]:
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
        if count or close < 0 or body.strip():
            yield b"<PubmedArticleSet>" + body + (_SET_CLOSE if close >= 0 else b"")


def stripped_piece(piece: Piece) -> bytes:
    """A piece as well-formed PubmedArticleSet bytes without its reference lists (~70% smaller)."""
    from models.pubmed import strip_reference_lists

    if isinstance(piece, bytes):
        return strip_reference_lists(piece)
    length = _read_into_buffer(piece)  # may replace _buffer with a bigger one
    return strip_reference_lists(_buffer, b"<PubmedArticleSet>", _SET_CLOSE if piece[3] else b"", length)


def parse_chunk(piece: Piece, label: str = "") -> PreparedBatch:
    """Worker: parse one chunk (or byte range) and prepare its records for the append.

    A parse error names the file and batch (`label`): that batch fails, earlier ones stay committed.
    """
    from models.pubmed import PubmedParseError, iter_pubmed

    data = stripped_piece(piece)
    # The batch's records and their parts are all alive until it is prepared: a cyclic GC pass
    # would only walk them again and again (no cycles are made here; refcounting frees the rest).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        deleted: list[str] = []
        records: list[Record] = []
        for item in iter_pubmed(io.BytesIO(data), skip_references=False):
            if isinstance(item, Record):
                records.append(item)
            else:  # a Deletion (update files put them after the articles)
                deleted.extend(item.pmids)
        batch = prepare_batch(records)
        batch.deleted = tuple(deleted)
        return batch
    except PubmedParseError as exc:
        raise PubmedParseError(f"{label}: {exc}" if label else str(exc)) from None
    finally:
        if gc_was_enabled:
            gc.enable()


def ingest_files(
    db_path: str | os.PathLike,
    run_id: str,
    strategy: str,
    paths: Iterable[str | os.PathLike],
    batch_size: int = 2000,
    workers: int | None = None,
) -> IngestResult:
    """Parse every file and append its records, one transaction per `batch_size` articles.

    `workers=0` parses in this process (no pool); default: one worker per spare core, at least one.
    A batch's `<DeleteCitation>` PMIDs are recorded in its transaction, under the file's name.
    """
    global _buffer
    if workers is None:
        workers = max(1, (os.cpu_count() or 2) - 1)
    result = IngestResult()
    totals = dict.fromkeys((f.name for f in dataclasses.fields(AppendCounts)), 0)

    def absorb(batch: PreparedBatch, source: str) -> None:
        with transaction(db_path):  # the append and the deletions commit together
            counts = append_prepared(db_path, run_id, strategy, batch)
            if batch.deleted:
                result.deleted += note_deletions(db_path, run_id, source, batch.deleted)
        result.records += len(batch)
        result.batches += 1
        for name in totals:
            totals[name] += getattr(counts, name)

    # (piece, label, file name); a file that cannot be read (truncated .gz) raises while iterating
    chunks = ((piece, f"{path}, batch {k + 1} of {batch_size} articles", Path(path).name)
              for path in paths for k, piece in enumerate(iter_pieces(path, batch_size)))
    try:
        if workers == 0:
            for piece, label, source in chunks:
                absorb(parse_chunk(piece, label), source)
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads/DuckDB
            with ctx.Pool(workers) as pool:
                pending: deque = deque()

                def absorb_next() -> None:  # in file order: a batch that fails to parse stops everything after it
                    job, src = pending.popleft()
                    absorb(job.get(), src)

                while True:
                    try:
                        piece, label, source = next(chunks)
                    except StopIteration:
                        break
                    except PubmedParseError:
                        # the reader failed (truncated .gz): the batches read before it are committed first,
                        # as they are without a pool (an earlier parse error, if any, is raised instead)
                        while pending:
                            absorb_next()
                        raise
                    pending.append((pool.apply_async(parse_chunk, (piece, label)), source))
                    if len(pending) == 1 and not result.batches:
                        import pandas  # noqa: F401  (the append needs it: import it while the parsers start)
                    if len(pending) > 2 * workers:  # bounded read-ahead: memory stays flat in file size
                        absorb_next()
                while pending:
                    absorb_next()
    finally:
        _buffer = bytearray()  # parser processes end with their pool; this one goes on
    result.counts = AppendCounts(**totals)
    return result
