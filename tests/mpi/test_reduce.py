"""Exact and fast chunk reductions against a serial reference, at any rank count."""

import numpy as np
import pytest
from mpi4py import MPI

from lepton_hpc.reduce import ChunkReducer, pairwise_sum

from passert import parallel_assert


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
    want = pairwise_sum(full)
    parallel_assert(comm, np.array_equal(got, want),
                    lambda: f"exact sum differs from the serial tree by {np.max(np.abs(got - want))!r}")


@pytest.mark.mpi(min_size=1)
def test_fast_is_close_to_the_serial_sum():
    comm = MPI.COMM_WORLD
    full = np.random.default_rng(1).standard_normal((37, 3))
    red = ChunkReducer(comm, 37, 3, "fast")
    red.partials[:] = full[red.chunks.start:red.chunks.stop]
    got = red.reduce().copy()
    parallel_assert(comm, np.allclose(got, full.sum(axis=0), rtol=1e-12),
                    lambda: f"fast sum {got} is not close to {full.sum(axis=0)}")


@pytest.mark.mpi(min_size=2)
def test_more_ranks_than_chunks():
    comm = MPI.COMM_WORLD
    n_chunks = comm.size - 1  # the last rank owns nothing but still joins the collective
    full = _partials(n_chunks, 2, seed=4)
    for mode in ("exact", "fast"):
        red = ChunkReducer(comm, n_chunks, 2, mode)
        owned = len(red.chunks)
        parallel_assert(comm, owned == (0 if comm.rank == comm.size - 1 else 1),
                        lambda: f"{mode}: owns {owned} chunks")
        red.partials[:] = full[red.chunks.start:red.chunks.stop]
        got = red.reduce().copy()
        parallel_assert(comm, np.allclose(got, full.sum(axis=0), rtol=1e-12),
                        lambda: f"{mode}: sum {got} is not close to {full.sum(axis=0)}")
