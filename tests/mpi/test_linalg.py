"""MPI tests for lepton_hpc.linalg decompositions (TSQR, thin and randomized SVD).

Run with e.g. ``mpiexec -n 3 python -m pytest --with-mpi tests/mpi/test_linalg.py``.
Every rank builds the full matrix from a seed, takes its (uneven) row block,
runs the collective code, and compares with scipy on the full matrix.  All
collectives run before any assertion, and every rank asserts.
"""

import numpy as np
import pytest
import scipy.linalg
from mpi4py import MPI

from lepton_hpc.linalg import (
    orthogonality_error,
    randomized_svd,
    svd_tsqr,
    tsqr,
)

from helpers import uneven_bounds
from lepton_hpc.errors import UserError
from passert import parallel_raises

EPS = np.finfo(np.float64).eps


def make_matrix(n_rows, n_cols, seed, singular_values=None):
    """Deterministic ``n_rows × n_cols`` matrix with the given singular values."""
    rng = np.random.default_rng(seed)
    n_diag = min(n_rows, n_cols)
    if singular_values is None:
        singular_values = np.logspace(0, -3, n_diag)
    u, _ = np.linalg.qr(rng.standard_normal((n_rows, n_diag)))
    v, _ = np.linalg.qr(rng.standard_normal((n_cols, n_diag)))
    return (u * singular_values) @ v.T


def local_block(a_full, bounds, rank):
    return np.array(a_full[bounds[rank] : bounds[rank + 1]])


def gather_rows(comm, block):
    return np.vstack(comm.allgather(block))


SHAPES = [(200, 30), (12, 20), (45, 45)]
STYLES = ["mixed", "last"]


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("style", STYLES)
def test_tsqr_matches_scipy(shape, style):
    comm = MPI.COMM_WORLD
    m, n = shape
    a_full = make_matrix(m, n, seed=11)
    bounds = uneven_bounds(m, n, comm.size, style)
    a_local = local_block(a_full, bounds, comm.rank)

    q_local, r = tsqr(a_local, comm)
    q_full = gather_rows(comm, q_local)
    orth = orthogonality_error(q_local, comm)
    r_all_ranks = comm.allgather(r)

    n_diag = min(m, n)
    assert q_local.shape == (a_local.shape[0], n_diag)
    assert r.shape == (n_diag, n)
    assert np.allclose(np.tril(r, -1), 0.0)
    assert np.all(np.diagonal(r) >= 0)
    assert orth <= 1e-12
    assert np.linalg.norm(q_full @ r - a_full) <= 1e-13 * np.linalg.norm(a_full) * max(m, n)
    # canonical signs make R unique: compare with scipy after the same convention
    _, r_ref = scipy.linalg.qr(a_full, mode="economic")
    r_ref = np.sign(np.diagonal(r_ref))[:, None] * r_ref
    assert np.linalg.norm(r - r_ref) <= 1e-11 * np.linalg.norm(a_full)
    # replicated R is identical (bitwise) on every rank
    assert all(np.array_equal(r, other) for other in r_all_ranks)


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("style", STYLES)
def test_svd_tsqr_matches_scipy(shape, style):
    comm = MPI.COMM_WORLD
    m, n = shape
    a_full = make_matrix(m, n, seed=12)
    bounds = uneven_bounds(m, n, comm.size, style)
    a_local = local_block(a_full, bounds, comm.rank)

    u_local, s, v = svd_tsqr(a_local, comm)
    u_full = gather_rows(comm, u_local)
    orth_2 = orthogonality_error(u_local, comm)
    orth_fro = orthogonality_error(u_local, comm, ord="fro")

    s_ref = scipy.linalg.svd(a_full, compute_uv=False)
    assert s.shape == (min(m, n),) and v.shape == (n, min(m, n))
    assert np.max(np.abs(s - s_ref)) <= 10 * max(m, n) * EPS * s_ref[0]
    assert orth_2 <= 1e-12 and orth_fro <= 1e-12
    assert np.linalg.norm(v.T @ v - np.eye(v.shape[1])) <= 1e-12
    assert np.linalg.norm((u_full * s) @ v.T - a_full) <= 1e-12 * np.linalg.norm(a_full)


@pytest.mark.mpi(min_size=1)
def test_truncated_svd_error_is_next_singular_value():
    comm = MPI.COMM_WORLD
    m, n, k = 300, 40, 8
    sigma = 0.8 ** np.arange(n)
    a_full = make_matrix(m, n, seed=13, singular_values=sigma)
    bounds = uneven_bounds(m, n, comm.size)
    a_local = local_block(a_full, bounds, comm.rank)

    u_local, s, v = svd_tsqr(a_local, comm, k=k)
    u_full = gather_rows(comm, u_local)

    assert u_local.shape == (a_local.shape[0], k) and s.shape == (k,) and v.shape == (n, k)
    err_2 = np.linalg.norm(a_full - (u_full * s) @ v.T, 2)
    assert abs(err_2 - sigma[k]) <= 0.01 * sigma[k]
    assert np.allclose(s, sigma[:k], rtol=1e-12, atol=0)


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("func", ["svd_tsqr", "randomized_svd"])
def test_rank_too_large_raises_on_every_rank(func):
    comm = MPI.COMM_WORLD
    m, n = 50, 12
    a_full = make_matrix(m, n, seed=14)
    a_local = local_block(a_full, uneven_bounds(m, n, comm.size), comm.rank)
    call = svd_tsqr if func == "svd_tsqr" else randomized_svd
    with parallel_raises(comm, UserError, match=r"requested rank k=13 exceeds min\(m, n\)=12"):
        call(a_local, comm, k=13)
    # the communicator is still usable (no rank left behind in a collective)
    assert comm.allreduce(1) == comm.size


@pytest.mark.mpi(min_size=2)
def test_inconsistent_arguments_raise_on_every_rank():
    comm = MPI.COMM_WORLD
    last = comm.rank == comm.size - 1
    a_local = np.ones((5, 7 if last else 6))
    with parallel_raises(comm, UserError, match="disagree on the number of columns"):
        tsqr(a_local, comm)
    bad = np.ones(6) if last else np.ones((5, 6))
    with parallel_raises(comm, UserError, match="must be 2-D"):
        svd_tsqr(bad, comm)
    with parallel_raises(comm, UserError, match="identical on every rank"):
        randomized_svd(np.ones((5, 6)), comm, k=2, seed=comm.rank)
    assert comm.allreduce(1) == comm.size


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("k,oversampling", [(10, 20), (5, 10)])
def test_randomized_svd_harmonic_spectrum(k, oversampling):
    comm = MPI.COMM_WORLD
    m, n = 400, 60
    sigma = 1.0 / np.arange(1, n + 1)
    a_full = make_matrix(m, n, seed=15, singular_values=sigma)
    a_local = local_block(a_full, uneven_bounds(m, n, comm.size), comm.rank)

    u_local, s, v = randomized_svd(
        a_local, comm, k, oversampling=oversampling, n_power_iter=2, seed=7
    )
    orth = orthogonality_error(u_local, comm)
    # same algorithm on one rank: the shared sketch makes it rank-count independent
    s_serial = randomized_svd(
        a_full, MPI.COMM_SELF, k, oversampling=oversampling, n_power_iter=2, seed=7
    ).S

    assert u_local.shape == (a_local.shape[0], k) and v.shape == (n, k)
    assert np.max(np.abs(s - sigma[:k]) / sigma[:k]) <= 1e-3
    assert orth <= 1e-12
    assert np.linalg.norm(v.T @ v - np.eye(k)) <= 1e-12
    assert np.allclose(s, s_serial, rtol=1e-10, atol=0)


@pytest.mark.mpi(min_size=1)
def test_randomized_svd_small_and_wide():
    """k + p larger than min(m, n) clips the sketch; result is then exact."""
    comm = MPI.COMM_WORLD
    m, n = 12, 20
    a_full = make_matrix(m, n, seed=16)
    a_local = local_block(a_full, uneven_bounds(m, n, comm.size), comm.rank)

    u_local, s, v = randomized_svd(a_local, comm, 6, oversampling=10, n_power_iter=1)
    u_full = gather_rows(comm, u_local)

    s_ref = scipy.linalg.svd(a_full, compute_uv=False)
    assert np.max(np.abs(s - s_ref[:6])) <= 10 * max(m, n) * EPS * s_ref[0] * 10
    assert np.linalg.norm(u_full.T @ u_full - np.eye(6)) <= 1e-12
