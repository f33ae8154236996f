"""Sample weights for a training set with very few includes (ASReview's "balanced" sampler).

Why: with 1 include among 200 excludes an unweighted SVM predicts "exclude" everywhere. Weighting
each class so includes carry `ratio` times the total weight of the excludes keeps the decision
boundary near the includes. ASReview elas_u4 uses ratio 9.8.
"""

from __future__ import annotations

import numpy as np


class BalancedWeights:
    def __init__(self, ratio: float = 9.8):
        if ratio <= 0:
            raise ValueError("ratio must be positive")
        self.ratio = ratio

    def compute_sample_weight(self, y) -> np.ndarray:
        y = np.asarray(y)
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        if n_pos == 0 or n_neg == 0:
            return np.ones(len(y), dtype=float)
        w = np.where(y == 1, 1.0, n_pos / (self.ratio * n_neg))
        return w * (len(y) / w.sum())
