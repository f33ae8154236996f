"""The one record shape every part of the review shares (parser, sources, warehouse, ranking, web).

Pure data + the two keys dedupe needs: a content hash (did the citation change upstream?) and a
title key (same paper under another PMID/DOI?).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field, fields
from typing import Any

KINDS = ("article", "book", "citation")

# Fields that describe the citation itself. Retrieval bookkeeping (history dates, which change
# when NLM re-indexes) and extras are left out so that re-fetching an unchanged paper hashes equal.
_HASHED_FIELDS = (
    "pmid",
    "title",
    "abstract",
    "journal",
    "year",
    "authors",
    "doi",
    "mesh",
    "publication_types",
    "language",
    "comments_corrections",
    "keywords",
    "kind",
)

# json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str), without
# building an encoder per call (hashing runs once per ingested record). Changing it changes every hash.
_HASH_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)

_DOI_PREFIX = re.compile(r"^\s*(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", re.IGNORECASE)


def normalise_doi(doi: str | None) -> str | None:
    """Lower-case DOI without resolver/`doi:` prefixes; None for empty (DOIs are case-insensitive)."""
    if doi is None:
        return None
    value = str(doi).strip()
    if value[:3] == "10.":  # a bare DOI (nearly all): no prefix for the pattern to remove
        return value.lower()
    value = _DOI_PREFIX.sub("", value).strip()
    return value.lower() or None


# Letters that NFKD does not decompose but readers treat as plain Latin.
LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O",
                            "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ß": "ss"})


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(LIGATURES))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalise_title(title: str) -> str:
    """Casefolded, accent-free title with punctuation and whitespace collapsed to single spaces."""
    title = title or ""
    # ASCII titles (most) have no accents or ligatures: skip the per-character NFKD filter.
    text = (title if title.isascii() else _strip_accents(title)).casefold()
    text = re.sub(r"[^\w]+", " ", text)  # punctuation (incl. the trailing period) -> space
    text = text.replace("_", " ")
    return " ".join(text.split())


@dataclass
class Record:
    pmid: str
    title: str = ""
    abstract: str = ""
    journal: str = ""
    year: int | None = None
    authors: list[str] = field(default_factory=list)
    doi: str | None = None
    mesh: list[str] = field(default_factory=list)
    publication_types: list[str] = field(default_factory=list)
    language: str | None = None
    comments_corrections: list[dict] = field(default_factory=list)
    history: dict[str, str] = field(default_factory=dict)
    keywords: list[str] = field(default_factory=list)
    kind: str = "article"
    # Optional extra: MeSH descriptors with qualifiers and major-topic flags
    # ([{"descriptor", "ui", "major", "qualifiers": [{"name", "major"}]}]). Not hashed.
    mesh_detail: list[dict] = field(default_factory=list, compare=False, repr=False)

    def content_hash(self) -> str:
        """sha256 over the citation content (not history dates), stable across runs and processes."""
        payload = {  # the _HASHED_FIELDS, spelled out (hot: once per ingested record)
            "pmid": self.pmid, "title": self.title, "abstract": self.abstract, "journal": self.journal,
            "year": self.year, "authors": self.authors, "doi": normalise_doi(self.doi), "mesh": self.mesh,
            "publication_types": self.publication_types, "language": self.language,
            "comments_corrections": self.comments_corrections, "keywords": self.keywords, "kind": self.kind,
        }
        blob = _HASH_ENCODER.encode(payload)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def title_key(self) -> str:
        """Normalised title + `|year`, the last-resort duplicate key (after PMID and DOI)."""
        year = "" if self.year is None else str(self.year)
        return f"{normalise_title(self.title)}|{year}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Record":
        """Inverse of to_dict; tolerant of JSON-decoded/DB values (None lists, string years, unknown keys)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("authors", "mesh", "publication_types", "keywords", "comments_corrections", "mesh_detail"):
            value = values.get(name)
            if isinstance(value, str):
                value = json.loads(value) if value.strip() else []
            values[name] = list(value) if value is not None else []
        history = values.get("history")
        if isinstance(history, str):
            history = json.loads(history) if history.strip() else {}
        values["history"] = dict(history) if history else {}
        year = values.get("year")
        if year is not None and year != "":
            values["year"] = int(year)
        else:
            values["year"] = None
        values["pmid"] = str(values["pmid"])
        for name in ("title", "abstract", "journal"):
            if values.get(name) is None:
                values[name] = ""
        values.setdefault("kind", "article")
        if values.get("kind") not in KINDS:
            raise ValueError(f"unknown record kind {values.get('kind')!r}; expected one of {KINDS}")
        return cls(**values)
