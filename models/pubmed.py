"""Streaming parser for PubMed EFetch / baseline / update XML (PubmedArticleSet).

Why streaming: baseline files hold ~30,000 articles each and a nightly batch may be 10,000; memory
must stay flat, so each article is cleared (and earlier siblings deleted) as soon as it is read.
Why not `.//ArticleId`: ReferenceList carries the cited works' ids; the article's own DOI lives in
PubmedData/ArticleIdList (fallback: Article/ELocationID).

`Record.history` holds the PubMedPubDate dates by PubStatus ("entrez" = create date [crdt], "pubmed",
"medline", ...) and, under `DATE_REVISED`, the citation's `<DateRevised>` (MedlineCitation or
BookDocument): the last date NLM revised the citation, the offline stand-in for PubMed's
modification date [mdat]. History is bookkeeping, not content: it is left out of the content hash.
"""

from __future__ import annotations

import gzip
import io
import os
import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Union

from lxml import etree

from models.records import Record

_ARTICLE = "PubmedArticle"
_BOOK = "PubmedBookArticle"
_DELETE = "DeleteCitation"
_ROOT = "PubmedArticleSet"
# The key of <DateRevised> in Record.history: not a PubStatus value (those are lower-case, e.g. the
# manuscript's "revised" date), so it never collides with a History/PubMedPubDate entry.
DATE_REVISED = "DateRevised"

_YEAR = re.compile(r"(1[89]\d\d|2\d\d\d)")
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}


class PubmedParseError(ValueError):
    """Malformed, truncated or non-PubMed XML (the message names the line)."""


@dataclass(frozen=True)
class Deletion:
    """A `<DeleteCitation>` block of an update file: these PMIDs leave PubMed."""

    pmids: tuple[str, ...]


XmlInput = Union[str, os.PathLike, BinaryIO, bytes]  # a path (plain or .gz), raw bytes or a binary file


def _open(source: XmlInput) -> tuple[BinaryIO, bool]:
    """Binary stream for a path (plain or .gz), raw bytes or a file object; bool = close it after."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return io.BytesIO(data), True
    if isinstance(source, (str, os.PathLike)):
        handle = open(source, "rb")
        magic = handle.read(2)
        handle.seek(0)
        if magic == b"\x1f\x8b":
            return gzip.GzipFile(fileobj=handle, mode="rb"), True  # type: ignore[return-value]
        return handle, True
    if hasattr(source, "peek"):
        try:
            if source.peek(2)[:2] == b"\x1f\x8b":  # type: ignore[union-attr]
                return gzip.GzipFile(fileobj=source, mode="rb"), False  # type: ignore[return-value]
        except (OSError, ValueError):
            pass
    elif hasattr(source, "seekable") and source.seekable():
        pos = source.tell()
        magic = source.read(2)
        source.seek(pos)
        if magic == b"\x1f\x8b":
            return gzip.GzipFile(fileobj=source, mode="rb"), False  # type: ignore[return-value]
    return source, False  # type: ignore[return-value]


def _name(source: XmlInput) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", None) or "<stream>"


def _collapse(text: str) -> str:
    """`" ".join(text.split())`; long ASCII text that is already collapsed (most abstracts and
    titles) is returned as is after a few C-level scans, instead of being split into words."""
    if (len(text) > 48 and text.isascii() and text[0] != " " and text[-1] != " " and "  " not in text
            and "\n" not in text and "\t" not in text and "\r" not in text and "\x0b" not in text
            and "\x0c" not in text and "\x1c" not in text and "\x1d" not in text and "\x1e" not in text
            and "\x1f" not in text):
        return text
    return " ".join(text.split())


def flatten(el: etree._Element | None) -> str:
    """Text of an element with inline markup (<i>, <sup>, MathML…) flattened, whitespace collapsed."""
    if el is None:
        return ""
    if len(el) == 0:  # no inline markup: the common case
        text = el.text
        return _collapse(text) if text else ""
    return _collapse(_mixed_text(el))


_MATHML = "{http://www.w3.org/1998/Math/MathML}"


def _mixed_text(el: etree._Element) -> str:
    """Text of mixed content; a MathML formula's tokens are joined without the pretty-printing
    whitespace between them ("VO2max", not "V O 2 m a x")."""
    parts = [el.text or ""]
    for child in el:
        tag = child.tag
        if isinstance(tag, str) and tag.startswith(_MATHML):
            parts.append("".join(t.strip() for t in child.itertext()))
        elif isinstance(tag, str):
            parts.append(_mixed_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _text(el: etree._Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _date(el: etree._Element | None) -> str | None:
    """YYYY-MM-DD from a Year/Month/Day element (Month may be 'Sep' or '09'); None without a year."""
    if el is None:
        return None
    year = month_raw = day_raw = None
    for child in el:  # one pass over the few children (hot: several dates per article)
        tag = child.tag
        if tag == "Year":
            year = child.text
        elif tag == "Month":
            month_raw = child.text
        elif tag == "Day":
            day_raw = child.text
    key = (year, month_raw, day_raw)
    try:
        return _DATES[key]  # the same few thousand dates recur in every batch
    except KeyError:
        pass
    value = _format_date(*((text or "").strip() for text in key))
    if len(_DATES) < 100_000:
        _DATES[key] = value
    return value


_DATES: dict[tuple, str | None] = {}


def _format_date(year: str, month_raw: str, day_raw: str) -> str | None:
    if not year.isdigit():
        return None
    if month_raw.isdigit():
        month = int(month_raw)
    else:
        month = _MONTHS.get(month_raw[:3].lower(), 1)
    day = int(day_raw) if day_raw.isdigit() else 1
    return f"{int(year):04d}-{max(1, min(month, 12)):02d}-{max(1, min(day, 31)):02d}"


def _year_of(pub_date: etree._Element | None) -> int | None:
    """PubDate Year, else the first 4-digit year of a free-text MedlineDate."""
    if pub_date is None:
        return None
    year = _text(pub_date.find("Year"))
    if year.isdigit():
        return int(year)
    match = _YEAR.search(_text(pub_date.find("MedlineDate")))
    return int(match.group(1)) if match else None


def _abstract(abstract: etree._Element | None) -> str:
    """Sections as 'LABEL: text' lines joined by newlines, so the web page can show them apart."""
    if abstract is None:
        return ""
    parts = []
    for section in abstract:
        if section.tag != "AbstractText":
            continue
        text = flatten(section)
        label = (section.get("Label") or "").strip()
        if label and text:
            parts.append(f"{label}: {text}")
        elif text:
            parts.append(text)
        elif label:
            parts.append(f"{label}:")
    return "\n".join(parts)


def _authors(author_list: etree._Element | None) -> list[str]:
    """'Lastname Initials' (or the CollectiveName) of each valid author, in order."""
    if author_list is None:
        return []
    names = []
    for author in author_list:
        if author.tag != "Author" or author.get("ValidYN", "Y") == "N":
            continue
        last = initials = fore = collective = ""
        for child in author:
            tag = child.tag
            if tag == "LastName":
                last = (child.text or "").strip()
            elif tag == "Initials":
                initials = (child.text or "").strip()
            elif tag == "ForeName":
                fore = (child.text or "").strip()
            elif tag == "CollectiveName":
                collective = flatten(child)
        if collective:
            names.append(collective)
            continue
        if not initials:
            initials = "".join(part[0] for part in fore.split() if part)
        if last:
            names.append(f"{last} {initials}".strip())
    return names


def _doi_from_ids(id_list: etree._Element | None) -> str | None:
    if id_list is None:
        return None
    for article_id in id_list:
        if article_id.tag == "ArticleId" and article_id.get("IdType") == "doi" and _text(article_id):
            return _text(article_id)
    return None


def _doi_from_elocation(container: etree._Element | None) -> str | None:
    if container is None:
        return None
    for eloc in container.iterfind("ELocationID"):
        if eloc.get("EIdType") == "doi" and eloc.get("ValidYN", "Y") != "N" and _text(eloc):
            return _text(eloc)
    return None


def _history(pubmed_data: etree._Element | None) -> dict[str, str]:
    dates: dict[str, str] = {}
    if pubmed_data is None:
        return dates
    for pub_date in pubmed_data.iterfind("History/PubMedPubDate"):
        status = pub_date.get("PubStatus")
        value = _date(pub_date)
        if status and value and status not in dates:
            dates[status] = value
    return dates


def _mesh(container: etree._Element) -> tuple[list[str], list[dict]]:
    names: list[str] = []
    detail: list[dict] = []
    _mesh_headings([child for child in container if child.tag == "MeshHeadingList"], names, detail)
    return names, detail


def _keywords(container: etree._Element) -> list[str]:
    return [kw for kw in (flatten(k) for k in container.iterfind("KeywordList/Keyword")) if kw]


def _comments_corrections(citation: etree._Element) -> list[dict]:
    """Links to errata, retractions, comments, updates… ('Cites' is the reference list: skipped)."""
    links = []
    for cc in citation.iterfind("CommentsCorrectionsList/CommentsCorrections"):
        ref_type = cc.get("RefType") or ""
        if ref_type == "Cites":
            continue
        pmid = _text(cc.find("PMID")) or None
        links.append({"ref_type": ref_type, "pmid": pmid, "source": flatten(cc.find("RefSource"))})
    return links


def _mesh_headings(headings: list, names: list[str], detail: list[dict]) -> None:
    """MeSH descriptors (names) and their qualifiers/major flags (detail) of MeshHeadingList elements."""
    for heading_list in headings:
        for heading in heading_list:
            if heading.tag != "MeshHeading":
                continue
            descriptor = None
            qualifiers = []
            for part in heading:
                tag = part.tag
                if tag == "DescriptorName":
                    if descriptor is None:
                        descriptor = part
                elif tag == "QualifierName":
                    text = part.text
                    qualifiers.append({
                        "name": (" ".join(text.split()) if text else "") if len(part) == 0 else flatten(part),
                        "ui": part.get("UI"), "major": part.get("MajorTopicYN") == "Y"})
            if descriptor is None:
                continue
            text = descriptor.text
            name = (" ".join(text.split()) if text else "") if len(descriptor) == 0 else flatten(descriptor)
            names.append(name)
            detail.append({"descriptor": name, "ui": descriptor.get("UI"),
                           "major": descriptor.get("MajorTopicYN") == "Y", "qualifiers": qualifiers})


def _article(elem: etree._Element) -> Record:
    """One PubmedArticle. Why single passes over children instead of find(path): lxml's path
    lookups cost microseconds each and an article needs dozens (this is the ingest hot path);
    each branch keeps the first element of its tag, as find() would."""
    citation = pubmed_data = None
    for child in elem:
        tag = child.tag
        if tag == "MedlineCitation":
            if citation is None:
                citation = child
        elif tag == "PubmedData":
            if pubmed_data is None:
                pubmed_data = child
    if citation is None:
        raise PubmedParseError(f"PubmedArticle without MedlineCitation (line {elem.sourceline})")
    pmid_el = article = medline_ta = None
    mesh_lists: list = []
    keywords: list[str] = []
    links: list[dict] = []
    revised = None
    for child in citation:
        tag = child.tag
        if tag == "Article":
            if article is None:
                article = child
        elif tag == "PMID":
            if pmid_el is None:
                pmid_el = child
        elif tag == "MeshHeadingList":
            mesh_lists.append(child)
        elif tag == "KeywordList":
            for kw in child:
                if kw.tag == "Keyword":
                    text = flatten(kw)
                    if text:
                        keywords.append(text)
        elif tag == "MedlineJournalInfo":
            if medline_ta is None:
                medline_ta = child.find("MedlineTA")
        elif tag == "CommentsCorrectionsList":
            links.extend(_links(child))
        elif tag == "DateRevised":
            if revised is None:
                revised = _date(child)
    pmid = _text(pmid_el)

    journal_el = title_el = vernacular_el = abstract_el = authors_el = language_el = article_date = None
    publication_types: list[str] = []
    eloc_doi = None
    if article is not None:
        for child in article:
            tag = child.tag
            if tag == "Journal":
                if journal_el is None:
                    journal_el = child
            elif tag == "ArticleTitle":
                if title_el is None:
                    title_el = child
            elif tag == "Abstract":
                if abstract_el is None:
                    abstract_el = child
            elif tag == "AuthorList":
                if authors_el is None:
                    authors_el = child
            elif tag == "Language":
                if language_el is None:
                    language_el = child
            elif tag == "PublicationTypeList":
                publication_types.extend(flatten(p) for p in child if p.tag == "PublicationType")
            elif tag == "ELocationID":
                if eloc_doi is None and child.get("EIdType") == "doi" and child.get("ValidYN", "Y") != "N":
                    eloc_doi = _text(child) or None
            elif tag == "ArticleDate":
                if article_date is None:
                    article_date = child
            elif tag == "VernacularTitle":
                if vernacular_el is None:
                    vernacular_el = child

    journal = _text(medline_ta)
    year = None
    if journal_el is not None:
        iso = journal_title = pub_date = None
        for child in journal_el:
            tag = child.tag
            if tag == "JournalIssue":
                if pub_date is None:
                    pub_date = child.find("PubDate")
            elif tag == "ISOAbbreviation":
                if iso is None:
                    iso = child
            elif tag == "Title":
                if journal_title is None:
                    journal_title = child
        journal = journal or _text(iso) or flatten(journal_title)
        year = _year_of(pub_date)
    if year is None:
        date = _date(article_date)
        year = int(date[:4]) if date else None

    doi = None
    history: dict[str, str] = {}
    if pubmed_data is not None:
        id_list = None
        for child in pubmed_data:
            tag = child.tag
            if tag == "History":
                for pub_date in child:
                    if pub_date.tag == "PubMedPubDate":
                        status = pub_date.get("PubStatus")
                        if status and status not in history:
                            value = _date(pub_date)
                            if value:
                                history[status] = value
            elif tag == "ArticleIdList":
                if id_list is None:
                    id_list = child
        doi = _doi_from_ids(id_list)
    if revised:
        history[DATE_REVISED] = revised
    mesh: list[str] = []
    mesh_detail: list[dict] = []
    _mesh_headings(mesh_lists, mesh, mesh_detail)
    title = flatten(title_el) or flatten(vernacular_el)
    return Record(
        pmid=pmid,
        title=title,
        abstract=_abstract(abstract_el),
        journal=journal,
        year=year,
        authors=_authors(authors_el),
        doi=doi or eloc_doi,
        mesh=mesh,
        publication_types=publication_types,
        language=_text(language_el) or None,
        comments_corrections=links,
        history=history,
        keywords=keywords,
        kind="article",
        mesh_detail=mesh_detail,
    )


def _links(cc_list: etree._Element) -> list[dict]:
    """CommentsCorrections of one list, 'Cites' (the reference list) skipped."""
    links = []
    for cc in cc_list:
        if cc.tag != "CommentsCorrections":
            continue
        ref_type = cc.get("RefType") or ""
        if ref_type == "Cites":
            continue
        links.append({"ref_type": ref_type, "pmid": _text(cc.find("PMID")) or None,
                      "source": flatten(cc.find("RefSource"))})
    return links


def _book(elem: etree._Element) -> Record:
    document = elem.find("BookDocument")
    if document is None:
        raise PubmedParseError(f"PubmedBookArticle without BookDocument (line {elem.sourceline})")
    book_data = elem.find("PubmedBookData")
    book = document.find("Book")
    book_title = flatten(book.find("BookTitle")) if book is not None else ""
    year = _year_of(book.find("PubDate")) if book is not None else None
    if year is None:
        contribution = _date(document.find("ContributionDate"))
        year = int(contribution[:4]) if contribution else None
    author_list = None
    for candidate in document.iterfind("AuthorList"):
        if candidate.get("Type", "authors") == "authors":
            author_list = candidate
            break
    doi = (_doi_from_ids(book_data.find("ArticleIdList") if book_data is not None else None)
           or _doi_from_ids(document.find("ArticleIdList")) or _doi_from_elocation(document))
    mesh, mesh_detail = _mesh(document)
    language = document.find("Language")
    history = _history(book_data)
    revised = _date(document.find("DateRevised"))
    if revised:
        history[DATE_REVISED] = revised
    return Record(
        pmid=_text(document.find("PMID")),
        title=flatten(document.find("ArticleTitle")) or book_title,
        abstract=_abstract(document.find("Abstract")),
        journal=book_title,
        year=year,
        authors=_authors(author_list),
        doi=doi,
        mesh=mesh,
        publication_types=[flatten(p) for p in document.iterfind("PublicationType")],
        language=_text(language) or None,
        comments_corrections=_comments_corrections(document),
        history=history,
        keywords=_keywords(document),
        kind="book",
        mesh_detail=mesh_detail,
    )


class _WithoutReferenceLists:
    """Binary stream minus every `<ReferenceList>…</ReferenceList>` block (nested ones included).

    Why: cited works are ~70% of a modern EFetch answer's bytes and are never used (they also hold
    the DOIs that must not be taken for the article's). Dropping them before lxml roughly doubles
    throughput. Each dropped block is replaced by the newlines it contained, so the line numbers of
    parse errors still point into the original file. A document truncated inside a reference list
    still fails (its elements stay unclosed).
    """

    OPEN, CLOSE = b"<ReferenceList", b"</ReferenceList>"

    def __init__(self, raw: BinaryIO, chunk_size: int = 1 << 18):
        self._raw, self._chunk_size = raw, chunk_size
        self._pending = b""  # unprocessed input (may end in a partial tag)
        self._out = bytearray()  # processed output not yet handed to the parser
        self._depth = 0
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._out) < size):
            chunk = self._raw.read(self._chunk_size)
            if not chunk:
                self._eof = True
            self._pending += chunk
            self._process()
        if size < 0 or size >= len(self._out):
            data, self._out = bytes(self._out), bytearray()
            return data
        data = bytes(self._out[:size])
        del self._out[:size]
        return data

    def _process(self) -> None:
        buf, pos, hold = self._pending, 0, 0 if self._eof else len(self.CLOSE)
        while True:
            if self._depth == 0:
                start = buf.find(self.OPEN, pos)
                if start < 0:
                    end = max(pos, len(buf) - hold)
                    self._out += buf[pos:end]
                    pos = end
                    break
                tag_end = buf.find(b">", start)
                if tag_end < 0:  # the opening tag is not complete yet
                    self._out += buf[pos:start]
                    pos = start if not self._eof else len(buf)
                    break
                self._out += buf[pos:start]
                self._out += b"\n" * buf.count(b"\n", start, tag_end + 1)
                pos = tag_end + 1
                if buf[tag_end - 1:tag_end] != b"/":  # not <ReferenceList/>
                    self._depth = 1
            else:
                close = buf.find(self.CLOSE, pos)
                nested = buf.find(self.OPEN, pos)
                if nested >= 0 and (close < 0 or nested < close):
                    tag_end = buf.find(b">", nested)
                    if tag_end < 0:
                        end = nested if not self._eof else len(buf)
                        self._out += b"\n" * buf.count(b"\n", pos, end)
                        pos = end
                        break
                    self._out += b"\n" * buf.count(b"\n", pos, tag_end + 1)
                    pos = tag_end + 1
                    if buf[tag_end - 1:tag_end] != b"/":
                        self._depth += 1
                elif close >= 0:
                    end = close + len(self.CLOSE)
                    self._out += b"\n" * buf.count(b"\n", pos, end)
                    pos = end
                    self._depth -= 1
                else:
                    end = max(pos, len(buf) - hold)
                    self._out += b"\n" * buf.count(b"\n", pos, end)
                    pos = end
                    break
        self._pending = buf[pos:]


_REF_OPEN, _REF_CLOSE = _WithoutReferenceLists.OPEN, _WithoutReferenceLists.CLOSE


_REF_NAME = b"ReferenceList"


def strip_reference_lists(data: bytes | bytearray, prefix: bytes = b"", suffix: bytes = b"",
                          length: int | None = None) -> bytes:
    """`prefix + data[:length] + suffix` minus every `<ReferenceList>` block, each replaced by its newlines.

    The in-memory twin of `_WithoutReferenceLists` (same output), for callers that hold the bytes
    anyway (ingest batches, read into a reused buffer, hence `length`): inside a list one C-level
    scan for the bare name finds both nested openings and closings; the kept parts are joined once.
    """
    find = data.find
    out = [prefix]
    pos, end_of_data = 0, len(data) if length is None else length
    start = find(_REF_OPEN, 0, end_of_data)
    while start >= 0:
        tag_end = find(b">", start, end_of_data)
        if tag_end < 0:  # truncated inside the opening tag: drop the rest, the parser reports it
            end = end_of_data
        elif data[tag_end - 1] == 0x2F:  # <ReferenceList/>
            end = tag_end + 1
        else:
            depth, end = 1, tag_end + 1
            while depth:
                hit = find(_REF_NAME, end, end_of_data)
                if hit < 0:  # truncated inside the list: drop the rest, its elements stay unclosed
                    end = end_of_data
                    break
                if data[hit - 2:hit] == b"</" and data[hit + 13:hit + 14] == b">" and hit + 14 <= end_of_data:  # </ReferenceList>
                    depth -= 1
                    end = hit + 14
                elif data[hit - 1] == 0x3C:  # <ReferenceList…: a titled sub-list inside this one
                    nested_end = find(b">", hit, end_of_data)
                    if nested_end < 0:
                        end = end_of_data
                        break
                    if data[nested_end - 1] != 0x2F:
                        depth += 1
                    end = nested_end + 1
                else:  # the name in text or another tag (<ReferenceListX>, </ReferenceList >)
                    end = hit + 13
        out.append(data[pos:start])
        newlines = data.count(b"\n", start, end)
        if newlines:
            out.append(b"\n" * newlines)
        pos = end
        start = find(_REF_OPEN, pos, end_of_data)
    out.append(data if pos == 0 and end_of_data == len(data) else data[pos:end_of_data])
    out.append(suffix)
    return b"".join(out)


def iter_pubmed(source: XmlInput, skip_references: bool = True) -> Iterator[Record | Deletion]:
    """Yield Records and Deletions in document order; raise PubmedParseError on bad XML."""
    name = _name(source)
    if skip_references and isinstance(source, (bytes, bytearray)) and source[:2] != b"\x1f\x8b":
        source, skip_references = strip_reference_lists(bytes(source)), False  # in memory already
    stream, owned = _open(source)
    context = etree.iterparse(
        _WithoutReferenceLists(stream) if skip_references else stream,
        events=("end",),
        tag=(_ARTICLE, _BOOK, _DELETE, "ERROR"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=True,
        remove_comments=True,
    )
    try:
        try:
            for _, elem in context:
                tag = elem.tag
                if tag == _ARTICLE:
                    item: Record | Deletion = _article(elem)
                elif tag == _BOOK:
                    item = _book(elem)
                elif tag == "ERROR":  # E-utilities report errors inside a 200 answer
                    raise PubmedParseError(
                        f"{name}: E-utilities returned <ERROR> at line {elem.sourceline}: {flatten(elem)}"
                    )
                else:
                    item = Deletion(tuple(_text(p) for p in elem.iterfind("PMID") if _text(p)))
                if isinstance(item, Record) and not item.pmid:
                    raise PubmedParseError(f"{name}: {tag} without PMID near line {elem.sourceline}")
                elem.clear(keep_tail=False)
                parent = elem.getparent()
                if parent is not None:
                    while elem.getprevious() is not None:
                        del parent[0]
                yield item
        except etree.XMLSyntaxError as exc:
            line = exc.position[0] if getattr(exc, "position", None) else getattr(exc, "lineno", "?")
            raise PubmedParseError(
                f"{name}: malformed or truncated PubMed XML at line {line}: {exc.msg}"
            ) from exc
        except (OSError, EOFError) as exc:  # e.g. a truncated .gz member
            raise PubmedParseError(f"{name}: unreadable PubMed XML stream: {exc}") from exc
        root = context.root
        if root is not None and root.tag != _ROOT:
            message = flatten(root.find(".//ERROR")) or flatten(root)[:200]
            raise PubmedParseError(
                f"{name}: expected <{_ROOT}>, got <{root.tag}>" + (f": {message}" if message else "")
            )
    finally:
        if owned:
            stream.close()


def iter_records(source: XmlInput) -> Iterator[Record]:
    """Records only (EFetch answers); deletions in update files are skipped."""
    for item in iter_pubmed(source):
        if isinstance(item, Record):
            yield item
