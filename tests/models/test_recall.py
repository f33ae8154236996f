"""Recall bound: exact known values, monotonicity, and the coverage guarantee by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import hypergeom

from models.recall import (audit_key, binomial_upper_bound, buscar_p_value, estimate_recall, hypergeom_upper_bound, in_audit,
                           recall_bound, records_to_reach, simulate_stopping)


def test_hypergeom_upper_bound_known_values():
    assert hypergeom_upper_bound(100, 100, 3, 0.05) == 3          # the whole pool was sampled
    assert hypergeom_upper_bound(100, 0, 0, 0.05) == 100          # nothing sampled: anything goes
    k = hypergeom_upper_bound(1000, 100, 0, 0.05)
    # definition: P(X ≤ 0 | K) > α at K, ≤ α at K + 1
    assert hypergeom.cdf(0, 1000, k, 100) > 0.05 >= hypergeom.cdf(0, 1000, k + 1, 100)
    assert k == 28
    with pytest.raises(ValueError):
        hypergeom_upper_bound(10, 5, 6, 0.05)


def test_buscar_p_value_matches_the_paper_formula():
    # 90 found by ranking, 0 of 200 random remaining records relevant, 1,000 remaining, target 95%
    k_hat = int(90 / 0.95 - 90 + 1)  # 5
    assert buscar_p_value(1000, 200, 0, 90, 0.95) == pytest.approx(hypergeom.cdf(0, 1000, k_hat, 200))
    assert buscar_p_value(1000, 200, 0, 90, 0.95) < 0.5


def test_recall_bound_values_and_failure_modes():
    assert recall_bound(10, 50, 0, 0)[0] == 1.0  # nothing unscreened
    lb, missed = recall_bound(found=40, audited=200, audit_hits=0, unscreened=800)
    assert missed == hypergeom_upper_bound(1000, 200, 0, 0.05)
    assert lb == pytest.approx(40 / (40 + missed))
    assert recall_bound(40, 0, 0, 800)[0] == pytest.approx(40 / 840)  # no audit: only the trivial bound
    assert recall_bound(40, 400, 0, 600)[0] > lb  # more audit evidence, tighter bound
    with pytest.raises(ValueError):
        recall_bound(1, 5, 6, 10)


def test_records_to_reach_target():
    est = estimate_recall(found=40, audited=100, audit_hits=0, screened=500, unscreened=900, target=0.9)
    assert est.recall_lower_bound < 0.9
    n = est.records_to_screen_for_target
    assert 0 < n <= 900
    assert recall_bound(40, 100 + n, 0, 900 - n)[0] >= 0.9
    assert recall_bound(40, 100 + n - 1, 0, 900 - n + 1)[0] < 0.9
    assert records_to_reach(40, 100, 0, 0, 0.99) == 0


def test_audit_keys_are_stable_uniform_and_id_based():
    assert audit_key("12345") == audit_key("12345")
    keys = np.array([audit_key(str(i)) for i in range(4000)])
    assert 0.45 < keys.mean() < 0.55 and keys.min() >= 0 and keys.max() < 1
    assert abs(np.mean([in_audit(str(i), 0.1) for i in range(4000)]) - 0.1) < 0.02


def test_stopping_with_recall_below_target_happens_at_most_alpha_of_the_time():
    """Coverage by simulation: a good but imperfect ranking, audit keys at random, stop at the first
    check where the bound reaches the target; the share of runs stopping with recall < target ≤ α."""
    rng = np.random.default_rng(0)
    n, n_rel, target, alpha, q = 2000, 40, 0.8, 0.05, 0.1
    results = []
    for rep in range(200):
        rel = np.zeros(n, bool)
        rel[rng.choice(n, n_rel, replace=False)] = True
        order = np.argsort(-(rel * 1.5 + rng.normal(size=n)))
        results.append(simulate_stopping(rel[order], rng.random(n), q, 50, target, 1 - alpha))
    stops = [r for r in results if r["stopped"]]
    assert len(stops) > 150
    assert sum(r["recall"] < target for r in results) / len(results) <= alpha
    assert np.mean([r["screened"] for r in stops]) < n  # the rule does save work


def test_simulate_stopping_never_stops_without_audit_evidence():
    rel = np.array([True] * 5 + [False] * 95)
    out = simulate_stopping(rel, np.ones(100), 0.0, 10, 0.95, 0.95, dry_checks=10**6)
    assert out["stopped"] is False and out["screened"] == 100


def test_binomial_upper_bound_known_value():
    # each include sampled with p = 0.5, none seen: R = 4 still has P(0 seen) = 0.0625 > 0.05, R = 5 not
    assert binomial_upper_bound(0.5, 0, 0.05) == 4
    assert binomial_upper_bound(1.0, 3, 0.05) == 3
