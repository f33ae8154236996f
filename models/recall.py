"""Recall lower bound with a statistical guarantee, pooled across nightly updates.

Design (a BUSCAR-style hypergeometric bound on a random audit that accumulates across runs):
every record gets a fixed uniform random key when it enters the pool; every run audits — sends to
screening regardless of its score — each unscreened record whose key is below the audit fraction q.
At any moment let W be the records the ranked queue has not reached yet: the unscreened records
plus the audited records that rank below the head of the queue. Because the keys ignore relevance
and the ranking ignores the keys, the audited part A of W is a uniform random subset of W of size
|A|. (Audited records the ranking has already passed are left out: they sit where the ranking puts
includes, and would bias the sample. The ranking that judges "passed" must not have learnt the
audited labels: in-sample, a model scores every audited include high and would drop it.) If A
holds k includes, the number of includes in W is at most
K⁺ = max{K : P(Hypergeom(|W|, K, |A|) ≤ k) > α} with probability ≥ 1 − α, so

    recall ≥ found / (found + K⁺ − k)        with confidence 1 − α.

New arrivals are covered (they get keys and are audited like the rest), so the bound pools every
update rather than relying on one night's tiny batch. `buscar_p_value` is the original BUSCAR test
(Callaghan & Müller-Hansen 2020) for a one-off random sample of the remaining pool.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

from scipy.stats import binom, hypergeom


def hypergeom_upper_bound(population: int, sample: int, hits: int, alpha: float) -> int:
    """Largest K with P(X ≤ hits | population, K successes, sample drawn) > alpha (one-sided 1−α bound)."""
    if not 0 <= hits <= sample <= population:
        raise ValueError("need 0 ≤ hits ≤ sample ≤ population")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    lo, hi = hits, population - (sample - hits)  # K is at least the hits, at most hits + unsampled
    # P(X ≤ hits) decreases in K: binary search the last K where it is still > alpha
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if hypergeom.cdf(hits, population, mid, sample) > alpha:
            lo = mid
        else:
            hi = mid - 1
    return lo


def binomial_upper_bound(trials_p: float, hits: int, alpha: float, max_k: int = 10**7) -> int:
    """Largest R with P(Bin(R, p) ≤ hits) > alpha: bound on includes when each was sampled with prob p."""
    lo, hi = hits, max_k
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if binom.cdf(hits, mid, trials_p) > alpha:
            lo = mid
        else:
            hi = mid - 1
    return lo


def buscar_p_value(remaining: int, sample: int, hits: int, found_before_sample: int, target: float) -> float:
    """BUSCAR: p-value of H0 "recall < target" after a random sample of the remaining pool.

    remaining = N records unscreened when the sample was drawn; found_before_sample = includes found
    by the ranking before sampling. Stop screening when p < α.
    """
    r_seen = found_before_sample + hits
    k_hat = math.floor(r_seen / target - found_before_sample + 1)  # fewest includes in the pool under H0
    if k_hat > remaining:
        return 0.0
    return float(hypergeom.cdf(hits, remaining, k_hat, sample))


@dataclass
class RecallEstimate:
    recall_lower_bound: float
    confidence: float
    target: float
    records_to_screen_for_target: int
    screened: int
    unscreened: int
    found: int
    audited: int
    audit_hits: int
    missed_upper_bound: int

    def to_dict(self) -> dict:
        return asdict(self)


def recall_bound(found: int, audited: int, audit_hits: int, unscreened: int, confidence: float = 0.95) -> tuple[float, int]:
    """(recall lower bound, upper bound on includes still unscreened) from the pooled audit.

    found: includes found so far by any route (ranking + audit); audited: records screened because
    of their audit key; audit_hits: includes among them; unscreened: records not yet screened.
    """
    if min(found, audited, audit_hits, unscreened) < 0 or audit_hits > audited or audit_hits > found:
        raise ValueError("inconsistent counts")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if unscreened == 0:
        return 1.0, 0
    population = audited + unscreened
    if audited == 0:
        missed = unscreened  # no random evidence: anything may be missing
    else:
        missed = hypergeom_upper_bound(population, audited, audit_hits, 1 - confidence) - audit_hits
    missed = min(missed, unscreened)
    if found + missed == 0:
        return 0.0, missed  # nothing found and nothing excluded: no evidence of any recall
    return found / (found + missed), missed


def estimate_recall(found: int, audited: int, audit_hits: int, screened: int, unscreened: int,
                    target: float = 0.95, confidence: float = 0.95) -> RecallEstimate:
    """The bound plus how many more audit records would reach `target` if the audit yield holds."""
    lb, missed = recall_bound(found, audited, audit_hits, unscreened, confidence)
    return RecallEstimate(
        recall_lower_bound=lb, confidence=confidence, target=target,
        records_to_screen_for_target=records_to_reach(found, audited, audit_hits, unscreened, target, confidence),
        screened=screened, unscreened=unscreened, found=found, audited=audited, audit_hits=audit_hits,
        missed_upper_bound=missed)


def records_to_reach(found: int, audited: int, audit_hits: int, unscreened: int, target: float,
                     confidence: float = 0.95) -> int:
    """Fewest extra randomly audited records after which the bound reaches `target`.

    Assumes the extra records hold includes at the audit's observed rate (a planning figure, not a
    guarantee). Screening everything always reaches it, so the answer is at most `unscreened`.
    """
    def ok(extra: int) -> bool:
        if extra >= unscreened:
            return True
        rate = audit_hits / audited if audited else 0.0
        new_hits = int(round(rate * extra))
        lb, _ = recall_bound(found + new_hits, audited + extra, audit_hits + new_hits,
                             unscreened - extra, confidence)
        return lb >= target

    if ok(0):
        return 0
    lo, hi = 0, 1
    while not ok(hi):
        lo, hi = hi, min(hi * 2, unscreened)
    while hi - lo > 1:  # bound is monotone enough in practice; bisection gives the first pass point
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def audit_key(record_key: str, salt: str = "living-review-audit") -> float:
    """A record's fixed uniform key in [0, 1): SHA-256 of salt + id, so it never depends on content or rank."""
    h = hashlib.sha256(f"{salt}:{record_key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def in_audit(record_key: str, audit_fraction: float, salt: str = "living-review-audit") -> bool:
    return audit_key(record_key, salt) < audit_fraction


def simulate_stopping(relevant_in_rank_order, keys, audit_fraction: float = 0.05, check_every: int = 25,
                      target: float = 0.95, confidence: float = 0.95, dry_checks: int = 2) -> dict:
    """Replay the stopping procedure on one ranking (used to validate coverage on labelled data).

    Records whose key < q are audited (screened regardless of rank); the ranking screens the others in
    order; every `check_every` ranked records the bound is checked and screening stops once it reaches
    `target`. When the ranking has found nothing for `dry_checks` checks, q is raised so that the audit
    grows by `records_to_reach` records — the planning figure the recall estimate reports.

    Returns {stopped, recall (true, at stop), screened (audit included), bound, audit_fraction}.
    """
    import numpy as np

    rel = np.asarray(relevant_in_rank_order, dtype=bool)
    keys = np.asarray(keys, dtype=float)
    n, total = len(rel), int(rel.sum())
    q = audit_fraction
    screened_rank = np.zeros(n, bool)
    pos = 0  # next ranking position
    since_find = 0
    while True:
        audit = keys < q
        # the ranking advances over non-audited records
        taken = 0
        while pos < n and taken < check_every:
            if not audit[pos]:
                screened_rank[pos] = True
                taken += 1
                since_find = 0 if rel[pos] else since_find + 1
            pos += 1
        found = int((rel & (screened_rank | audit)).sum())
        suffix = np.zeros(n, bool)
        suffix[pos:] = True
        a, k = int((audit & suffix).sum()), int((audit & suffix & rel).sum())
        unscreened = int((suffix & ~audit).sum())
        screened = int((screened_rank | audit).sum())
        lb, _ = recall_bound(found, a, k, unscreened, confidence)
        if lb >= target or unscreened == 0:
            return {"stopped": unscreened > 0, "recall": found / total if total else 1.0, "screened": screened,
                    "bound": lb, "audit_fraction": q}
        if since_find >= dry_checks * check_every:
            extra = records_to_reach(found, a, k, unscreened, target, confidence)
            rest = np.sort(keys[suffix & ~audit])
            q = float(rest[min(extra, len(rest)) - 1]) + 1e-12 if extra > 0 else q
