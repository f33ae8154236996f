from datetime import date

import pytest

from models.windows import Window, needs_split, next_window


def test_first_run_starts_at_strategy_start():
    w = next_window(date(1946, 1, 1), None, date(2026, 11, 28), 7)
    assert w == Window(date(1946, 1, 1), date(2026, 11, 28))


def test_later_run_overlaps_previous_window():
    w = next_window(date(1946, 1, 1), date(2026, 11, 27), date(2026, 11, 28), 7)
    assert w == Window(date(2026, 11, 20), date(2026, 11, 28))


def test_overlap_never_reaches_before_start_date():
    w = next_window(date(2026, 11, 25), date(2026, 11, 26), date(2026, 11, 28), 7)
    assert w.start == date(2026, 11, 25)


def test_halves_cover_window_without_gap_or_overlap():
    w = Window(date(2020, 1, 1), date(2020, 12, 31))
    a, b = w.halves()
    assert a.start == w.start and b.end == w.end
    assert (b.start - a.end).days == 1
    assert a.days + b.days == w.days


def test_single_day_cannot_split():
    with pytest.raises(ValueError, match="single day"):
        Window(date(2020, 1, 1), date(2020, 1, 1)).halves()


def test_inverted_window_rejected():
    with pytest.raises(ValueError):
        Window(date(2020, 1, 2), date(2020, 1, 1))


@pytest.mark.parametrize("count, split", [(0, False), (9_999, False), (10_000, True)])
def test_split_threshold(count, split):
    assert needs_split(count) is split
