"""The simulation protocol of issue #4 on 80 real records (tests/fixtures/screening)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.ranking.simulation import SimulationError, simulate_screening

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "screening" / "antihistamines_80.csv"


@pytest.fixture(scope="module")
def data():
    df = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False)
    return df["title"].tolist(), df["abstract"].tolist(), df["label_included"].astype(int).to_numpy()


def test_every_record_once_priors_first(data):
    t, a, y = data
    r = simulate_screening(t, a, y, seed=3, prior_included=2, prior_excluded=3)
    assert sorted(r.order) == list(range(len(y)))
    assert r.order[:5] == r.prior_idx and r.n_priors == 5
    assert y[r.order[:2]].tolist() == [1, 1] and y[r.order[2:5]].tolist() == [0, 0, 0]


def test_deterministic_per_seed_and_seed_matters(data):
    t, a, y = data
    assert simulate_screening(t, a, y, seed=7).order == simulate_screening(t, a, y, seed=7).order
    assert simulate_screening(t, a, y, seed=7).order != simulate_screening(t, a, y, seed=8).order


def test_a_label_is_used_only_after_its_record_is_screened(data):
    """Flipping the labels of records screened after position p cannot change the first p+1 choices."""
    t, a, y = data
    base = simulate_screening(t, a, y, seed=2).order
    p = 30
    flipped = y.copy()
    later = base[p:]
    flipped[later] = 1 - flipped[later]
    other = simulate_screening(t, a, flipped, seed=2, prior_idx=base[:2])
    assert other.order[: p + 1] == base[: p + 1]
    assert other.order != base  # the flipped labels do matter once they are revealed


def test_ranking_beats_random_order_on_real_records(data):
    t, a, y = data
    r = simulate_screening(t, a, y, seed=1)
    found_at_half = y[r.order[: len(y) // 2]].sum()
    assert found_at_half >= 0.75 * y.sum()  # random order would find about half


def test_fewer_includes_than_priors_is_refused(data):
    t, a, y = data
    with pytest.raises(SimulationError, match="fewer than"):
        simulate_screening(t, a, y, prior_included=17)
    with pytest.raises(SimulationError):
        simulate_screening(t, a, np.where(y == 1, 2, 0))
