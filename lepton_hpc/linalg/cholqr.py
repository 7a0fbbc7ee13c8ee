"""CholeskyQR2 and shifted CholeskyQR3 of a row-distributed tall matrix.

A pass forms the Gram matrix ``G = XᵀX`` of the current rows (one SYRK per
chunk), reduces it exactly, and takes its Cholesky factor ``R`` (``G = RᵀR``);
the next rows are ``X R⁻¹`` (one TRSM per chunk, fused with the next pass's
SYRK while the chunk is in cache).  All of it is BLAS-3 and reads the matrix
once per pass, where Householder QR of a 32- or 64-column block is BLAS-2.

Paths (:data:`PATHS`), tried in this order:

``cholesky_qr2``
    Two passes (Yamamoto et al. 2015): ``A = Q₁R₁``, ``Q₁ = Q R₂``.  Taken
    when the Cholesky of ``AᵀA`` succeeds, LAPACK's estimate of ``κ(R₁)`` is
    at most :data:`COND_LIMIT` (CholeskyQR2 needs ``κ(A) ≲ u^(-1/2)``) and the
    second Gram matrix is within :data:`ORTH_TOL` of the identity.
``shifted_cholesky_qr3``
    Fukaya et al. (2020): the first Cholesky is of ``AᵀA + sI`` with
    ``s = 11 (mn + n(n+1)) u ‖A‖_F²``, which makes ``κ(Q₁) ≲ u^(-1/2)`` for any
    ``κ(A) ≲ u⁻¹``; CholeskyQR2 of ``Q₁`` follows.  Three passes.
``householder``
    The caller's Householder TSQR, when ``m < n``, ``n = 0``, or a Cholesky
    fails or the last Gram matrix is still far from ``I`` (``A`` numerically
    rank deficient, or κ(A) past about 1e12 at tall-skinny sizes).  :func:`factor` returns ``None`` and the reason.

Determinism: Gram partials are per chunk of a fixed global grid of
``chunk_rows`` rows (rows ``[j c, (j+1) c)``, whatever the rank count) and are
summed by :class:`lepton_hpc.reduce.ChunkReducer` in its fixed tree order.
A chunk whose rows straddle ranks belongs to the rank holding its first row;
the later ranks' rows of it (their *head*, fewer than ``chunk_rows``) are
allgathered once.  Every chunk is then transformed by calls of the same shape
on the same values at any rank count, so the replicated ``R`` (and the ``S``,
``V`` of its SVD) are bitwise identical across rank counts.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
from scipy.linalg import blas, lapack

from .. import comm as C
from ..layout import Layout
from ..reduce import ChunkReducer

__all__ = ["PATHS", "CholQR", "factor", "default_chunk_rows", "DEFAULT_CHUNK_ROWS", "COND_LIMIT", "ORTH_TOL"]

PATHS = ("cholesky_qr2", "shifted_cholesky_qr3", "householder")
#: Rows per Gram chunk (the leaves of the exact reduction): 4096 x 64 doubles is 2 MiB.
DEFAULT_CHUNK_ROWS = 4096
#: Bytes of one rank's Gram partials at most (n(n+1)/2 doubles per chunk it owns).
PARTIALS_BUDGET_BYTES = 64 << 20


def default_chunk_rows(m: int, n: int) -> int:
    """Rows per Gram chunk for an ``m × n`` matrix: 4096, more when the partials would not fit.

    Depends on ``(m, n)`` only, never on the rank count.
    """
    max_chunks = max(1, PARTIALS_BUDGET_BYTES // (8 * max(1, n * (n + 1) // 2)))
    return max(DEFAULT_CHUNK_ROWS, -(-m // max_chunks))
#: Above this estimate of κ(R₁) (1-norm, LAPACK trcon) the shifted path is taken directly.
COND_LIMIT = 1e7
#: A pass is accepted when ‖XᵀX − I‖_F of its rows is at most this.
ORTH_TOL = 0.1
_EPS = np.finfo(np.float64).eps


class CholQR(NamedTuple):
    """A Cholesky QR: ``A = X R_last⁻¹ · R`` where ``Q = X R_last⁻¹`` (not formed).

    rows : ndarray (n_rows_local, n), the rows before the last pass (``Q₁`` or ``Q₂``)
    r_last : ndarray (n, n), the last pass's Cholesky factor (near the identity)
    r : ndarray (n, n), the product of all passes' factors (replicated, diag > 0)
    path : str, one of :data:`PATHS`
    chunks, ownership, layout, chunk_rows : how ``rows`` is cut into owned Gram chunks
    """

    rows: np.ndarray
    r_last: np.ndarray
    r: np.ndarray
    path: str
    chunks: "_Rows"
    ownership: "_Ownership"
    layout: object
    chunk_rows: int

    def q(self) -> np.ndarray:
        """This rank's rows of ``Q = rows · r_last⁻¹``."""
        return _solve_rows(self.rows, self.r_last)

    def times(self, small: np.ndarray) -> np.ndarray:
        """This rank's rows of ``Q · small`` for an ``n × p`` ``small`` (one GEMM)."""
        return self.rows @ _solve_upper(self.r_last, small)

    def project(self, y_local: np.ndarray, small: np.ndarray, comm) -> np.ndarray:
        """``(Q · small)ᵀ y`` for a row-distributed vector ``y``, reduced exactly.  Collective.

        Per owned chunk ``X_jᵀ y_j`` (``y``'s rows cut like ``rows``, heads
        exchanged the same way), summed in the fixed tree, then ``(R_last⁻¹ small)ᵀ``
        times it: bitwise the same at any rank count.
        """
        y = np.ascontiguousarray(np.asarray(y_local, dtype=np.float64).reshape(-1, 1))
        y_rows, _ = _Rows.split(y, self.layout, self.chunk_rows, comm)
        reducer = ChunkReducer(comm, self.ownership, self.rows.shape[1], "exact")
        for i, (x, yc) in enumerate(zip(self.chunks.chunks(), y_rows.chunks())):
            reducer.partials[i] = (x.T @ yc)[:, 0]
        return _solve_upper(self.r_last, small).T @ reducer.reduce()


# ----------------------------------------------------------------------- kernels

def _solve_rows(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``x R⁻¹`` for C-ordered rows ``x`` and upper triangular ``R`` (TRSM on ``xᵀ``)."""
    if x.shape[0] == 0:
        return np.zeros_like(x)
    return blas.dtrsm(1.0, r, x.T, side=0, lower=0, trans_a=1).T


def _solve_upper(r: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``R⁻¹ b`` for upper triangular ``R``."""
    return blas.dtrsm(1.0, r, np.asfortranarray(b), side=0, lower=0, trans_a=0)


def _gram_upper(x: np.ndarray, iu) -> np.ndarray:
    """Upper triangle (row-major, ``iu`` order) of ``xᵀx`` by one SYRK."""
    if x.shape[0] == 0:
        return np.zeros(len(iu[0]))
    return blas.dsyrk(1.0, x.T)[iu]  # xᵀ is Fortran-ordered: SYRK of it is (xᵀ)(xᵀ)ᵀ


def _cholesky(g: np.ndarray) -> Optional[np.ndarray]:
    """Upper Cholesky factor of a symmetric ``g``, or ``None`` if it is not positive definite."""
    r, info = lapack.dpotrf(g, lower=0, clean=1, overwrite_a=0)
    return np.triu(r) if info == 0 else None


def _cond(r: np.ndarray) -> float:
    rcond, info = lapack.dtrcon(r, norm="1", uplo="U", diag="N")
    return float("inf") if info != 0 or rcond <= 0 else 1.0 / float(rcond)


def _off_identity(g: np.ndarray) -> float:
    return float(np.linalg.norm(g - np.eye(g.shape[0])))


# ------------------------------------------------------------------ the rows

class _Ownership(Layout):
    """Chunk ids each rank owns (the chunks whose first row it holds): uneven, contiguous."""

    def __init__(self, ranges: list, rank: int, n_chunks: int, chunk_rows: int, n_rows: int):
        self.n_rows, self.chunk_rows, self.size, self.rank = n_rows, chunk_rows, len(ranges), rank
        self.n_chunks = n_chunks
        self._chunks = ranges


def _owned_range(lo: int, hi: int, c: int) -> range:
    first = -(-lo // c)
    return range(first, -(-hi // c)) if lo < hi else range(first, first)


class _Rows:
    """One rank's rows of the current matrix, cut along the global chunk grid.

    ``block`` holds the rank's own rows; ``head`` of them (before the first grid
    line) belong to an earlier rank's chunk; ``tail`` is this rank's last owned
    chunk completed with later ranks' heads when it straddles them (else None).
    """

    def __init__(self, block, head: int, spans: list, tail: Optional[np.ndarray], tail_at: int):
        self.block, self.head, self.spans, self.tail, self.tail_at = block, head, spans, tail, tail_at

    @classmethod
    def split(cls, block: np.ndarray, layout, c: int, comm) -> tuple["_Rows", _Ownership]:
        offsets, rank, m = layout.offsets, layout.rank, layout.n_rows_global
        ranges = [_owned_range(offsets[q], offsets[q + 1], c) for q in range(len(offsets) - 1)]
        heads = [min(r.start * c, offsets[q + 1]) - offsets[q] for q, r in enumerate(ranges)]
        lo, hi = offsets[rank], offsets[rank + 1]
        own = ranges[rank]
        spans, tail, tail_at = [], None, block.shape[0]
        received = C.allgather(comm, block[: heads[rank]]) if any(heads) else None
        for j in own:
            start, stop = j * c, min((j + 1) * c, m)
            if stop <= hi:
                spans.append((start - lo, stop - lo))
            else:  # straddles later ranks: complete it with their heads, in rank order
                pieces = [block[start - lo:]]
                pieces += [received[q] for q in range(rank + 1, len(ranges))
                           if offsets[q] < stop and heads[q]]
                tail, tail_at = np.vstack(pieces), start - lo
        ownership = _Ownership(ranges, rank, -(-m // c), c, m)
        return cls(block, heads[rank], spans, tail, tail_at), ownership

    def chunks(self):
        """The owned chunks' rows, in chunk order."""
        for lo, hi in self.spans:
            yield self.block[lo:hi]
        if self.tail is not None:
            yield self.tail

    def gram_into(self, partials: np.ndarray, iu) -> None:
        for i, x in enumerate(self.chunks()):
            partials[i] = _gram_upper(x, iu)

    def solve_gram_into(self, r: np.ndarray, partials: np.ndarray, iu) -> "_Rows":
        """The rows ``X R⁻¹``, each chunk's Gram partial taken while it is hot."""
        out = np.empty_like(self.block)
        if self.head:
            out[: self.head] = _solve_rows(self.block[: self.head], r)
        for i, (lo, hi) in enumerate(self.spans):
            out[lo:hi] = y = _solve_rows(self.block[lo:hi], r)
            partials[i] = _gram_upper(y, iu)
        tail = None
        if self.tail is not None:
            tail = _solve_rows(self.tail, r)
            partials[len(self.spans)] = _gram_upper(tail, iu)
            out[self.tail_at:] = tail[: out.shape[0] - self.tail_at]
        return _Rows(out, self.head, self.spans, tail, self.tail_at)


# ------------------------------------------------------------------ the driver

class _Gram:
    """The exact reduction of packed upper Gram triangles over the owned chunks."""

    def __init__(self, comm, ownership: _Ownership, n: int):
        self.iu = np.triu_indices(n)
        self.n = n
        self.reducer = ChunkReducer(comm, ownership, len(self.iu[0]), "exact")

    def finish(self) -> np.ndarray:
        packed = self.reducer.reduce()
        g = np.zeros((self.n, self.n))
        g[self.iu] = packed
        return np.triu(g, 1).T + g


def factor(block: np.ndarray, layout, comm, chunk_rows: Optional[int] = None):
    """Cholesky QR of the row-distributed matrix.  Collective over `comm`.

    Returns
    -------
    (CholQR or None, str)
        The factorisation and its path, or ``None`` and the reason Householder
        TSQR must be used instead.  The same on every rank.
    """
    m, n = layout.shape
    if n == 0 or m < n:
        return None, "m < n" if n else "no columns"
    c = int(chunk_rows) if chunk_rows else default_chunk_rows(m, n)
    rows, ownership = _Rows.split(np.ascontiguousarray(block), layout, c, comm)
    gram = _Gram(comm, ownership, n)
    partials = gram.reducer.partials
    rows.gram_into(partials, gram.iu)
    g = gram.finish()
    r1 = _cholesky(g)
    if r1 is not None and _cond(r1) <= COND_LIMIT:
        q1 = rows.solve_gram_into(r1, partials, gram.iu)
        g2 = gram.finish()
        r2 = _cholesky(g2)
        if r2 is not None and _off_identity(g2) <= ORTH_TOL:
            return CholQR(q1.block, r2, np.triu(r2 @ r1), "cholesky_qr2", q1, ownership, layout, c), "cholesky_qr2"
    shift = 11.0 * (m * n + n * (n + 1)) * _EPS * float(np.trace(g))
    rs = _cholesky(g + shift * np.eye(n))
    if rs is None:
        return None, "the Gram matrix is not positive definite"
    q1 = rows.solve_gram_into(rs, partials, gram.iu)
    r2 = _cholesky(gram.finish())
    if r2 is None:
        return None, "A is too ill-conditioned for shifted CholeskyQR3 (its Q1 Gram matrix is not positive definite)"
    q2 = q1.solve_gram_into(r2, partials, gram.iu)
    g3 = gram.finish()
    r3 = _cholesky(g3)
    if r3 is None or _off_identity(g3) > ORTH_TOL:
        return None, "A is too ill-conditioned for shifted CholeskyQR3 (its last Gram matrix is far from I)"
    r = np.triu(r3 @ np.triu(r2 @ rs))
    return CholQR(q2.block, r3, r, "shifted_cholesky_qr3", q2, ownership, layout, c), "shifted_cholesky_qr3"
