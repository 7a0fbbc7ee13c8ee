"""One file written by every rank in turn, in rank order, atomically (no rank gathers the rows).

Rank 0 reserves a temporary name next to the final one
(:func:`lepton_hpc.data.atomic.reserve_tmp`) and creates the file there (``create(tmp)``:
the attributes and the unwritten datasets); then the ranks take turns in rank order (a
token passed with :func:`lepton_hpc.comm.send_token`), each writing its own rows
(``write_own(tmp)``: open ``'r+'``, write the hyperslabs, close; serial HDF5 allows one
writer at a time); then every rank agrees on the outcome and rank 0 fsyncs and renames
the file into place (:func:`~lepton_hpc.data.atomic.commit_tmp`) or removes it. A failure
anywhere leaves nothing new under the final name.

Used by :func:`lepton_hpc.linalg.collective_io.save_factors` and :mod:`lepton_hpc.predict`.
MPI is reached only through :mod:`lepton_hpc.comm`.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from .. import comm as C
from ..errors import UserError
from .atomic import commit_tmp, discard_tmp, reserve_tmp

__all__ = ["write_in_rank_order"]


def _user_error(exc: BaseException, what: str) -> UserError:
    return UserError(f"{what}: {C.sentence(exc)}")


def _create_tmp(final: str, create: Callable[[str], None], what: str) -> str:
    """On rank 0: reserve a temporary name and ``create`` the file there."""
    tmp = None
    try:
        tmp = reserve_tmp(final)
        create(tmp)
        return tmp
    except BaseException as exc:
        if tmp is not None:
            discard_tmp(tmp)
        if isinstance(exc, OSError):
            raise _user_error(exc, what) from exc
        raise


def _write_in_turn(comm, tmp: str, write_own, what: str, rows_what: str) -> Optional[str]:
    """Run ``write_own(tmp)`` when this rank's turn comes; the message of a failure, or None.

    Point-to-point in a chain over ``comm`` (rank ``q`` waits for ``q - 1``, then hands
    the turn to ``q + 1``); after a failure the later ranks skip their writes.
    """
    ok = True if comm.rank == 0 else C.wait_token(comm, comm.rank - 1)
    message = None
    if ok and write_own is not None:
        try:
            write_own(tmp)
        except C.USER_ERRORS as exc:
            message = f"{what}: rank {comm.rank} could not write {rows_what}: {C.sentence(exc)}"
    if comm.rank + 1 < comm.size:
        C.send_token(comm, comm.rank + 1, ok and message is None)
    return message


def _commit(tmp: str, final: str, what: str) -> None:
    try:
        commit_tmp(tmp, final)
    except OSError as exc:
        raise _user_error(exc, what) from exc


def write_in_rank_order(comm, path, create: Callable[[str], None], write_own: Optional[Callable[[str], None]],
                        what: str, rows_what: str = "its rows") -> None:
    """Write one file at ``path``: ``create(tmp)`` on rank 0, then ``write_own(tmp)`` on each rank in turn.

    Collective over ``comm``; only rank 0's ``path`` and ``create`` are used. ``write_own``
    is None on a rank with nothing to write. ``what`` starts every error message
    (``"saving 'f.h5'"``), ``rows_what`` names a rank's share in it.

    Raises
    ------
    lepton_hpc.comm.JobError
        (a ``UserError``) on every rank if the file cannot be created, any rank fails to
        write, or the commit fails; nothing new is left under ``path`` then.
    """
    final = os.fspath(path)
    tmp = C.on_root(comm, _create_tmp, final, create, what)
    message = _write_in_turn(comm, tmp, write_own, what, rows_what)
    try:
        C.check(comm, message)
    except C.JobError:
        if comm.rank == 0:
            discard_tmp(tmp)
        raise
    C.on_root(comm, _commit, tmp, final, what)
