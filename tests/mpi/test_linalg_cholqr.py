"""MPI tests of the Cholesky QR paths of tsqr/svd_tsqr (lepton_hpc.linalg.cholqr).

Every rank builds the full matrix from a seed and takes its row block.  The
paths are chosen by the conditioning of ``A``; on the Cholesky paths ``R``
(and ``S``, ``V``) must be bitwise identical to a one-process run on the full
matrix, whatever the row split, including splits that cut Gram chunks.
"""

import numpy as np
import pytest
import scipy.linalg
from mpi4py import MPI

from helpers import uneven_bounds
from lepton_hpc.errors import UserError
from lepton_hpc.linalg import orthogonality_error, svd_tsqr, tsqr
from lepton_hpc.linalg import cholqr
from passert import parallel_raises


def make_matrix(m, n, kappa, seed):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((m, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (u * np.logspace(0, -np.log10(kappa), n)) @ v.T


def block(a, bounds, rank):
    return np.array(a[bounds[rank]:bounds[rank + 1]])


def gather(comm, x):
    return np.vstack(comm.allgather(x))


def ragged_bounds(m, size):
    """Boundaries off any chunk grid line: 0, 1, 37, ... rows (one rank empty when size >= 3)."""
    if size == 1:
        return np.array([0, m])
    cuts = sorted({min(m, 1 + 37 * q) for q in range(size - 1)})
    cuts = ([0] if size >= 3 else []) + cuts
    return np.array([0, *cuts[: size - 1], m])


SPLITS = ["balanced", "mixed", "ragged", "last"]


def bounds_for(split, m, n, size):
    if split == "balanced":
        return np.linspace(0, m, size + 1).astype(int)
    if split == "ragged":
        return ragged_bounds(m, size)
    return uneven_bounds(m, n, size, split)


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("kappa,path", [(1e3, "cholesky_qr2"), (1e10, "shifted_cholesky_qr3"),
                                        (1e12, "shifted_cholesky_qr3")])
@pytest.mark.parametrize("split", SPLITS)
def test_path_accuracy_and_bits_across_rank_counts(kappa, path, split):
    comm = MPI.COMM_WORLD
    m, n, chunk = 300, 12, 16
    a = make_matrix(m, n, kappa, seed=3)
    bounds = bounds_for(split, m, n, comm.size)
    a_local = block(a, bounds, comm.rank)

    qr = tsqr(a_local, comm, chunk_rows=chunk)
    svd = svd_tsqr(a_local, comm, chunk_rows=chunk)
    one_qr = tsqr(a, MPI.COMM_SELF, chunk_rows=chunk)  # the same matrix on one process
    one_svd = svd_tsqr(a, MPI.COMM_SELF, chunk_rows=chunk)
    q_full, u_full = gather(comm, qr.Q_local), gather(comm, svd.U_local)
    orth_q, orth_u = orthogonality_error(qr.Q_local, comm), orthogonality_error(svd.U_local, comm)
    paths = comm.allgather((qr.path, svd.path))

    assert paths == [(path, path)] * comm.size and one_qr.path == path
    assert np.array_equal(qr.R, one_qr.R)  # bitwise, at any rank count and split
    assert np.array_equal(svd.S, one_svd.S) and np.array_equal(svd.V, one_svd.V)
    assert orth_q <= 1e-14 * n and orth_u <= 1e-14 * n
    assert np.linalg.norm(q_full @ qr.R - a) <= 1e-15 * n * np.linalg.norm(a)
    assert np.linalg.norm((u_full * svd.S) @ svd.V.T - a) <= 1e-14 * n * np.linalg.norm(a)
    assert np.all(np.diagonal(qr.R) > 0) and np.array_equal(np.triu(qr.R), qr.R)
    s_ref = scipy.linalg.svd(a, compute_uv=False)
    assert np.max(np.abs(svd.S - s_ref)) <= 1e-14 * n * s_ref[0]
    if kappa <= 1e10:  # the unique R (positive diagonal), as accurate as κ allows
        r_ref = scipy.linalg.qr(a, mode="r")[0][:n]
        r_ref *= np.sign(np.diagonal(r_ref))[:, None]
        assert np.linalg.norm(qr.R - r_ref) <= 1e-15 * kappa * np.linalg.norm(a)


@pytest.mark.mpi(min_size=1)
def test_rank_deficient_shifted_and_hopeless_or_wide_householder():
    comm = MPI.COMM_WORLD
    m, n = 120, 10
    bounds = uneven_bounds(m, n, comm.size)
    dup = make_matrix(m, n, 1e2, seed=4)
    dup[:, 3] = dup[:, 1]  # exactly rank deficient: the shift makes it factorable
    worst = make_matrix(m, n, 1e15, seed=3)  # past shifted CholeskyQR3's reach (about 1e12 here)
    wide = make_matrix(n, n, 1e2, seed=5)[:, :6].T  # 6 x 10: m < n
    got = {}
    for name, a, bnd in (("dup", dup, bounds), ("worst", worst, bounds),
                         ("wide", wide, uneven_bounds(6, 10, comm.size))):
        qr = tsqr(block(a, bnd, comm.rank), comm, chunk_rows=8)
        svd = svd_tsqr(block(a, bnd, comm.rank), comm, chunk_rows=8)
        q_full = gather(comm, qr.Q_local)
        got[name] = (qr.path, svd.path, np.linalg.norm(q_full @ qr.R - a) / np.linalg.norm(a),
                     orthogonality_error(qr.Q_local, comm),
                     np.max(np.abs(svd.S - scipy.linalg.svd(a, compute_uv=False))))
    assert got["dup"][:2] == ("shifted_cholesky_qr3",) * 2
    assert got["worst"][:2] == got["wide"][:2] == ("householder",) * 2
    for name, (_, _, resid, orth, s_err) in got.items():
        assert resid <= 1e-14 and orth <= 1e-13 and s_err <= 1e-14, name


@pytest.mark.mpi(min_size=1)
def test_householder_method_and_bad_method():
    comm = MPI.COMM_WORLD
    m, n = 80, 6
    a = make_matrix(m, n, 1e2, seed=6)
    a_local = block(a, uneven_bounds(m, n, comm.size), comm.rank)
    hh, auto = tsqr(a_local, comm, method="householder"), tsqr(a_local, comm)
    assert hh.path == "householder" and auto.path == "cholesky_qr2"
    assert np.linalg.norm(hh.R - auto.R) <= 1e-13 * np.linalg.norm(a)
    with parallel_raises(comm, UserError, match="method must be one of"):
        tsqr(a_local, comm, method="cholesky" if comm.rank == 0 else "auto")
    with parallel_raises(comm, UserError, match="chunk_rows must be a positive int"):
        svd_tsqr(a_local, comm, chunk_rows=0)
    assert comm.allreduce(1) == comm.size


@pytest.mark.mpi(min_size=1)
def test_default_chunk_rows_depends_on_the_shape_only():
    assert cholqr.default_chunk_rows(2_000_000, 64) == 4096
    big = cholqr.default_chunk_rows(10 ** 7, 512)  # partials of n = 512 would not fit at 4096 rows
    assert big > 4096 and (-(-10 ** 7 // big)) * 512 * 513 // 2 * 8 <= cholqr.PARTIALS_BUDGET_BYTES


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("split", SPLITS)
def test_least_squares_projection_is_bitwise_across_splits(split):
    from lepton_hpc.linalg.decompositions import svd_projection

    comm = MPI.COMM_WORLD
    m, n = 300, 8
    z = make_matrix(m, n, 1e9, seed=7)
    y = np.random.default_rng(8).standard_normal(m)
    bounds = bounds_for(split, m, n, comm.size)
    s, v, uty, path = svd_projection(block(z, bounds, comm.rank), y[bounds[comm.rank]:bounds[comm.rank + 1]],
                                     comm)
    s1, v1, uty1, path1 = svd_projection(z, y, MPI.COMM_SELF)
    u, s_ref, vt = np.linalg.svd(z, full_matrices=False)
    assert path == path1 == "shifted_cholesky_qr3"
    assert np.array_equal(uty, uty1) and np.array_equal(s, s1) and np.array_equal(v, v1)
    theta, theta_ref = v @ (uty / s), np.linalg.lstsq(z, y, rcond=None)[0]
    assert np.linalg.norm(theta - theta_ref) <= 1e-6 * np.linalg.norm(theta_ref)
