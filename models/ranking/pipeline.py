"""The production relevance model: fit on settled decisions, score the unscreened pool.

Vectorizer fitted on the whole pool (unsupervised), classifier on screened records only, Platt
probabilities for display and planning. A record without any text cannot be told apart by its
features, so its defined score is the lower-bound prevalence, includes found / records in the pool
(one pseudo-record each way): it is kept and ranked, never dropped, and it comes up once the calibrated
probability at the head of the queue falls to that rate — the rule `simulate` benchmarks (`empties_due`).
The share of includes among *screened* records would be far too high: the ranking screens includes first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from models.ranking.classifier import RelevanceClassifier
from models.ranking.features import RecordFields, RecordVectorizer

DEFAULT_PARAMS = {
    "vectorizer": {"ngram_range": [1, 2], "sublinear_tf": True, "min_df": 1, "max_df": 0.95, "mesh_weight": 0.5,
                   "pubtype_weight": 0.2, "title_weight": 0.0},
    "classifier": {"kind": "svm", "C": 0.11, "balance_ratio": 9.8},
}


def _vec_params(p: dict) -> dict:
    p = dict(p)
    if "ngram_range" in p:
        p["ngram_range"] = tuple(p["ngram_range"])
    return p


class RankingModel:
    def __init__(self, seed: int = 0, params: dict | None = None):
        self.seed = seed
        self.params = json.loads(json.dumps(params or DEFAULT_PARAMS))

    # ---- fitting
    def fit(self, pool: RecordFields, train_idx: Sequence[int], y: Sequence[int], calibrate: bool = True) -> "RankingModel":
        """Fit the vectorizer on `pool` and the classifier on pool[train_idx] with labels y (1 = include)."""
        y = np.asarray(y).astype(int)
        train_idx = np.asarray(train_idx, dtype=int)
        if len(train_idx) != len(y):
            raise ValueError("train_idx and y differ in length")
        if not (y == 1).any() or not (y == 0).any():
            raise ValueError("training needs at least one include and one exclude")
        self.vectorizer_ = RecordVectorizer(**_vec_params(self.params["vectorizer"])).fit(pool)
        X = self.vectorizer_.transform(pool)[train_idx]
        self.empty_score_ = float((y.sum() + 1) / (len(pool) + 2))
        # trained on every screened record, text-less ones too (all-zero rows), as `simulate` and ASReview;
        # uncalibrated probabilities sit on the same prevalence bound as `empty_score_`
        self.classifier_ = RelevanceClassifier(random_state=self.seed, **self.params["classifier"]).fit(
            X, y, prevalence=self.empty_score_)
        if calibrate:
            self.classifier_.calibrate(X, y)
        self.n_train_ = int(len(y))
        self.n_includes_ = int(y.sum())
        return self

    def fit_texts(self, titles: Sequence[str], abstracts: Sequence[str], y: Sequence[int]) -> "RankingModel":
        pool = RecordFields(titles, abstracts)
        return self.fit(pool, np.arange(len(titles)), y, calibrate=False)

    # ---- scoring
    def score(self, fields: RecordFields, chunk: int = 50_000, n_jobs: int = 1) -> np.ndarray:
        """Probability of relevance for each record (no-text records get `empty_score_`).

        n_jobs > 1 scores chunks in forked worker processes (text tokenising is CPU-bound Python).
        """
        starts = list(range(0, len(fields), chunk))
        if n_jobs > 1 and len(starts) > 1:
            import multiprocessing as mp

            global _WORK
            _WORK = (self, fields, chunk)
            try:
                with mp.get_context("fork").Pool(min(n_jobs, len(starts))) as pool:
                    parts = pool.map(_score_chunk, starts)
            finally:
                _WORK = None
        else:
            parts = [self._score_part(_slice(fields, a, a + chunk)) for a in starts]
        return np.concatenate(parts) if parts else np.zeros(0)

    def _score_part(self, part: RecordFields) -> np.ndarray:
        X = self.vectorizer_.transform(part)
        p = self.classifier_.predict_proba(X)[:, 1]
        # no known word (no text, or only words the pool never had): nothing for the model to score
        p[X.getnnz(axis=1) == 0] = self.empty_score_
        return p

    def score_texts(self, titles: Sequence[str], abstracts: Sequence[str], n_jobs: int = 1) -> np.ndarray:
        return self.score(RecordFields(titles, abstracts), n_jobs=n_jobs)

    def card(self) -> dict:
        import platform

        import scipy
        import sklearn

        return {
            "params": self.params, "seed": self.seed, "n_train": self.n_train_, "n_includes": self.n_includes_,
            "n_features": self.vectorizer_.n_features_, "calibrated": self.classifier_.platt_ is not None,
            "empty_score": self.empty_score_,
            "library_versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                                 "scipy": scipy.__version__, "python": platform.python_version()},
        }


_WORK = None


def _score_chunk(start: int) -> np.ndarray:
    model, fields, chunk = _WORK
    return model._score_part(_slice(fields, start, start + chunk))


def _slice(fields: RecordFields, a: int, b: int) -> RecordFields:
    part = RecordFields.__new__(RecordFields)
    part.titles, part.abstracts = fields.titles[a:b], fields.abstracts[a:b]
    part.mesh, part.pubtypes = fields.mesh[a:b], fields.pubtypes[a:b]
    return part


def training_fingerprint(labelled: dict[int, int], content_hashes: dict[int, str], params: dict) -> str:
    """Same labels on the same record versions with the same parameters → same fingerprint → no retrain."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for rid in sorted(labelled):
        h.update(f"{rid}:{labelled[rid]}:{content_hashes.get(rid, '')};".encode())
    return h.hexdigest()
