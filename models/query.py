"""Evaluate PubMed boolean search syntax locally, over Records (for the offline snapshot source).

Why: the default run has no internet, yet the review's real strategies (review.toml) must select
records the way PubMed would. Semantics follow PubMed's documented rules where they can be known
offline:

* AND / OR / NOT (upper case) are applied strictly **left to right**; parentheses group; two terms
  side by side with no operator are ANDed. Lower-case and/or/not are ordinary words.
* Quoted phrases, field tags (`[tiab]`, `[Title/Abstract]`, `[mh]`, `[mh:noexp]`, `[majr]`, `[sh]`,
  `[pt]`, `[ta]`, `[au]`, `[la]`, `[dp]`, `[crdt]`, `[edat]`, `[pmid]`, `[ot]`, `[sb]`, `[all]`…), unquoted multi-word
  terms before a tag (`drug therapy[sh]`), trailing truncation `*` (also inside a phrase).
* Text is matched word by word after casefolding, stripping accents and turning punctuation into
  spaces (so `VIPP-SD[tiab]` is the phrase "vipp sd"). `[tiab]` covers title, abstract and keywords.
* Offline approximations (no MeSH tree here): `[mh]` matches the descriptor itself and descriptors
  named "<term>, …" (e.g. "Child"[mh] also finds "Child, Preschool"); `[mh:noexp]` only the
  descriptor. `[pt]` explodes the trial types via a small table. `[dp]` compares years. `[sb]`
  knows `all` and `medline` (= has MeSH). Untagged bare words are ANDed without PubMed's stopwords.
  Proximity `"a b"[tiab:~N]`: the words within N words of each other, any order.

Compile once (`compile_query`), then call `.matches()` per record; wrap records in `Document` to
reuse the normalised text across several queries.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Callable, Iterable, Iterator

from models.records import LIGATURES, Record


class QuerySyntaxError(ValueError):
    """A query PubMed would reject or that this evaluator cannot read (message names the position)."""


_COMBINING = re.compile(r"[\u0300-\u036f]")
_SPACES = re.compile(r"\s+")
_SEP = " ~ "  # phrase boundary between fields (never produced by normalisation)


_ASCII_PUNCT = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})
_ASCII_BYTES = bytes(c if chr(c).isalnum() and c < 128 else 32 for c in range(256))


def _fold_char(match: re.Match) -> str:
    char = match.group()
    folded = _FOLDED.get(char)
    if folded is None:
        ligature = LIGATURES.get(ord(char))
        if ligature is not None:
            folded = ligature.casefold()
        elif unicodedata.combining(char):
            folded = ""
        elif char.isalnum():
            folded = char.casefold()
        else:
            folded = " "
        _FOLDED[char] = folded
    return folded


_FOLDED: dict[str, str] = {}
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def normalise_text(text: str) -> str:
    """Casefolded words without accents or punctuation, single-spaced."""
    if not text:
        return ""
    if text.isascii():  # the common case: a byte-table translation in C
        return " ".join(text.encode("ascii").lower().translate(_ASCII_BYTES).decode("ascii").split())
    # Fold only the non-ASCII characters in Python (accents dropped, ligatures spelt out, symbols to
    # spaces); what is left is usually ASCII again and takes the byte-table path.
    text = _NON_ASCII.sub(_fold_char, unicodedata.normalize("NFKD", text))
    if text.isascii():
        return " ".join(text.encode("ascii").lower().translate(_ASCII_BYTES).decode("ascii").split())
    return " ".join(text.lower().translate(_ASCII_PUNCT).split())


def normalise_label(text: str) -> str:
    """Controlled-vocabulary value (MeSH, publication type, journal) casefolded, accents stripped."""
    if not text:
        return ""
    if text.isascii():
        return " ".join(text.lower().split()).rstrip(".")
    text = _COMBINING.sub("", unicodedata.normalize("NFKD", text.translate(LIGATURES))).casefold()
    return _SPACES.sub(" ", text).strip().rstrip(".")


# Field tags: PubMed's short and long names -> canonical field.
_TAGS = {
    "tiab": "tiab", "title/abstract": "tiab",
    "ti": "ti", "title": "ti",
    "ab": "ab", "abstract": "ab",
    "tw": "all", "text word": "all", "all": "all", "all fields": "all",
    "mh": "mh", "mesh": "mh", "mesh terms": "mh", "mesh term": "mh",
    "mh:noexp": "mh_noexp", "mesh:noexp": "mh_noexp", "mesh terms:noexp": "mh_noexp",
    "majr": "majr", "mesh major topic": "majr", "majr:noexp": "majr_noexp",
    "sh": "sh", "subheading": "sh", "mesh subheading": "sh",
    "pt": "pt", "publication type": "pt",
    "ta": "ta", "journal": "ta", "jour": "ta", "jt": "ta",
    "au": "au", "author": "au", "auth": "au",
    "la": "la", "language": "la", "lang": "la",
    "dp": "dp", "pdat": "dp", "publication date": "dp",
    "crdt": "crdt", "create date": "crdt",
    "edat": "edat", "entry date": "edat", "entrez date": "edat",
    "mhda": "mhda", "mesh date": "mhda",
    "pmid": "pmid", "uid": "pmid",
    "ot": "ot", "other term": "ot", "kw": "ot", "keyword": "ot",
    "sb": "sb", "subset": "sb", "filter": "sb",
}

# The publication-type hierarchy that matters for trial filters (MeSH PT tree V03.175.250).
_PT_EXPLODE = {
    "clinical trial": {
        "clinical trial", "clinical trial, phase i", "clinical trial, phase ii", "clinical trial, phase iii",
        "clinical trial, phase iv", "controlled clinical trial", "randomized controlled trial",
        "pragmatic clinical trial", "equivalence trial", "adaptive clinical trial",
    },
    "controlled clinical trial": {"controlled clinical trial", "randomized controlled trial"},
}

_LANGUAGES = {
    "english": "eng", "french": "fre", "german": "ger", "spanish": "spa", "italian": "ita",
    "portuguese": "por", "dutch": "dut", "norwegian": "nor", "swedish": "swe", "danish": "dan",
    "finnish": "fin", "russian": "rus", "chinese": "chi", "japanese": "jpn", "korean": "kor",
    "polish": "pol", "turkish": "tur", "hebrew": "heb", "arabic": "ara", "greek": "gre",
    "czech": "cze", "hungarian": "hun", "persian": "per", "croatian": "hrv", "romanian": "rum",
}

_PROXIMITY = re.compile(r"^(tiab|ti|ab|title/abstract|title|abstract):~(\d+)$")

# PubMed's stopwords: ignored when untagged bare words are ANDed (never inside phrases).
_STOPWORDS = frozenset("""
a about again all almost also although always among an and another any are as at be because been
before being between both but by can could did do does done due during each either enough
especially etc for found from further had has have having here how however i if in into is it its
itself just kg km made mainly make may mg might ml mm most mostly must nearly neither no nor obtained
of often on our overall perhaps pmid quite rather really regarding seem seen several should show
showed shown shows significantly since so some such than that the their theirs them then there
therefore these they this those through thus to upon use used using various very was we were what
when which while with within without would
""".split())

_DATE_FIELDS = {"crdt": "entrez", "edat": "pubmed", "mhda": "medline"}


class Document:
    """A Record with its normalised fields computed lazily, once (reused across queries)."""

    __slots__ = ("record", "__dict__")

    def __init__(self, record: Record):
        self.record = record

    @staticmethod
    def of(item: "Record | Document") -> "Document":
        return item if isinstance(item, Document) else Document(item)

    @staticmethod
    def _pad(*parts: str) -> str:
        return " " + _SEP.join(p for p in parts if p) + " "

    @cached_property
    def title(self) -> str:
        return normalise_text(self.record.title)

    @cached_property
    def abstract(self) -> str:
        return normalise_text(self.record.abstract)

    @cached_property
    def keywords(self) -> list[str]:
        return [normalise_text(k) for k in self.record.keywords]

    @cached_property
    def ti(self) -> str:
        return self._pad(self.title)

    @cached_property
    def ab(self) -> str:
        return self._pad(self.abstract)

    @cached_property
    def ot(self) -> str:
        return self._pad(*self.keywords)

    @cached_property
    def tiab(self) -> str:
        return self._pad(self.title, self.abstract, *self.keywords)

    @cached_property
    def all(self) -> str:
        r = self.record
        qualifiers = [q.get("name", "") for m in (getattr(r, "mesh_detail", None) or []) for q in m.get("qualifiers", [])]
        return self._pad(
            self.title, self.abstract, *self.keywords,
            *(normalise_text(x) for x in (*r.mesh, *qualifiers, *r.publication_types, r.journal, *r.authors)),
        )

    @cached_property
    def mesh(self) -> frozenset[str]:
        return frozenset(normalise_label(m) for m in self.record.mesh)

    @cached_property
    def majr(self) -> frozenset[str]:
        detail = getattr(self.record, "mesh_detail", None) or []
        return frozenset(
            normalise_label(m.get("descriptor", "")) for m in detail
            if m.get("major") or any(q.get("major") for q in m.get("qualifiers", []))
        )

    @cached_property
    def sh(self) -> frozenset[str]:
        detail = getattr(self.record, "mesh_detail", None) or []
        return frozenset(normalise_label(q.get("name", "")) for m in detail for q in m.get("qualifiers", []))

    @cached_property
    def pt(self) -> frozenset[str]:
        return frozenset(normalise_label(p) for p in self.record.publication_types)

    @cached_property
    def ta(self) -> frozenset[str]:
        return frozenset({normalise_label(self.record.journal)} - {""})

    @cached_property
    def au(self) -> tuple[str, ...]:
        return tuple(normalise_text(a) for a in self.record.authors)


Matcher = Callable[[Document], bool]


@dataclass(frozen=True)
class _Token:
    kind: str  # "(" ")" "op" "term"
    value: str
    pos: int
    tag: str | None = None
    quoted: bool = False


_OPERATORS = {"AND", "OR", "NOT"}
_STOP = set(' \t\r\n()"[')


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)

    def read_tag(j: int) -> tuple[str | None, int]:
        k = j
        while k < n and query[k] in " \t\r\n":
            k += 1
        if k < n and query[k] == "[":
            end = query.find("]", k)
            if end < 0:
                raise QuerySyntaxError(f"unclosed '[' at character {k}")
            tag = query[k + 1:end].strip().lower()
            proximity = _PROXIMITY.match(tag)
            if proximity:  # "a b"[tiab:~3]: PubMed's proximity search
                return f"near:{_TAGS[proximity.group(1)]}:{proximity.group(2)}", end + 1
            if tag not in _TAGS:
                raise QuerySyntaxError(f"unknown field tag [{query[k + 1:end]}] at character {k}")
            return _TAGS[tag], end + 1
        return None, j

    while i < n:
        ch = query[i]
        if ch in " \t\r\n":
            i += 1
        elif ch in "()":
            tokens.append(_Token(ch, ch, i))
            i += 1
        elif ch == "[":
            raise QuerySyntaxError(f"field tag without a term at character {i}")
        elif ch == "]":
            raise QuerySyntaxError(f"unexpected ']' at character {i}")
        elif ch == '"':
            end = query.find('"', i + 1)
            if end < 0:
                raise QuerySyntaxError(f"unclosed quote at character {i}")
            phrase = query[i + 1:end].strip()
            if not phrase:
                raise QuerySyntaxError(f"empty phrase at character {i}")
            tag, j = read_tag(end + 1)
            tokens.append(_Token("term", phrase, i, tag, quoted=True))
            i = j
        else:
            # A run of bare words up to an operator, bracket, quote or tag: `drug therapy[sh]`.
            start, words, j = i, [], i
            while j < n:
                k = j
                while k < n and query[k] not in _STOP and query[k] != "]":
                    k += 1
                word = query[j:k]
                if word in _OPERATORS:
                    break
                words.append(word)
                j = k
                while j < n and query[j] in " \t\r\n":
                    j += 1
                if j >= n or query[j] in '()"[]':
                    break
                peek = j
                while peek < n and query[peek] not in _STOP and query[peek] != "]":
                    peek += 1
                if query[j:peek] in _OPERATORS:
                    break
            if not words:  # an operator
                k = i
                while k < n and query[k] not in _STOP:
                    k += 1
                tokens.append(_Token("op", query[i:k], i))
                i = k
                continue
            tag, j2 = read_tag(j if j <= n else n)
            tokens.append(_Token("term", " ".join(words), start, tag))
            i = j2 if tag else j
    return tokens


def _word_pattern(word: str) -> str:
    if word.endswith("*"):
        stem = word[:-1]
        return re.escape(stem) + r"[^ ]*"
    return re.escape(word)


def _split_words(raw: str, pos: int) -> list[str]:
    """Normalised words of a term, keeping a trailing `*` (truncation) on the word it ends."""
    words: list[str] = []
    for chunk in raw.split():
        truncated = chunk.endswith("*")
        core = chunk.rstrip("*")
        if "*" in core:
            raise QuerySyntaxError(f"'*' is only allowed at the end of a word (character {pos}: {raw!r})")
        parts = normalise_text(core).split()
        if not parts:
            if truncated:
                raise QuerySyntaxError(f"truncation '*' needs a word stem (character {pos}: {raw!r})")
            continue
        if truncated:
            parts[-1] += "*"
        words.extend(parts)
    return words


def _text_matcher(field: str, words: list[str], phrase: bool) -> Matcher:
    """Match words (or one phrase) in a padded normalised field of a Document."""
    if not words:
        return lambda d: False
    if not phrase and len(words) > 1:
        subs = [_text_matcher(field, [w], True) for w in words]
        return lambda d: all(m(d) for m in subs)
    if not any(w.endswith("*") for w in words):
        needle = " " + " ".join(words) + " "
        return lambda d: needle in getattr(d, field)
    pattern = re.compile(" " + " ".join(_word_pattern(w) for w in words) + "(?= )")
    return lambda d: pattern.search(getattr(d, field)) is not None


def _label_matcher(field: str, raw: str, explode: bool) -> Matcher:
    value = normalise_label(raw)
    if value.endswith("*"):
        stem = value.rstrip("*")
        return lambda d: any(v.startswith(stem) for v in getattr(d, field))
    if field == "pt" and value in _PT_EXPLODE:
        accepted = frozenset(_PT_EXPLODE[value])
        return lambda d: not d.pt.isdisjoint(accepted)
    if explode:
        prefix = value + ", "
        return lambda d: value in getattr(d, field) or any(v.startswith(prefix) for v in getattr(d, field))
    return lambda d: value in getattr(d, field)


def _author_matcher(raw: str) -> Matcher:
    value = normalise_text(raw.rstrip("*"))
    truncated = raw.endswith("*")
    if not value:
        raise QuerySyntaxError(f"empty author term {raw!r}")

    def match(d: Document) -> bool:
        for author in d.au:
            if author == value or author.startswith(value + " "):
                return True
            if (truncated or " " in value) and author.startswith(value):
                return True  # "bernard k" also finds "bernard km"
        return False

    return match


def _parse_date(text: str, pos: int) -> tuple[str, str]:
    """'2019', '2019/03', '2019/03/05' -> (first day, last day) as YYYY-MM-DD strings."""
    parts = text.strip().replace("-", "/").split("/")
    if not parts[0].isdigit() or len(parts[0]) != 4 or len(parts) > 3 or not all(p.isdigit() for p in parts):
        raise QuerySyntaxError(f"bad date {text!r} at character {pos} (use YYYY, YYYY/MM or YYYY/MM/DD)")
    year = parts[0]
    month = f"{int(parts[1]):02d}" if len(parts) > 1 else None
    day = f"{int(parts[2]):02d}" if len(parts) > 2 else None
    low = f"{year}-{month or '01'}-{day or '01'}"
    high = f"{year}-{month or '12'}-{day or '31'}"
    return low, high


def _date_matcher(field: str, raw: str, pos: int) -> Matcher:
    if ":" in raw:
        first, _, last = raw.partition(":")
        low, _ = _parse_date(first, pos)
        _, high = _parse_date(last, pos)
    else:
        low, high = _parse_date(raw, pos)
    if field == "dp":
        low_year, high_year = int(low[:4]), int(high[:4])
        return lambda d: d.record.year is not None and low_year <= d.record.year <= high_year
    status = _DATE_FIELDS[field]

    def match(d: Document) -> bool:
        value = d.record.history.get(status)
        return value is not None and low <= value[:10] <= high

    return match


def _proximity_matcher(field: str, words: list[str], distance: int, pos: int) -> Matcher:
    """All words within `distance` words of each other, in any order (PubMed [tiab:~N])."""
    if len(words) < 2 or any(w.endswith("*") for w in words):
        raise QuerySyntaxError(f"proximity search at character {pos} needs a quoted phrase of 2+ words, no '*'")
    needles = [f" {w} " for w in words]
    targets = set(words)

    def match(d: Document) -> bool:
        text = getattr(d, field)
        if not all(n in text for n in needles):  # cheap pre-check before counting positions
            return False
        hits = [(i, t) for i, t in enumerate(text.split()) if t in targets]
        need, have, start = len(targets), {}, 0
        for end, (position, word) in enumerate(hits):  # smallest window holding every word
            have[word] = have.get(word, 0) + 1
            while len(have) == need:
                first_position, first_word = hits[start]
                if position - first_position - (len(words) - 1) <= distance:
                    return True
                have[first_word] -= 1
                if not have[first_word]:
                    del have[first_word]
                start += 1
        return False

    return match


def _leaf(token: _Token) -> Matcher:
    field = token.tag or "all"
    raw = token.value
    if field.startswith("near:"):
        _, near_field, distance = field.split(":")
        if near_field not in ("tiab", "ti", "ab"):
            raise QuerySyntaxError(f"proximity search works on [tiab], [ti] or [ab] (character {token.pos})")
        return _proximity_matcher(near_field, _split_words(raw, token.pos), int(distance), token.pos)
    if field in ("tiab", "ti", "ab", "all", "ot"):
        words = _split_words(raw, token.pos)
        if not words:
            raise QuerySyntaxError(f"term without words at character {token.pos}: {raw!r}")
        # Quoted or tagged multi-word terms are phrases; untagged bare words are ANDed (as PubMed
        # does when automatic term mapping finds no phrase).
        phrase = token.quoted or token.tag is not None
        if not phrase and len(words) > 1:
            words = [w for w in words if w not in _STOPWORDS] or words
        return _text_matcher(field, words, phrase)
    if field in ("mh", "mh_noexp"):
        return _label_matcher("mesh", raw, explode=field == "mh")
    if field in ("majr", "majr_noexp"):
        return _label_matcher("majr", raw, explode=field == "majr")
    if field in ("sh", "pt", "ta"):
        return _label_matcher(field, raw, explode=False)
    if field == "au":
        return _author_matcher(raw)
    if field == "la":
        value = normalise_label(raw)
        code = _LANGUAGES.get(value, value)
        return lambda d: (d.record.language or "").casefold() == code
    if field in ("dp", "crdt", "edat", "mhda"):
        return _date_matcher(field, raw, token.pos)
    if field == "sb":
        subset = normalise_label(raw)
        if subset == "all":
            return lambda d: True
        if subset == "medline":  # offline approximation: MEDLINE-indexed records carry MeSH
            return lambda d: bool(d.record.mesh)
        raise QuerySyntaxError(f"subset {raw!r}[sb] cannot be evaluated offline (only all, medline)")
    if field == "pmid":
        value = raw.strip()
        return lambda d: d.record.pmid == value
    raise QuerySyntaxError(f"unsupported field [{field}]")  # pragma: no cover - _TAGS is closed


class _Parser:
    def __init__(self, tokens: list[_Token], query: str):
        self.tokens, self.query, self.i = tokens, query, 0

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def expression(self, depth: int) -> Matcher:
        left = self.operand(depth)
        while True:
            token = self.peek()
            if token is None or token.kind == ")":
                if token is not None and depth == 0:
                    raise QuerySyntaxError(f"unexpected ')' at character {token.pos}")
                return left
            if token.kind == "op":
                op = token.value
                self.i += 1
                if self.peek() is None:
                    raise QuerySyntaxError(f"{op} at character {token.pos} has nothing on its right")
            else:
                op = "AND"  # adjacency
            right = self.operand(depth)
            left = _combine(op, left, right)

    def operand(self, depth: int) -> Matcher:
        token = self.peek()
        if token is None:
            raise QuerySyntaxError("query ends where a term was expected")
        if token.kind == "(":
            self.i += 1
            if self.peek() is not None and self.peek().kind == ")":
                raise QuerySyntaxError(f"empty parentheses at character {token.pos}")
            inner = self.expression(depth + 1)
            closing = self.peek()
            if closing is None or closing.kind != ")":
                raise QuerySyntaxError(f"unclosed '(' at character {token.pos}")
            self.i += 1
            return inner
        if token.kind == "term":
            self.i += 1
            return _leaf(token)
        if token.kind == "op":
            raise QuerySyntaxError(f"{token.value} at character {token.pos} has nothing on its left")
        raise QuerySyntaxError(f"unexpected ')' at character {token.pos}")


class _Chain:
    """A left-to-right run of one operator, flattened (a OR b OR c) so evaluation is one loop."""

    __slots__ = ("op", "parts")

    def __init__(self, op: str, parts: tuple[Matcher, ...]):
        self.op, self.parts = op, parts

    def __call__(self, d: Document) -> bool:
        parts = self.parts
        if self.op == "OR":
            for part in parts:
                if part(d):
                    return True
            return False
        if not parts[0](d):
            return False
        if self.op == "AND":
            for part in parts[1:]:
                if not part(d):
                    return False
            return True
        for part in parts[1:]:  # NOT: a NOT b NOT c == a AND NOT b AND NOT c
            if part(d):
                return False
        return True


def _combine(op: str, left: Matcher, right: Matcher) -> Matcher:
    if isinstance(left, _Chain) and left.op == op:
        return _Chain(op, left.parts + (right,))
    return _Chain(op, (left, right))


class CompiledQuery:
    """A query compiled to a predicate over Documents/Records."""

    def __init__(self, query: str, matcher: Matcher):
        self.query = query
        self._matcher = matcher

    def matches(self, item: Record | Document) -> bool:
        return self._matcher(Document.of(item))

    def filter(self, items: Iterable[Record | Document]) -> Iterator[Record]:
        for item in items:
            doc = Document.of(item)
            if self._matcher(doc):
                yield doc.record

    def __repr__(self) -> str:
        return f"CompiledQuery({self.query!r})"


@lru_cache(maxsize=64)
def compile_query(query: str) -> CompiledQuery:
    """Parse once; raise QuerySyntaxError with the character position on bad input."""
    if not isinstance(query, str) or not query.strip():
        raise QuerySyntaxError("empty query")
    tokens = _tokenize(query)
    if not tokens:
        raise QuerySyntaxError("empty query")
    parser = _Parser(tokens, query)
    matcher = parser.expression(0)
    if parser.peek() is not None:  # pragma: no cover - expression() consumes or raises
        raise QuerySyntaxError(f"unexpected input at character {parser.peek().pos}")
    return CompiledQuery(query, matcher)


def matches(query: str, record: Record | Document) -> bool:
    return compile_query(query).matches(record)
