"""Sums of per-chunk partial vectors over all ranks: exact or fast.

``exact`` gives the same bits on any rank count. Every chunk's partial is a
leaf of one fixed binary tree over chunk ids; a node is the sum of its two
children (or its left child alone past the last chunk). A rank owns a
contiguous range of chunks, so it can evaluate the tree nodes that lie wholly
inside its range (its dyadic cover, at most 2·log2(n_chunks) of them); those
are allgathered and every rank finishes the same tree in the same order.
Since floating-point addition is evaluated in the same order whatever the
partition, the result does not depend on the rank count.

``fast`` sums local chunks in order and calls one plain Allreduce: cheaper in
latency terms only by a hair, but the result depends on the rank count.
"""

from __future__ import annotations

import numpy as np

from .layout import Layout
from .errors import UserError


def pairwise_sum(rows: np.ndarray) -> np.ndarray:
    """Sum the rows of a (n, k) array along the fixed binary tree (n >= 1)."""
    while rows.shape[0] > 1:
        half = rows.shape[0] // 2
        paired = rows[0:2 * half:2] + rows[1:2 * half:2]
        rows = np.concatenate([paired, rows[2 * half:]]) if rows.shape[0] % 2 else paired
    return rows[0]


#: Partial vectors of at least this many floats are summed depth first into preallocated rows
#: (:func:`tree_sum_into`) instead of level by level with temporaries (:func:`pairwise_sum`).
WIDE_PARTIAL = 1 << 16


def tree_sum_into(rows: np.ndarray, out: np.ndarray, bufs: list) -> np.ndarray:
    """:func:`pairwise_sum` of ``rows`` into ``out``, the same additions (the same bits), no allocation.

    Depth first: a node is its left child (computed into ``out`` itself) plus its right child
    (computed into ``bufs[level]``), or its left child alone past the last row; ``bufs`` holds
    ceil(log2(n)) rows of scratch. For wide partials (sparse X: one float per feature) the
    level-by-level sum would allocate and fault in half the partials per level.
    """
    n = rows.shape[0]

    def node(lo: int, level: int, dst: np.ndarray) -> None:
        if level == 0:
            dst[:] = rows[lo]
            return
        half = 1 << (level - 1)
        if lo + half >= n:  # no right child
            node(lo, level - 1, dst)
        elif level == 1:
            np.add(rows[lo], rows[lo + 1], out=dst)
        else:
            node(lo, level - 1, dst)
            right = bufs[level - 1]
            node(lo + half, level - 1, right)
            np.add(dst, right, out=dst)  # left + right: one IEEE addition, the same bits either order

    node(0, max(0, (n - 1).bit_length()), out)
    return out


def tree_sum_lazy(n: int, leaf, out: np.ndarray, bufs: list) -> np.ndarray:
    """:func:`tree_sum_into` of rows made on demand: ``leaf(j, dst)`` writes row ``j`` (0 <= j < n)
    into ``dst``. Only ceil(log2(n)) rows exist at once, never all n; the same additions."""

    def node(lo: int, level: int, dst: np.ndarray) -> None:
        if level == 0:
            leaf(lo, dst)
            return
        half = 1 << (level - 1)
        node(lo, level - 1, dst)
        if lo + half < n:
            right = bufs[level - 1]
            node(lo + half, level - 1, right)
            np.add(dst, right, out=dst)

    node(0, max(0, (n - 1).bit_length()), out)
    return out


class ChunkReducer:
    """Reduce per-chunk partials of width ``width`` to one global vector.

    Fill ``self.partials`` (one row per local chunk, in chunk order), then
    call :meth:`reduce`. Buffers are allocated once here.

    Parameters
    ----------
    comm : mpi4py communicator
    layout : Layout or int
        Who owns which chunks (a :class:`~lepton_hpc.layout.Layout`), or the
        global number of chunks, split over ``comm`` the same balanced way.
    width : int
        Length of each partial vector.
    mode : {"exact", "fast"}
    """

    def __init__(self, comm, layout, width: int, mode: str):
        if mode not in ("exact", "fast"):
            raise UserError(f"comm.reduction must be exact or fast, got {mode!r}")
        if not isinstance(layout, Layout):
            layout = Layout(layout, 1, comm.size, comm.rank)  # one "row" per chunk: the same ownership
        self.comm, self.mode, self.width, self.n_chunks = comm, mode, width, layout.n_chunks
        self.layout = layout
        self.chunks = layout.chunks()
        self.partials = np.zeros((len(self.chunks), width))
        self.result = np.zeros(width)
        self._local = np.zeros(width)
        if mode == "exact":
            covers = layout.covers()
            self._cover = covers[comm.rank]
            self._nodes = [node for cover in covers for node in cover]
            counts = np.array([len(c) * width for c in covers])
            displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
            self._send = np.zeros((len(self._cover), width))
            self._recv = np.zeros((len(self._nodes), width))
            self._spec = (counts, displs)

    @property
    def bytes_per_reduce(self) -> int:
        """Bytes this rank contributes to one reduction."""
        return (self._send.nbytes if self.mode == "exact" else self._local.nbytes)

    @property
    def nbytes(self) -> int:
        """Bytes of this reducer's buffers on this rank."""
        extra = [getattr(self, name) for name in ("_send", "_recv") if hasattr(self, name)]
        return self.partials.nbytes + self.result.nbytes + self._local.nbytes + sum(a.nbytes for a in extra)

    def reduce(self) -> np.ndarray:
        """Global sum of all chunk partials. Collective over ``comm``."""
        if self.mode == "fast":
            if len(self.chunks):
                np.sum(self.partials, axis=0, out=self._local)
            else:
                self._local[:] = 0.0
            self.comm.Allreduce(self._local, self.result)
            return self.result
        first = self.chunks.start
        wide = self.width >= WIDE_PARTIAL
        for i, (level, index) in enumerate(self._cover):
            lo = (index << level) - first
            block = self.partials[lo:lo + (1 << level)]
            if wide:
                tree_sum_into(block, self._send[i], self.scratch_rows())
            else:
                self._send[i] = pairwise_sum(block)
        return self.exchange()

    def scratch_rows(self) -> list:
        """ceil(log2(local chunks)) rows of scratch for the depth-first sums (made once)."""
        if not hasattr(self, "_bufs"):
            levels = [level for level, _ in getattr(self, "_cover", [])]  # fast mode: no cover
            depth = max(levels or [max(len(self.chunks) - 1, 0).bit_length()] + [1])
            self._bufs = [np.empty(self.width) for _ in range(depth)]
        return self._bufs

    def local_lazy(self, leaf) -> None:
        """This rank's share of the sum with chunk partials made on demand, for wide partials.

        ``leaf(i, dst)`` writes local chunk ``i``'s partial into ``dst``; at most log2(local
        chunks) + (cover nodes) rows exist at once, so ``partials`` is never touched (its pages
        are never mapped). Exact mode: the same tree, so the same bits as filling ``partials``
        and :meth:`reduce`. Finish with :meth:`exchange` (collective).
        """
        bufs = self.scratch_rows()
        if self.mode == "fast":
            self._local[:] = 0.0
            row = bufs[0]
            for i in range(len(self.chunks)):
                leaf(i, row)
                self._local += row
            return
        first = self.chunks.start
        for k, (level, index) in enumerate(self._cover):
            lo = (index << level) - first
            n = min(1 << level, len(self.chunks) - lo)
            tree_sum_lazy(n, lambda j, dst: leaf(lo + j, dst), self._send[k], bufs)

    def exchange(self) -> np.ndarray:
        """The global sum from this rank's share (after :meth:`local_lazy` or inside :meth:`reduce`). Collective."""
        if self.mode == "fast":
            self.comm.Allreduce(self._local, self.result)
            return self.result
        self.comm.Allgatherv(self._send, [self._recv, self._spec])
        self.result[:] = self._finish()
        return self.result

    def _finish(self) -> np.ndarray:
        """Combine the allgathered tree nodes bottom-up in the fixed order."""
        if self.n_chunks == 0:
            return np.zeros(self.width)
        level_nodes: dict[int, dict[int, np.ndarray]] = {}
        for (level, index), value in zip(self._nodes, self._recv):
            level_nodes.setdefault(level, {})[index] = value
        level = 0
        while True:
            nodes = level_nodes.get(level, {})
            n_at_level = -(-self.n_chunks // (1 << level))
            if n_at_level == 1:
                return nodes[0]
            parents = level_nodes.setdefault(level + 1, {})
            for index in sorted(nodes):
                if index % 2:
                    continue
                if index + 1 < n_at_level:
                    parents[index // 2] = nodes[index] + nodes[index + 1]
                else:
                    parents[index // 2] = nodes[index]
            level += 1


#: Item-blocked reduction buffers (local partials + gathered tree nodes) stay under about this many bytes.
REDUCE_BUDGET_BYTES = 64 << 20


def item_block_rows(layout: Layout, mode: str) -> int:
    """Rows of partials one item costs in an :class:`ItemBlockReducer` (the same on every rank)."""
    n_local = layout.max_local_chunks
    if mode == "exact":
        covers = [len(c) for c in layout.covers()]
        return n_local + sum(covers) + max(covers) + 2
    return n_local + 2


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

    def __init__(self, comm, layout: Layout, n_items: int, width: int, mode: str,
                 budget_bytes: int | None = None):
        budget_bytes = REDUCE_BUDGET_BYTES if budget_bytes is None else budget_bytes
        per_item = item_block_rows(layout, mode) * width * 8
        self.n_items, self.width = n_items, width
        self.block_items = int(max(1, min(n_items, budget_bytes // per_item)))
        self.n_blocks = -(-n_items // self.block_items)
        self.red = ChunkReducer(comm, layout, self.block_items * width, mode)
        self.bytes_per_reduce = self.red.bytes_per_reduce * self.n_blocks

    @property
    def nbytes(self) -> int:
        """Bytes of the reduction buffers on this rank."""
        return self.red.nbytes

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
