"""MPI tests for lepton_hpc.linalg.FactoredMatrix (products, error estimates, HDF5).

All collectives run before the assertions, and every rank asserts; an expected error
is checked on every rank together (``parallel_raises``) before the next collective.
"""

import os
import shutil
import tempfile

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from helpers import uneven_bounds
from passert import parallel_assert, parallel_raises, run_on_root

from lepton_hpc.errors import UserError
from lepton_hpc.linalg import FactoredMatrix, hdf5io


def make_matrix(n_rows, n_cols, seed, singular_values):
    rng = np.random.default_rng(seed)
    n_diag = min(n_rows, n_cols)
    u, _ = np.linalg.qr(rng.standard_normal((n_rows, n_diag)))
    v, _ = np.linalg.qr(rng.standard_normal((n_cols, n_diag)))
    return (u * singular_values) @ v.T


def setup(m=240, n=36, seed=21, decay=0.8):
    comm = MPI.COMM_WORLD
    sigma = decay ** np.arange(min(m, n))
    a_full = make_matrix(m, n, seed, sigma)
    bounds = uneven_bounds(m, n, comm.size)
    start, stop = int(bounds[comm.rank]), int(bounds[comm.rank + 1])
    return comm, a_full, sigma, (start, stop), np.array(a_full[start:stop])


def rel(x, ref):
    return np.linalg.norm(x - ref) / np.linalg.norm(ref)


@pytest.fixture
def shared_dir():
    """A temporary directory with the same path on every rank."""
    comm = MPI.COMM_WORLD
    path = run_on_root(comm, lambda: tempfile.mkdtemp(prefix="lepton_linalg_"))
    yield path
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("shape", [(240, 36), (12, 20)])
def test_matmul_and_tmatmul_match_dense(shape):
    comm, a_full, _, (start, stop), a_local = setup(*shape)
    m, n = shape
    fm = FactoredMatrix.from_dense_block(a_local, comm)
    rng = np.random.default_rng(5)
    b = rng.standard_normal((n, 4))
    y_full = rng.standard_normal((m, 3))

    c_local = fm.matmul(b)
    c_vec = fm @ b[:, 0]
    aty = fm.tmatmul(y_full[start:stop], comm)
    aty_vec = fm.tmatmul(y_full[start:stop, 0], comm)

    assert fm.shape == (m, n) and fm.row_range == (start, stop) and fm.k == min(m, n)
    assert c_local.shape == (stop - start, 4)
    if stop > start:
        assert rel(c_local, a_full[start:stop] @ b) <= 1e-12
        assert rel(c_vec, a_full[start:stop] @ b[:, 0]) <= 1e-12
    assert rel(aty, a_full.T @ y_full) <= 1e-12
    assert rel(aty_vec, a_full.T @ y_full[:, 0]) <= 1e-12


@pytest.mark.mpi(min_size=1)
def test_truncation_error_estimates():
    comm, a_full, sigma, (start, stop), a_local = setup()
    k = 6
    fm = FactoredMatrix.from_dense_block(a_local, comm, k=k)
    full = FactoredMatrix.from_dense_block(a_local, comm)
    fro = fm.frobenius_error(a_local, comm)
    spec = fm.spectral_error_estimate(a_local, comm)
    u_full = np.vstack(comm.allgather(fm.U_local))
    fro_full = full.frobenius_error(a_local, comm)

    dense_err = a_full - (u_full * fm.S) @ fm.V.T
    assert fm.k == k and fm.tail_complete
    assert abs(np.linalg.norm(dense_err, 2) - sigma[k]) <= 0.01 * sigma[k]
    assert abs(spec - sigma[k]) <= 0.01 * sigma[k]
    assert abs(fro - np.linalg.norm(dense_err)) <= 1e-10
    assert abs(fro - np.sqrt(np.sum(sigma[k:] ** 2))) <= 1e-10
    assert fm.tail_estimate() == pytest.approx(sigma[k], rel=1e-12)
    assert fm.tail_estimate("fro") == pytest.approx(np.sqrt(np.sum(sigma[k:] ** 2)), rel=1e-12)
    assert full.tail_estimate() == 0.0 and fro_full <= 1e-12
    # truncating again keeps the whole discarded tail in order
    fm3 = fm.truncate(3)
    assert np.allclose(fm3.s_discarded, sigma[3:], rtol=1e-12)


@pytest.mark.mpi(min_size=1)
def test_randomized_factored_matrix():
    comm, a_full, sigma, (start, stop), a_local = setup()
    k, p = 6, 8
    fm = FactoredMatrix.from_dense_block(
        a_local, comm, k=k, method="randomized", oversampling=p, n_power_iter=2, seed=3)
    spec = fm.spectral_error_estimate(a_local, comm)

    assert fm.k == k and not fm.tail_complete and fm.s_discarded.shape == (p,)
    assert np.allclose(fm.S, sigma[:k], rtol=1e-6)
    assert abs(spec - sigma[k]) <= 0.01 * sigma[k]
    # discarded values of B are lower bounds of the true ones
    assert fm.tail_estimate() <= sigma[k] * (1 + 1e-12)


@pytest.mark.mpi(min_size=1)
def test_invalid_method_and_missing_rank_raise_everywhere():
    comm, _, _, _, a_local = setup(40, 8)
    with parallel_raises(comm, UserError, match="method must be one of"):
        FactoredMatrix.from_dense_block(a_local, comm, k=2, method="lanczos")
    with parallel_raises(comm, UserError, match="target rank k is required"):
        FactoredMatrix.from_dense_block(a_local, comm, method="randomized")
    assert comm.allreduce(1) == comm.size


@pytest.mark.mpi(min_size=2)
def test_tmatmul_shape_mismatch_raises_everywhere():
    comm, _, _, (start, stop), a_local = setup(40, 8)
    fm = FactoredMatrix.from_dense_block(a_local, comm, k=3)
    n_rows = stop - start + (1 if comm.rank == comm.size - 1 else 0)
    with parallel_raises(comm, UserError, match="Y_local has shape"):
        fm.tmatmul(np.ones((n_rows, 2)), comm)
    assert comm.allreduce(1) == comm.size


@pytest.mark.mpi(min_size=1)
def test_save_load_across_rank_counts(shared_dir):
    comm, a_full, sigma, (start, stop), a_local = setup()
    m, n = a_full.shape
    k = 10
    fm = FactoredMatrix.from_dense_block(a_local, comm, k=k)
    path = os.path.join(shared_dir, "factors.h5")
    fm.save(path, comm)
    b = np.random.default_rng(9).standard_normal((n, 3))
    reference = np.vstack(comm.allgather(fm.matmul(b)))

    # same communicator, default even split (differs from the saving layout)
    even = FactoredMatrix.load(path, comm)
    c_even = np.vstack(comm.allgather(even.matmul(b)))
    # one rank alone
    alone = FactoredMatrix.load(path, MPI.COMM_SELF)
    # a sub-communicator with one rank fewer (still >= 1)
    n_sub = max(1, comm.size - 1)
    sub_comm = comm.Split(0 if comm.rank < n_sub else MPI.UNDEFINED, comm.rank)
    c_sub = None
    if sub_comm != MPI.COMM_NULL:
        sub = FactoredMatrix.load(path, sub_comm)
        c_sub = np.vstack(sub_comm.allgather(sub.matmul(b)))
        sub_comm.Free()
    listing = sorted(os.listdir(shared_dir))

    assert listing == ["factors.h5"]  # no leftover .tmp
    with h5py.File(path, "r") as f:
        assert f["factors/U"].shape == (m, k)
        assert f["factors/S"].shape == (k,) and f["factors/V"].shape == (n, k)
        assert tuple(f["factors"].attrs["shape"]) == (m, n)
        assert int(f["factors"].attrs["rank"]) == k
        assert np.array_equal(f["factors/U"][start:stop], fm.U_local)
    assert np.array_equal(even.S, fm.S) and np.array_equal(even.V, fm.V)
    assert np.array_equal(even.s_discarded, fm.s_discarded) and even.tail_complete
    assert rel(c_even, reference) <= 1e-14
    assert rel(alone.matmul(b), reference) <= 1e-14
    # ‖(A − A_k) b‖ ≤ σ_{k+1} ‖b‖
    assert np.linalg.norm(alone.matmul(b) - a_full @ b) <= 1.01 * sigma[k] * np.linalg.norm(b)
    if c_sub is not None:
        assert rel(c_sub, reference) <= 1e-14


@pytest.mark.mpi(min_size=1)
def test_save_and_load_errors_raise_everywhere(shared_dir):
    comm, _, _, _, a_local = setup(40, 8)
    fm = FactoredMatrix.from_dense_block(a_local, comm, k=3)
    with parallel_raises(comm, UserError, match="saving"):
        fm.save(os.path.join(shared_dir, "missing_dir", "f.h5"), comm)
    with parallel_raises(comm, UserError, match="loading"):
        FactoredMatrix.load(os.path.join(shared_dir, "nope.h5"), comm)
    path = os.path.join(shared_dir, "ok.h5")
    fm.save(path, comm)
    with parallel_raises(comm, UserError, match="tile"):
        FactoredMatrix.load(path, comm, row_range=(0, 39) if comm.size == 1 else (0, 40))
    # a reader's error on one rank is the same UserError on every rank (never a RuntimeError)
    with parallel_raises(comm, UserError, match="outside"):
        FactoredMatrix.load(path, comm, row_range=(0, 41))
    assert comm.allreduce(1) == comm.size


def _file_contents(path):
    """Every dataset (dtype, shape, values) and attribute of an HDF5 file, for comparison."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = (obj.dtype.str, obj.shape, obj[()].tobytes())
            out[name + "@attrs"] = {k: np.asarray(v).tobytes() for k, v in obj.attrs.items()}
        f.visititems(visit)
    return out


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("style", ["mixed", "last"])
def test_owners_write_the_same_file_as_one_writer(shared_dir, style):
    comm = MPI.COMM_WORLD
    m, n, k = 50, 9, 4
    a_full = make_matrix(m, n, 3, 0.7 ** np.arange(n))
    bounds = uneven_bounds(m, n, comm.size, style=style)
    start, stop = int(bounds[comm.rank]), int(bounds[comm.rank + 1])
    fm = FactoredMatrix.from_dense_block(a_full[start:stop], comm, k=k)
    path = os.path.join(shared_dir, f"par-{style}.h5")
    fm.save(path, comm)
    u_full = np.vstack(comm.allgather(fm.U_local))
    ref = os.path.join(shared_dir, f"ref-{style}.h5")
    run_on_root(comm, lambda: hdf5io.write_factors_atomic(
        ref, u_full, fm.S, fm.V, shape=fm.shape, s_discarded=fm.s_discarded,
        tail_complete=fm.tail_complete))
    same = _file_contents(path) == _file_contents(ref)
    back = FactoredMatrix.load(path, comm, row_range=(start, stop))
    listing = sorted(os.listdir(shared_dir))

    parallel_assert(comm, same, "the owners' file differs from the one-writer file")
    parallel_assert(comm, listing == [f"par-{style}.h5", f"ref-{style}.h5"], lambda: f"left: {listing}")
    parallel_assert(comm, np.array_equal(back.U_local, fm.U_local) and np.array_equal(back.S, fm.S)
                    and np.array_equal(back.V, fm.V) and back.tail_complete == fm.tail_complete)


def _first_rank_with_rows(bounds, at_least):
    counts = np.diff(bounds)
    return next(q for q in range(at_least, len(counts)) if counts[q] > 0)


@pytest.mark.mpi(min_size=1)
def test_a_failed_row_write_leaves_no_file_and_the_old_one_intact(shared_dir, monkeypatch):
    comm, _, _, _, a_local = setup(40, 8)
    fm = FactoredMatrix.from_dense_block(a_local, comm, k=3)
    failing = _first_rank_with_rows(uneven_bounds(40, 8, comm.size), comm.size // 2)
    real_write = hdf5io.write_u_rows

    def write_or_fail(path, start, u_local):
        if comm.rank == failing:
            raise OSError(28, "No space left on device", path)
        real_write(path, start, u_local)

    monkeypatch.setattr(hdf5io, "write_u_rows", write_or_fail)
    new = os.path.join(shared_dir, "new.h5")
    with parallel_raises(comm, UserError, match=f"rank {failing} could not write its rows of U"):
        fm.save(new, comm)
    listing_after_fail = sorted(os.listdir(shared_dir))

    old = os.path.join(shared_dir, "old.h5")
    monkeypatch.setattr(hdf5io, "write_u_rows", real_write)
    fm.truncate(2).save(old, comm)
    before = run_on_root(comm, lambda: _file_contents(old))
    monkeypatch.setattr(hdf5io, "write_u_rows", write_or_fail)
    with parallel_raises(comm, UserError, match="saving"):
        fm.save(old, comm)
    after = run_on_root(comm, lambda: _file_contents(old))
    listing = sorted(os.listdir(shared_dir))

    parallel_assert(comm, listing_after_fail == [], lambda: f"left after a failed save: {listing_after_fail}")
    parallel_assert(comm, listing == ["old.h5"], lambda: f"left: {listing}")
    parallel_assert(comm, before == after, "a failed save changed the old file")


@pytest.mark.mpi(min_size=1)
def test_bad_factor_files_are_user_errors_everywhere(shared_dir):
    comm = MPI.COMM_WORLD
    no_group = os.path.join(shared_dir, "plain.h5")
    text = os.path.join(shared_dir, "text.h5")

    def make():
        with h5py.File(no_group, "w") as f:
            f["x"] = np.arange(3)
        with open(text, "w") as fh:
            fh.write("not hdf5\n")

    run_on_root(comm, make)
    with parallel_raises(comm, UserError, match="not a factor file"):
        FactoredMatrix.load(no_group, comm)
    with parallel_raises(comm, UserError, match="loading"):
        FactoredMatrix.load(text, comm)
    with parallel_raises(comm, UserError, match="outside"):
        FactoredMatrix.load(_saved(comm, shared_dir), comm,
                            row_range=(0, 41) if comm.rank == comm.size - 1 else (0, 0))


def _saved(comm, shared_dir):
    _, _, _, _, a_local = setup(40, 8)
    path = os.path.join(shared_dir, "small.h5")
    FactoredMatrix.from_dense_block(a_local, comm, k=2).save(path, comm)
    return path
