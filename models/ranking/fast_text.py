"""A faster, exact `TfidfVectorizer.transform` for word uni/bigrams (scoring a million records in seconds).

sklearn builds every token and bigram as a Python string and looks it up in a dict. Here ASCII
documents are joined into one byte buffer; token boundaries and 64-bit token hashes are computed
with numpy, hashes are looked up in a hash index of the vocabulary (pandas, in C), bigrams become
integer pairs matched against the fitted bigram vocabulary, and counts / tf-idf / normalisation are
sparse-matrix operations. Non-ASCII documents take the regex path (same token rule as sklearn). The output equals
`vec.transform(docs)` (tests check it); vectorizers with other settings fall back to sklearn.
"""

from __future__ import annotations

import re

import numpy as np
from scipy import sparse
from sklearn.preprocessing import normalize

_DEFAULT_PATTERN = r"(?u)\b\w\w+\b"
# every ASCII character that is not a word character (\w = letters, digits, underscore) → space,
# except NUL, which separates documents in the batched byte path
_PUNCT_SEP = str.maketrans({chr(c): " " for c in range(1, 128) if not (chr(c).isalnum() or chr(c) == "_")})
_P = np.uint64(1099511628211)            # odd multiplier of the polynomial token hash (FNV prime)
_P_INV = np.uint64(pow(1099511628211, -1, 2**64))
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _token_spans(buf: np.ndarray):
    """Start/end byte offsets of word tokens (length ≥ 2) in a NUL-separated, punctuation-free buffer,
    plus the index of the document each token is in."""
    is_sep = buf == 0
    is_word = (buf != 32) & ~is_sep
    edges = np.diff(is_word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    keep = (ends - starts) >= 2
    starts, ends = starts[keep], ends[keep]
    doc = np.searchsorted(np.flatnonzero(is_sep), starts)
    return starts, ends, doc


def _span_hashes(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit polynomial hash of each byte span, vectorised (uint64 arithmetic wraps mod 2^64)."""
    n = len(buf)
    if n == 0 or len(starts) == 0:
        return np.zeros(len(starts), dtype=np.uint64)
    b = buf.astype(np.uint64) + np.uint64(1)
    pw = np.cumprod(np.full(n, _P, dtype=np.uint64))          # P^(i+1)
    prefix = np.cumsum(b * pw)
    before = np.where(starts > 0, prefix[np.maximum(starts - 1, 0)], np.uint64(0))
    span = prefix[ends - 1] - before
    ipw = np.cumprod(np.full(n, _P_INV, dtype=np.uint64))     # P^-(i+1)
    return span * ipw[starts] * _MIX + (ends - starts).astype(np.uint64)


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
        self.hash_index = None
        if tokens:
            tbuf = np.frombuffer("\x00".join(tokens).encode("utf-8"), dtype=np.uint8)
            seps = np.flatnonzero(tbuf == 0)
            t_starts = np.concatenate([[0], seps + 1])
            t_ends = np.concatenate([seps, [len(tbuf)]])
            hashes = _span_hashes(tbuf, t_starts, t_ends).view(np.int64)
            idx = pd.Index(hashes)
            if idx.is_unique:  # a collision inside the vocabulary: keep the string path
                self.hash_index = idx
        self.idf = vec.idf_.astype(np.float64) if vec.use_idf else None
        self.n_features = len(vocab)
        self.pattern = re.compile(vec.token_pattern)

    def _token_ids(self, docs: list[str], batch: int = 20_000):
        """(document index, vocabulary token id or -1) of every kept token, in document and token order.

        ASCII documents go through one batched byte buffer (hash per token, no per-token Python);
        others through the regex, so non-ASCII word characters follow the same rule as sklearn.
        """
        fast = [i for i, d in enumerate(docs) if d.isascii() and "\x00" not in d] if self.hash_index is not None else []
        docs_out, ids_out = [], []
        for a in range(0, len(fast), batch):
            sub = np.asarray(fast[a:a + batch], dtype=np.int64)
            text = "\x00".join(docs[i] for i in sub).lower().translate(_PUNCT_SEP)
            buf = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
            starts, ends, doc = _token_spans(buf)
            docs_out.append(sub[doc])
            ids_out.append(self.hash_index.get_indexer(_span_hashes(buf, starts, ends).view(np.int64)))
        fast_set = set(fast)
        slow = [i for i in range(len(docs)) if i not in fast_set]
        if slow:
            findall = self.pattern.findall
            tok_lists = [findall(docs[i].lower()) for i in slow]
            lengths = np.fromiter((len(t) for t in tok_lists), dtype=np.int64, count=len(tok_lists))
            flat = [t for ts in tok_lists for t in ts]
            docs_out.append(np.repeat(np.asarray(slow, dtype=np.int64), lengths))
            ids_out.append(self.token_index.get_indexer(flat) if flat else np.zeros(0, dtype=np.int64))
        if not docs_out:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        doc_of, ids = np.concatenate(docs_out), np.concatenate(ids_out).astype(np.int64)
        if len(docs_out) > 1:  # restore document order (stable: token order inside a document is kept)
            order = np.argsort(doc_of, kind="stable")
            doc_of, ids = doc_of[order], ids[order]
        return doc_of, ids

    def transform(self, docs: list[str]) -> sparse.csr_matrix:
        if not self.ok:
            return self.vec.transform(docs)
        doc_of, ids = self._token_ids(docs)
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
        X.sum_duplicates()  # also sorts the column indices of each row
        if self.vec.sublinear_tf:
            np.log(X.data, X.data)
            X.data += 1
        if self.idf is not None:
            X.data *= self.idf[X.indices]
        if self.vec.norm:
            normalize(X, norm=self.vec.norm, copy=False)  # sklearn's own row loop: bit-identical sums
        return X.astype(self.vec.dtype, copy=False)  # float64 already: no copy
