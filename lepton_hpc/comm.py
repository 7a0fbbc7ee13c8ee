"""The only module that talks to MPI directly: world setup, error agreement, stats.

Every function taking ``comm`` is collective over it unless it says otherwise.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, TypeVar

import numpy as np
from mpi4py import MPI

T = TypeVar("T")

# Errors a user can cause and fix: bad config, missing files, bad data.
USER_ERRORS = (ValueError, OSError, KeyError)


class JobError(ValueError):
    """A user-facing error that every rank raises together."""

    def __init__(self, message: str, rank: int):
        super().__init__(message)
        self.rank = rank


def world() -> MPI.Comm:
    """A private duplicate of COMM_WORLD for the application (done once)."""
    return MPI.COMM_WORLD.Dup()


def library_version() -> str:
    return MPI.Get_library_version().splitlines()[0].strip()


def agree(comm: MPI.Comm, fn: Callable[..., T], *args, **kwargs) -> T:
    """Run ``fn`` on every rank; if it fails with a user error on any rank, all raise.

    Collective over ``comm``. Each rank catches its own error, an allreduce
    tells everyone whether any rank failed, and the message of the
    lowest-numbered failing rank is raised as :class:`JobError` everywhere,
    so no rank is left waiting in a collective another rank skipped.
    """
    try:
        result, message = fn(*args, **kwargs), None
    except USER_ERRORS as exc:
        result, message = None, _sentence(exc)
    check(comm, message)
    return result


def check(comm: MPI.Comm, message: str | None) -> None:
    """Raise ``JobError`` on every rank if any rank passes a message.

    Collective over ``comm``.
    """
    failed = comm.allreduce(comm.rank if message is not None else comm.size, op=MPI.MIN)
    if failed < comm.size:
        text = comm.bcast(message, root=failed)
        raise JobError(text, failed)


def on_root(comm: MPI.Comm, fn: Callable[..., T], *args, root: int = 0, **kwargs) -> T:
    """Run ``fn`` on ``root`` only (reading a file, making a directory) and give every rank its result.

    Collective over ``comm``. A user error on ``root`` is raised on every rank,
    as with :func:`agree`.
    """
    result = agree(comm, fn if comm.rank == root else (lambda *a, **k: None), *args, **kwargs)
    return comm.bcast(result, root=root)


def _sentence(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def allgather(comm: MPI.Comm, value):
    """Every rank's ``value``, in rank order (collective)."""
    return comm.allgather(value)


def allreduce_min_ints(comm: MPI.Comm, values) -> list[int]:
    """Elementwise minimum of a few integers over ``comm`` in one collective."""
    buf = np.array(values, dtype=np.int64)
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.MIN)
    return buf.tolist()


def allreduce_bxor(comm: MPI.Comm, value: int) -> int:
    buf = np.array([value], dtype=np.uint64)
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.BXOR)
    return int(buf[0])


def barrier(comm: MPI.Comm) -> None:
    comm.Barrier()


def abort_on_error(comm: MPI.Comm, exc: BaseException, code: int = 1) -> None:
    """Print this rank's traceback and abort the whole job (never returns).

    Not collective: used when one rank hits an unexpected error, where
    waiting for the others could hang forever.
    """
    sys.stderr.write(f"[rank {comm.rank}] unhandled error, aborting all ranks:\n")
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    comm.Abort(code)
    os._exit(code)  # pragma: no cover


class StopFlag:
    """Agree on a stop request (a signal seen by any rank) without a separate latency.

    ``start`` posts a non-blocking MAX-allreduce of this rank's flag before the
    step's compute; ``wait`` completes it after, so the agreement overlaps the
    work. Collective over ``comm`` (both calls on every rank, every step).
    """

    def __init__(self, comm: MPI.Comm):
        self.comm = comm
        self._send = np.zeros(1)
        self._recv = np.zeros(1)
        self._req = None

    def start(self, value: float) -> None:
        self._send[0] = value
        self._req = self.comm.Iallreduce(self._send, self._recv, op=MPI.MAX)

    def wait(self) -> float:
        self._req.Wait()
        return float(self._recv[0])
