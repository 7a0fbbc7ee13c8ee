"""Small communication helpers shared by the distributed linear algebra.

These functions take the communicator as an argument and only call its
methods (``allgather``, ``Allreduce``, ``rank``, ``size``); nothing here
imports MPI, so any object with the mpi4py ``Comm`` interface works.

The central idea is :func:`agree_on_layout`: before the numerical work, every
rank contributes its row count, column count, a local error message (or
``None``) and the replicated arguments it was called with, in one
``allgather``.  Every rank then checks the same gathered data and raises the
same ``ValueError``, so argument errors never leave a subset of ranks
blocked inside a later collective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .kernels import split_offsets
from ..errors import UserError

__all__ = ["RowLayout", "agree_on_layout", "allreduce_sum", "even_row_range"]


@dataclass(frozen=True)
class RowLayout:
    """How the rows of a row-distributed matrix are laid out over the ranks.

    Attributes
    ----------
    offsets : tuple of int, length ``size + 1``
        Rank ``r`` owns global rows ``[offsets[r], offsets[r + 1])``.
    rank : int
        The calling rank's index in the communicator.
    n_cols : int
        Global (and local) column count.
    """

    offsets: tuple
    rank: int
    n_cols: int

    @property
    def n_rows_global(self) -> int:
        """Total row count ``m`` over all ranks."""
        return self.offsets[-1]

    @property
    def row_start(self) -> int:
        """First global row owned by this rank."""
        return self.offsets[self.rank]

    @property
    def row_stop(self) -> int:
        """One past the last global row owned by this rank."""
        return self.offsets[self.rank + 1]

    @property
    def n_rows_local(self) -> int:
        """Row count of this rank's block."""
        return self.row_stop - self.row_start

    @property
    def shape(self) -> tuple:
        """Global shape ``(m, n)``."""
        return (self.n_rows_global, self.n_cols)


def agree_on_layout(
    comm,
    n_rows_local: Optional[int],
    n_cols: Optional[int],
    *,
    local_error: Optional[str] = None,
    replicated: Any = None,
) -> RowLayout:
    """Exchange row counts and validate arguments consistently on every rank.

    Collective over `comm`.

    Parameters
    ----------
    comm : mpi4py-style communicator
    n_rows_local, n_cols : int or None
        Shape of this rank's block (``None`` allowed when ``local_error`` is set).
    local_error : str or None
        A problem this rank found with its own arguments.
    replicated : picklable, optional
        Arguments that must be identical on all ranks (``k``, seeds, ...).

    Returns
    -------
    RowLayout

    Raises
    ------
    ValueError
        On every rank, if any rank reported a local error, if the column
        counts differ, or if the replicated arguments differ.
    """
    gathered = comm.allgather((n_rows_local, n_cols, local_error, replicated))
    errors = [f"rank {r}: {err}" for r, (_, _, err, _) in enumerate(gathered) if err]
    if errors:
        raise UserError("invalid arguments: " + "; ".join(errors))
    col_counts = [entry[1] for entry in gathered]
    if len(set(col_counts)) != 1:
        raise UserError(
            f"ranks disagree on the number of columns: {col_counts} (by rank)"
        )
    first = gathered[0][3]
    if any(not _same(entry[3], first) for entry in gathered[1:]):
        raise UserError(
            "arguments that must be identical on every rank differ: "
            f"{[entry[3] for entry in gathered]} (by rank)"
        )
    offsets = tuple(int(x) for x in np.concatenate([[0], np.cumsum([e[0] for e in gathered])]))
    return RowLayout(offsets=offsets, rank=comm.rank, n_cols=int(col_counts[0]))


def _same(a: Any, b: Any) -> bool:
    """Equality that also works for tuples containing numpy scalars/arrays."""
    try:
        result = a == b
        return bool(np.all(result))
    except (ValueError, TypeError):
        return False


def allreduce_sum(comm, local: np.ndarray) -> np.ndarray:
    """Element-wise sum of a same-shaped float64 array over all ranks.

    Collective over `comm`.  Uses the buffer ``Allreduce`` (default op: sum).

    Returns
    -------
    ndarray
        New array, same shape as ``local``, identical on every rank.
    """
    send = np.ascontiguousarray(local, dtype=np.float64)
    recv = np.empty_like(send)
    comm.Allreduce(send, recv)
    return recv


def even_row_range(n_rows_global: int, rank: int, size: int) -> tuple:
    """Row range ``(start, stop)`` of ``rank`` in a near-even split of ``n_rows_global``."""
    offsets = split_offsets(n_rows_global, size)
    return int(offsets[rank]), int(offsets[rank + 1])
