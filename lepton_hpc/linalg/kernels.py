"""Local (single-process) numerical kernels for the distributed linear algebra.

Everything here is pure numpy/scipy and never touches MPI: the distributed
drivers in :mod:`lepton_hpc.linalg.decompositions` and
:mod:`lepton_hpc.linalg.factored` call these kernels on the rank-local row
block or on small replicated matrices, and do the communication themselves.

Conventions
-----------
* Matrices are float64.  ``n_rows`` / ``n_cols`` name the shape of a block,
  ``k`` the rank of a factorisation, ``n_sketch`` the width of a random sketch.
* QR factors are canonical: the diagonal of ``R`` is non-negative, so a
  full-column-rank matrix has a unique ``(Q, R)`` and results computed at
  different rank counts are comparable.
* Singular vectors are canonical: in every column of ``V`` the entry of
  largest magnitude (first one on ties) is positive, and the matching column
  of ``U`` is flipped with it.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..layout import block_offsets

__all__ = [
    "canonicalize_qr_signs",
    "local_qr",
    "qr_of_stacked",
    "orthonormalize",
    "canonicalize_svd_signs",
    "small_svd",
    "gaussian_sketch",
    "factored_matmul",
    "reconstruct_block",
    "residual_matmul",
    "residual_tmatmul_local",
    "split_offsets",
]


def canonicalize_qr_signs(q: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip signs so that ``diag(r) >= 0``; ``q @ r`` is unchanged.

    Parameters
    ----------
    q : ndarray, shape (n_rows, n_diag)
    r : ndarray, shape (n_diag, n_cols)

    Returns
    -------
    q, r : ndarray
        New arrays with column ``j`` of ``q`` and row ``j`` of ``r`` negated
        wherever ``r[j, j] < 0``.
    """
    n_diag = min(r.shape)
    signs = np.ones(r.shape[0])
    if n_diag:
        diag_signs = np.sign(np.diagonal(r)[:n_diag])
        signs[:n_diag] = np.where(diag_signs < 0, -1.0, 1.0)
    return q * signs[np.newaxis, :], r * signs[:, np.newaxis]


def local_qr(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Economic Householder QR of one row block, tolerant of tiny blocks.

    Parameters
    ----------
    block : ndarray, shape (n_rows, n_cols)
        May have fewer rows than columns, or zero rows.

    Returns
    -------
    q : ndarray, shape (n_rows, n_diag)
        Orthonormal columns, ``n_diag = min(n_rows, n_cols)``.
    r : ndarray, shape (n_diag, n_cols)
        Upper trapezoidal with non-negative diagonal.  A block with zero rows
        gives ``q`` of shape (0, 0) and ``r`` of shape (0, n_cols).
    """
    n_rows, n_cols = block.shape
    if n_rows == 0 or n_cols == 0:
        n_diag = min(n_rows, n_cols)
        return np.zeros((n_rows, n_diag)), np.zeros((n_diag, n_cols))
    q, r = scipy.linalg.qr(block, mode="economic", check_finite=False)
    return canonicalize_qr_signs(q, r)


def qr_of_stacked(r_blocks: list[np.ndarray], n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """QR of the vertically stacked per-rank ``R`` factors (the TSQR reduction).

    Parameters
    ----------
    r_blocks : list of ndarray, each shape (n_diag_i, n_cols)
        The local ``R`` of every rank, in rank order (empty ones allowed).
    n_cols : int
        Column count, needed when every block is empty.

    Returns
    -------
    q_stacked : ndarray, shape (sum(n_diag_i), n_diag)
        Orthonormal columns; rows ``[off_i, off_i + n_diag_i)`` belong to rank i.
    r : ndarray, shape (n_diag, n_cols)
        The global ``R`` (non-negative diagonal), ``n_diag = min(m, n_cols)``.
    """
    if r_blocks:
        stacked = np.vstack([np.asarray(r).reshape(-1, n_cols) for r in r_blocks])
    else:
        stacked = np.zeros((0, n_cols))
    return local_qr(stacked)


def orthonormalize(mat: np.ndarray) -> np.ndarray:
    """Orthonormal basis (canonical-sign Householder Q) of a replicated matrix's columns.

    Parameters
    ----------
    mat : ndarray, shape (n_rows, n_cols) with ``n_cols <= n_rows``

    Returns
    -------
    ndarray, shape (n_rows, n_cols)
    """
    q, _ = local_qr(mat)
    return q


def canonicalize_svd_signs(
    u: np.ndarray, vt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fix the sign ambiguity of singular vector pairs using ``V`` only.

    Parameters
    ----------
    u : ndarray, shape (n_rows, k)
    vt : ndarray, shape (k, n_cols)

    Returns
    -------
    u, vt : ndarray
        For each ``j``, the largest-magnitude entry of ``vt[j]`` (first on
        ties) is made positive and ``u[:, j]`` is flipped with it.  Because
        ``V`` is replicated, every rank makes the same choice without talking.
    """
    if vt.size == 0:
        return u, vt
    pivot = np.argmax(np.abs(vt), axis=1)
    signs = np.sign(vt[np.arange(vt.shape[0]), pivot])
    signs = np.where(signs < 0, -1.0, 1.0)
    return u * signs[np.newaxis, :], vt * signs[:, np.newaxis]


def small_svd(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of a small replicated matrix with canonical signs.

    Uses LAPACK ``gesdd`` and falls back to ``gesvd`` if it fails to converge.

    Parameters
    ----------
    mat : ndarray, shape (n_rows, n_cols)

    Returns
    -------
    u : ndarray, shape (n_rows, n_diag)
    s : ndarray, shape (n_diag,)
        Non-increasing, non-negative.
    vt : ndarray, shape (n_diag, n_cols)
    """
    n_rows, n_cols = mat.shape
    n_diag = min(n_rows, n_cols)
    if n_diag == 0:
        return np.zeros((n_rows, 0)), np.zeros(0), np.zeros((0, n_cols))
    try:
        u, s, vt = scipy.linalg.svd(mat, full_matrices=False, check_finite=False)
    except np.linalg.LinAlgError:
        u, s, vt = scipy.linalg.svd(
            mat, full_matrices=False, check_finite=False, lapack_driver="gesvd"
        )
    u, vt = canonicalize_svd_signs(u, vt)
    return u, s, vt


def gaussian_sketch(n_cols: int, n_sketch: int, seed) -> np.ndarray:
    """Standard normal test matrix Ω drawn from ``np.random.default_rng(seed)``.

    Every caller passing the same ``seed`` gets the same Ω, so ranks share the
    sketch without communication.

    Returns
    -------
    ndarray, shape (n_cols, n_sketch)
    """
    return np.random.default_rng(seed).standard_normal((n_cols, n_sketch))


def factored_matmul(
    u: np.ndarray, s: np.ndarray, v: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """``U @ (S * (V.T @ B))`` without forming ``U S Vᵀ``.

    Parameters
    ----------
    u : ndarray, shape (n_rows, k)
    s : ndarray, shape (k,)
    v : ndarray, shape (n_cols, k)
    b : ndarray, shape (n_cols,) or (n_cols, p)

    Returns
    -------
    ndarray, shape (n_rows,) or (n_rows, p)
    """
    inner = v.T @ b
    scaled = s * inner if inner.ndim == 1 else s[:, np.newaxis] * inner
    return u @ scaled


def reconstruct_block(u: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Dense ``U diag(S) Vᵀ`` for a (local) block of ``U``; shape (n_rows, n_cols)."""
    return (u * s[np.newaxis, :]) @ v.T


def residual_matmul(
    a_block: np.ndarray, u: np.ndarray, s: np.ndarray, v: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """``(A − U S Vᵀ) @ X`` for one row block, evaluated through the factors.

    Parameters
    ----------
    a_block : ndarray, shape (n_rows, n_cols)
    u, s, v : factors with ``u`` of shape (n_rows, k)
    x : ndarray, shape (n_cols, p)

    Returns
    -------
    ndarray, shape (n_rows, p)
    """
    return a_block @ x - factored_matmul(u, s, v, x)


def residual_tmatmul_local(
    a_block: np.ndarray, u: np.ndarray, s: np.ndarray, v: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """This block's share of ``(A − U S Vᵀ)ᵀ @ Y``; the shares sum to the full product.

    Parameters
    ----------
    a_block : ndarray, shape (n_rows, n_cols)
    u, s, v : factors with ``u`` of shape (n_rows, k)
    y : ndarray, shape (n_rows, p)

    Returns
    -------
    ndarray, shape (n_cols, p)
    """
    return a_block.T @ y - factored_matmul(v, s, u, y)


def split_offsets(n_rows: int, n_parts: int) -> np.ndarray:
    """Row offsets of a near-even split (same sizes as ``np.array_split``).

    Returns
    -------
    ndarray of int, shape (n_parts + 1,)
        Part ``i`` owns rows ``[offsets[i], offsets[i + 1])``.
    """
    return np.asarray(block_offsets(int(n_rows), int(n_parts)), dtype=np.int64)
