"""Collective reading and writing of factor files (the one-file format of :mod:`.hdf5io`).

Saving: no rank ever holds more than its own rows of ``U``, through
:func:`lepton_hpc.data.ordered_write.write_in_rank_order`: rank 0 creates the file
under a temporary name with ``S``, ``V``, the attributes and an unwritten ``m × k``
``/factors/U``; then the ranks take turns in rank order, each writing its hyperslab
of rows; then rank 0 fsyncs and renames the file into place, or removes it.

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
from ..data.ordered_write import write_in_rank_order

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

    def create(tmp: str) -> None:
        hdf5io.create_factors_file(tmp, fm.S, fm.V, shape=fm.shape, s_discarded=fm.s_discarded,
                                   tail_complete=fm.tail_complete)

    def write_own(tmp: str) -> None:
        hdf5io.write_u_rows(tmp, fm.row_range[0], fm.U_local)

    write_in_rank_order(comm, final, create, write_own if fm.n_rows_local else None, what,
                        rows_what="its rows of U")


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
