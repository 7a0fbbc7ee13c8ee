"""Pure block/chunk arithmetic and the Layout object: which rows and chunks each rank owns.

Nothing here communicates; every rank can compute any other rank's share.
Rows are cut into fixed logical chunks of ``chunk_rows`` rows (the last one
may be short). The chunking depends only on the data, never on the rank
count; ranks own contiguous, balanced ranges of whole chunks.
"""

from __future__ import annotations
from .errors import UserError


def n_chunks(n_rows: int, chunk_rows: int) -> int:
    """Number of logical chunks of ``chunk_rows`` rows covering ``n_rows``."""
    if chunk_rows <= 0:
        raise UserError(f"chunk_rows must be > 0, got {chunk_rows}")
    if n_rows < 0:
        raise UserError(f"n_rows must be >= 0, got {n_rows}")
    return -(-n_rows // chunk_rows)


def chunk_range(n_rows: int, chunk_rows: int, chunk: int) -> tuple[int, int]:
    """Global row range ``[lo, hi)`` of logical chunk ``chunk``."""
    count = n_chunks(n_rows, chunk_rows)
    if not 0 <= chunk < count:
        raise IndexError(f"chunk {chunk} out of range [0, {count})")
    lo = chunk * chunk_rows
    return lo, min(lo + chunk_rows, n_rows)


def block_range(n_items: int, size: int, rank: int) -> tuple[int, int]:
    """Balanced contiguous block ``[lo, hi)`` of ``n_items`` for ``rank`` of ``size``.

    The first ``n_items % size`` ranks get one extra item; ranks past the
    item count get an empty range.
    """
    if size <= 0 or not 0 <= rank < size:
        raise UserError(f"rank {rank} is not in a world of size {size}")
    base, extra = divmod(n_items, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def chunks_of_rank(n_chunks_total: int, size: int, rank: int) -> range:
    """The contiguous, balanced range of chunk ids owned by ``rank``."""
    lo, hi = block_range(n_chunks_total, size, rank)
    return range(lo, hi)


def rows_of_rank(n_rows: int, chunk_rows: int, size: int, rank: int) -> tuple[int, int]:
    """Global row range ``[lo, hi)`` that ``rank`` owns (whole chunks)."""
    chunks = chunks_of_rank(n_chunks(n_rows, chunk_rows), size, rank)
    if len(chunks) == 0:
        return (n_rows, n_rows)
    return chunks.start * chunk_rows, min(chunks.stop * chunk_rows, n_rows)


def dyadic_cover(lo: int, hi: int) -> list[tuple[int, int]]:
    """Maximal aligned dyadic blocks covering ``[lo, hi)``, left to right.

    Each block is ``(level, index)`` and covers ``[index * 2**level,
    (index + 1) * 2**level)``. These are the nodes of the fixed binary
    tree over chunk ids that lie wholly inside one rank's range; combining
    them in tree order gives the same sum whatever the partition.
    """
    out = []
    pos = lo
    while pos < hi:
        level = 0
        while pos % (2 << level) == 0 and pos + (2 << level) <= hi:
            level += 1
        out.append((level, pos >> level))
        pos += 1 << level
    return out


def tree_levels(n_leaves: int) -> int:
    """Height of the fixed binary tree over ``n_leaves`` leaves (0 for one leaf)."""
    return max(0, (max(n_leaves, 1) - 1).bit_length())


def block_offsets(n_items: int, size: int) -> list[int]:
    """Offsets (length ``size + 1``) of the balanced split: part ``q`` is ``[off[q], off[q+1])``."""
    return [block_range(n_items, size, q)[0] for q in range(size)] + [n_items]


class Layout:
    """Which chunks and rows every rank owns: built once per run, passed to every consumer.

    Rows ``[0, n_rows)`` are cut into logical chunks of ``chunk_rows`` rows; rank ``q``
    owns the balanced contiguous chunk range ``chunks(q)`` and so the rows ``rows(q)``.
    Pure arithmetic, the same on every rank; nothing here communicates.

    Parameters
    ----------
    n_rows : int
        Global rows (data rows, users, rows of a factor).
    chunk_rows : int
        Rows per logical chunk (the unit of ownership, independent of the rank count).
    size, rank : int
        World size and the calling rank.
    """

    def __init__(self, n_rows: int, chunk_rows: int, size: int, rank: int):
        self.n_rows, self.chunk_rows, self.size, self.rank = int(n_rows), int(chunk_rows), int(size), int(rank)
        self.n_chunks = n_chunks(self.n_rows, self.chunk_rows)
        self._chunks = [chunks_of_rank(self.n_chunks, self.size, q) for q in range(self.size)]

    def chunks(self, rank: int | None = None) -> range:
        """Chunk ids owned by ``rank`` (default: this rank)."""
        return self._chunks[self.rank if rank is None else rank]

    def rows(self, rank: int | None = None) -> tuple[int, int]:
        """Global row range ``[lo, hi)`` owned by ``rank`` (default: this rank)."""
        c = self.chunks(rank)
        if len(c) == 0:
            return (self.n_rows, self.n_rows)
        return c.start * self.chunk_rows, min(c.stop * self.chunk_rows, self.n_rows)

    def row_counts(self) -> list[int]:
        """Rows per rank, in rank order."""
        return [hi - lo for lo, hi in (self.rows(q) for q in range(self.size))]

    def chunk_rows_range(self, chunk: int) -> tuple[int, int]:
        """Global row range of logical chunk ``chunk``."""
        return chunk_range(self.n_rows, self.chunk_rows, chunk)

    def covers(self) -> list[list[tuple[int, int]]]:
        """Every rank's dyadic cover of its chunk range (the exact reduction's tree nodes)."""
        return [dyadic_cover(c.start, c.stop) for c in self._chunks]

    @property
    def max_local_chunks(self) -> int:
        """Chunks of the busiest rank (buffers sized by it agree on every rank)."""
        return max(len(c) for c in self._chunks)

    @property
    def n_local(self) -> int:
        lo, hi = self.rows()
        return hi - lo

    def __repr__(self) -> str:
        return (f"Layout(n_rows={self.n_rows}, chunk_rows={self.chunk_rows}, size={self.size}, "
                f"rank={self.rank})")
