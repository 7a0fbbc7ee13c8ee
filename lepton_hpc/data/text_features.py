"""Hashed bag-of-words features of documents, exactly as scikit-learn's ``HashingVectorizer``
computes them (default ``token_pattern``, ``lowercase=True``, ``alternate_sign=True``,
``norm='l2'``), so that a model trained here sees the same features as one trained on
``HashingVectorizer(n_features=2**k, ngram_range=(a, b)).transform(docs)``.

* Tokens: the regular expression :data:`TOKEN_PATTERN` (``(?u)\\b\\w\\w+\\b``: runs of two or more
  word characters) over the lowercased text; word n-grams are tokens joined by one space.
* Each token's signed 32-bit MurmurHash3 (``mmh3``, seed 0) gives column ``abs(h) % 2**k`` and
  sign ``+1``/``-1`` (:mod:`lepton_hpc.data.text_hash`); a row's equal columns are summed; an entry
  whose signs cancel stays stored as 0, as scikit-learn keeps it (it counts in the document frequency).
* Optionally TF-IDF (scikit-learn's ``TfidfTransformer`` with ``smooth_idf=True``:
  ``idf = ln((1 + n) / (1 + df)) + 1``), then each row scaled to unit l2 (or l1) norm.

Per row, nothing depends on the other rows, so the features do not depend on how the input was
cut into blocks or ranks. Nothing here communicates.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

TOKEN_PATTERN = r"(?u)\b\w\w+\b"
#: a word put between the documents of a block, so that one regex pass tokenizes them all
SEPARATOR = "zqxdocbreakzqx0"


def parse_ngrams(text) -> tuple[int, int]:
    """``"1,2"`` (or ``(1, 2)``) -> (1, 2)."""
    try:
        parts = [int(p) for p in (text.split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not 1 <= parts[0] <= parts[1]:
        raise UserError(f"--ngrams must be MIN,MAX with 1 <= MIN <= MAX (e.g. 1,2), got {text!r}")
    return parts[0], parts[1]


def word_ngrams(tokens: list[str], lo: int, hi: int) -> list[str]:
    """scikit-learn's ``_VectorizerMixin._word_ngrams``."""
    if hi == 1:
        return tokens
    out = list(tokens) if lo == 1 else []  # lo > 1: no unigrams
    n_tok = len(tokens)
    for n in range(max(lo, 2), min(hi + 1, n_tok + 1)):
        out += [" ".join(tokens[i:i + n]) for i in range(n_tok - n + 1)]
    return out


@dataclass
class CsrBlock:
    """Rows of a CSR matrix: ``indptr`` starts at 0."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1


class Hasher:
    """Documents -> hashed counts (:class:`CsrBlock`, before TF-IDF and normalisation)."""

    def __init__(self, n_features: int, ngrams: tuple[int, int] = (1, 1), pattern: str = TOKEN_PATTERN):
        self.n_features, self.ngrams = int(n_features), ngrams
        self._find = re.compile(pattern).findall
        from .text_hash import _mmh3

        self._murmur = _mmh3().hash  # (text, seed=0, signed=True): scikit-learn's murmurhash3_32

    def counts(self, docs: list) -> CsrBlock:
        """The hashed counts of ``docs`` (a list of str; None is an empty document)."""
        docs = [d or "" for d in docs]
        found = self._tokens_joined(docs)
        if found is None:  # a document holds the separator word itself: one document at a time
            found = self._tokens_each(docs)
        rows, h = found
        n = self.n_features
        # one sort of (row, column, sign) keys: equal (row, column) entries side by side
        packed = np.sort((rows * n + np.abs(h) % n) * 2 + (h >= 0))  # int64: rows * 2^k * 2 < 2^63
        key = packed >> 1
        starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if len(key) else np.zeros(0, np.int64)
        n_each = np.diff(np.append(starts, len(key)))
        n_pos = np.add.reduceat(packed & 1, starts) if len(key) else np.zeros(0, np.int64)
        values = (2 * n_pos - n_each).astype(np.float64)
        keys = key[starts]
        indptr = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys // n, minlength=len(docs)), out=indptr[1:])
        return CsrBlock(values, keys % n, indptr)

    def _hash(self, tokens) -> np.ndarray:
        return np.fromiter(map(self._murmur, tokens), dtype=np.int64, count=len(tokens))

    def _tokens_joined(self, docs: list):
        """(row, hash) of every n-gram of the block, tokenized in one pass over the documents joined
        by a separator word; None if some document holds the separator word."""
        lo, hi = self.ngrams
        toks = self._find((" " + SEPARATOR + " ").join(docs).lower())
        h = self._hash(toks)
        is_sep = h == self._murmur(SEPARATOR)
        if int(is_sep.sum()) != len(docs) - 1:  # the separator inside a document, or a token with its hash
            return None
        doc = np.cumsum(is_sep)
        rows, hashes = [], []
        for n in range(lo, hi + 1):
            if n == 1:
                keep = ~is_sep
                rows.append(doc[keep])
                hashes.append(h[keep])
                continue
            if len(toks) < n:
                continue
            grams = list(map(" ".join, zip(*[itertools.islice(toks, i, None) for i in range(n)])))
            window = np.lib.stride_tricks.sliding_window_view(is_sep, n).any(axis=1)
            keep = ~window
            rows.append(doc[:len(grams)][keep])
            hashes.append(self._hash(grams)[keep])
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(rows).astype(np.int64, copy=False), np.concatenate(hashes)

    def _tokens_each(self, docs: list):
        lo, hi = self.ngrams
        lengths = np.zeros(len(docs), dtype=np.int64)
        tokens: list[str] = []
        for i, doc in enumerate(docs):
            toks = word_ngrams(self._find(doc.lower()), lo, hi)
            lengths[i] = len(toks)
            tokens += toks
        return np.repeat(np.arange(len(docs), dtype=np.int64), lengths), self._hash(tokens)


def document_frequencies(blocks: list[CsrBlock], n_features: int) -> np.ndarray:
    """Per column, the number of rows with a stored entry (int64), as scikit-learn counts them."""
    df = np.zeros(n_features, dtype=np.int64)
    for b in blocks:
        df += np.bincount(b.indices, minlength=n_features)
    return df


def idf_weights(df: np.ndarray, n_docs: int) -> np.ndarray:
    """scikit-learn's smooth idf: ln((1 + n) / (1 + df)) + 1."""
    return np.log((1.0 + n_docs) / (1.0 + df.astype(np.float64))) + 1.0


def finish(b: CsrBlock, idf: np.ndarray | None, norm: str | None) -> CsrBlock:
    """TF-IDF (``idf`` not None) and row normalisation (``l2``, ``l1`` or None), in place."""
    if idf is not None:
        b.data *= idf[b.indices]
    if norm in ("l1", "l2") and len(b.data):
        rows = np.repeat(np.arange(b.n_rows), np.diff(b.indptr))
        part = b.data * b.data if norm == "l2" else np.abs(b.data)
        sums = np.bincount(rows, weights=part, minlength=b.n_rows)
        scale = np.sqrt(sums) if norm == "l2" else sums
        scale[scale == 0] = 1.0
        b.data /= scale[rows]
    return b
