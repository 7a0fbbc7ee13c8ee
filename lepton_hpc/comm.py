"""Every MPI call of the application: world setup, error agreement, collectives, abort.

Only this module and :mod:`lepton_hpc.reduce` talk to MPI (a unit test walks the
package and enforces it). Every function taking ``comm`` is collective over it
unless it says otherwise.

Errors, one protocol:

* a user's mistake is a :class:`~lepton_hpc.errors.UserError` (or ``OSError``).
  Inside :func:`agree` every rank learns of it together and raises the same
  :class:`JobError`; the entry point (:func:`run_app`) prints one sentence from
  the lowest failing rank and every rank exits 1.
* a ``UserError`` raised outside :func:`agree` reaches :func:`run_app` on some
  ranks only, or on all: the ranks that have it join a non-blocking agreement on a
  private error communicator. If every rank joins, one sentence and exit 1
  everywhere; if some rank is busy elsewhere (waiting in a collective), the failing
  rank prints its sentence and aborts the job with exit code 1 instead of hanging.
* anything else is a bug: the failing rank prints its traceback and calls MPI_Abort.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Callable, TypeVar

import numpy as np
from mpi4py import MPI

from .errors import UserError

T = TypeVar("T")

#: Errors a user can cause and fix. KeyError/IndexError/plain ValueError are bugs.
USER_ERRORS = (UserError, OSError)
def _env_seconds(name: str, default: float) -> float:
    """A number of seconds from the environment; ``default`` (with a warning) when it is not one."""
    text = os.environ.get(name, "")
    try:
        value = float(text) if text.strip() else default
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        print(f"warning: {name}={text!r} is not a number of seconds >= 0; using {default:g}", file=sys.stderr)
        value = default
    return value


#: Seconds a rank with an unagreed user error waits for the others before aborting.
LATE_AGREE_S = _env_seconds("LEPTON_ERROR_WAIT_S", 10.0)

_ERRCOMM_KEY = MPI.Comm.Create_keyval()


class JobError(UserError):
    """A user-facing error that every rank raises together (``rank``: the lowest failing rank)."""

    def __init__(self, message: str, rank: int = 0):
        super().__init__(message)
        self.rank = rank


# -- the world ----------------------------------------------------------------------

def world() -> MPI.Comm:
    """A private duplicate of COMM_WORLD for the application (call once), with its error comm."""
    comm = MPI.COMM_WORLD.Dup()
    comm.Set_attr(_ERRCOMM_KEY, comm.Dup())
    return comm


def library() -> dict:
    """The MPI library this process runs on and its place in the launch (``info``): not collective."""
    lib = MPI.Get_library_version().strip().splitlines()
    return {"library": " ".join(lib[0].split()) if lib else "unknown", "standard": "{}.{}".format(*MPI.Get_version()),
            "world_size": MPI.COMM_WORLD.Get_size(), "world_rank": MPI.COMM_WORLD.Get_rank()}


def self_comm() -> MPI.Comm:
    """A one-rank communicator (serial use of the distributed code, e.g. in a notebook)."""
    return MPI.COMM_SELF.Dup()


def free(comm: MPI.Comm) -> None:
    """Release ``comm`` and its error communicator. Collective."""
    err = comm.Get_attr(_ERRCOMM_KEY)
    if err is not None:
        comm.Delete_attr(_ERRCOMM_KEY)
        err.Free()
    comm.Free()


def node_size(comm: MPI.Comm) -> int:
    """How many ranks of ``comm`` share this rank's node (its memory). Collective over ``comm``."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_size()
    finally:
        node.Free()


def library_version() -> str:
    return MPI.Get_library_version().splitlines()[0].strip()


# -- agreeing on errors ------------------------------------------------------------------

def agree(comm: MPI.Comm, fn: Callable[..., T], *args, **kwargs) -> T:
    """Run ``fn`` on every rank; if it fails with a user error on any rank, all raise.

    Collective over ``comm``. Each rank catches its own error, an allreduce
    tells everyone whether any rank failed, and the message of the
    lowest-numbered failing rank is raised as :class:`JobError` everywhere,
    so no rank is left waiting in a collective another rank skipped.
    """
    try:
        result, message = fn(*args, **kwargs), None
    except JobError as exc:  # already agreed on inside fn: every rank has it
        raise exc
    except USER_ERRORS as exc:
        result, message = None, sentence(exc)
    check(comm, message)
    return result


def check(comm: MPI.Comm, message: str | None) -> None:
    """Raise ``JobError`` on every rank if any rank passes a message. Collective over ``comm``."""
    failed = comm.allreduce(comm.rank if message is not None else comm.size, op=MPI.MIN)
    if failed < comm.size:
        text = comm.bcast(message, root=failed)
        raise JobError(text, failed)


def on_root(comm: MPI.Comm, fn: Callable[..., T], *args, root: int = 0, **kwargs) -> T:
    """Run ``fn`` on ``root`` only (reading a file, making a directory); every rank gets its result.

    Collective over ``comm``. A user error on ``root`` is raised on every rank, as with :func:`agree`.
    """
    result = agree(comm, fn if comm.rank == root else (lambda *a, **k: None), *args, **kwargs)
    return comm.bcast(result, root=root)


def sentence(exc: BaseException) -> str:
    """The one sentence shown for a user error."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


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


def _late_agree(comm: MPI.Comm, exc: BaseException) -> int:
    """A user error outside :func:`agree`: one sentence and exit 1 everywhere, or abort (see the module doc)."""
    err = comm.Get_attr(_ERRCOMM_KEY) or comm
    message = sentence(exc)
    send, recv = np.array([comm.rank], dtype=np.int64), np.zeros(1, dtype=np.int64)
    req = err.Iallreduce(send, recv, op=MPI.MIN)
    deadline = time.monotonic() + LATE_AGREE_S
    while not req.Test():
        if time.monotonic() > deadline:
            print(f"error (rank {comm.rank}): {message}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            comm.Abort(1)
            os._exit(1)  # pragma: no cover
        time.sleep(0.005)
    text = err.bcast(message, root=int(recv[0]))
    if comm.rank == 0:
        where = f" (rank {int(recv[0])})" if recv[0] else ""
        print(f"error{where}: {text}", file=sys.stderr, flush=True)
    return 1


def run_app(main: Callable[[MPI.Comm], int]) -> int:
    """Run an entry point's ``main(comm)`` under the error protocol; returns the exit code.

    Collective over COMM_WORLD: creates the application's communicator, runs
    ``main``, frees the communicator.
    """
    comm = world()
    try:
        code = main(comm)
    except JobError as exc:
        if comm.rank == 0:
            where = f" (rank {exc.rank})" if exc.rank else ""
            print(f"error{where}: {exc}", file=sys.stderr, flush=True)
        code = 1
    except USER_ERRORS as exc:
        code = _late_agree(comm, exc)
    except KeyboardInterrupt:  # Ctrl-C before the run's own handler is in place: nothing to save
        if comm.rank == 0:
            print("interrupted (Ctrl-C) before the first step: nothing was written", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)
    except BaseException as exc:  # noqa: BLE001 - any other failure must not hang the job
        abort_on_error(comm, exc)
    free(comm)
    return code


# -- collectives on Python objects -----------------------------------------------------

def allgather(comm: MPI.Comm, value) -> list:
    """Every rank's ``value``, in rank order."""
    return comm.allgather(value)


def gather(comm: MPI.Comm, value, root: int = 0) -> list | None:
    """Every rank's ``value`` on ``root`` (rank order); None elsewhere. For small per-rank figures."""
    return comm.gather(value, root=root)


def bcast(comm: MPI.Comm, value, root: int = 0):
    """``root``'s ``value`` on every rank."""
    return comm.bcast(value, root=root)


def barrier(comm: MPI.Comm) -> None:
    comm.Barrier()


def allreduce_max(comm: MPI.Comm, value):
    """The largest of every rank's scalar ``value``."""
    return comm.allreduce(value, op=MPI.MAX)


def allreduce_min_ints(comm: MPI.Comm, values) -> list[int]:
    """Elementwise minimum of a few integers over ``comm`` in one collective."""
    buf = np.array(values, dtype=np.int64)
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.MIN)
    return buf.tolist()


def allreduce_bxor(comm: MPI.Comm, value: int) -> int:
    """Bitwise XOR of every rank's 64-bit ``value`` (order-free: fingerprints)."""
    buf = np.array([value], dtype=np.uint64)
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.BXOR)
    return int(buf[0])


# -- collectives on arrays ---------------------------------------------------------------

def allreduce_sum(comm: MPI.Comm, local: np.ndarray) -> np.ndarray:
    """Element-wise float64 sum over all ranks, as a new array (plain Allreduce: the
    order depends on the rank count; use :mod:`lepton_hpc.reduce` for the same bits)."""
    send = np.ascontiguousarray(local, dtype=np.float64)
    recv = np.empty_like(send)
    comm.Allreduce(send, recv)
    return recv


def allreduce_sum_into(comm: MPI.Comm, send: np.ndarray, recv: np.ndarray) -> np.ndarray:
    """``recv = sum over ranks of send`` into preallocated float64 buffers (no allocation)."""
    comm.Allreduce(send, recv)
    return recv


def allgatherv_rows(comm: MPI.Comm, local: np.ndarray, out: np.ndarray, counts) -> None:
    """Stack every rank's rows (``counts[q]`` rows from rank ``q``, rank order) into ``out``
    on every rank. ``out`` is (sum(counts), width) float64."""
    width = out.shape[1] if out.ndim == 2 else 1
    sizes = np.asarray(counts, dtype=np.int64) * width
    displs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    comm.Allgatherv(np.ascontiguousarray(local, dtype=np.float64).reshape(-1),
                    [out.reshape(-1), (sizes, displs)])


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


# -- point-to-point turns and pickled sums (appended for lepton_hpc.linalg) ------------------

#: Tag of :func:`send_token`/:func:`wait_token` messages (kept apart from other traffic on ``comm``).
TOKEN_TAG = 7301


def send_token(comm: MPI.Comm, dest: int, ok: bool = True) -> None:
    """Hand the turn to rank ``dest`` (``ok``: whether everything went well so far).

    Point-to-point, not collective: pairs with :func:`wait_token` on ``dest``. Used to
    let ranks take turns on a shared file, one at a time, in rank order.
    """
    comm.send(bool(ok), dest=dest, tag=TOKEN_TAG)


def wait_token(comm: MPI.Comm, source: int) -> bool:
    """Wait until rank ``source`` hands over the turn; returns its ``ok`` flag.

    Point-to-point, not collective: pairs with :func:`send_token` on ``source``.
    """
    return bool(comm.recv(source=source, tag=TOKEN_TAG))


def allreduce_object_sum(comm: MPI.Comm, value):
    """The sum of every rank's ``value`` (numpy arrays, floats) by mpi4py's pickled allreduce.

    Its order (a binomial tree) depends on the rank count, like :func:`allreduce_sum`, but
    its bits differ from a buffer Allreduce: kept where results are pinned to it (the least
    squares ``Uᵀy`` of :mod:`lepton_hpc.linalg.lstsq`). Collective over ``comm``.
    """
    return comm.allreduce(value, op=MPI.SUM)


# -- personalised exchange (appended for the item-sharded recommender) -------------------------

def alltoall_counts(comm: MPI.Comm, send_counts) -> np.ndarray:
    """``recv[q]`` = what rank ``q`` passed as ``send_counts[comm.rank]`` (int64, one entry per rank)."""
    send = np.ascontiguousarray(send_counts, dtype=np.int64)
    recv = np.empty_like(send)
    comm.Alltoall(send, recv)
    return recv


def alltoallv(comm: MPI.Comm, send: np.ndarray, send_counts, recv: np.ndarray, recv_counts) -> np.ndarray:
    """Personalised exchange of rows: ``send_counts[q]`` rows of ``send`` (in rank order) go to rank
    ``q``; ``recv`` gets ``recv_counts[q]`` rows from each rank ``q``, stacked in rank order.

    ``send`` and ``recv`` are contiguous arrays of one dtype with the same row width (1-d: one
    element per row). Returns ``recv``. Collective over ``comm``.
    """
    width = int(np.prod(send.shape[1:], dtype=np.int64)) if send.ndim > 1 else 1
    specs = []
    for counts in (send_counts, recv_counts):
        sizes = np.asarray(counts, dtype=np.int64) * width
        specs.append((sizes, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)))
    comm.Alltoallv([np.ascontiguousarray(send).reshape(-1), specs[0]], [recv.reshape(-1), specs[1]])
    return recv


# -- integer sums (appended for lepton_hpc.data's importers) --------------------------------

def allreduce_sum_ints(comm: MPI.Comm, values: np.ndarray) -> np.ndarray:
    """Element-wise int64 sum over all ranks, as a new array (integer sums: the same on any rank
    count). Collective over ``comm``."""
    send = np.ascontiguousarray(values, dtype=np.int64)
    recv = np.empty_like(send)
    comm.Allreduce(send, recv, op=MPI.SUM)
    return recv
