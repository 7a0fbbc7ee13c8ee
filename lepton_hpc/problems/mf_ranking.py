"""Ranking metrics of an implicit-feedback recommender on held-out interactions, per user chunk.

For every user with held-out (test) interactions, the items are scored
``u_u . v_i``, the user's training items are excluded, and against the
held-out items T_u:

- precision@k = |top_k ∩ T_u| / k;  recall@k = |top_k ∩ T_u| / |T_u|;
- nDCG@k = Σ_{j<k, top_j ∈ T_u} 1/log2(j+2) / Σ_{j<min(k, |T_u|)} 1/log2(j+2);
- AUC = the share of (held-out item, never-seen item) pairs ranked in that order.

Each rank scores only its own users (:class:`ChunkRanking`, one per chunk),
against one block of items at a time: the top k is merged block by block (a
total order: score, then the lower item id), the AUC's counts of items scored
below each held-out item are added, and a score is a fixed sequence of
elementwise products and sums (no BLAS), so the result does not depend on how
the items are blocked. That lets an item-sharded V stream its owners' blocks
past the users, and a replicated V its own slices, with the same bits; no
score matrix beyond one block is held and none is gathered. A chunk yields the
sums ``[Σ precision, Σ recall, Σ nDCG, Σ AUC, users]``, reduced exactly over
chunks by the caller (:class:`~lepton_hpc.reduce.ChunkReducer`). numpy only, no MPI.
"""

from __future__ import annotations

import numpy as np

NAMES = ("precision", "recall", "ndcg", "auc")
#: users scored at once (a block of scores is BLOCK_USERS x BLOCK_ITEMS)
BLOCK_USERS = 256
BLOCK_ITEMS = 4096
_NONE = np.iinfo(np.int64).max  # the id of an empty top-k slot (after every real item)


def pair_scores(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Row-wise ``A[r] . B[r]``, summed left to right over the factor columns."""
    acc = A[:, 0] * B[:, 0]
    for a in range(1, A.shape[1]):
        acc += A[:, a] * B[:, a]
    return acc


def block_scores(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ B.T`` with each entry's operations those of :func:`pair_scores` (the same bits)."""
    acc = A[:, 0:1] * B[None, :, 0]
    for a in range(1, A.shape[1]):
        acc += A[:, a:a + 1] * B[None, :, a]
    return acc


class ChunkRanking:
    """The running top k and AUC counts of one chunk's users with held-out interactions.

    ``train``/``test``: (users, items) of the chunk, users relative to it. Call
    :meth:`set_test_scores`, then :meth:`add_block` for every item block (any blocking, any
    order of blocks), then :meth:`sums`.
    """

    def __init__(self, train, test, n_items: int, k: int):
        self.n_items, self.k = n_items, min(k, n_items)
        self.ids = np.unique(test[0])
        pos = np.full(int(max(self.ids.max(initial=-1), train[0].max(initial=-1))) + 1, -1, dtype=np.int64)
        pos[self.ids] = np.arange(self.ids.shape[0])
        sel = pos[train[0]] >= 0
        tr = np.unique(pos[train[0][sel]] * n_items + train[1][sel])
        te = pos[test[0]] * n_items + test[1]
        self.te_key, self.te_first = np.unique(te, return_index=True)  # distinct held-out pairs
        self.tr_pos, self.tr_item = np.divmod(tr, n_items)
        self.te_pos, self.te_item = np.divmod(self.te_key, n_items)
        self.te_in_train = np.isin(self.te_key, tr)
        n = self.ids.shape[0]
        self.n_train = np.bincount(self.tr_pos, minlength=n)
        self.n_test = np.bincount(self.te_pos, minlength=n)
        self.best_s = np.full((n, self.k), -np.inf)
        self.best_i = np.full((n, self.k), _NONE, dtype=np.int64)
        self.below = np.zeros(self.te_key.shape[0], dtype=np.int64)
        self.s_test = None

    def set_test_scores(self, Uc: np.ndarray, V_test: np.ndarray) -> None:
        """Scores of the held-out pairs as ``test`` listed them (``V_test``: the V row of each)."""
        s = pair_scores(Uc[self.ids[self.te_pos]], V_test[self.te_first])
        self.s_test = np.where(self.te_in_train, -np.inf, s)  # a held-out item also trained on: excluded

    def add_block(self, Uc: np.ndarray, j0: int, Vb: np.ndarray) -> None:
        """Merge items ``[j0, j0 + len(Vb))`` (rows ``Vb`` of V) into every user's top k and AUC counts."""
        nb, n = Vb.shape[0], self.ids.shape[0]
        for p0 in range(0, n, BLOCK_USERS):
            p1 = min(p0 + BLOCK_USERS, n)
            S = block_scores(Uc[self.ids[p0:p1]], Vb)
            a, z = np.searchsorted(self.tr_pos, [p0, p1])
            t = self.tr_item[a:z]
            m = (t >= j0) & (t < j0 + nb)
            S[self.tr_pos[a:z][m] - p0, t[m] - j0] = -np.inf
            a, z = np.searchsorted(self.te_pos, [p0, p1])
            for c in range(a, z, BLOCK_USERS):  # held-out pairs: items of the block scored below each
                e = min(c + BLOCK_USERS, z)
                self.below[c:e] += (S[self.te_pos[c:e] - p0] < self.s_test[c:e, None]).sum(axis=1)
            self._merge(p0, p1, j0, S)

    def _merge(self, p0: int, p1: int, j0: int, S: np.ndarray) -> None:
        """The top k of users [p0, p1) among their current top k and the block's scores ``S``: every
        block item at least the row's k-th largest score (ties included), sorted by (row, -score, id)."""
        m, k = p1 - p0, self.k
        kb = min(k, S.shape[1])
        thr = -np.partition(-S, kb - 1, axis=1)[:, kb - 1]
        rows, cols = np.nonzero(S >= thr[:, None])
        r = np.concatenate([np.repeat(np.arange(m), k), rows])
        s = np.concatenate([self.best_s[p0:p1].reshape(-1), S[rows, cols]])
        i = np.concatenate([self.best_i[p0:p1].reshape(-1), j0 + cols])
        order = np.lexsort((i, -s, r))
        first = np.searchsorted(r[order], np.arange(m))  # every row has its k current entries
        take = order[first[:, None] + np.arange(k)]
        self.best_s[p0:p1], self.best_i[p0:p1] = s[take], i[take]

    def sums(self) -> np.ndarray:
        """``[Σ precision@k, Σ recall@k, Σ nDCG@k, Σ AUC, users]`` once every item block is added."""
        n, k = self.ids.shape[0], self.k
        if n == 0:
            return np.zeros(5)
        rows = np.arange(n)[:, None]
        hits = np.isin(rows * self.n_items + self.best_i, self.te_key)
        n_hit, n_test, n_train = hits.sum(axis=1), self.n_test, self.n_train
        disc = 1.0 / np.log2(np.arange(2, k + 2))
        ideal = np.cumsum(disc)[np.minimum(n_test, k) - 1]
        ndcg = (hits * disc).sum(axis=1) / ideal
        below = np.bincount(self.te_pos, weights=self.below, minlength=n)
        n_neg = self.n_items - n_train - n_test
        wins = below - n_test * n_train - n_test * (n_test - 1) / 2
        auc = np.where(n_neg > 0, wins / np.maximum(n_test * n_neg, 1), 1.0)
        return np.array([n_hit.sum() / k, (n_hit / n_test).sum(), ndcg.sum(), auc.sum(), n])


def item_blocks(V: np.ndarray, j0: int = 0):
    """Yield ``(first item, rows)`` of ``V`` (rows j0, j0+1, ...) in blocks of BLOCK_ITEMS."""
    for a in range(0, V.shape[0], BLOCK_ITEMS):
        yield j0 + a, V[a:a + BLOCK_ITEMS]


def chunk_sums(Uc: np.ndarray, V: np.ndarray, train, test, k: int) -> np.ndarray:
    """:meth:`ChunkRanking.sums` of one chunk against a whole V (``train``/``test``: (users, items))."""
    r = ChunkRanking(train, test, V.shape[0], k)
    if r.ids.shape[0] == 0:
        return np.zeros(5)
    r.set_test_scores(Uc, V[np.asarray(test[1])])
    for j0, Vb in item_blocks(V):
        r.add_block(Uc, j0, Vb)
    return r.sums()


def means(sums: np.ndarray, k: int) -> dict:
    """The reduced sums as metric means (None when no user has held-out interactions)."""
    n = sums[4]
    vals = {f"{name}_at_{k}" if name != "auc" else "auc": (float(sums[j] / n) if n else None)
            for j, name in enumerate(NAMES)}
    return {**vals, "users_evaluated": int(n)}
