"""PRISMA 2020 flow diagram (new reviews, database searches only) as standalone SVG.

Drawn from `warehouse.workspace.PrismaCounts`, so the same picture serves one update or the
cumulative review. Every text is XML-escaped: exclusion reasons come from the database.
"""

from __future__ import annotations

import textwrap
from xml.sax.saxutils import escape

from warehouse.workspace import PrismaCounts

_LINE = 17
_PAD = 10
_LEFT_X, _LEFT_W = 70, 330
_RIGHT_X, _RIGHT_W = 450, 300
_GAP = 26


def _lines(items: list[str], width_chars: int) -> list[str]:
    out: list[str] = []
    for it in items:
        indent = "    " if it.startswith("  ") else ""
        wrapped = textwrap.wrap(it.strip(), width_chars - len(indent)) or [""]
        out.extend(indent + w for w in wrapped)
    return out


def _box(x: int, y: int, w: int, lines: list[str], *, strong_first: bool = True, fill: str = "#ffffff") -> tuple[str, int]:
    h = _PAD * 2 + _LINE * len(lines)
    parts = [f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}" stroke="#5b6b7a" stroke-width="1.2"/>']
    for i, line in enumerate(lines):
        weight = ' font-weight="600"' if (i == 0 and strong_first) else ""
        ty = y + _PAD + _LINE * (i + 1) - 4
        parts.append(f'<text x="{x + 12}" y="{ty}"{weight} xml:space="preserve">{escape(line)}</text>')
    return "\n".join(parts), h


def _arrow_down(x: int, y1: int, y2: int) -> str:
    return f'<line x1="{x}" y1="{y1}" x2="{x}" y2="{y2 - 2}" stroke="#5b6b7a" stroke-width="1.4" marker-end="url(#arr)"/>'


def _arrow_right(x1: int, x2: int, y: int) -> str:
    return f'<line x1="{x1}" y1="{y}" x2="{x2 - 2}" y2="{y}" stroke="#5b6b7a" stroke-width="1.4" marker-end="url(#arr)"/>'


def prisma_svg(c: PrismaCounts, title: str | None = None) -> str:
    """The flow diagram for one set of counts."""
    lw, rw = 44, 40  # characters per line
    rows = []
    ident = [f"Records identified from PubMed (n = {c.identified})"]
    ident += [f"  {name}: {n}" for name, n in sorted(c.by_strategy.items())]
    rows.append(("Identification", _lines(ident, lw),
                 _lines(["Records removed before screening:", f"  Duplicate records (n = {c.duplicates})"], rw)))
    screened = [f"Records screened (n = {c.screened_done})"]
    if c.awaiting_screening:  # a living review shows what is still waiting, not as an exclusion
        screened.append(f"  Awaiting screening (n = {c.awaiting_screening})")
    right = [f"Records excluded (n = {c.excluded_screening})"]
    rows.append(("Screening", _lines(screened, lw), _lines(right, rw)))
    right = [f"Reports not yet assessed (n = {c.awaiting_full_text})"]
    rows.append(("", _lines([f"Reports sought for retrieval (n = {c.sought})"], lw), _lines(right, rw)))
    excl = [f"Reports excluded (n = {c.excluded_full_text_total})"]
    excl += [f"  {reason} (n = {n})" for reason, n in c.excluded_full_text.items()]
    rows.append(("", _lines([f"Reports assessed for eligibility (n = {c.assessed})"], lw), _lines(excl, rw)))
    rows.append(("Included", _lines([f"Studies included in review (n = {c.included})"], lw), None))

    body: list[str] = []
    y = 46 if title else 14
    phase_spans: dict[str, list[int]] = {}
    prev_bottom = None
    current_phase = ""
    for phase, left, right in rows:
        if phase:
            current_phase = phase
        lh = _PAD * 2 + _LINE * len(left)
        rh = (_PAD * 2 + _LINE * len(right)) if right else 0
        row_h = max(lh, rh)
        single_row_phase = phase and (rows.index((phase, left, right)) + 1 == len(rows)
                                      or rows[rows.index((phase, left, right)) + 1][0])
        if single_row_phase:  # the rotated phase label must fit its band
            row_h = max(row_h, int(len(phase) * 7.6) + 20)
        ly = y + (row_h - lh) // 2
        svg, _ = _box(_LEFT_X, ly, _LEFT_W, left, fill="#f5f8fc")
        body.append(svg)
        if right:
            ry = y + (row_h - rh) // 2
            svg, _ = _box(_RIGHT_X, ry, _RIGHT_W, right, fill="#ffffff")
            body.append(svg)
            body.append(_arrow_right(_LEFT_X + _LEFT_W, _RIGHT_X, y + row_h // 2))
        if prev_bottom is not None:
            body.append(_arrow_down(_LEFT_X + _LEFT_W // 2, prev_bottom, ly))
        prev_bottom = ly + lh
        span = phase_spans.setdefault(current_phase, [y, y + row_h])
        span[1] = y + row_h
        y += row_h + _GAP
    height = y - _GAP + 14
    bands = []
    for phase, (top, bottom) in phase_spans.items():
        mid = (top + bottom) / 2
        bands.append(f'<rect x="14" y="{top}" width="38" height="{bottom - top}" rx="6" fill="#dbe7f3"/>')
        bands.append(f'<text x="33" y="{mid}" transform="rotate(-90 33 {mid})" text-anchor="middle" '
                     f'dominant-baseline="middle" font-weight="600">{escape(phase)}</text>')
    head = f'<text x="14" y="26" font-size="16" font-weight="600">{escape(title)}</text>' if title else ""
    label = escape(title or "PRISMA 2020 flow diagram")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 770 {height}" width="770" height="{height}" '
        f'role="img" aria-label="{label}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="13" fill="#1d2733">'
        f"<title>{label}</title>"
        '<defs><marker id="arr" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#5b6b7a"/></marker></defs>'
        + head + "\n".join(bands) + "\n" + "\n".join(body) + "</svg>"
    )
