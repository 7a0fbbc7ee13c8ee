"""Exact and fast chunk reductions against a serial reference, at any rank count."""

import numpy as np
import pytest
from mpi4py import MPI

from lepton_hpc.reduce import ChunkReducer, pairwise_sum


def _partials(n_chunks, width, seed=0):
    # Values spread over many magnitudes so the summation order shows in the bits.
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_chunks, width)) * 10.0 ** rng.integers(-8, 8, (n_chunks, 1))


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("n_chunks", [1, 2, 3, 5, 13, 64, 100])
def test_exact_is_the_serial_tree_bit_for_bit(n_chunks):
    comm = MPI.COMM_WORLD
    full = _partials(n_chunks, 4)
    red = ChunkReducer(comm, n_chunks, 4, "exact")
    red.partials[:] = full[red.chunks.start:red.chunks.stop]
    got = red.reduce().copy()
    assert np.array_equal(got, pairwise_sum(full))
    verdicts = comm.allgather(np.array_equal(got, pairwise_sum(full)))
    assert all(verdicts)


@pytest.mark.mpi(min_size=1)
def test_fast_is_close_to_the_serial_sum():
    comm = MPI.COMM_WORLD
    full = np.random.default_rng(1).standard_normal((37, 3))
    red = ChunkReducer(comm, 37, 3, "fast")
    red.partials[:] = full[red.chunks.start:red.chunks.stop]
    assert np.allclose(red.reduce(), full.sum(axis=0), rtol=1e-12)


@pytest.mark.mpi(min_size=2)
def test_more_ranks_than_chunks():
    comm = MPI.COMM_WORLD
    n_chunks = comm.size - 1  # the last rank owns nothing but still joins the collective
    full = _partials(n_chunks, 2, seed=4)
    for mode in ("exact", "fast"):
        red = ChunkReducer(comm, n_chunks, 2, mode)
        assert len(red.chunks) == (0 if comm.rank == comm.size - 1 else 1)
        red.partials[:] = full[red.chunks.start:red.chunks.stop]
        assert np.allclose(red.reduce(), full.sum(axis=0), rtol=1e-12)
