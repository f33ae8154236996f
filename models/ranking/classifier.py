"""Linear relevance classifier with calibrated probabilities.

Ranking needs only the order of the decision values, so the active-learning loop uses
`decision_function` and skips calibration (speed). Shown scores and the recall estimate need real
probabilities: `calibrate()` fits Platt scaling on cross-validated decision values (out-of-fold, so
the probabilities are not the over-confident in-sample ones), falling back to the class base rate
when there are too few labels of a class to cross-validate.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import MultinomialNB
from sklearn.svm import LinearSVC

from models.ranking.balance import BalancedWeights


def _rank01(v: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties share a rank): makes differently scaled scores comparable."""
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v), dtype=float)
    ranks[order] = np.arange(len(v))
    _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]
    return ranks / max(len(v) - 1, 1)


class RelevanceClassifier(BaseEstimator, ClassifierMixin):
    """Balanced linear SVM (optionally ensembled with naive Bayes by rank averaging)."""

    def __init__(self, kind: str = "svm", C: float = 0.11, balance_ratio: float = 9.8, nb_alpha: float = 3.822,
                 nb_weight: float = 0.0, random_state: int = 0):
        self.kind = kind
        self.C = C
        self.balance_ratio = balance_ratio
        self.nb_alpha = nb_alpha
        self.nb_weight = nb_weight
        self.random_state = random_state

    def _base(self):
        if self.kind == "svm":
            return LinearSVC(C=self.C, loss="squared_hinge", random_state=self.random_state)
        if self.kind == "logistic":
            return LogisticRegression(C=self.C * 10, max_iter=1000)
        raise ValueError(f"unknown classifier kind {self.kind!r}")

    def fit(self, X, y, sample_weight=None, prevalence: float | None = None):
        """`prevalence`: the include rate the uncalibrated probabilities are centred on. The default, the
        share among the training records, is far too high for a ranking's screened records (includes come
        first); a caller that knows the pool passes its own estimate."""
        y = np.asarray(y).astype(int)
        if len(set(y.tolist())) < 2:
            raise ValueError("training needs at least one include and one exclude")
        self.classes_ = np.array([0, 1])
        w = BalancedWeights(self.balance_ratio).compute_sample_weight(y) if sample_weight is None else sample_weight
        self.model_ = self._base().fit(X, y, sample_weight=w)
        self.nb_ = None
        if self.nb_weight > 0:
            self.nb_ = MultinomialNB(alpha=self.nb_alpha).fit(X, y, sample_weight=BalancedWeights(1.2).compute_sample_weight(y))
        self.platt_ = None
        self.base_rate_ = float(y.mean()) if prevalence is None else float(prevalence)
        return self

    def decision_function(self, X) -> np.ndarray:
        d = self.model_.decision_function(X)
        if self.nb_ is not None:
            lp = self.nb_.predict_log_proba(X)
            nb = lp[:, 1] - lp[:, 0]
            d = (1 - self.nb_weight) * _rank01(d) + self.nb_weight * _rank01(nb)
        return np.asarray(d, dtype=float)

    def calibrate(self, X, y, n_splits: int = 5):
        """Platt scaling on out-of-fold decision values (after fit). Returns self."""
        y = np.asarray(y).astype(int)
        k = min(n_splits, int((y == 1).sum()), int((y == 0).sum()))
        if k < 2 or self.nb_ is not None:
            self.platt_ = None
            return self
        oof = np.empty(len(y), dtype=float)
        for tr, te in StratifiedKFold(n_splits=k, shuffle=True, random_state=self.random_state).split(np.zeros(len(y)), y):
            m = RelevanceClassifier(kind=self.kind, C=self.C, balance_ratio=self.balance_ratio,
                                    random_state=self.random_state).fit(X[tr], y[tr])
            oof[te] = m.decision_function(X[te])
        self.platt_ = LogisticRegression(C=1.0).fit(oof.reshape(-1, 1), y)
        return self

    def predict_proba(self, X) -> np.ndarray:
        d = self.decision_function(X)
        if self.platt_ is None:
            # uncalibrated fallback: a monotone squash around the base rate (order kept, scale honest-ish)
            logit0 = np.log(max(self.base_rate_, 1e-6) / max(1 - self.base_rate_, 1e-6))
            p1 = 1 / (1 + np.exp(-(logit0 + d)))
        else:
            p1 = self.platt_.predict_proba(d.reshape(-1, 1))[:, 1]
        return np.column_stack([1 - p1, p1])

    def predict(self, X):
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
