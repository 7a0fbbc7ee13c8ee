"""Deterministic mini-batches over the global rows.

Epoch e visits the rows in the order of a permutation drawn from (seed, e);
step t takes the t-th slice of batch_size rows of its epoch. The permutation
is a keyed bijection (a 4-round Feistel network on the next even power of
two, cycle-walked into [0, n_rows), round keys drawn from (seed, 5, e)), so a
rank computes the epoch positions of its own rows only: O(rows per rank) per
epoch rather than a shuffle of all rows on every rank. The batch is a
function of (seed, step) alone, so runs are the same on any rank count and a
resumed run draws exactly the batches the uninterrupted run would have.
Each rank picks the batch rows it owns and computes one partial per touched
chunk, which keeps the exact reduction's chunk tree.

Two ways to form a chunk's partial from its batch rows (its segment), chosen
from global sizes alone (so every rank and every step agrees):

* long segments (a batch holds at least SEGMENT_PATH_ROWS rows of a chunk on
  average): the segment is gathered, a cache block at a time, into one
  64-byte aligned scratch buffer and goes through the kernel's chunk pass
  (:meth:`GLMKernel.partial`, BLAS or the C kernel): the same rows at the
  same address alignment and block boundaries whatever rank holds the chunk;
* short segments: all the rank's batch rows at once through
  :meth:`GLMKernel.batch_partials`, whose numpy reductions do not depend on
  a row's position, so a few rows per chunk cost no call per chunk.

Either way the bits do not depend on the rank count. Per epoch, each rank
groups its own rows by step (a radix sort) instead of sorting every batch.
"""

from __future__ import annotations

import numpy as np
from .errors import UserError

SEGMENT_PATH_ROWS = 32
FEISTEL_ROUNDS = 4
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-mixing bijection of uint64 (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return x ^ (x >> np.uint64(31))


def epoch_positions(rows: np.ndarray, n_rows: int, seed: int, epoch: int) -> np.ndarray:
    """Position of each of ``rows`` in epoch ``epoch``'s visiting order: a bijection of [0, n_rows)."""
    bits = max(2, int(n_rows - 1).bit_length())
    bits += bits % 2
    half, mask = np.uint64(bits // 2), np.uint64((1 << (bits // 2)) - 1)
    keys = np.random.default_rng([seed, 5, epoch]).integers(0, 2**63, size=FEISTEL_ROUNDS, dtype=np.uint64)

    def feistel(x):
        left, right = x >> half, x & mask
        for key in keys:
            left, right = right, left ^ (_mix(right ^ key) & mask)
        return (left << half) | right

    pos = feistel(np.asarray(rows, dtype=np.uint64))
    walk = np.flatnonzero(pos >= np.uint64(n_rows))
    while len(walk):  # cycle walking: apply again until inside [0, n_rows)
        pos[walk] = feistel(pos[walk])
        walk = walk[pos[walk] >= np.uint64(n_rows)]
    return pos.astype(np.int64)


def group_by_step(ids: np.ndarray, n_total: int, per_batch: int, steps: int, seed: int, epoch: int):
    """This rank's ``ids`` (ascending) grouped by the step of ``epoch`` that visits them.

    Returns ``(ordered, bounds)``: step j's ids are ``ordered[bounds[j]:bounds[j+1]]``,
    still ascending (a stable sort by step).
    """
    step_of = epoch_positions(ids, n_total, seed, epoch) // per_batch
    if steps <= np.iinfo(np.uint16).max:
        step_of = step_of.astype(np.uint16)  # a radix sort
    order = np.argsort(step_of, kind="stable")
    return ids[order], np.searchsorted(step_of[order], np.arange(steps + 1))


class MiniBatches:
    def __init__(self, shard, batch_size: int, seed: int):
        self.shard, self.seed = shard, seed
        self.batch = min(batch_size, shard.n_rows)
        self.steps_per_epoch = -(-shard.n_rows // self.batch)
        self._epoch = -1
        self._rows, self._bounds = np.empty(0, np.int64), np.zeros(self.steps_per_epoch + 1, np.int64)
        self._scratch, self._row, self._seg = None, None, np.empty((0, 0))
        # expected batch rows per chunk, from global sizes: the same choice on every rank
        self.segment_path = self.batch * shard.chunk_rows >= SEGMENT_PATH_ROWS * shard.n_rows
        self.loss_sum, self.loss_count = 0.0, 0

    def epoch(self, step: int) -> int:
        return step // self.steps_per_epoch

    def epoch_end(self, step: int) -> bool:
        """Is step ``step`` (0-based) the last batch of its epoch?"""
        return (step + 1) % self.steps_per_epoch == 0

    def rows(self, step: int) -> np.ndarray:
        """Sorted global rows of batch ``step`` that this rank owns."""
        e = self.epoch(step)
        if e != self._epoch:
            sh = self.shard
            self._rows, self._bounds = group_by_step(np.arange(sh.row_lo, sh.row_hi), sh.n_rows, self.batch,
                                                     self.steps_per_epoch, self.seed, e)
            self._epoch = e
        j = step % self.steps_per_epoch
        return self._rows[self._bounds[j]:self._bounds[j + 1]]

    def partials(self, step: int, kernel, theta: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out`` (one row per local chunk) with batch ``step``'s partials."""
        out[:] = 0.0
        rows = self.rows(step)
        if len(rows) == 0:
            return
        sh = self.shard
        if self._scratch is None and not sh.sparse:
            from .data.shard import aligned_empty

            self._scratch = aligned_empty((kernel.block, sh.n_cols), sh.dtype)
            self._row = np.empty(kernel.width)
        local = rows // sh.chunk_rows - sh.chunks.start
        starts = np.flatnonzero(np.r_[True, local[1:] != local[:-1]])
        ends = np.r_[starts[1:], len(rows)]
        idx = sh.padded_index(rows)
        y = sh.y_all[idx]
        sw = None if sh.sw_all is None else sh.sw_all[idx]
        if not self.segment_path:
            if self._seg.shape != (len(starts), kernel.width):
                self._seg = np.empty((len(starts), kernel.width))
            kernel.batch_partials(sh.X_all[idx], y, sw, theta, starts, self._seg)
            out[local[starts]] = self._seg
            return
        for a, b in zip(starts.tolist(), ends.tolist()):
            target = out[local[a]]
            if sh.sparse:  # the whole segment's CSR rows at once: one O(d) partial row per chunk
                kernel.partial(sh.X_all[idx[a:b]], y[a:b], None if sw is None else sw[a:b], theta, target)
                continue
            for lo in range(a, b, kernel.block):  # block boundaries relative to the segment start
                hi = min(lo + kernel.block, b)
                X = self._scratch[:hi - lo]
                np.take(sh.X_all, idx[lo:hi], axis=0, out=X)
                kernel.partial(X, y[lo:hi], None if sw is None else sw[lo:hi], theta, self._row)
                target += self._row

    def add_loss(self, loss: float) -> None:
        self.loss_sum += loss
        self.loss_count += 1

    def pop_epoch_loss(self) -> float:
        mean = self.loss_sum / max(self.loss_count, 1)
        self.loss_sum, self.loss_count = 0.0, 0
        return mean


class BlockBatches(MiniBatches):
    """Mini-batches of whole row blocks (``train.batch_block_rows`` rows each).

    The epoch order permutes blocks instead of rows (the same keyed bijection,
    over block ids), and a batch is ⌈batch_size / block_rows⌉ blocks. Blocks
    never cross a chunk, so each one is computed in place from the shard —
    no gather, one streaming read — and a chunk's partial is the sum of its
    selected blocks in ascending order: the same bits on every rank count.
    Rows of a block always travel together; that is the price of reading
    contiguous memory instead of single random rows.
    """

    def __init__(self, shard, batch_size: int, seed: int, block_rows: int):
        if shard.chunk_rows % block_rows:
            raise UserError(f"train.batch_block_rows={block_rows} must divide data.chunk_rows="
                             f"{shard.chunk_rows} so that no block crosses a chunk")
        super().__init__(shard, batch_size, seed)
        self.block_rows = block_rows
        self.n_blocks = -(-shard.n_rows // block_rows)
        self.blocks_per_batch = max(1, -(-batch_size // block_rows))
        self.steps_per_epoch = -(-self.n_blocks // self.blocks_per_batch)
        self._blocks = np.empty(0, np.int64)
        self._bounds = np.zeros(self.steps_per_epoch + 1, np.int64)

    def blocks(self, step: int) -> np.ndarray:
        """Ascending ids of this rank's blocks in batch ``step``."""
        e = self.epoch(step)
        if e != self._epoch:
            sh, br = self.shard, self.block_rows
            # an empty trailing rank has row_lo == row_hi == n_rows, which may lie inside the last block
            mine = np.arange(sh.row_lo // br, -(-sh.row_hi // br) if sh.n_local else sh.row_lo // br,
                             dtype=np.int64)
            self._blocks, self._bounds = group_by_step(mine, self.n_blocks, self.blocks_per_batch,
                                                       self.steps_per_epoch, self.seed, e)
            self._epoch = e
        j = step % self.steps_per_epoch
        return self._blocks[self._bounds[j]:self._bounds[j + 1]]

    def partials(self, step: int, kernel, theta: np.ndarray, out: np.ndarray) -> None:
        out[:] = 0.0
        sh, br = self.shard, self.block_rows
        if self._row is None:
            self._row = np.empty(kernel.width)
        for block in self.blocks(step).tolist():
            lo = block * br
            hi = min(lo + br, sh.n_rows)
            chunk = lo // sh.chunk_rows
            i = chunk - sh.chunks.start
            a = i * sh.stride + (lo - chunk * sh.chunk_rows)
            sw = None if sh.sw_all is None else sh.sw_all[a:a + hi - lo]
            kernel.partial(sh.X_all[a:a + hi - lo], sh.y_all[a:a + hi - lo], sw, theta, self._row)
            out[i] += self._row
