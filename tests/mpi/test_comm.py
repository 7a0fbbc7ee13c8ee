"""Error agreement: one rank's bad input becomes the same error on every rank."""

import pytest
from mpi4py import MPI

from lepton_hpc import comm as C


def _fails_on(rank, message):
    def fn():
        if MPI.COMM_WORLD.rank == rank:
            raise ValueError(message)
        return "ok"
    return fn


@pytest.mark.mpi(min_size=1)
def test_agree_passes_results_through():
    assert C.agree(MPI.COMM_WORLD, lambda: MPI.COMM_WORLD.rank) == MPI.COMM_WORLD.rank


@pytest.mark.mpi(min_size=1)
def test_failure_on_last_rank_raises_everywhere_with_its_message():
    comm = MPI.COMM_WORLD
    last = comm.size - 1
    with pytest.raises(C.JobError, match="bad thing on the last rank") as info:
        C.agree(comm, _fails_on(last, "bad thing on the last rank"))
    assert info.value.rank == last
    comm.Barrier()  # every rank got here: nobody is stuck in a collective


@pytest.mark.mpi(min_size=2)
def test_lowest_failing_rank_wins():
    comm = MPI.COMM_WORLD

    def fn():
        raise FileNotFoundError(2, "No such file or directory", f"/data/part{comm.rank}.h5")

    with pytest.raises(C.JobError, match=r"/data/part0\.h5: No such file or directory"):
        C.agree(comm, fn)


@pytest.mark.mpi(min_size=1)
def test_min_ints_and_stop_flag():
    comm = MPI.COMM_WORLD
    assert C.allreduce_min_ints(comm, [comm.rank, -comm.rank, 7]) == [0, 1 - comm.size, 7]
    flag = C.StopFlag(comm)
    flag.start(1.0 if comm.rank == comm.size - 1 else 0.0)
    assert flag.wait() == 1.0
    flag.start(0.0)
    assert flag.wait() == 0.0
