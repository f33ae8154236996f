"""Search windows on PubMed's create date ([crdt]).

Why [crdt]: the Entrez date (EDAT) is reset when a late record is indexed, so a window on it can miss
records; the create date never moves. Each run re-covers the last `overlap_days` of the previous
window, and windows are halved until a search returns at most PubMed's 9,999 retrievable ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

MAX_IDS_PER_SEARCH = 9_999


@dataclass(frozen=True, order=True)
class Window:
    start: date
    end: date  # inclusive

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"window ends ({self.end}) before it starts ({self.start})")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def halves(self) -> tuple["Window", "Window"]:
        """Split in two; a one-day window cannot be split (PubMed dates have day resolution)."""
        if self.days < 2:
            raise ValueError(f"window {self} is a single day and cannot be split further")
        mid = self.start + timedelta(days=self.days // 2 - 1)
        return Window(self.start, mid), Window(mid + timedelta(days=1), self.end)

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def next_window(start_date: date, last_committed_end: date | None, today: date, overlap_days: int) -> Window:
    """The window this run searches: from the strategy's start date on the first run, afterwards from
    the last committed window's end minus the overlap, up to today."""
    if last_committed_end is None:
        start = start_date
    else:
        start = max(start_date, last_committed_end - timedelta(days=overlap_days))
    return Window(min(start, today), today)


def needs_split(count: int) -> bool:
    return count > MAX_IDS_PER_SEARCH
