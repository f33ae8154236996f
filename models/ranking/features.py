"""Record → sparse feature vector: weighted TF-IDF blocks for title+abstract, title, MeSH, publication types.

Why blocks: a title word says more about relevance than the same word deep in an abstract, and
controlled vocabulary (MeSH, publication type) is a separate, cleaner signal that must not be
drowned by free text. Each block is L2-normalised, scaled by its weight, and the row is
re-normalised, so records with only some fields still live on the same scale. A record with no
text at all gets an all-zero row (it is kept, and scored by a defined rule, not by the model).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

_MOJIBAKE = re.compile(r"Ã‚|Â(?=[^\w\s]|\s)|â€[œ\x9d™˜“”]")
_TAGS = re.compile(r"<[^>]{1,40}>")


def clean_text(text: object) -> str:
    """Undo HTML entities and the commonest mojibake; collapse whitespace. Non-strings → ''."""
    if not isinstance(text, str):
        return ""
    if text.isascii() and "&" not in text and "<" not in text:
        return " ".join(text.split())  # nothing to undo (the common case; keeps scoring fast)
    text = html.unescape(text)
    text = _TAGS.sub(" ", text)
    text = _MOJIBAKE.sub(" ", text)
    return " ".join(text.split())


def _join_terms(terms: object, prefix: str) -> str:
    if terms is None or isinstance(terms, float):
        return ""
    if isinstance(terms, str):
        terms = [t for t in re.split(r"[;|]", terms) if t.strip()]
    return " ".join(prefix + re.sub(r"\W+", "_", clean_text(t).lower()).strip("_") for t in terms if clean_text(t))


class RecordFields:
    """Column view of records: titles, abstracts, MeSH lists, publication-type lists (equal lengths)."""

    def __init__(self, titles: Sequence, abstracts: Sequence, mesh: Sequence | None = None,
                 publication_types: Sequence | None = None):
        n = len(titles)
        if len(abstracts) != n:
            raise ValueError("titles and abstracts differ in length")
        # used as given, like ASReview: the PubMed parser has already decoded entities and markup
        self.titles = [t if isinstance(t, str) else "" for t in titles]
        self.abstracts = [a if isinstance(a, str) else "" for a in abstracts]
        self.mesh = [_join_terms(m, "mesh_") for m in (mesh if mesh is not None else [None] * n)]
        self.pubtypes = [_join_terms(p, "pt_") for p in (publication_types if publication_types is not None else [None] * n)]

    def __len__(self) -> int:
        return len(self.titles)

    def documents(self) -> list[str]:
        return [f"{t} {a}".strip() for t, a in zip(self.titles, self.abstracts)]


class RecordVectorizer(BaseEstimator, TransformerMixin):
    """Weighted TF-IDF blocks; fit on the whole pool (unsupervised, labels never seen)."""

    def __init__(self, text_weight: float = 1.0, title_weight: float = 0.0, mesh_weight: float = 0.5,
                 pubtype_weight: float = 0.2, ngram_range: tuple[int, int] = (1, 2), min_df: int = 1,
                 max_df: float = 0.95, sublinear_tf: bool = True, stop_words: str | None = None,
                 max_features: int | None = None, char_weight: float = 0.0):
        self.text_weight = text_weight
        self.title_weight = title_weight
        self.mesh_weight = mesh_weight
        self.pubtype_weight = pubtype_weight
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_df = max_df
        self.sublinear_tf = sublinear_tf
        self.stop_words = stop_words
        self.max_features = max_features
        self.char_weight = char_weight

    def _text_vec(self, n_docs: int) -> TfidfVectorizer:
        # max_df as a share is unsafe on tiny pools (every term would be dropped)
        max_df = self.max_df if n_docs >= 20 else 1.0
        return TfidfVectorizer(ngram_range=self.ngram_range, sublinear_tf=self.sublinear_tf, min_df=self.min_df,
                               max_df=max_df, stop_words=self.stop_words, max_features=self.max_features)

    def fit(self, fields: RecordFields, y=None):
        self.blocks_ = []
        n = len(fields)
        for name, weight, docs, factory in self._block_specs(fields):
            if weight <= 0 or not any(docs):
                continue
            vec = factory(n)
            try:
                vec.fit(docs)
            except ValueError:  # empty vocabulary
                continue
            self.blocks_.append((name, weight, vec))
        return self

    def _block_specs(self, fields: RecordFields):
        token_vec = lambda n: TfidfVectorizer(token_pattern=r"\S+", lowercase=False, sublinear_tf=True)  # noqa: E731
        char_vec = lambda n: TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2,  # noqa: E731
                                             max_df=0.95 if n >= 20 else 1.0)
        return [
            ("text", self.text_weight, fields.documents(), self._text_vec),
            ("char", self.char_weight, fields.documents(), char_vec),
            ("title", self.title_weight, fields.titles, self._text_vec),
            ("mesh", self.mesh_weight, fields.mesh, token_vec),
            ("pubtype", self.pubtype_weight, fields.pubtypes, token_vec),
        ]

    def transform(self, fields: RecordFields) -> sparse.csr_matrix:
        from models.ranking.fast_text import FastTfidf

        specs = {name: docs for name, _, docs, _ in self._block_specs(fields)}
        fast = getattr(self, "fast_", None)
        if fast is None or len(fast) != len(self.blocks_):
            fast = self.fast_ = [FastTfidf(vec) for _, _, vec in self.blocks_]
        if not self.blocks_:
            return sparse.csr_matrix((len(fields), 0))
        if len(self.blocks_) == 1:  # one block: rows are already unit length (or empty)
            return fast[0].transform(specs[self.blocks_[0][0]]).tocsr()
        mats = [normalize(f.transform(specs[name])) * weight for (name, weight, _), f in zip(self.blocks_, fast)]
        X = sparse.hstack(mats, format="csr")
        return normalize(X)

    @property
    def n_features_(self) -> int:
        return sum(len(vec.vocabulary_) for _, _, vec in self.blocks_)
