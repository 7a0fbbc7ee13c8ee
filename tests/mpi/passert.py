"""Assertions for tests that run on every rank (as mpi-pytest's ``parallel_assert``).

A plain ``assert`` that fails on one rank ends the test there while the other
ranks go on into the next collective, which then hangs (or pairs with the wrong
call). These helpers make every rank learn every rank's verdict in one
``allgather`` and fail together, naming the failing ranks and their messages.
Each of them is collective over ``comm``.
"""

from __future__ import annotations

import re
from contextlib import contextmanager


def parallel_assert(comm, condition, message="") -> None:
    """Fail on every rank of ``comm`` if ``condition`` is false on any rank.

    ``message`` (a string, or a zero-argument callable evaluated only on a
    failing rank) says what went wrong on that rank.
    """
    __tracebackhide__ = True
    ok = bool(condition)
    text = None
    if not ok:
        text = str(message() if callable(message) else message) or "assertion failed"
    verdicts = comm.allgather(text)
    failed = [(rank, msg) for rank, msg in enumerate(verdicts) if msg is not None]
    if failed:
        ranks = ", ".join(str(rank) for rank, _ in failed)
        details = "; ".join(f"rank {rank}: {msg}" for rank, msg in failed)
        raise AssertionError(f"failed on rank(s) {ranks} of {comm.size}: {details}")


@contextmanager
def parallel_raises(comm, expected, match: str | None = None):
    """Like ``pytest.raises``, but every rank checks that every rank raised.

    The block's exception (if of type ``expected`` and matching ``match``) is
    swallowed; a missing, wrong or non-matching exception on any rank fails the
    test on every rank. Yields a list that holds this rank's exception after the block.
    """
    __tracebackhide__ = True
    caught: list = []
    problem = None
    try:
        yield caught
        problem = f"did not raise {expected.__name__}"
    except BaseException as exc:  # noqa: BLE001 - every outcome is reported to every rank
        caught.append(exc)
        if not isinstance(exc, expected):
            problem = f"raised {type(exc).__name__}({exc}) instead of {expected.__name__}"
        elif match is not None and not re.search(match, str(exc)):
            problem = f"{type(exc).__name__}({exc}) does not match {match!r}"
    parallel_assert(comm, problem is None, lambda: problem)


def run_on_root(comm, fn, root: int = 0):
    """Run ``fn()`` on ``root`` only (test setup: writing a file); every rank gets its result.

    If ``fn`` fails, every rank fails with its message instead of waiting for ``root``.
    """
    __tracebackhide__ = True
    result, problem = None, None
    if comm.rank == root:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - reported to every rank below
            problem = f"{type(exc).__name__}: {exc}"
    parallel_assert(comm, problem is None, lambda: problem)
    return comm.bcast(result, root=root)
