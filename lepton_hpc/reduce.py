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

from .layout import chunks_of_rank, dyadic_cover
from .errors import UserError


def pairwise_sum(rows: np.ndarray) -> np.ndarray:
    """Sum the rows of a (n, k) array along the fixed binary tree (n >= 1)."""
    while rows.shape[0] > 1:
        half = rows.shape[0] // 2
        paired = rows[0:2 * half:2] + rows[1:2 * half:2]
        rows = np.concatenate([paired, rows[2 * half:]]) if rows.shape[0] % 2 else paired
    return rows[0]


class ChunkReducer:
    """Reduce per-chunk partials of width ``width`` to one global vector.

    Fill ``self.partials`` (one row per local chunk, in chunk order), then
    call :meth:`reduce`. Buffers are allocated once here.

    Parameters
    ----------
    comm : mpi4py communicator
    n_chunks : int
        Global number of logical chunks.
    width : int
        Length of each partial vector.
    mode : {"exact", "fast"}
    """

    def __init__(self, comm, n_chunks: int, width: int, mode: str):
        if mode not in ("exact", "fast"):
            raise UserError(f"comm.reduction must be exact or fast, got {mode!r}")
        self.comm, self.mode, self.width, self.n_chunks = comm, mode, width, n_chunks
        self.chunks = chunks_of_rank(n_chunks, comm.size, comm.rank)
        self.partials = np.zeros((len(self.chunks), width))
        self.result = np.zeros(width)
        self._local = np.zeros(width)
        if mode == "exact":
            covers = [dyadic_cover(r.start, r.stop)
                      for r in (chunks_of_rank(n_chunks, comm.size, q) for q in range(comm.size))]
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
        for i, (level, index) in enumerate(self._cover):
            lo = (index << level) - first
            self._send[i] = pairwise_sum(self.partials[lo:lo + (1 << level)])
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
