"""The in-block/out-block plan of the item-sharded recommender (``model.shard_items = true``).

Items are cut into balanced contiguous blocks, one per rank (independent of how
the ratings are sharded): rank ``q`` owns the factors of items
``block_range(n_items, size, q)``, as it owns its users' rows of U. Nothing is
replicated. The plan, built once at setup from the ratings (collective), holds

* the **out-block** of each side: the V rows of the items this rank's ratings
  touch (train and test), fetched from their owners before each user
  half-sweep, and the U rows of the users who rated this rank's items, fetched
  from their owners before each item half-sweep (:class:`RowExchange`: one
  ``Alltoallv``, only the rows needed);
* the **in-block** of the item side: a second copy of the training ratings,
  moved once to their item's owner (an ``Alltoallv`` of the ratings, as Spark
  does) and kept in the global order (by item, then user, then file order),
  with exact per-item rating counts (:attr:`ItemPlan.item_counts`).

Why move the ratings rather than reduce per-item normal equations to the
owner: each item's normal equations are summed on its owner, chunk by user
chunk (the same per-chunk sums as the replicated path), then over chunks along
the same fixed binary tree over chunk ids as :class:`~lepton_hpc.reduce.ChunkReducer`
(:func:`chunk_tree_sum`, absent chunks counting as zero). The order of every
item's sum is therefore fixed by the data alone: the factors are bitwise
identical at any rank count and to the replicated run. Reducing the k x k
partials instead would send ``k(k+1)/2 + k`` numbers per item per chunk each
sweep, against ``k`` per needed row here.
"""

from __future__ import annotations

import numpy as np

from .. import comm as C
from ..layout import block_offsets
from ..models import mf as K
from .. import reduce as R


class RowExchange:
    """Fetch the rows ``need`` (sorted global ids) of a row-sharded array whose rank ``q``
    owns rows ``[offsets[q], offsets[q+1])``. Built once (collective); then :meth:`fetch`."""

    def __init__(self, comm, need: np.ndarray, offsets):
        self.comm = comm
        offsets = np.asarray(offsets, dtype=np.int64)
        self.need = need.astype(np.int64)
        cut = np.searchsorted(self.need, offsets)
        self.recv_counts = np.diff(cut)
        self.send_counts = C.alltoall_counts(comm, self.recv_counts)
        asked = np.empty(int(self.send_counts.sum()), dtype=np.int64)
        C.alltoallv(comm, self.need, self.recv_counts, asked, self.send_counts)
        self.send_rows = asked - offsets[comm.rank]  # rows of my block, grouped by the rank asking

    def fetch(self, own: np.ndarray, out: np.ndarray, send: np.ndarray) -> np.ndarray:
        """``out[r] = global row need[r]`` from every owner's ``own`` block. Collective."""
        np.take(own, self.send_rows, axis=0, out=send)
        return C.alltoallv(self.comm, send, self.send_counts, out, self.recv_counts)

    @property
    def nbytes(self) -> int:
        return self.need.nbytes + self.send_rows.nbytes


class UserIndex:
    """The user segments of one chunk's ratings (what the user half-sweep needs of a ChunkIndex)."""

    def __init__(self, users: np.ndarray):
        self.n = int(users.shape[0])
        self.u_ids, self.u_starts = K.segments(users)
        self.nbytes = self.u_ids.nbytes + self.u_starts.nbytes


def _index(perm: np.ndarray) -> np.ndarray:
    """A permutation as int32 when it fits (half the bytes)."""
    return perm.astype(np.int32) if perm.shape[0] < 2**31 else perm


#: Fetched factor rows of one exchange round (either side) stay under about this many bytes.
EXCHANGE_BUDGET_BYTES = 256 << 20


def _rounds(comm, n_local: int) -> int:
    return int(C.allreduce_max(comm, n_local))


class ItemPlan:
    """Who owns which item rows, and what moves where each half-sweep (see the module doc). Collective.

    Each side's fetch goes in rounds whose fetched rows stay under ``EXCHANGE_BUDGET_BYTES``:
    ``v_rounds`` are ``(c0, c1, exchange)`` over groups of local user chunks [c0, c1), ``u_rounds``
    ``(s0, s1, exchange)`` over groups of whole owned items (segments [s0, s1) of the in-block).
    Every rank runs the same number of rounds (some empty).
    """

    def __init__(self, comm, shard, k: int, width: int, keep_order: bool = True):
        sh, size, rank = shard, comm.size, comm.rank
        self.comm, self.k = comm, k
        self.n_items, self.chunk_rows, self.n_chunks = sh.n_items, sh.chunk_rows, sh.n_chunks
        self.item_offsets = block_offsets(sh.n_items, size)
        self.item_lo, self.item_hi = self.item_offsets[rank], self.item_offsets[rank + 1]
        self.n_own = self.item_hi - self.item_lo
        budget_rows = max(1, EXCHANGE_BUDGET_BYTES // (8 * k))
        self._user_side(comm, sh.blocks, budget_rows)
        self._move_ratings(comm, sh, keep_order)
        user_offsets = [sh.layout.rows(q)[0] for q in range(size)] + [sh.n_users]
        self._item_side(comm, user_offsets, budget_rows, width)

    def _user_side(self, comm, blocks, budget_rows: int) -> None:
        """Out-block of the user side: per round, the V rows the round's chunks touch (train and test)."""
        touched = [np.unique(np.concatenate([b.train[1], b.test[1]])) for b in blocks]
        groups, c0, rows = [], 0, 0
        for i, t in enumerate(touched):
            if i > c0 and rows + t.shape[0] > budget_rows:
                groups.append((c0, i))
                c0, rows = i, 0
            rows += t.shape[0]
        if blocks:
            groups.append((c0, len(blocks)))
        self.train, self.test, self.v_rounds = [], [], []
        for r in range(_rounds(comm, len(groups))):
            c0, c1 = groups[r] if r < len(groups) else (len(blocks), len(blocks))
            need = np.unique(np.concatenate(touched[c0:c1])) if c1 > c0 else np.zeros(0, dtype=np.int64)
            self.v_rounds.append((c0, c1, RowExchange(comm, need, self.item_offsets)))
            for b in blocks[c0:c1]:
                self.train.append((b.train[0], np.searchsorted(need, b.train[1]).astype(np.int32), b.train[2]))
                self.test.append((b.test[0], np.searchsorted(need, b.test[1]).astype(np.int32), b.test[2]))
        self.user_index = [UserIndex(b.train[0]) for b in blocks]

    def _move_ratings(self, comm, sh, keep_order: bool) -> None:
        """The in-block: training ratings to their item's owner, kept in the global order.

        ``keep_order``: keep the two permutations :meth:`to_owners` needs (gradient descent only).
        """
        items = np.concatenate([b.train[1] for b in sh.blocks]) if sh.blocks else np.zeros(0, np.int32)
        dest = np.searchsorted(self.item_offsets, items, side="right") - 1
        send_order = _index(np.argsort(dest, kind="stable"))  # global order within each owner
        self.send_counts = np.bincount(dest, minlength=comm.size).astype(np.int64)
        self.recv_counts = C.alltoall_counts(comm, self.send_counts)
        del dest
        n = int(self.recv_counts.sum())
        r_items = self._send(comm, items[send_order], np.int32)
        by_item = _index(np.argsort(r_items, kind="stable"))
        r_items = r_items[by_item]
        users = np.concatenate([b.train[0].astype(np.int64) + b.user_lo for b in sh.blocks]) \
            if sh.blocks else np.zeros(0, np.int64)
        self._users = self._send(comm, users[send_order], np.int64)[by_item]  # ranks hold increasing users
        del users
        vals = np.concatenate([b.train[2] for b in sh.blocks]) if sh.blocks else np.zeros(0)
        self.vals = self._send(comm, vals[send_order], np.float64)[by_item]
        del vals
        self.send_order, self.by_item = (send_order, by_item) if keep_order else (None, None)
        self.item_counts = np.bincount(r_items - self.item_lo, minlength=self.n_own).astype(np.int64)
        key = (r_items.astype(np.int64) - self.item_lo) * self.n_chunks + self._users // self.chunk_rows
        del r_items
        seg_keys, self.seg_starts = K.segments(key)
        self.seg_item, self.seg_chunk = np.divmod(seg_keys, self.n_chunks)
        self.item_seg_starts = K.segments(self.seg_item)[1]  # each rated owned item's first segment
        self.n_in, self.n_seg = n, int(self.seg_starts.shape[0])

    def _send(self, comm, send: np.ndarray, dtype) -> np.ndarray:
        return C.alltoallv(comm, send, self.send_counts, np.empty(int(self.recv_counts.sum()), dtype=dtype),
                           self.recv_counts)

    def _item_side(self, comm, user_offsets, budget_rows: int, width: int) -> None:
        """Out-block of the item side: rounds of whole items (the U rows of their users), cut into groups
        of whole items whose per-(item, chunk) sums of ``width`` stay under ``REDUCE_BUDGET_BYTES``.

        Within a group the ratings are then put chunk-major (chunk, item, global order): each chunk's
        sums gather the rows of 4096 neighbouring users, as the replicated path does; ``seg_perm``
        takes a group's segments back to item-major order for the tree.
        """
        starts = self.seg_starts[self.item_seg_starts]
        n_items_rated = starts.shape[0]
        max_segs = max(1, R.REDUCE_BUDGET_BYTES // (4 * 8 * width))
        rounds, self.groups = [], []
        for g0, g1, a, b in K.segment_groups(starts, self.n_in, budget_rows):
            t_end = int(self.item_seg_starts[g1]) if g1 < n_items_rated else self.n_seg
            first = len(self.groups)
            for _, _, t0, t1 in K.segment_groups(self.item_seg_starts[g0:g1], t_end, max_segs):
                self.groups.append((int(t0), int(t1)))
            rounds.append((first, len(self.groups), a, b))
        group_of = np.repeat(np.arange(len(self.groups), dtype=np.int64),
                             [t1 - t0 for t0, t1 in self.groups]).reshape(-1)
        n_cells = self.n_chunks * max(self.n_own, 1)
        cm_key = group_of * n_cells + self.seg_chunk * max(self.n_own, 1) + self.seg_item  # per segment
        order = np.argsort(np.repeat(cm_key, np.diff(np.append(self.seg_starts, self.n_in))), kind="stable")
        self.vals, self._users = self.vals[order], self._users[order]
        if self.by_item is not None:
            self.by_item = self.by_item[order]
        cm = np.argsort(cm_key, kind="stable")  # chunk-major position -> item-major segment
        self.seg_perm = np.empty(self.n_seg, dtype=np.int64)
        self.seg_perm[cm] = np.arange(self.n_seg)
        self.cm_starts = np.append(0, np.cumsum(np.diff(np.append(self.seg_starts, self.n_in))[cm]))[:-1]
        self.cm_starts = self.cm_starts.astype(np.int64)
        del self.seg_starts
        self.uidx = np.zeros(self.n_in, dtype=np.int32)
        self.u_rounds = []
        for r in range(_rounds(comm, len(rounds))):
            q0, q1, a, b = rounds[r] if r < len(rounds) else (len(self.groups),) * 2 + (self.n_in,) * 2
            need, inv = np.unique(self._users[a:b], return_inverse=True)
            self.uidx[a:b] = inv.reshape(-1)
            self.u_rounds.append((q0, q1, RowExchange(comm, need, user_offsets)))
        del self._users

    def to_owners(self, local: np.ndarray, send: np.ndarray, recv: np.ndarray) -> np.ndarray:
        """One value per local training rating (chunk order) to the item owner, in the in-block's order."""
        np.take(local, self.send_order, out=send)
        C.alltoallv(self.comm, send, self.send_counts, recv, self.recv_counts)
        return recv[self.by_item]

    def max_rows(self, side: str) -> tuple[int, int]:
        """(fetched rows, rows sent) of the largest round of ``side`` ("v" or "u") on this rank."""
        rounds = self.v_rounds if side == "v" else self.u_rounds
        return (max((ex.need.shape[0] for *_, ex in rounds), default=0),
                max((ex.send_rows.shape[0] for *_, ex in rounds), default=0))

    @property
    def nbytes(self) -> int:
        arrays = [a for a in (self.send_order, self.by_item) if a is not None]
        arrays += [self.vals, self.uidx, self.cm_starts, self.seg_perm, self.seg_item, self.seg_chunk,
                   self.item_seg_starts, self.item_counts]
        local = sum(t[1].nbytes for t in (*self.train, *self.test))
        exchanges = sum(ex.nbytes for *_, ex in (*self.v_rounds, *self.u_rounds))
        return sum(a.nbytes for a in arrays) + local + exchanges + sum(ix.nbytes for ix in self.user_index)


def chunk_tree_sum(seg_item: np.ndarray, seg_chunk: np.ndarray, values: np.ndarray, n_chunks: int):
    """Per item, the sum of its per-chunk rows along :class:`~lepton_hpc.reduce.ChunkReducer`'s tree.

    ``(seg_item, seg_chunk)`` are sorted; absent chunks count as +0.0, exactly as the
    replicated path's zero partials do, so the bits equal a dense tree over all chunks.
    Returns (items, sums): the distinct items and one row each.
    """
    item, leaf, vals, n = seg_item, seg_chunk, values, n_chunks
    if item.shape[0] and n > 1:
        items, first = K.segments(item)
        if items.shape[0] * n <= 2 * item.shape[0]:  # at least half the (item, chunk) cells: a dense tree
            dense = np.zeros((items.shape[0], n, vals.shape[1]))
            dense[np.repeat(np.arange(items.shape[0]), np.diff(np.append(first, item.shape[0]))), leaf] = vals
            while dense.shape[1] > 1:
                half = dense.shape[1] // 2
                paired = dense[:, 0:2 * half:2] + dense[:, 1:2 * half:2]
                dense = np.concatenate([paired, dense[:, 2 * half:]], axis=1) if dense.shape[1] % 2 else paired
            return items, dense[:, 0]
    while n > 1 and item.shape[0]:
        parent = leaf >> 1
        first = np.concatenate([[True], (item[1:] != item[:-1]) | (parent[1:] != parent[:-1])])
        group = np.cumsum(first) - 1
        left = np.zeros((int(group[-1]) + 1, vals.shape[1]))
        right = np.zeros_like(left)
        odd = (leaf & 1).astype(bool)
        left[group[~odd]] = vals[~odd]
        right[group[odd]] = vals[odd]
        item, leaf = item[first], parent[first]
        paired = (2 * leaf + 1 < n)[:, None]
        vals = np.where(paired, left + right, left)
        n = -(-n // 2)
    return item, vals


def owner_item_sums(plan: ItemPlan, group: int, UT_need: np.ndarray, weights: np.ndarray, normal: bool,
                    alpha: float | None = None):
    """``(items, sums)`` of one group of whole owned items (local ids): each item's sum over its
    in-block ratings, chunk by chunk then along the chunk tree; items without ratings are left out.

    ``normal``: packed ALS normal equations [triu(sum u u^T), sum w u] (``weights`` = ratings);
    with ``alpha`` the implicit-feedback systems [triu(sum (c-1) u u^T), sum c u], c = 1 + alpha r
    (``weights`` = interaction counts); else the gradient sums ``sum_u w u`` (``weights`` = residuals).
    ``UT_need``: the round's fetched U rows, transposed. Each (item, chunk) sum adds the same terms in
    the same order as the replicated :func:`~lepton_hpc.models.mf.als_item_partial` /
    :func:`~lepton_hpc.models.mf_implicit.implicit_item_partial` /
    :func:`~lepton_hpc.models.mf.item_grad_partial`.
    """
    t0, t1 = plan.groups[group]
    k = UT_need.shape[0]
    width = K.packed_width(k) if normal else k
    starts = plan.cm_starts[t0:t1]
    end = int(plan.cm_starts[t1]) if t1 < plan.n_seg else plan.n_in
    if alpha is not None:
        from ..models import mf_implicit as KI

        seg = KI.segment_sums(UT_need, plan.uidx, weights, starts, end, alpha)
    else:
        seg = np.zeros((t1 - t0, width))
        for g0, g1, a, b in K.segment_groups(starts, end, K.max_rows_for(width)):
            X = np.take(UT_need, plan.uidx[a:b], axis=1)
            if normal:
                seg[g0:g1] = K._normal_sums(X, weights[a:b], starts[g0:g1] - a)
            else:
                X *= weights[a:b]
                seg[g0:g1] = np.add.reduceat(X, starts[g0:g1] - a, axis=1).T
    return chunk_tree_sum(plan.seg_item[t0:t1], plan.seg_chunk[t0:t1], seg[plan.seg_perm[t0:t1] - t0],
                          plan.n_chunks)
