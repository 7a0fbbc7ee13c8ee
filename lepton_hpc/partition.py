"""Pure block/chunk arithmetic: which rows and chunks each rank owns.

Nothing here communicates; every rank can compute any other rank's share.
Rows are cut into fixed logical chunks of ``chunk_rows`` rows (the last one
may be short). The chunking depends only on the data, never on the rank
count; ranks own contiguous, balanced ranges of whole chunks.
"""

from __future__ import annotations


def n_chunks(n_rows: int, chunk_rows: int) -> int:
    """Number of logical chunks of ``chunk_rows`` rows covering ``n_rows``."""
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be > 0, got {chunk_rows}")
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
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
        raise ValueError(f"rank {rank} is not in a world of size {size}")
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
