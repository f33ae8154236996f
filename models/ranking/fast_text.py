"""A faster, exact `TfidfVectorizer.transform` for word uni/bigrams (scoring a million records in seconds).

sklearn builds every bigram as a Python string and looks it up in a dict; here tokens are looked up
once in a hash index (pandas, in C), bigrams become integer pairs matched against the fitted bigram
vocabulary, and counts/tf-idf/normalisation are done with sparse matrices. The output equals
`vec.transform(docs)` (tests check it); vectorizers with other settings fall back to sklearn.
"""

from __future__ import annotations

import re

import numpy as np
from scipy import sparse

_DEFAULT_PATTERN = r"(?u)\b\w\w+\b"
# every ASCII character that is not a word character (\w = letters, digits, underscore)
_PUNCT = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")})


def supports(vec) -> bool:
    return (vec.analyzer == "word" and vec.token_pattern == _DEFAULT_PATTERN and vec.tokenizer is None
            and vec.preprocessor is None and vec.stop_words is None and vec.strip_accents is None
            and vec.lowercase and tuple(vec.ngram_range) in ((1, 1), (1, 2)) and vec.norm == "l2"
            and not vec.binary)


class FastTfidf:
    def __init__(self, vec):
        import pandas as pd

        self.vec = vec
        self.ok = supports(vec)
        if not self.ok:
            return
        vocab = vec.vocabulary_
        tokens: dict[str, int] = {}
        uni_col = []
        big_a, big_b, big_col = [], [], []

        def tid(t: str) -> int:
            i = tokens.get(t)
            if i is None:
                i = tokens[t] = len(tokens)
                uni_col.append(-1)
            return i

        for term, col in vocab.items():
            parts = term.split(" ")
            if len(parts) == 1:
                uni_col[tid(term)] = col
            else:
                a, b = tid(parts[0]), tid(parts[1])
                big_a.append(a)
                big_b.append(b)
                big_col.append(col)
        self.token_index = pd.Index(list(tokens))
        self.n_tokens = len(tokens)
        self.uni_col = np.array(uni_col, dtype=np.int64)
        keys = np.array(big_a, dtype=np.int64) * self.n_tokens + np.array(big_b, dtype=np.int64)
        self.big_index = pd.Index(keys)  # unique integer keys: a C hash lookup per bigram
        self.big_col = np.array(big_col, dtype=np.int64)
        self.idf = vec.idf_.astype(np.float64) if vec.use_idf else None
        self.n_features = len(vocab)
        self.pattern = re.compile(vec.token_pattern)

    def transform(self, docs: list[str]) -> sparse.csr_matrix:
        if not self.ok:
            return self.vec.transform(docs)
        findall = self.pattern.findall
        table = _PUNCT
        # ASCII fast path: punctuation → space and split equals the regex, minus 1-char tokens (dropped below)
        tok_lists = [d.lower().translate(table).split() if d.isascii() else findall(d.lower()) for d in docs]
        lengths = np.fromiter((len(t) for t in tok_lists), dtype=np.int64, count=len(tok_lists))
        flat = [t for ts in tok_lists for t in ts]
        doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
        if flat:
            keep = np.fromiter(map(len, flat), dtype=np.int64, count=len(flat)) > 1
            ids = self.token_index.get_indexer(flat)[keep]
            doc_of = doc_of[keep]
        else:
            ids = np.zeros(0, dtype=np.int64)
        # unigrams
        uni = np.where(ids >= 0, self.uni_col[np.maximum(ids, 0)], -1)
        rows = [doc_of[uni >= 0]]
        cols = [uni[uni >= 0]]
        # bigrams: consecutive tokens of the same document, both known
        if self.vec.ngram_range[1] == 2 and len(ids) > 1 and len(self.big_index):
            a, b = ids[:-1], ids[1:]
            same = (doc_of[:-1] == doc_of[1:]) & (a >= 0) & (b >= 0)
            keys = a[same] * self.n_tokens + b[same]
            pos = self.big_index.get_indexer(keys)
            hit = pos >= 0
            rows.append(doc_of[:-1][same][hit])
            cols.append(self.big_col[pos[hit]])
        r = np.concatenate(rows)
        c = np.concatenate(cols)
        X = sparse.csr_matrix((np.ones(len(r), dtype=np.float64), (r, c)), shape=(len(docs), self.n_features))
        X.sum_duplicates()
        X.sort_indices()
        if self.vec.sublinear_tf:
            np.log(X.data, X.data)
            X.data += 1
        if self.idf is not None:
            X.data *= self.idf[X.indices]
        sq = np.asarray(X.multiply(X).sum(axis=1)).ravel()
        norms = np.sqrt(sq)
        norms[norms == 0] = 1
        X = sparse.diags(1 / norms) @ X
        return X.astype(self.vec.dtype).tocsr()
