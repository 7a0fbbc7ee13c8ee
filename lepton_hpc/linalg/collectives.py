"""Agreeing on the row layout of a row-distributed matrix (through :mod:`lepton_hpc.comm`).

The central idea is :func:`agree_on_layout`: before the numerical work, every
rank contributes its row count, column count, a local error message (or
``None``) and the replicated arguments it was called with, in one
:func:`lepton_hpc.comm.allgather`.  Every rank then evaluates the same gathered
data and raises the same :class:`~lepton_hpc.comm.JobError` (a
:class:`~lepton_hpc.errors.UserError`), so argument errors never leave a subset
of ranks blocked inside a later collective.  Nothing here calls MPI itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .. import comm as C
from ..layout import block_offsets

__all__ = ["RowLayout", "agree_on_layout", "raise_first_error"]


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

    @classmethod
    def from_counts(cls, counts, rank: int, n_cols: int) -> "RowLayout":
        """The layout of blocks of ``counts[q]`` rows on rank ``q``, in rank order."""
        offsets = tuple(int(x) for x in np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]))
        return cls(offsets=offsets, rank=int(rank), n_cols=int(n_cols))

    @classmethod
    def balanced(cls, n_rows: int, size: int, rank: int, n_cols: int) -> "RowLayout":
        """The balanced split of ``n_rows`` over ``size`` ranks (:func:`lepton_hpc.layout.block_offsets`)."""
        offsets = tuple(int(x) for x in block_offsets(int(n_rows), int(size)))
        return cls(offsets=offsets, rank=int(rank), n_cols=int(n_cols))


def raise_first_error(messages: list, prefix: str = "") -> None:
    """Raise :class:`~lepton_hpc.comm.JobError` if any entry of ``messages`` is set.

    ``messages`` is one entry per rank (``None`` where all went well), gathered
    through :mod:`lepton_hpc.comm` so that it is the same on every rank: every rank
    raises the same error, naming the failing ranks, or none does.
    """
    failed = [(rank, msg) for rank, msg in enumerate(messages) if msg is not None]
    if failed:
        text = "; ".join(f"rank {rank}: {msg}" for rank, msg in failed)
        raise C.JobError(prefix + text, failed[0][0])


def agree_on_layout(
    comm,
    n_rows_local: Optional[int],
    n_cols: Optional[int],
    *,
    local_error: Optional[str] = None,
    replicated: Any = None,
) -> RowLayout:
    """Exchange row counts and validate arguments consistently on every rank.

    Collective over `comm` (one :func:`lepton_hpc.comm.allgather`).

    Parameters
    ----------
    comm : mpi4py communicator
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
    lepton_hpc.comm.JobError
        (a ``UserError``) on every rank, if any rank reported a local error, if the
        column counts differ, or if the replicated arguments differ.
    """
    gathered = C.allgather(comm, (n_rows_local, n_cols, local_error, replicated))
    raise_first_error([entry[2] for entry in gathered], prefix="invalid arguments: ")
    col_counts = [entry[1] for entry in gathered]
    if len(set(col_counts)) != 1:
        raise C.JobError(f"ranks disagree on the number of columns: {col_counts} (by rank)")
    first = gathered[0][3]
    if any(not _same(entry[3], first) for entry in gathered[1:]):
        raise C.JobError(
            "arguments that must be identical on every rank differ: "
            f"{[entry[3] for entry in gathered]} (by rank)"
        )
    return RowLayout.from_counts([e[0] for e in gathered], comm.rank, col_counts[0])


def _same(a: Any, b: Any) -> bool:
    """Equality that also works for tuples containing numpy scalars/arrays."""
    try:
        result = a == b
        return bool(np.all(result))
    except (ValueError, TypeError):
        return False
