"""A row-distributed matrix held as factors ``A ≈ U diag(S) Vᵀ``.

Each rank owns the rows ``[row_start, row_stop)`` of ``U``; ``S`` (1-D) and
``V`` (``n × k``) are replicated.  Products go through the factors, so the
dense ``m × n`` matrix is never formed.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import collective_io, kernels
from .collectives import agree_on_layout
from .decompositions import (
    prepare_block,
    randomized_svd_untruncated,
    svd_tsqr_untruncated,
)
from .. import comm as C
from ..errors import UserError

__all__ = ["FactoredMatrix"]

_METHODS = ("tsqr", "randomized")


class FactoredMatrix:
    """``A ≈ U diag(S) Vᵀ`` with ``U`` split by rows over the ranks.

    Parameters
    ----------
    U_local : array_like, shape (n_rows_local, k)
        This rank's rows of ``U``.
    S : array_like, shape (k,)
        Singular values (non-increasing), replicated.
    V : array_like, shape (n, k)
        Right factor (columns = right singular vectors), replicated.
    row_range : (int, int)
        Global rows ``[row_start, row_stop)`` of this block.
    shape : (int, int)
        Global shape ``(m, n)``.
    s_discarded : array_like, optional
        Singular values dropped by truncation, largest first.
    tail_complete : bool, default False
        Whether ``s_discarded`` holds *all* singular values after the kept
        ones (true for a TSQR SVD, false for a randomized one).

    Notes
    -----
    The constructor does no communication; :meth:`from_dense_block`,
    :meth:`from_local_factors` and :meth:`load` are the collective builders.
    """

    def __init__(self, U_local, S, V, *, row_range, shape, s_discarded=None, tail_complete=False,
                 qr_path=None):
        self.U_local = np.ascontiguousarray(U_local, dtype=np.float64)
        self.S = np.ascontiguousarray(S, dtype=np.float64).reshape(-1)
        self.V = np.ascontiguousarray(V, dtype=np.float64)
        self.row_range = (int(row_range[0]), int(row_range[1]))
        self.shape = (int(shape[0]), int(shape[1]))
        discarded = np.zeros(0) if s_discarded is None else s_discarded
        self.s_discarded = np.ascontiguousarray(discarded, dtype=np.float64).reshape(-1)
        self.tail_complete = bool(tail_complete)
        self.qr_path = qr_path  # which QR factored A (ThinSVD.path); None when not factored here
        k = self.S.shape[0]
        start, stop = self.row_range
        if self.U_local.ndim != 2 or self.U_local.shape != (stop - start, k):
            raise UserError(
                f"U_local has shape {self.U_local.shape}, expected ({stop - start}, {k}) "
                f"for row_range {self.row_range} and {k} singular values"
            )
        if self.V.shape != (self.shape[1], k):
            raise UserError(f"V has shape {self.V.shape}, expected ({self.shape[1]}, {k})")
        if not 0 <= start <= stop <= self.shape[0]:
            raise UserError(f"row_range {self.row_range} is outside [0, m={self.shape[0]}]")

    # ------------------------------------------------------------------ basics

    @property
    def k(self) -> int:
        """Rank of the factorisation (number of kept singular values)."""
        return self.S.shape[0]

    @property
    def n_rows_local(self) -> int:
        """Rows of ``U`` held by this rank."""
        return self.U_local.shape[0]

    def __repr__(self) -> str:
        return (
            f"FactoredMatrix(shape={self.shape}, k={self.k}, row_range={self.row_range}, "
            f"n_discarded={self.s_discarded.size}, tail_complete={self.tail_complete})"
        )

    def truncate(self, k: int) -> "FactoredMatrix":
        """Keep the ``k`` leading triplets; the dropped ``S`` go to ``s_discarded``.

        No communication (``k`` must be the same on every rank).

        Raises
        ------
        UserError
            If ``k`` is not in ``[1, self.k]``.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.k:
            raise UserError(f"requested rank k={k!r} must be an integer in [1, {self.k}]")
        return FactoredMatrix(
            self.U_local[:, :k], self.S[:k], self.V[:, :k],
            row_range=self.row_range, shape=self.shape,
            s_discarded=np.concatenate([self.S[k:], self.s_discarded]),
            tail_complete=self.tail_complete, qr_path=self.qr_path,
        )

    # ------------------------------------------------------------ constructors

    @classmethod
    def from_local_factors(cls, U_local, S, V, comm, *, s_discarded=None, tail_complete=False):
        """Wrap existing factors, computing the row offsets from the row counts.

        Collective over `comm`.  One ``allgather``.
        """
        S = np.asarray(S, dtype=np.float64).reshape(-1)
        V = np.asarray(V, dtype=np.float64)
        block, layout = prepare_block(U_local, comm, "U_local", replicated=(S.shape, V.shape))
        if V.ndim != 2 or V.shape[1] != S.shape[0] or layout.n_cols != S.shape[0]:
            raise C.JobError(  # the same verdict on every rank: the shapes are agreed on
                f"factor shapes disagree: U_local {block.shape}, S {S.shape}, V {V.shape}")
        return cls(block, S, V, row_range=(layout.row_start, layout.row_stop),
                   shape=(layout.n_rows_global, V.shape[0]),
                   s_discarded=s_discarded, tail_complete=tail_complete)

    @classmethod
    def from_dense_block(cls, A_local, comm, k: Optional[int] = None, *, method: str = "tsqr",
                         oversampling: int = 10, n_power_iter: int = 2, seed=0) -> "FactoredMatrix":
        """Factor a row-distributed dense matrix.

        Collective over `comm`.

        Parameters
        ----------
        A_local : array_like, shape (n_rows_local, n)
        comm : mpi4py communicator
        k : int, optional
            Target rank; required for ``method="randomized"``.  Default (TSQR):
            keep all ``min(m, n)`` triplets.
        method : {"tsqr", "randomized"}
            Exact thin SVD through TSQR, or the randomized SVD (see
            :func:`~lepton_hpc.linalg.randomized_svd` for the other keywords).

        Returns
        -------
        FactoredMatrix
            With ``s_discarded`` set to the dropped singular values (all of them
            for TSQR; for the randomized SVD only the ``oversampling`` extra ones,
            which are lower bounds of the true ones) and ``qr_path`` naming the
            QR that ran (``cholesky_qr2``, ``shifted_cholesky_qr3`` or ``householder``).

        Raises
        ------
        lepton_hpc.comm.JobError
            (a ``UserError``) on every rank, for invalid arguments or ``k > min(m, n)``.
        """
        if method not in _METHODS:
            # Fail inside the same first collective the valid ranks enter.
            message = f"method must be one of {_METHODS}, got {method!r}"
            agree_on_layout(comm, None, None, local_error=message)
        if method == "tsqr":
            full, layout = svd_tsqr_untruncated(A_local, comm, k)
            tail_complete = True
        else:
            full, layout = randomized_svd_untruncated(
                A_local, comm, k, oversampling=oversampling, n_power_iter=n_power_iter, seed=seed)
            tail_complete = full.S.shape[0] == min(layout.shape)
        fm = cls(full.U_local, full.S, full.V, row_range=(layout.row_start, layout.row_stop),
                 shape=layout.shape, tail_complete=tail_complete, qr_path=full.path)
        return fm if k is None or k == fm.k else fm.truncate(k)

    # ---------------------------------------------------------------- products

    def matmul(self, B) -> np.ndarray:
        """This rank's rows of ``A @ B`` for a replicated ``B``, via ``U (S (Vᵀ B))``.

        No communication.

        Parameters
        ----------
        B : array_like, shape (n,) or (n, p)

        Returns
        -------
        ndarray, shape (n_rows_local,) or (n_rows_local, p)
        """
        B = np.asarray(B, dtype=np.float64)
        if B.ndim not in (1, 2) or B.shape[0] != self.shape[1]:
            n = self.shape[1]
            raise UserError(f"B has shape {B.shape}; expected ({n},) or ({n}, p)")
        return kernels.factored_matmul(self.U_local, self.S, self.V, B)

    __matmul__ = matmul

    def tmatmul(self, Y_local, comm) -> np.ndarray:
        """``Aᵀ @ Y`` for a row-distributed ``Y``, via ``V (S (Uᵀ Y))``.

        Collective over `comm`.  One ``allgather`` to validate shapes and one
        ``Allreduce`` of the ``k × p`` piece ``Uᵀ Y``.

        Parameters
        ----------
        Y_local : array_like, shape (n_rows_local,) or (n_rows_local, p)
            This rank's rows of ``Y``, matching the rows of ``U_local``.

        Returns
        -------
        ndarray, shape (n,) or (n, p)
            Replicated on every rank.
        """
        Y = np.asarray(Y_local, dtype=np.float64)
        error = None
        if Y.ndim not in (1, 2) or Y.shape[0] != self.n_rows_local:
            error = f"Y_local has shape {Y.shape}; expected {self.n_rows_local} rows (1-D or 2-D)"
        Y2 = None if error is not None else (Y[:, np.newaxis] if Y.ndim == 1 else Y)
        agree_on_layout(comm, Y.shape[0] if Y.ndim else None, None if Y2 is None else Y2.shape[1],
                        local_error=error, replicated=(Y.ndim,))
        uty = C.allreduce_sum(comm, self.U_local.T @ Y2)
        result = self.V @ (self.S[:, np.newaxis] * uty)
        return result[:, 0] if Y.ndim == 1 else result

    def to_dense_block(self) -> np.ndarray:
        """This rank's rows of the dense ``U diag(S) Vᵀ`` (``n_rows_local × n``)."""
        return kernels.reconstruct_block(self.U_local, self.S, self.V)

    # ------------------------------------------------------- error estimates

    def _prepare_reference(self, A_local, comm, errors=(), replicated=None):
        A = np.asarray(A_local)
        error = None
        if A.ndim == 2 and A.shape != (self.n_rows_local, self.shape[1]):
            expected = (self.n_rows_local, self.shape[1])
            error = f"A_local has shape {A.shape}, but this block of U implies {expected}"
        block, _ = prepare_block(A_local, comm, errors=(error, *errors), replicated=replicated)
        return block

    def frobenius_error(self, A_local, comm) -> float:
        """``‖A − U S Vᵀ‖_F`` against the row-distributed reference ``A``.

        Collective over `comm`.  Returns the same float on every rank.
        """
        block = self._prepare_reference(A_local, comm)
        local_sq = np.sum((block - self.to_dense_block()) ** 2)
        return float(np.sqrt(C.allreduce_sum(comm, np.array([local_sq]))[0]))

    def spectral_error_estimate(
        self, A_local, comm, *, n_iter: int = 10, block_size: int = 8, seed: int = 0
    ) -> float:
        """Estimate ``‖A − U S Vᵀ‖₂`` by block power iteration through the factors.

        Collective over `comm`.  ``n_iter + 1`` ``Allreduce`` calls of at most
        ``n × block_size``.  Subspace iteration on ``EᵀE`` (``E = A − U S Vᵀ``
        applied as ``A X − U (S (Vᵀ X))``, never formed) from a shared random
        start, then Rayleigh–Ritz; the result is a lower bound that converges
        like ``(σ_{b+1}(E) / σ_1(E))^(2 n_iter)``.

        Parameters
        ----------
        A_local : array_like, shape (n_rows_local, n)
            The reference matrix's rows matching ``U_local``.
        comm : mpi4py communicator
        n_iter : int, default 10
            Power iterations.
        block_size : int, default 8
            Width of the iterated block (clipped to ``n``).
        seed : int, default 0
            Seed of the shared random start; must be the same on every rank.

        Returns
        -------
        float
            Same on every rank.
        """
        errors = [
            f"{name} must be a non-negative int, got {value!r}"
            for name, value in (("n_iter", n_iter), ("block_size", block_size), ("seed", seed))
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0
        ]
        block = self._prepare_reference(
            A_local, comm, errors=errors, replicated=(str(n_iter), str(block_size), str(seed)))
        n_cols = self.shape[1]
        width = max(1, min(int(block_size), n_cols))
        args = (block, self.U_local, self.S, self.V)
        x = kernels.orthonormalize(kernels.gaussian_sketch(n_cols, width, seed))
        for _ in range(int(n_iter)):
            y = kernels.residual_matmul(*args, x)
            ety = C.allreduce_sum(comm, kernels.residual_tmatmul_local(*args, y))
            x = kernels.orthonormalize(ety)
        y = kernels.residual_matmul(*args, x)
        gram = C.allreduce_sum(comm, y.T @ y)
        return float(np.sqrt(max(np.linalg.eigvalsh(gram)[-1], 0.0)))

    def tail_estimate(self, ord=2) -> Optional[float]:
        """Truncation error implied by the discarded singular values.

        No communication.  With ``ord=2`` this is ``σ_{k+1}`` (the exact
        ``‖A − A_k‖₂`` for a TSQR factorisation); with ``ord="fro"`` it is
        ``sqrt(Σ_{j>k} σ_j²)``.  For a randomized factorisation the kept
        extra values are lower bounds and the sum is incomplete.

        Returns
        -------
        float or None
            ``0.0`` if nothing was discarded and the tail is known to be
            complete, ``None`` if nothing is known.
        """
        if ord not in (2, "fro"):
            raise UserError(f"ord must be 2 or 'fro', got {ord!r}")
        if self.s_discarded.size == 0:
            return 0.0 if self.tail_complete else None
        if ord == 2:
            return float(self.s_discarded[0])
        return float(np.sqrt(np.sum(self.s_discarded ** 2)))

    # ----------------------------------------------------------------- HDF5

    def save(self, path, comm) -> None:
        """Write the factors to one HDF5 file, atomically, each rank writing its own rows.

        Collective over `comm`.  The file holds ``/factors/U`` (``m × k``, row
        order), ``/factors/S``, ``/factors/V``, ``/factors/S_discarded`` and the
        attributes ``shape``, ``rank``, ``tail_complete``
        (:mod:`~lepton_hpc.linalg.hdf5io`).  Rank 0 creates it under a temporary
        name, the ranks write their rows of ``U`` in turn, and rank 0 renames it
        into place after ``fsync`` (:func:`~lepton_hpc.linalg.collective_io.save_factors`);
        no rank holds more than its own rows.  Only rank 0's ``path`` is used.

        Raises
        ------
        lepton_hpc.comm.JobError
            (a ``UserError``) on every rank, if the blocks do not tile the rows or
            writing fails on any rank; nothing new is left under ``path`` then.
        """
        collective_io.save_factors(self, path, comm)

    @classmethod
    def load(cls, path, comm, row_range=None) -> "FactoredMatrix":
        """Read a factor file, each rank reading only its rows of ``U``.

        Collective over `comm`.  One allgather agrees on errors and checks
        that the row ranges tile ``[0, m)`` in rank order.  The rank count
        need not match the one that saved the file.

        Parameters
        ----------
        path : str or os.PathLike
        comm : mpi4py communicator
        row_range : (int, int), optional
            This rank's rows; default is the balanced split over ``comm.size``.

        Returns
        -------
        FactoredMatrix

        Raises
        ------
        lepton_hpc.comm.JobError
            (a ``UserError``) on every rank, for a missing or bad file, a row range
            outside the matrix, or ranges that do not tile the rows.
        """
        data = collective_io.load_factors(path, comm, row_range)
        return cls(data["U_local"], data["S"], data["V"], row_range=data["row_range"],
                   shape=data["shape"], s_discarded=data["S_discarded"],
                   tail_complete=data["tail_complete"])
