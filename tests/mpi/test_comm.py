"""lepton_hpc.comm: error agreement (a user's mistake on one rank is the same error on every rank,
a bug is not swallowed), run_app's agreed exits, and the collective wrappers."""

import numpy as np
import pytest
from mpi4py import MPI

from lepton_hpc import comm as C
from lepton_hpc.errors import UserError

from helpers import uneven_bounds
from passert import parallel_assert, parallel_raises

WORLD = MPI.COMM_WORLD


def _fails_on(rank, message):
    def fn():
        if WORLD.rank == rank:
            raise UserError(message)
        return "ok"
    return fn


def _raises(exc):
    def fn():
        raise exc
    return fn


def _in_step():
    """Every rank reaches this collective: nobody is stuck in another one."""
    assert WORLD.allreduce(1) == WORLD.size


@pytest.mark.mpi(min_size=1)
def test_agree_passes_results_through():
    got = C.agree(WORLD, lambda: WORLD.rank)
    parallel_assert(WORLD, got == WORLD.rank, lambda: f"agree returned {got!r}")


@pytest.mark.mpi(min_size=1)
def test_failure_on_last_rank_raises_everywhere_with_its_message():
    last = WORLD.size - 1
    with parallel_raises(WORLD, C.JobError, match="bad thing on the last rank") as caught:
        C.agree(WORLD, _fails_on(last, "bad thing on the last rank"))
    parallel_assert(WORLD, caught[0].rank == last, lambda: f"JobError.rank is {caught[0].rank}")
    _in_step()


@pytest.mark.mpi(min_size=2)
def test_lowest_failing_rank_wins():
    def fn():
        raise FileNotFoundError(2, "No such file or directory", f"/data/part{WORLD.rank}.h5")

    with parallel_raises(WORLD, C.JobError, match=r"^/data/part0\.h5: No such file or directory$"):
        C.agree(WORLD, fn)
    _in_step()


@pytest.mark.mpi(min_size=1)
def test_a_job_error_inside_agree_passes_through_unchanged():
    last = WORLD.size - 1
    with parallel_raises(WORLD, C.JobError, match="inner") as caught:
        C.agree(WORLD, C.agree, WORLD, _fails_on(last, "inner"))
    parallel_assert(WORLD, caught[0].rank == last, lambda: f"JobError.rank is {caught[0].rank}")
    _in_step()


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("bug", [ValueError("plain value error"), KeyError("missing key"),
                                 IndexError("index out of range")])
def test_agree_does_not_swallow_a_bug(bug):
    # Every rank raises at once, so nobody waits in agree's collective for a rank that left it.
    with parallel_raises(WORLD, type(bug)) as caught:
        C.agree(WORLD, _raises(bug))
    parallel_assert(WORLD, not isinstance(caught[0], C.JobError) and caught[0] is bug,
                    lambda: f"agree turned {bug!r} into {caught[0]!r}")
    _in_step()


@pytest.mark.mpi(min_size=1)
def test_on_root_shares_the_result_and_the_root_error():
    last = WORLD.size - 1
    got = C.on_root(WORLD, lambda: f"read by {WORLD.rank}", root=last)
    parallel_assert(WORLD, got == f"read by {last}", lambda: f"on_root returned {got!r}")
    with parallel_raises(WORLD, C.JobError, match="no such config"):
        C.on_root(WORLD, _fails_on(last, "no such config"), root=last)
    _in_step()


@pytest.mark.mpi(min_size=1)
def test_run_app_all_ranks_user_error_is_one_sentence_and_exit_1(capsys):
    def main(comm):
        raise UserError(f"bad setting on rank {comm.rank}")

    code = C.run_app(main)
    err = capsys.readouterr().err
    parallel_assert(WORLD, code == 1, lambda: f"exit code {code}")
    want = "error: bad setting on rank 0\n" if WORLD.rank == 0 else ""
    parallel_assert(WORLD, err == want, lambda: f"stderr was {err!r}, expected {want!r}")


@pytest.mark.mpi(min_size=1)
def test_run_app_agreed_job_error_names_the_rank(capsys):
    last = WORLD.size - 1

    def main(comm):
        C.agree(comm, _fails_on(last, "no such file data.h5"))
        return 0

    code = C.run_app(main)
    err = capsys.readouterr().err
    where = f" (rank {last})" if last else ""
    want = f"error{where}: no such file data.h5\n" if WORLD.rank == 0 else ""
    parallel_assert(WORLD, code == 1 and err == want, lambda: f"exit {code}, stderr {err!r}")


@pytest.mark.mpi(min_size=1)
def test_run_app_returns_main_exit_code():
    code = C.run_app(lambda comm: 75 if comm.size == WORLD.size else 3)
    parallel_assert(WORLD, code == 75, lambda: f"exit code {code}")


# -- the collective wrappers ---------------------------------------------------------------

@pytest.mark.mpi(min_size=1)
def test_allreduce_sum_is_a_new_float64_array_and_leaves_the_input():
    local = np.arange(6, dtype=np.int32).reshape(2, 3) * (WORLD.rank + 1)
    before = local.copy()
    total = C.allreduce_sum(WORLD, local)
    want = np.arange(6).reshape(2, 3) * (WORLD.size * (WORLD.size + 1) // 2)
    parallel_assert(WORLD, total.dtype == np.float64 and total.shape == (2, 3)
                    and np.array_equal(total, want) and np.array_equal(local, before),
                    lambda: f"sum {total!r} (dtype {total.dtype}), input now {local!r}")


@pytest.mark.mpi(min_size=1)
def test_allreduce_sum_into_fills_the_given_buffer():
    send = np.full(4, 0.5) * 2.0 ** WORLD.rank
    recv = np.full(4, np.nan)
    out = C.allreduce_sum_into(WORLD, send, recv)
    want = np.full(4, 0.5 * (2.0 ** WORLD.size - 1))
    parallel_assert(WORLD, out is recv and np.array_equal(recv, want),
                    lambda: f"recv {recv!r}, returned the buffer: {out is recv}")


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("style", ["mixed", "last"])
def test_allgatherv_rows_stacks_uneven_blocks_in_rank_order(style):
    n_rows, width = 11, 3
    full = np.arange(n_rows * width, dtype=np.float64).reshape(n_rows, width) + 0.25
    bounds = uneven_bounds(n_rows, width, WORLD.size, style)
    counts = np.diff(bounds)
    local = full[bounds[WORLD.rank]:bounds[WORLD.rank + 1]]
    out = np.full((n_rows, width), np.nan)
    C.allgatherv_rows(WORLD, local, out, counts)
    out1 = np.full(n_rows, np.nan)
    C.allgatherv_rows(WORLD, local[:, 1], out1, counts)  # a column: one value per row
    parallel_assert(WORLD, np.array_equal(out, full) and np.array_equal(out1, full[:, 1]),
                    lambda: f"counts {counts.tolist()}: got {out!r} and {out1!r}")


@pytest.mark.mpi(min_size=1)
def test_gather_and_bcast_from_the_last_rank():
    last = WORLD.size - 1
    got = C.gather(WORLD, {"rank": WORLD.rank}, root=last)
    want = [{"rank": q} for q in range(WORLD.size)] if WORLD.rank == last else None
    parallel_assert(WORLD, got == want, lambda: f"gather gave {got!r}")
    value = C.bcast(WORLD, ("from", WORLD.rank), root=last)
    parallel_assert(WORLD, value == ("from", last), lambda: f"bcast gave {value!r}")
    default = C.bcast(WORLD, WORLD.rank * 7)
    parallel_assert(WORLD, default == 0, lambda: f"bcast from the default root gave {default!r}")


@pytest.mark.mpi(min_size=1)
def test_allreduce_max_allgather_and_bxor():
    top = C.allreduce_max(WORLD, (WORLD.rank * 3) % 5 - 0.5)  # 3 ranks: the largest is rank 1's
    want_top = max((q * 3) % 5 - 0.5 for q in range(WORLD.size))
    parallel_assert(WORLD, top == want_top, lambda: f"max {top!r}, expected {want_top!r}")
    everyone = C.allgather(WORLD, WORLD.rank * 2)
    parallel_assert(WORLD, everyone == [2 * q for q in range(WORLD.size)], lambda: f"{everyone!r}")
    x = C.allreduce_bxor(WORLD, 1 << (WORLD.rank % 64) | (1 << 63))
    want = sum(1 << q for q in range(WORLD.size)) | ((WORLD.size % 2) << 63)
    parallel_assert(WORLD, x == want, lambda: f"bxor {x:#x}, expected {want:#x}")


@pytest.mark.mpi(min_size=1)
def test_min_ints_and_stop_flag():
    mins = C.allreduce_min_ints(WORLD, [WORLD.rank, -WORLD.rank, 7])
    parallel_assert(WORLD, mins == [0, 1 - WORLD.size, 7], lambda: f"mins {mins}")
    flag = C.StopFlag(WORLD)
    flag.start(1.0 if WORLD.rank == WORLD.size - 1 else 0.0)
    first = flag.wait()
    flag.start(0.0)
    second = flag.wait()
    parallel_assert(WORLD, (first, second) == (1.0, 0.0), lambda: f"stop flags {first}, {second}")
