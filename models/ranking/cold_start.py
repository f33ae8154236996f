"""Cold start: rank before any screening decision exists.

Score = highest cosine similarity (TF-IDF fitted on the pool) between a record and the reference
texts: the review question, the search strategies' free-text terms, and the seed studies (records
the original review included). No labels are needed, so the first night's queue is already useful.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from models.ranking.features import RecordFields

_FIELD_TAGS = re.compile(r"\[[a-z:]{2,6}\]", re.I)
_OPERATORS = re.compile(r"\b(AND|OR|NOT)\b")


def query_terms(query: str) -> str:
    """Free-text words of a PubMed query: field tags, operators, wildcards and punctuation removed."""
    text = _FIELD_TAGS.sub(" ", query)
    text = _OPERATORS.sub(" ", text)
    text = re.sub(r"[\"()*{}]", " ", text)
    return " ".join(text.split())


def cold_start_scores(pool: RecordFields, reference_texts: Sequence[str], seed_idx: Sequence[int] = ()) -> np.ndarray:
    """Similarity in [0, 1] of each pool record to the closest reference (question, strategy, seed study).

    Records without text score 0 unless nothing has any similarity (then all are 0: a flat queue).
    """
    docs = pool.documents()
    if not docs:
        return np.zeros(0)
    refs = [t for t in reference_texts if t and t.strip()]
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english", dtype=np.float32)
    try:
        vec.fit(docs + refs)
    except ValueError:  # no words anywhere
        return np.zeros(len(docs))
    X = normalize(vec.transform(docs))
    ref_rows = [normalize(vec.transform(refs))] if refs else []
    seed_idx = [int(i) for i in seed_idx]
    if seed_idx:
        ref_rows.append(X[seed_idx])
    if not ref_rows:
        return np.zeros(len(docs))
    from scipy import sparse

    R = sparse.vstack(ref_rows).tocsr()
    sims = (X @ R.T).toarray()
    if seed_idx:  # a seed study is trivially most similar to itself; keep it top but measured
        for col, i in enumerate(seed_idx, start=R.shape[0] - len(seed_idx)):
            sims[i, col] = 0.0
        sims[seed_idx] = np.maximum(sims[seed_idx].max(axis=1, keepdims=True), 1.0)
    return np.clip(sims.max(axis=1), 0.0, 1.0)
