"""Text helpers for templates: highlighting after escaping, structured abstracts, study slugs."""

from __future__ import annotations

import re
import unicodedata

from markupsafe import Markup, escape

_SECTION = re.compile(r"^([A-Z][A-Za-z0-9 ,/&()'-]{1,60}):\s*(.*)$", re.S)


def highlight(text: str | None, terms: list[str]) -> Markup:
    """Escape `text`, then wrap search terms (word starts, any case) in <mark>.

    Matching runs on the escaped text and skips character entities, so a term can never split
    '&lt;' or inject markup.
    """
    safe = str(escape(text or ""))
    terms = [t for t in (terms or []) if t and t.strip()]
    if not terms:
        return Markup(safe)
    alternatives = "|".join(re.escape(str(escape(t.strip()))) for t in sorted(terms, key=len, reverse=True))
    pattern = re.compile(rf"(&#?[A-Za-z0-9]+;)|\b((?:{alternatives})[\w-]*)", re.I)

    def sub(m: re.Match) -> str:
        if m.group(1):
            return m.group(1)
        return f"<mark>{m.group(2)}</mark>"

    return Markup(pattern.sub(sub, safe))


def abstract_sections(abstract: str | None) -> list[tuple[str | None, str]]:
    """[(label or None, text)]: the PubMed parser keeps sections as 'LABEL: text' lines."""
    out: list[tuple[str | None, str]] = []
    for line in (abstract or "").split("\n"):
        line = line.strip()
        if not line:
            continue
        m = _SECTION.match(line)
        if m and len(m.group(1).split()) <= 6:
            out.append((m.group(1), m.group(2)))
        else:
            out.append((None, line))
    return out


def _surname(authors: list[str] | None) -> str:
    """'van IJzendoorn' from 'van IJzendoorn MH' (PubMed: last name, then initials)."""
    if not authors:
        return ""
    parts = authors[0].replace(",", " ").split()
    return " ".join(parts[:-1]) if len(parts) > 1 else (parts[0] if parts else "")


def study_slug(authors: list[str] | None, year: int | None, fallback: str = "study") -> str:
    """'bernard-2012' from the first author's surname and the year."""
    surname = _surname(authors)
    base = unicodedata.normalize("NFKD", surname).encode("ascii", "ignore").decode().lower()
    base = re.sub(r"[^a-z0-9]+", "-", base).strip("-") or fallback
    return f"{base}-{year}" if year else base


def study_label(authors: list[str] | None, year: int | None) -> str:
    surname = _surname(authors)
    return " ".join(p for p in (surname, str(year) if year else "") if p) or "Study"
