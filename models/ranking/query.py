"""Query strategy: most-likely-relevant first, plus a small random audit share.

The audit records are drawn uniformly from the whole unscreened pool; being a random sample they
are what makes the recall bound in `models.recall` valid, so they are flagged (`is_audit`).
"""

from __future__ import annotations

import numpy as np


class MaxWithAudit:
    def __init__(self, audit_fraction: float = 0.0):
        if not 0 <= audit_fraction <= 1:
            raise ValueError("audit_fraction must be within [0, 1]")
        self.audit_fraction = audit_fraction

    def select(self, scores: np.ndarray, candidates: np.ndarray, n: int, rng: np.random.Generator):
        """Pick up to `n` of `candidates` (indices into scores). Returns (chosen, is_audit) arrays.

        Ties are broken by candidate order (stable), so results are deterministic per seed.
        """
        candidates = np.asarray(candidates)
        n = min(n, len(candidates))
        if n == 0:
            return np.array([], dtype=int), np.array([], dtype=bool)
        n_audit = int(rng.binomial(n, self.audit_fraction)) if self.audit_fraction > 0 else 0
        audit = rng.choice(candidates, size=n_audit, replace=False) if n_audit else np.array([], dtype=int)
        rest = candidates if not n_audit else candidates[~np.isin(candidates, audit)]
        n_top = n - n_audit
        top = rest[np.argsort(-scores[rest], kind="stable")[:n_top]]
        chosen = np.concatenate([top, audit]).astype(int)
        is_audit = np.concatenate([np.zeros(len(top), bool), np.ones(len(audit), bool)])
        return chosen, is_audit
