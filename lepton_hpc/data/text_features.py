"""Hashed bag-of-words features of documents, exactly as scikit-learn's ``HashingVectorizer``
computes them (default ``token_pattern``, ``lowercase=True``, ``alternate_sign=True``,
``norm='l2'``), so that a model trained here sees the same features as one trained on
``HashingVectorizer(n_features=2**k, ngram_range=(a, b)).transform(docs)``.

* Tokens: the regular expression :data:`TOKEN_PATTERN` (``(?u)\\b\\w\\w+\\b``: runs of two or more
  word characters, ``\\w`` being ``str.isalnum()`` or ``_``) over the lowercased text; word n-grams
  are tokens joined by one space.
* Each token's signed 32-bit MurmurHash3 (``mmh3``, seed 0) gives column ``abs(h) % 2**k`` and
  sign ``+1``/``-1`` (:mod:`lepton_hpc.data.text_hash`); a row's equal columns are summed; an entry
  whose signs cancel stays stored as 0, as scikit-learn keeps it (it counts in the document frequency).
* Optionally TF-IDF (scikit-learn's ``TfidfTransformer`` with ``smooth_idf=True``:
  ``idf = ln((1 + n) / (1 + df)) + 1``), then each row scaled to unit l2 (or l1) norm.

Per row, nothing depends on the other rows, so the features do not depend on how the input was
cut into blocks or ranks. Nothing here communicates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

TOKEN_PATTERN = r"(?u)\b\w\w+\b"


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


@dataclass
class CsrBlock:
    """Rows of a CSR matrix: ``indptr`` starts at 0."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1


_ASCII_WORD = np.array([chr(c).isalnum() or c == 95 for c in range(128)], dtype=bool)


#: code points in a batch from which :func:`word_chars` builds its table of all 0x110000 (0.07 s, once)
TABLE_MIN_CODES = 1 << 18


@functools.cache
def _unicode_word() -> np.ndarray:
    """Per code point (all 0x110000), ``str.isalnum()`` or ``_``: built once, when non-ASCII text comes."""
    table = np.fromiter(map(str.isalnum, map(chr, range(0x110000))), dtype=bool, count=0x110000)
    table[95] = True
    return table


def word_chars(codes: np.ndarray) -> np.ndarray:
    """Per code point, whether the pattern's ``\\w`` matches it: ``str.isalnum()`` or ``_``, the
    definition of Python's ``re`` for str patterns (checked for every code point by the tests)."""
    if codes.dtype == np.uint8:  # ASCII
        return _ASCII_WORD[codes]
    if len(codes) >= TABLE_MIN_CODES:  # much non-ASCII text: the table of every code point pays off
        return _unicode_word()[codes]
    word = np.zeros(len(codes), dtype=bool)  # a few non-ASCII documents: ask only their code points
    low = codes < 128
    word[low] = _ASCII_WORD[codes[low]]
    if not low.all():
        distinct, where = np.unique(codes[~low], return_inverse=True)
        word[~low] = np.array([chr(c).isalnum() for c in distinct.tolist()], dtype=bool)[where]
    return word


#: documents hashed at a time, so that their text and token arrays stay in the cache and their
#: memory is reused from one batch to the next
BATCH_DOCS = 4096


class Hasher:
    """Documents -> hashed counts (:class:`CsrBlock`, before TF-IDF and normalisation).

    The tokens of :data:`TOKEN_PATTERN` are the maximal runs of two or more word characters,
    so they are found with array operations on the code points of the lowercased documents
    instead of a regex: the tokens are packed into one string, each followed by one space, so
    that every n-gram ("w1 w2 ...") is a run of it, cut out by ``split`` for MurmurHash3.
    ASCII documents are done apart from the others (one byte per character instead of four).
    """

    def __init__(self, n_features: int, ngrams: tuple[int, int] = (1, 1)):
        self.n_features, self.ngrams = int(n_features), ngrams
        from .text_hash import _mmh3

        self._murmur = _mmh3().hash  # (text, seed=0, signed=True): scikit-learn's murmurhash3_32

    def counts(self, docs: list) -> CsrBlock:
        """The hashed counts of ``docs`` (a list of str; None is an empty document)."""
        docs = [d or "" for d in docs]
        return concat([self._batch(docs[i:i + BATCH_DOCS]) for i in range(0, len(docs), BATCH_DOCS)])

    def _batch(self, docs: list[str]) -> CsrBlock:
        ascii_doc = np.fromiter(map(str.isascii, docs), dtype=bool, count=len(docs))
        rows, h = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for part, ascii_part in ((np.flatnonzero(ascii_doc), True), (np.flatnonzero(~ascii_doc), False)):
            if len(part):
                r, hashes = self._grams([docs[i] for i in part.tolist()], ascii_part)
                rows.append(part[r])
                h.append(hashes)
        rows, h = np.concatenate(rows), np.concatenate(h)
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

    def _grams(self, docs: list[str], ascii_docs: bool) -> tuple[np.ndarray, np.ndarray]:
        """(document, signed hash) of every n-gram of ``docs``, lowercased."""
        if not ascii_docs:  # lowercasing may change a length ("\u0130" -> "i\u0307")
            docs = [d.lower() for d in docs]
        text = "\n".join(docs) + "\n"  # a non-word character between the documents and at the end
        if ascii_docs:
            text = text.lower()  # ASCII: one character to one, so the joined text lowercases at once
        ascii_text = text.isascii()
        codes = np.frombuffer(text.encode("ascii") if ascii_text else text.encode("utf-32-le", "surrogatepass"),
                              dtype=np.uint8 if ascii_text else np.uint32)
        word = word_chars(codes)
        edge = np.diff(word.view(np.int8), prepend=np.int8(0))
        first, end = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)  # text ends in "\n": as many ends
        length = end - first
        word[first[length == 1]] = False  # one-character words are no tokens
        long_enough = length >= 2
        first, end, length = first[long_enough], end[long_enough], length[long_enough]
        doc_start = np.cumsum([0] + [len(d) + 1 for d in docs[:-1]])
        doc = np.searchsorted(doc_start, first, "right") - 1
        # the tokens packed, each followed by one space: each token's characters and the one after it
        word[end] = True
        spaced = codes.copy()
        spaced[end] = 32
        packed = spaced[word]
        at = np.cumsum(length + 1) - (length + 1)  # where each token starts in ``packed``
        rows, hashes = [], []
        lo, hi = self.ngrams
        for n in range(lo, min(hi, len(length)) + 1):
            same_doc = doc[:len(doc) - n + 1] == doc[n - 1:]
            hashes.append(self._gram_hashes(packed, at + length, n, ascii_text)[same_doc])
            rows.append(doc[:len(same_doc)][same_doc])
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(rows), np.concatenate(hashes)

    def _gram_hashes(self, packed: np.ndarray, after: np.ndarray, n: int, ascii_text: bool) -> np.ndarray:
        """The signed hash of the n-gram starting at each token (tokens ``k .. k+n-1``; the last
        ``n - 1`` tokens start none), ``after[k]`` being the space after token ``k`` in ``packed``.

        The n-grams starting at tokens ``r, r+n, r+2n, ...`` are made at once: a tab replaces
        the space after each one, and one ``split`` cuts them out."""
        out = np.empty(len(after) - n + 1, dtype=np.int64)
        start = 0
        for r in range(min(n, len(out))):
            last = after[r + n - 1::n]  # the space after each of these n-grams
            piece = packed[start:last[-1]].copy()
            piece[last[:-1] - start] = 9
            grams = piece.tobytes() if ascii_text else piece.tobytes().decode("utf-32-le", "surrogatepass")
            grams = grams.split(b"\t" if ascii_text else "\t")  # bytes are hashed as they are, a str as UTF-8
            out[r::n] = np.fromiter(map(self._murmur, grams), dtype=np.int64, count=len(last))
            start = after[r] + 1
        return out


def concat(pieces: list[CsrBlock]) -> CsrBlock:
    """The rows of ``pieces``, one after the other."""
    if not pieces:
        return CsrBlock(np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
    if len(pieces) == 1:
        return pieces[0]
    offsets = np.cumsum([0] + [int(p.indptr[-1]) for p in pieces])
    indptr = np.concatenate([[0]] + [p.indptr[1:] + off for p, off in zip(pieces, offsets[:-1])])
    return CsrBlock(np.concatenate([p.data for p in pieces]), np.concatenate([p.indices for p in pieces]),
                    indptr.astype(np.int64))


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
