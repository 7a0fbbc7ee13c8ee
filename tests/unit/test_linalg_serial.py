"""Serial (no MPI) tests: HDF5 I/O and the distributed API driven by a stub communicator.

The distributed functions communicate through lepton_hpc.comm's wrappers, which
only call communicator methods, so a one-rank stub exercises them without a
launcher.
"""

import os

import h5py
import numpy as np
import pytest
import scipy.linalg

from lepton_hpc.linalg import (
    FactoredMatrix,
    orthogonality_error,
    randomized_svd,
    svd_tsqr,
    tsqr,
)
from lepton_hpc.errors import UserError
from lepton_hpc.linalg import hdf5io


class SerialComm:
    """The subset of the mpi4py communicator interface used by lepton_hpc.linalg."""

    rank, size = 0, 1

    def allgather(self, obj):
        return [obj]

    def gather(self, obj, root=0):
        return [obj]

    def bcast(self, obj, root=0):
        return obj

    def allreduce(self, obj, op=None):
        return obj

    def Allreduce(self, sendbuf, recvbuf):
        recvbuf[...] = sendbuf

    def Allgatherv(self, sendbuf, recvspec):  # the exact chunk reduction of the Cholesky QR
        recvspec[0][...] = sendbuf


def matrix(m=50, n=8, seed=0):
    return np.random.default_rng(seed).standard_normal((m, n))


def test_decompositions_with_stub_comm():
    comm, a = SerialComm(), matrix()
    q, r = tsqr(a, comm)
    assert np.allclose(q @ r, a) and np.all(np.diagonal(r) >= 0)
    u, s, v = svd_tsqr(a, comm, k=3)
    assert np.allclose(s, scipy.linalg.svd(a, compute_uv=False)[:3])
    assert orthogonality_error(u, comm) <= 1e-12
    u, s, v = randomized_svd(a, comm, k=3, oversampling=5)  # k + p = n: exact
    assert np.allclose(s, scipy.linalg.svd(a, compute_uv=False)[:3])


@pytest.mark.parametrize("bad,match", [
    (np.ones(5), "must be 2-D"),
    (np.array([[1.0, np.nan]]), "NaN or inf"),
    (np.ones((3, 2), dtype=complex), "real-valued"),
])
def test_bad_blocks_are_rejected(bad, match):
    with pytest.raises(UserError, match=match):
        tsqr(bad, SerialComm())


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_rank_is_rejected(k):
    with pytest.raises(UserError):
        svd_tsqr(matrix(), SerialComm(), k=k)


def test_hdf5_roundtrip_hyperslab_and_atomicity(tmp_path):
    rng = np.random.default_rng(1)
    u, s, v = rng.standard_normal((20, 3)), np.array([3.0, 2.0, 1.0]), rng.standard_normal((6, 3))
    path = str(tmp_path / "f.h5")
    hdf5io.write_factors_atomic(path, u, s, v, shape=(20, 6), s_discarded=[0.5], tail_complete=True)
    assert os.listdir(tmp_path) == ["f.h5"]
    assert hdf5io.read_header(path) == {"shape": (20, 6), "rank": 3}
    data = hdf5io.read_factors(path, (4, 9))
    assert np.array_equal(data["U_local"], u[4:9]) and np.array_equal(data["V"], v)
    assert data["tail_complete"] and np.array_equal(data["S_discarded"], [0.5])
    assert data["U_local"].shape == (5, 3)
    assert hdf5io.read_factors(path, (7, 7))["U_local"].shape == (0, 3)
    with pytest.raises(UserError, match="outside"):
        hdf5io.read_factors(path, (5, 21))
    # overwrite replaces the whole file
    hdf5io.write_factors_atomic(path, u[:, :1], s[:1], v[:, :1], shape=(20, 6))
    with h5py.File(path, "r") as f:
        assert f["factors/U"].shape == (20, 1) and int(f["factors"].attrs["rank"]) == 1


def test_hdf5_failed_write_leaves_old_file_and_no_tmp(tmp_path):
    path = str(tmp_path / "f.h5")
    hdf5io.write_factors_atomic(path, np.ones((2, 1)), np.ones(1), np.ones((3, 1)), shape=(2, 3))
    with pytest.raises(Exception):
        hdf5io.write_factors_atomic(path, np.ones((2, 1)), np.ones(1), object(), shape=(2, 3))
    assert os.listdir(tmp_path) == ["f.h5"]
    assert hdf5io.read_header(path)["shape"] == (2, 3)


def test_factored_matrix_serial_save_load(tmp_path):
    comm, a = SerialComm(), matrix(30, 6)
    fm = FactoredMatrix.from_dense_block(a, comm, k=4)
    path = tmp_path / "fm.h5"
    fm.save(path, comm)
    back = FactoredMatrix.load(path, comm, row_range=(0, 30))
    b = np.eye(6)
    assert np.allclose(back.matmul(b), fm.matmul(b))
    assert np.allclose(fm.tmatmul(np.eye(30)[:, :2], comm), fm.to_dense_block().T[:, :2])
    with pytest.raises(UserError, match=r"requested rank k=5"):
        fm.truncate(5)
    with pytest.raises(UserError, match="U_local has shape"):
        FactoredMatrix(np.ones((3, 2)), [1.0, 0.5], np.ones((4, 2)), row_range=(0, 4), shape=(4, 4))
