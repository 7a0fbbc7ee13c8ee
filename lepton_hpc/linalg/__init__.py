"""Distributed dense linear algebra for row-distributed tall matrices.

A matrix ``A`` (``m × n``) is split by contiguous row blocks over the ranks of
a communicator (blocks may be uneven, shorter than wide, or empty).  The
functions here take the communicator as an argument and communicate only through
the wrappers of :mod:`lepton_hpc.comm`; errors a caller can fix are raised as the
same :class:`~lepton_hpc.comm.JobError` (a :class:`~lepton_hpc.errors.UserError`)
on every rank.  The numerical kernels (:mod:`lepton_hpc.linalg.kernels`) are pure
numpy/scipy; :mod:`~lepton_hpc.linalg.hdf5io` is serial file I/O and
:mod:`~lepton_hpc.linalg.collective_io` the collective save and load.

Public API
----------
tsqr(A_local, comm, *, method="auto", chunk_rows=None) -> TSQRResult(Q_local, R), .path
svd_tsqr(A_local, comm, k=None, *, method="auto", chunk_rows=None) -> ThinSVD(U_local, S, V), .path
    (CholeskyQR2 / shifted CholeskyQR3 / Householder TSQR: :mod:`~lepton_hpc.linalg.cholqr`)
randomized_svd(A_local, comm, k, *, oversampling=10, n_power_iter=2, seed=0) -> ThinSVD
orthogonality_error(U_local, comm, ord=2) -> float
FactoredMatrix: ``A ≈ U diag(S) Vᵀ`` with row-distributed ``U``.
"""

from .decompositions import (
    TSQRResult,
    ThinSVD,
    orthogonality_error,
    randomized_svd,
    svd_tsqr,
    tsqr,
)
from .factored import FactoredMatrix

__all__ = [
    "tsqr",
    "svd_tsqr",
    "randomized_svd",
    "orthogonality_error",
    "FactoredMatrix",
    "TSQRResult",
    "ThinSVD",
]
