"""Deterministic mini-batches over the global rows.

Epoch e visits the rows in the order of a permutation drawn from (seed, e);
step t takes the t-th slice of batch_size rows of its epoch. The batch is a
function of (seed, step) alone, so runs are the same on any rank count and a
resumed run draws exactly the batches the uninterrupted run would have.
Each rank picks the batch rows it owns and computes one partial per touched
chunk, which keeps the exact reduction's chunk tree.
"""

from __future__ import annotations

import numpy as np


class MiniBatches:
    def __init__(self, shard, batch_size: int, seed: int):
        self.shard, self.seed = shard, seed
        self.batch = min(batch_size, shard.n_rows)
        self.steps_per_epoch = -(-shard.n_rows // self.batch)
        self._epoch, self._perm = -1, None
        self._seg = np.empty((0, 0))
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
            self._perm = np.random.default_rng([self.seed, 5, e]).permutation(self.shard.n_rows)
            self._epoch = e
        j = step % self.steps_per_epoch
        batch = np.sort(self._perm[j * self.batch:(j + 1) * self.batch])
        lo, hi = np.searchsorted(batch, [self.shard.row_lo, self.shard.row_hi])
        return batch[lo:hi]

    def partials(self, step: int, kernel, theta: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out`` (one row per local chunk) with batch ``step``'s partials."""
        out[:] = 0.0
        rows = self.rows(step)
        if len(rows) == 0:
            return
        sh = self.shard
        local = rows // sh.chunk_rows - sh.chunks.start
        starts = np.flatnonzero(np.r_[True, local[1:] != local[:-1]])
        idx = sh.padded_index(rows)
        sw = None if sh.sw_all is None else sh.sw_all[idx]
        if self._seg.shape != (len(starts), kernel.width):
            self._seg = np.empty((len(starts), kernel.width))
        kernel.batch_partials(sh.X_all[idx], sh.y_all[idx], sw, theta, starts, self._seg)
        out[local[starts]] = self._seg

    def add_loss(self, loss: float) -> None:
        self.loss_sum += loss
        self.loss_count += 1

    def pop_epoch_loss(self) -> float:
        mean = self.loss_sum / max(self.loss_count, 1)
        self.loss_sum, self.loss_count = 0.0, 0
        return mean
