"""Collective reading and writing of factor files (the one-file format of :mod:`.hdf5io`).

Saving: no rank ever holds more than its own rows of ``U``. Rank 0 reserves a
temporary name next to the final one (:func:`lepton_hpc.data.atomic.reserve_tmp`)
and creates the file there with ``S``, ``V``, the attributes and an unwritten
``m × k`` ``/factors/U``; then the ranks take turns in rank order (a token passed
with :func:`lepton_hpc.comm.send_token`), each opening the file ``'r+'``, writing
its hyperslab of rows and closing it (serial HDF5 allows one writer at a time);
then every rank agrees on the outcome and rank 0 fsyncs and renames the file into
place (:func:`~lepton_hpc.data.atomic.commit_tmp`) or removes it.

Loading: every rank reads ``S``, ``V`` and only its own rows of ``U``.

Errors follow :mod:`lepton_hpc.comm`: an ``OSError`` or ``UserError`` on any rank
(a missing directory, a full disk, a bad factor file, a row range outside the
matrix) becomes the same :class:`~lepton_hpc.comm.JobError` (a
:class:`~lepton_hpc.errors.UserError`) on every rank, and a failed save leaves
nothing new under the final name.
"""

from __future__ import annotations

import os
from typing import Optional

from . import hdf5io
from .collectives import RowLayout, raise_first_error
from .. import comm as C
from ..data.atomic import commit_tmp, discard_tmp, reserve_tmp
from ..errors import UserError

__all__ = ["check_tiling", "save_factors", "load_factors"]


def check_tiling(ranges: list, n_rows_global: int) -> Optional[str]:
    """Message if ``ranges`` (in rank order) do not tile ``[0, n_rows_global)``."""
    expected = 0
    for rank, (start, stop) in enumerate(ranges):
        if start != expected or stop < start:
            return (
                f"row ranges must tile [0, {n_rows_global}) contiguously in rank "
                f"order; rank {rank} has ({start}, {stop}), expected start {expected}"
            )
        expected = stop
    if expected != n_rows_global:
        return f"row ranges must tile [0, {n_rows_global}); they end at {expected}"
    return None


def _user_error(exc: BaseException, what: str) -> UserError:
    return UserError(f"{what}: {C.sentence(exc)}")


def _create_tmp(final: str, fm, what: str) -> str:
    """On rank 0: reserve a temporary name and create the file without the rows of ``U``."""
    tmp = None
    try:
        tmp = reserve_tmp(final)
        hdf5io.create_factors_file(tmp, fm.S, fm.V, shape=fm.shape, s_discarded=fm.s_discarded,
                                   tail_complete=fm.tail_complete)
        return tmp
    except BaseException as exc:
        if tmp is not None:
            discard_tmp(tmp)
        if isinstance(exc, OSError):
            raise _user_error(exc, what) from exc
        raise


def _write_rows_in_turn(comm, tmp: str, fm, what: str) -> Optional[str]:
    """Write this rank's rows of ``U`` when its turn comes; the message of a failure, or None.

    Point-to-point in a chain over ``comm`` (rank ``q`` waits for ``q - 1``, then hands
    the turn to ``q + 1``); after a failure the later ranks skip their writes.
    """
    ok = True if comm.rank == 0 else C.wait_token(comm, comm.rank - 1)
    message = None
    if ok and fm.n_rows_local:
        try:
            hdf5io.write_u_rows(tmp, fm.row_range[0], fm.U_local)
        except C.USER_ERRORS as exc:
            message = f"{what}: rank {comm.rank} could not write its rows of U: {C.sentence(exc)}"
    if comm.rank + 1 < comm.size:
        C.send_token(comm, comm.rank + 1, ok and message is None)
    return message


def _commit(tmp: str, final: str, what: str) -> None:
    try:
        commit_tmp(tmp, final)
    except OSError as exc:
        raise _user_error(exc, what) from exc


def save_factors(fm, path, comm) -> None:
    """Write the :class:`~lepton_hpc.linalg.FactoredMatrix` ``fm`` to one HDF5 file, atomically.

    Collective over ``comm``. Each rank writes its own rows of ``U`` (see the module
    docstring); only rank 0's ``path`` is used.

    Raises
    ------
    lepton_hpc.comm.JobError
        (a ``UserError``) on every rank, if the row ranges do not tile ``[0, m)`` or
        any rank fails to write; nothing new is left under ``path`` then.
    """
    final = os.fspath(path)
    what = f"saving {final!r}"
    tiling = check_tiling(C.allgather(comm, fm.row_range), fm.shape[0])
    if tiling:
        raise C.JobError(f"{what}: {tiling}")
    tmp = C.on_root(comm, _create_tmp, final, fm, what)
    message = _write_rows_in_turn(comm, tmp, fm, what)
    try:
        C.check(comm, message)
    except C.JobError:
        if comm.rank == 0:
            discard_tmp(tmp)
        raise
    C.on_root(comm, _commit, tmp, final, what)


def load_factors(path, comm, row_range=None) -> dict:
    """Read a factor file, each rank only its rows of ``U``; :func:`.hdf5io.read_factors`'s dict.

    Collective over ``comm`` (one :func:`lepton_hpc.comm.allgather` agrees on errors
    and checks that the row ranges tile ``[0, m)`` in rank order). ``row_range``
    defaults to the balanced split over ``comm`` (:meth:`RowLayout.balanced`).

    Raises
    ------
    lepton_hpc.comm.JobError
        (a ``UserError``) on every rank, if any rank cannot read its part (a missing
        or bad file, a row range outside the matrix) or the ranges do not tile.
    """
    final = os.fspath(path)
    what = f"loading {final!r}"
    data, message = None, None
    try:
        if row_range is None:
            m, n = hdf5io.read_header(final)["shape"]
            layout = RowLayout.balanced(m, comm.size, comm.rank, n)
            row_range = (layout.row_start, layout.row_stop)
        data = hdf5io.read_factors(final, row_range)
    except C.USER_ERRORS as exc:
        message = f"{what}: {C.sentence(exc)}"
    gathered = C.allgather(comm, (message, None if data is None else (data["row_range"], data["shape"])))
    raise_first_error([msg for msg, _ in gathered])
    shapes = [info[1] for _, info in gathered]
    if any(shape != shapes[0] for shape in shapes):
        raise C.JobError(f"{what}: the ranks read different matrix shapes {shapes} (by rank)")
    tiling = check_tiling([info[0] for _, info in gathered], shapes[0][0])
    if tiling:
        raise C.JobError(f"{what}: {tiling}")
    return data
