"""The parallel assertions themselves: one rank's failure fails every rank, and nobody hangs."""

import pytest
from mpi4py import MPI

from passert import parallel_assert, parallel_raises, run_on_root

WORLD = MPI.COMM_WORLD


@pytest.mark.mpi(min_size=1)
def test_true_everywhere_passes():
    parallel_assert(WORLD, True, "never shown")
    assert WORLD.allreduce(1) == WORLD.size


@pytest.mark.mpi(min_size=1)
def test_false_on_the_last_rank_fails_every_rank_and_names_it():
    last = WORLD.size - 1
    with pytest.raises(AssertionError) as info:
        parallel_assert(WORLD, WORLD.rank != last, lambda: f"bad value {WORLD.rank * 10}")
    text = str(info.value)
    assert f"failed on rank(s) {last} of {WORLD.size}" in text
    assert f"rank {last}: bad value {last * 10}" in text
    assert WORLD.allreduce(1) == WORLD.size  # every rank is still in step


@pytest.mark.mpi(min_size=2)
def test_every_failing_rank_is_listed_with_the_default_message():
    with pytest.raises(AssertionError, match=r"rank\(s\) 0, 1 of .*rank 0: assertion failed; "
                                             r"rank 1: assertion failed"):
        parallel_assert(WORLD, WORLD.rank >= 2)


@pytest.mark.mpi(min_size=1)
def test_parallel_raises_passes_when_every_rank_raises():
    with parallel_raises(WORLD, ValueError, match="rank [0-9]+ says no") as caught:
        raise ValueError(f"rank {WORLD.rank} says no")
    assert isinstance(caught[0], ValueError)


@pytest.mark.mpi(min_size=2)
def test_parallel_raises_fails_everywhere_when_one_rank_does_not_raise():
    with pytest.raises(AssertionError, match=r"rank\(s\) 0 of .*rank 0: did not raise KeyError"):
        with parallel_raises(WORLD, KeyError):
            if WORLD.rank:
                raise KeyError("x")
    with pytest.raises(AssertionError, match=r"rank 1: raised TypeError\(t\) instead of KeyError"):
        with parallel_raises(WORLD, KeyError):
            raise (TypeError("t") if WORLD.rank == 1 else KeyError("k"))
    with pytest.raises(AssertionError, match=r"does not match 'expected'"):
        with parallel_raises(WORLD, KeyError, match="expected"):
            raise KeyError("something else")


@pytest.mark.mpi(min_size=1)
def test_run_on_root_shares_the_result_or_the_failure():
    assert run_on_root(WORLD, lambda: "from root") == "from root"

    def broken():
        raise OSError("disk full")

    with pytest.raises(AssertionError, match=r"rank 0: OSError: disk full"):
        run_on_root(WORLD, broken)
