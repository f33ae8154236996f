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
    "knn_weight": 0.3,
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
        has_text = pool.has_text()[train_idx]
        Xt, yt = X[has_text], y[has_text]
        if not (yt == 1).any() or not (yt == 0).any():
            Xt, yt = X, y
        self.classifier_ = RelevanceClassifier(random_state=self.seed, **self.params["classifier"]).fit(Xt, yt)
        self.include_rows_ = Xt[yt == 1]
        pool_X = self.vectorizer_.transform(pool)
        d, sim = self.classifier_.decision_function(pool_X), _max_sim(pool_X, self.include_rows_)
        self.blend_stats_ = (float(d.mean()), float(d.std() or 1.0), float(sim.mean()), float(sim.std() or 1.0))
        self.platt_ = self._calibrate(Xt, yt) if calibrate else None
        self.empty_score_ = float((y.sum() + 1) / (len(pool) + 2))
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
        out = np.concatenate(parts) if parts else np.zeros(0)
        out[~fields.has_text()] = self.empty_score_
        return out

    def _score_part(self, part: RecordFields) -> np.ndarray:
        v = self._blended(self.vectorizer_.transform(part))
        if self.platt_ is not None:
            return self.platt_.predict_proba(v.reshape(-1, 1))[:, 1]
        # uncalibrated: a monotone squash around the training base rate (order kept)
        base = min(max(self.empty_score_, 1e-6), 1 - 1e-6)
        return 1 / (1 + np.exp(-(np.log(base / (1 - base)) + v)))

    def _blended(self, X, clf=None, include_rows=None) -> np.ndarray:
        """(1 − w)·z(SVM decision) + w·z(highest cosine similarity to a known include); z uses pool statistics."""
        clf = clf or self.classifier_
        include_rows = self.include_rows_ if include_rows is None else include_rows
        w = float(self.params.get("knn_weight", 0.0))
        md, sd, ms, ss = self.blend_stats_
        out = (1 - w) * (clf.decision_function(X) - md) / sd
        if w > 0:
            out = out + w * (_max_sim(X, include_rows) - ms) / ss
        return out

    def _calibrate(self, Xt, yt, n_splits: int = 5):
        """Platt scaling on out-of-fold blended scores; None when a class has fewer than 2 records."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        k = min(n_splits, int((yt == 1).sum()), int((yt == 0).sum()))
        if k < 2:
            return None
        oof = np.empty(len(yt))
        for tr, te in StratifiedKFold(n_splits=k, shuffle=True, random_state=self.seed).split(np.zeros(len(yt)), yt):
            clf = RelevanceClassifier(random_state=self.seed, **self.params["classifier"]).fit(Xt[tr], yt[tr])
            oof[te] = self._blended(Xt[te], clf, Xt[tr][yt[tr] == 1])
        return LogisticRegression(C=1.0).fit(oof.reshape(-1, 1), yt)

    def score_texts(self, titles: Sequence[str], abstracts: Sequence[str], n_jobs: int = 1) -> np.ndarray:
        return self.score(RecordFields(titles, abstracts), n_jobs=n_jobs)

    def card(self) -> dict:
        import platform

        import scipy
        import sklearn

        return {
            "params": self.params, "seed": self.seed, "n_train": self.n_train_, "n_includes": self.n_includes_,
            "n_features": self.vectorizer_.n_features_, "calibrated": self.platt_ is not None,
            "empty_score": self.empty_score_,
            "library_versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                                 "scipy": scipy.__version__, "python": platform.python_version()},
        }


_WORK = None


def _max_sim(X, include_rows) -> np.ndarray:
    """Each row's highest cosine similarity to any known include (rows are L2-normalised)."""
    if include_rows is None or include_rows.shape[0] == 0:
        return np.zeros(X.shape[0])
    return np.asarray((X @ include_rows.T).max(axis=1).todense()).ravel()


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
