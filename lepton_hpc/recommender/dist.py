"""Communication for the recommender: item-blocked chunk reductions and row gathers.

Nothing here imports MPI: the communicator's own methods are called, as in
:mod:`lepton_hpc.linalg.collectives`, and the exact/fast sums are
:class:`lepton_hpc.reduce.ChunkReducer`.
"""

from __future__ import annotations

import numpy as np

from ..layout import block_range, chunks_of_rank, dyadic_cover, rows_of_rank
from ..reduce import ChunkReducer

#: Reduction buffers (local partials + gathered tree nodes) stay under about this many bytes.
REDUCE_BUDGET_BYTES = 64 << 20


class ItemBlockReducer:
    """Sums over user chunks of per-item partials (``n_items x width``), item block by item block.

    A full per-chunk partial of all items (n_items x k for gradients, n_items x
    (k(k+1)/2 + k) for ALS normal equations) times the local chunks and, in exact
    mode, every rank's tree nodes would not fit at scale; so items are cut into
    blocks of ``block_items`` sized to ``budget_bytes``, and each block is one
    :class:`ChunkReducer` reduction. A block's per-item values do not depend on
    the blocking, so exact mode stays bitwise rank-count independent.

    Collective use: every rank calls :meth:`reduce` once per block, in order.
    """

    def __init__(self, comm, n_chunks: int, n_items: int, width: int, mode: str,
                 budget_bytes: int | None = None):
        budget_bytes = REDUCE_BUDGET_BYTES if budget_bytes is None else budget_bytes
        size = comm.size
        # The same on every rank (the reducer widths must agree): the busiest rank's chunks.
        n_local = max(len(chunks_of_rank(n_chunks, size, q)) for q in range(size))
        if mode == "exact":
            covers = [len(dyadic_cover(r.start, r.stop)) for r in
                      (chunks_of_rank(n_chunks, size, q) for q in range(size))]
            rows = n_local + sum(covers) + max(covers) + 2
        else:
            rows = n_local + 2
        per_item = rows * width * 8
        self.n_items, self.width = n_items, width
        self.block_items = int(max(1, min(n_items, budget_bytes // per_item)))
        self.n_blocks = -(-n_items // self.block_items)
        self.red = ChunkReducer(comm, n_chunks, self.block_items * width, mode)
        self.bytes_per_reduce = self.red.bytes_per_reduce * self.n_blocks

    @property
    def nbytes(self) -> int:
        """Bytes of the reduction buffers on this rank."""
        r = self.red
        extra = [getattr(r, name) for name in ("_send", "_recv") if hasattr(r, name)]
        return r.partials.nbytes + r.result.nbytes + r._local.nbytes + sum(a.nbytes for a in extra)

    def blocks(self):
        """``(j0, j1)`` item ranges, in order."""
        for j0 in range(0, self.n_items, self.block_items):
            yield j0, min(j0 + self.block_items, self.n_items)

    def partial(self, i: int, nb: int) -> np.ndarray:
        """View of local chunk ``i``'s partial for a block of ``nb`` items, (nb, width)."""
        return self.red.partials[i, :nb * self.width].reshape(nb, self.width)

    def reduce(self, nb: int) -> np.ndarray:
        """Sum over all chunks of the block's partials (nb, width). Collective."""
        return self.red.reduce()[:nb * self.width].reshape(nb, self.width)


def allreduce_sum(comm, local: np.ndarray) -> np.ndarray:
    """Element-wise float64 sum over all ranks (plain Allreduce; for counts, exact). Collective."""
    send = np.ascontiguousarray(local, dtype=np.float64)
    recv = np.empty_like(send)
    comm.Allreduce(send, recv)
    return recv


def user_counts(n_users: int, chunk_rows: int, size: int) -> list[int]:
    """Users (rows of U) per rank, in rank order."""
    return [hi - lo for lo, hi in (rows_of_rank(n_users, chunk_rows, size, q) for q in range(size))]


def gather_rows(comm, local: np.ndarray, counts: list[int], root: int = 0) -> np.ndarray | None:
    """Stack every rank's row block (rank order) on ``root``; None elsewhere. Collective.

    ``root`` needs sum(counts) x width x 8 bytes: the memory limit of
    writing U through one rank.
    """
    width = local.shape[1] if local.ndim == 2 else 1
    send = np.ascontiguousarray(local, dtype=np.float64).reshape(-1)
    sizes = np.array(counts, dtype=np.int64) * width
    displs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if comm.rank == root:
        full = np.empty((int(sum(counts)), width))
        comm.Gatherv(send, [full.reshape(-1), (sizes, displs)], root=root)
        return full
    comm.Gatherv(send, None, root=root)
    return None


def allgather_item_blocks(comm, V_block: np.ndarray, out: np.ndarray) -> None:
    """Each rank solved its balanced share of a block's items (:func:`item_share`); put
    every share into ``out`` on every rank. Collective."""
    nb, width = out.shape
    sizes = np.array([block_range(nb, comm.size, q)[1] - block_range(nb, comm.size, q)[0]
                      for q in range(comm.size)], dtype=np.int64) * width
    displs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    comm.Allgatherv(np.ascontiguousarray(V_block).reshape(-1), [out.reshape(-1), (sizes, displs)])


def item_share(nb: int, size: int, rank: int) -> tuple[int, int]:
    """This rank's items ``[a, b)`` of a block of ``nb`` items."""
    return block_range(nb, size, rank)
