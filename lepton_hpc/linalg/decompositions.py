"""Distributed TSQR, thin SVD and randomized SVD of a row-distributed matrix.

The global matrix ``A`` (``m × n``) is split by rows: each rank holds a
contiguous block ``A_local`` (``n_rows_local × n``, in rank order).  Blocks may
be uneven, may have fewer rows than columns, or may be empty (``0 × n``).

TSQR design (allgather variant)
-------------------------------
Each rank computes a local Householder QR ``A_local = Q_i R_i`` with
``R_i`` of shape ``min(n_rows_local, n) × n`` (``0 × n`` for an empty block).
The small ``R_i`` are ``allgather``-ed (one collective, pickled; ``size``
matrices of at most ``n × n``), stacked in rank order and factored once more,
``[R_0; R_1; …] = Q_s R``.  That second QR is computed redundantly on every
rank from identical input, so ``R`` is replicated and each rank forms its
block ``Q_local = Q_i Q_s[rows of rank i]`` without a broadcast.  A binary
tree would cut the redundant work from ``O(size · n³)`` to ``O(log(size) · n³)``
per rank but needs a second pass to push the ``Q`` pieces back down; for the
tall-skinny sizes used here (``n`` up to a few hundred) the allgather is
simpler and just as fast.

``R`` has a non-negative diagonal (canonical sign), so for a full-column-rank
``A`` the factors are unique and comparable across rank counts.  Replicated
results (``R``, ``S``, ``V``) are bit-identical on every rank as long as all
ranks run the same LAPACK build with the same thread count (the usual case;
MKL users should enable conditional numerical reproducibility).

The default path is not Householder but CholeskyQR2 (two SYRK passes, each
reduced exactly over fixed chunks, and two small Cholesky factorisations), with
shifted CholeskyQR3 when ``A`` is too ill-conditioned for it and the Householder
TSQR above when ``m < n`` or ``A`` is too ill-conditioned even for that
(κ beyond about 1e12 at tall-skinny sizes); see
:mod:`~lepton_hpc.linalg.cholqr`.  ``.path`` of the result names the one that ran.
On the Cholesky paths ``R`` is bitwise identical across rank counts and row splits.

Thin SVD: ``A = Q R``, ``R = U_r S Vᵀ`` (small replicated SVD),
``U_local = Q_local U_r``.  Randomized SVD follows Halko, Martinsson & Tropp
(2011), Algorithms 4.3/4.4 + 5.1, with TSQR re-orthonormalisation.

Every function here is collective: argument problems are detected in one
``allgather`` up front (:func:`~lepton_hpc.linalg.collectives.agree_on_layout`) and
raised identically on every rank as :class:`~lepton_hpc.comm.JobError` (a
:class:`~lepton_hpc.errors.UserError`).  All communication goes through the
wrappers of :mod:`lepton_hpc.comm`.
"""

from __future__ import annotations

import operator
from typing import NamedTuple, Optional

import numpy as np

from . import cholqr, kernels
from .collectives import RowLayout, agree_on_layout
from .. import comm as C

#: The ``method`` values of :func:`tsqr` and :func:`svd_tsqr`.
QR_METHODS = ("auto", "householder")

__all__ = ["TSQRResult", "ThinSVD", "tsqr", "svd_tsqr", "randomized_svd", "orthogonality_error"]


class _QRFields(NamedTuple):
    Q_local: np.ndarray
    R: np.ndarray


class TSQRResult(_QRFields):
    """Distributed QR factors: ``A = Q R``.

    Attributes
    ----------
    Q_local : ndarray, shape (n_rows_local, min(m, n))
        This rank's rows of ``Q`` (orthonormal columns globally).
    R : ndarray, shape (min(m, n), n)
        Upper trapezoidal, non-negative diagonal; replicated.
    path : str
        Which algorithm ran (not a tuple field): ``cholesky_qr2``,
        ``shifted_cholesky_qr3`` or ``householder`` (:mod:`~lepton_hpc.linalg.cholqr`).
    """

    path = "householder"

    def __new__(cls, Q_local, R, path: str = "householder"):
        self = super().__new__(cls, Q_local, R)
        self.path = path
        return self

    def _replace(self, **fields):
        return type(self)(*super()._replace(**fields), path=self.path)


class _SVDFields(NamedTuple):
    U_local: np.ndarray
    S: np.ndarray
    V: np.ndarray


class ThinSVD(_SVDFields):
    """Distributed (possibly truncated) SVD: ``A ≈ U diag(S) Vᵀ``.

    Attributes
    ----------
    U_local : ndarray, shape (n_rows_local, k)
        This rank's rows of ``U``.
    S : ndarray, shape (k,)
        Singular values, non-increasing; replicated.
    V : ndarray, shape (n, k)
        Right singular vectors as columns (not ``Vᵀ``); replicated.
    path : str
        The QR path that ran (see :class:`TSQRResult`; for the randomized SVD,
        that of its last orthonormalisation).  Not a tuple field.
    """

    path = "householder"

    def __new__(cls, U_local, S, V, path: str = "householder"):
        self = super().__new__(cls, U_local, S, V)
        self.path = path
        return self

    def _replace(self, **fields):
        return type(self)(*super()._replace(**fields), path=self.path)


# --------------------------------------------------------------------------
# argument handling


def block_or_error(mat, name: str):
    """Convert to a finite float64 2-D array, or return ``(None, message)``."""
    try:
        arr = np.asarray(mat)
    except Exception as exc:  # ragged input and the like
        return None, f"{name} cannot be converted to an array ({exc})"
    if arr.ndim != 2:
        return None, f"{name} must be 2-D, got shape {arr.shape}"
    if np.iscomplexobj(arr) or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
    ):
        return None, f"{name} must be real-valued, got dtype {arr.dtype}"
    arr = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        return None, f"{name} contains NaN or inf"
    return arr, None


def _rank_or_error(k, *, optional: bool):
    """Normalise a requested rank ``k`` to ``int``; return ``(k, message)``."""
    if k is None:
        return None, (None if optional else "a target rank k is required")
    if isinstance(k, bool):
        return None, f"k must be an integer, got {k!r}"
    try:
        k = operator.index(k)
    except TypeError:
        return None, f"k must be an integer, got {k!r}"
    if k < 1:
        return None, f"requested rank k={k} must be at least 1"
    return k, None


def prepare_block(A_local, comm, name: str = "A_local", *, errors=(), replicated=None):
    """Validate this rank's block and agree on the layout.  Collective over `comm`."""
    block, error = block_or_error(A_local, name)
    error = "; ".join(e for e in (error, *errors) if e) or None
    shape = block.shape if block is not None else (None, None)
    layout = agree_on_layout(
        comm, shape[0], shape[1], local_error=error, replicated=replicated
    )
    return block, layout


def check_rank_fits(k: int, layout: RowLayout) -> None:
    """Raise ``JobError`` (identically on all ranks: ``layout`` is agreed) if ``k > min(m, n)``."""
    m, n = layout.shape
    if k > min(m, n):
        raise C.JobError(
            f"requested rank k={k} exceeds min(m, n)={min(m, n)} "
            f"for a matrix of shape (m, n)=({m}, {n})"
        )


# --------------------------------------------------------------------------
# TSQR


def _householder(block: np.ndarray, comm) -> TSQRResult:
    """Householder TSQR of an already validated float64 block.  Collective over `comm`."""
    q_local, r_local = kernels.local_qr(block)
    r_blocks = C.allgather(comm, r_local)
    q_stacked, r = kernels.qr_of_stacked(r_blocks, block.shape[1])
    start = sum(rb.shape[0] for rb in r_blocks[: comm.rank])
    q_piece = q_stacked[start : start + r_local.shape[0]]
    return TSQRResult(q_local @ q_piece, r, "householder")


def _qr(block: np.ndarray, layout: RowLayout, comm, method: str, chunk_rows):
    """``(CholQR or None, path)``: the Cholesky QR where ``method`` and ``A`` allow.  Collective."""
    if method == "householder":
        return None, "householder"
    chol, _reason = cholqr.factor(block, layout, comm, chunk_rows)
    return chol, chol.path if chol is not None else "householder"


def _tsqr_block(block: np.ndarray, layout: RowLayout, comm, method: str = "auto",
                chunk_rows=None) -> TSQRResult:
    """QR of an already validated float64 block (``layout`` agreed).  Collective over `comm`."""
    chol, path = _qr(block, layout, comm, method, chunk_rows)
    if chol is None:
        return _householder(block, comm)
    return TSQRResult(chol.q(), chol.r, path)


def _method_errors(method, chunk_rows) -> list:
    errors = []
    if method not in QR_METHODS:
        errors.append(f"method must be one of {QR_METHODS}, got {method!r}")
    if chunk_rows is not None and not (_is_count(chunk_rows) and chunk_rows > 0):
        errors.append(f"chunk_rows must be a positive int or None, got {chunk_rows!r}")
    return errors


def tsqr(A_local, comm, *, method: str = "auto", chunk_rows: Optional[int] = None) -> TSQRResult:
    """Tall-skinny QR of a row-distributed matrix.

    Collective over `comm`.

    Parameters
    ----------
    A_local : array_like, shape (n_rows_local, n)
        This rank's contiguous row block of ``A`` (rank order = row order).
        May have fewer rows than columns or none at all.
    comm : mpi4py communicator
    method : {"auto", "householder"}, default "auto"
        ``auto``: CholeskyQR2, shifted CholeskyQR3 when ``A`` is too
        ill-conditioned for it, Householder TSQR when ``m < n`` or ``A`` is
        numerically rank deficient (:mod:`~lepton_hpc.linalg.cholqr`).
        ``householder``: always Householder TSQR.
    chunk_rows : int, optional
        Rows per chunk of the Cholesky paths' Gram reduction (default
        :func:`~lepton_hpc.linalg.cholqr.default_chunk_rows`: 4096 unless ``n`` is large).
        With the same value, ``R`` is bitwise identical at every rank count
        and row split on those paths.

    Returns
    -------
    TSQRResult
        ``(Q_local, R)`` with ``Q_local`` of shape ``(n_rows_local, min(m, n))``
        and the replicated ``R`` of shape ``(min(m, n), n)`` whose diagonal is
        non-negative; ``.path`` names the algorithm that ran.

    Raises
    ------
    lepton_hpc.comm.JobError
        (a ``UserError``) on every rank, if any rank's block is not a finite real 2-D array or
        the column counts differ.
    """
    errors = _method_errors(method, chunk_rows)
    block, layout = prepare_block(A_local, comm, errors=errors, replicated=(str(method), chunk_rows))
    return _tsqr_block(block, layout, comm, method, chunk_rows)


# --------------------------------------------------------------------------
# SVDs


def _svd_full(block: np.ndarray, layout: RowLayout, comm, method: str = "auto",
              chunk_rows=None) -> ThinSVD:
    """Untruncated thin SVD (``min(m, n)`` triplets).  Collective over `comm`."""
    chol, path = _qr(block, layout, comm, method, chunk_rows)
    if chol is None:
        q_local, r = _householder(block, comm)
        u_r, s, vt = kernels.small_svd(r)
        return ThinSVD(q_local @ u_r, s, vt.T, path)
    u_r, s, vt = kernels.small_svd(chol.r)
    return ThinSVD(chol.times(u_r), s, vt.T, path)


def svd_projection(block: np.ndarray, y_local: np.ndarray, comm):
    """``(S, V, Uᵀy, path)`` of the thin SVD of a validated block, ``U`` not kept.  Collective.

    On the Cholesky paths ``Uᵀy`` is reduced exactly over the Gram chunks (bitwise
    the same at any rank count, like ``S`` and ``V``) and ``U`` is never formed;
    on the Householder path it is ``U_localᵀ y`` summed by
    :func:`lepton_hpc.comm.allreduce_object_sum`.
    """
    layout = agree_on_layout(comm, block.shape[0], block.shape[1])
    chol, path = _qr(block, layout, comm, "auto", None)
    if chol is None:
        full = _svd_full(block, layout, comm, "householder")
        return full.S, full.V, np.asarray(C.allreduce_object_sum(comm, full.U_local.T @ y_local)), path
    u_r, s, vt = kernels.small_svd(chol.r)
    return s, vt.T, chol.project(y_local, u_r, comm), path


def svd_tsqr_untruncated(A_local, comm, k: Optional[int] = None, *, method: str = "auto",
                         chunk_rows: Optional[int] = None):
    """Validate like :func:`svd_tsqr`, but return all ``min(m, n)`` triplets.

    Collective over `comm`.  Used by :class:`FactoredMatrix` to keep the
    discarded singular values for tail estimates.

    Returns
    -------
    (ThinSVD, RowLayout)
    """
    k, k_error = _rank_or_error(k, optional=True)
    errors = (k_error, *_method_errors(method, chunk_rows))
    block, layout = prepare_block(A_local, comm, errors=errors,
                                  replicated=(k, str(method), chunk_rows))
    if k is not None:
        check_rank_fits(k, layout)
    return _svd_full(block, layout, comm, method, chunk_rows), layout


def svd_tsqr(A_local, comm, k: Optional[int] = None, *, method: str = "auto",
             chunk_rows: Optional[int] = None) -> ThinSVD:
    """Thin SVD through TSQR, optionally truncated to rank ``k``.

    Collective over `comm`.

    Parameters
    ----------
    A_local : array_like, shape (n_rows_local, n)
        This rank's row block (may be empty or shorter than wide).
    comm : mpi4py communicator
    k : int, optional
        Keep the ``k`` leading triplets; default keeps all ``min(m, n)``.
    method, chunk_rows :
        As for :func:`tsqr`; ``U = Q U_R`` is formed as ``Q_prev (R_last⁻¹ U_R)``
        on the Cholesky paths (one GEMM, ``Q`` never formed).

    Returns
    -------
    ThinSVD
        ``(U_local, S, V)``: ``U_local`` is ``(n_rows_local, k)``, ``S`` is
        ``(k,)`` and ``V`` is ``(n, k)``; ``S`` and ``V`` are replicated;
        ``.path`` names the QR algorithm that ran.

    Raises
    ------
    lepton_hpc.comm.JobError
        (a ``UserError``) on every rank, e.g. "requested rank k=… exceeds min(m, n)=…".
    """
    full, _ = svd_tsqr_untruncated(A_local, comm, k, method=method, chunk_rows=chunk_rows)
    if k is None:
        return full
    return ThinSVD(full.U_local[:, :k], full.S[:k], full.V[:, :k], full.path)


def _is_count(value) -> bool:
    """True for a non-negative integer (``bool`` excluded)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def _seed_or_error(seed):
    if seed is None:
        return None, None
    if isinstance(seed, bool):
        return None, f"seed must be an int or None, got {seed!r}"
    try:
        return operator.index(seed), None
    except TypeError:
        return None, f"seed must be an int or None, got {seed!r}"


def randomized_svd_untruncated(
    A_local, comm, k: int, *, oversampling: int = 10, n_power_iter: int = 2, seed=0
):
    """Randomized SVD returning all ``min(k + oversampling, m, n)`` triplets.

    Collective over `comm`.  See :func:`randomized_svd`.

    Returns
    -------
    (ThinSVD, RowLayout)
    """
    k, k_error = _rank_or_error(k, optional=False)
    seed, seed_error = _seed_or_error(seed)
    errors = [k_error, seed_error]
    for name, value in (("oversampling", oversampling), ("n_power_iter", n_power_iter)):
        if not _is_count(value):
            errors.append(f"{name} must be a non-negative int, got {value!r}")
    replicated = (k, seed, str(oversampling), str(n_power_iter))
    block, layout = prepare_block(A_local, comm, errors=errors, replicated=replicated)
    check_rank_fits(k, layout)
    if seed is None:  # fresh entropy, agreed on by broadcast
        seed = C.bcast(comm, np.random.SeedSequence().entropy if comm.rank == 0 else None, root=0)

    n_sketch = min(k + int(oversampling), *layout.shape)
    omega = kernels.gaussian_sketch(layout.n_cols, n_sketch, seed)
    sketch_layout = RowLayout(layout.offsets, layout.rank, n_sketch)
    qr = _tsqr_block(block @ omega, sketch_layout, comm)
    for _ in range(int(n_power_iter)):
        z = kernels.orthonormalize(C.allreduce_sum(comm, block.T @ qr.Q_local))
        qr = _tsqr_block(block @ z, sketch_layout, comm)
    b = C.allreduce_sum(comm, qr.Q_local.T @ block)  # (n_sketch, n), replicated
    u_b, s, vt = kernels.small_svd(b)
    return ThinSVD(qr.Q_local @ u_b, s, vt.T, qr.path), layout


def randomized_svd(
    A_local, comm, k: int, *, oversampling: int = 10, n_power_iter: int = 2, seed=0
) -> ThinSVD:
    """Randomized rank-``k`` SVD (Halko–Martinsson–Tropp) of a row-distributed matrix.

    Collective over `comm`.

    The sketch ``Ω`` (``n × (k + oversampling)``, clipped to ``min(m, n)``
    columns) is drawn from ``np.random.default_rng(seed)`` on every rank, so
    it is shared without communication.  ``Y = A Ω`` is row-distributed and
    orthonormalised by TSQR; each power iteration forms ``Z = orth(Aᵀ Q)``
    (one ``Allreduce``, replicated QR) and ``Q = TSQR(A Z)``.  Finally
    ``B = Qᵀ A`` (one ``Allreduce``) and ``B``'s small SVD is replicated.

    Parameters
    ----------
    A_local : array_like, shape (n_rows_local, n)
    comm : mpi4py communicator
    k : int
        Target rank, ``1 <= k <= min(m, n)``.
    oversampling : int, default 10
        Extra sketch columns ``p``.  For slowly decaying spectra (``σ_j ~ 1/j``)
        ``p ≈ 2k`` gives much more accurate trailing values than ``p = 10``.
    n_power_iter : int, default 2
        Power iterations ``q``.
    seed : int or None, default 0
        Must be the same on every rank.  ``None`` draws fresh entropy on rank
        0 and broadcasts it (one extra collective).

    Returns
    -------
    ThinSVD
        ``(U_local, S, V)`` with ``k`` triplets; ``S`` and ``V`` replicated.

    Raises
    ------
    lepton_hpc.comm.JobError
        (a ``UserError``) on every rank, for invalid or rank-inconsistent arguments or
        ``k > min(m, n)``.
    """
    full, _ = randomized_svd_untruncated(
        A_local, comm, k, oversampling=oversampling, n_power_iter=n_power_iter, seed=seed
    )
    return ThinSVD(full.U_local[:, :k], full.S[:k], full.V[:, :k], full.path)


def orthogonality_error(U_local, comm, ord=2) -> float:
    """``‖UᵀU − I‖`` of a row-distributed ``U``.

    Collective over `comm`.  One ``Allreduce`` of the ``k × k`` Gram matrix.

    Parameters
    ----------
    U_local : array_like, shape (n_rows_local, k)
    comm : mpi4py communicator
    ord : {2, 'fro'}, default 2
        Spectral or Frobenius norm.

    Returns
    -------
    float
        The same value on every rank.
    """
    errors = [] if ord in (2, "fro") else [f"ord must be 2 or 'fro', got {ord!r}"]
    block, layout = prepare_block(U_local, comm, "U_local", errors=errors, replicated=(str(ord),))
    gram = C.allreduce_sum(comm, block.T @ block)
    return float(np.linalg.norm(gram - np.eye(layout.n_cols), ord=ord))
