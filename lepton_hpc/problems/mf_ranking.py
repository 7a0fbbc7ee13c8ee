"""Ranking metrics of an implicit-feedback recommender on held-out interactions, per user chunk.

For every user with held-out (test) interactions, the items are scored
``u_u . v_i``, the user's training items are excluded, and against the
held-out items T_u:

- precision@k = |top_k ∩ T_u| / k;  recall@k = |top_k ∩ T_u| / |T_u|;
- nDCG@k = Σ_{j<k, top_j ∈ T_u} 1/log2(j+2) / Σ_{j<min(k, |T_u|)} 1/log2(j+2);
- AUC = the share of (held-out item, never-seen item) pairs ranked in that order.

Each rank scores only its own users, one chunk (and within it one fixed block
of users) at a time: no score matrix beyond a block is held and none is
gathered. A chunk yields the per-user sums ``[Σ precision, Σ recall, Σ nDCG,
Σ AUC, users]``, reduced exactly over chunks by the caller
(:class:`~lepton_hpc.reduce.ChunkReducer`), so the metrics have the same bits
on any rank count. numpy only, no MPI.
"""

from __future__ import annotations

import numpy as np

NAMES = ("precision", "recall", "ndcg", "auc")
#: users scored at once (a block of scores is BLOCK_USERS x items)
BLOCK_USERS = 256


def _block_sums(S: np.ndarray, train: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    """Metric sums of one block: ``S`` scores (users x items), ``train``/``test`` boolean masks."""
    n_items = S.shape[1]
    k = min(k, n_items)
    S = np.where(train, -np.inf, S)
    n_test = test.sum(axis=1)
    top = np.argpartition(-S, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(S, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    hits = np.take_along_axis(test, top, axis=1)
    n_hit = hits.sum(axis=1)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(disc)[np.minimum(n_test, k) - 1]
    ndcg = (hits * disc).sum(axis=1) / ideal
    # AUC: each held-out item's rank among the user's candidates (items below it, training ones excluded)
    ordered = np.sort(S, axis=1)
    n_train = train.sum(axis=1)
    n_neg = n_items - n_train - n_test
    below = np.array([np.searchsorted(ordered[j], S[j, test[j]]).sum() for j in range(S.shape[0])])
    wins = below - n_test * n_train - n_test * (n_test - 1) / 2
    auc = np.where(n_neg > 0, wins / np.maximum(n_test * n_neg, 1), 1.0)
    return np.array([n_hit.sum() / k, (n_hit / n_test).sum(), ndcg.sum(), auc.sum(), S.shape[0]])


def chunk_sums(Uc: np.ndarray, V: np.ndarray, train, test, k: int) -> np.ndarray:
    """``[Σ precision@k, Σ recall@k, Σ nDCG@k, Σ AUC, users]`` over the chunk's users with
    held-out interactions. ``train``/``test``: (users, items) of the chunk, users relative to it."""
    out = np.zeros(5)
    users = np.unique(test[0])
    n_items = V.shape[0]
    for a in range(0, users.shape[0], BLOCK_USERS):
        ids = users[a:a + BLOCK_USERS]
        pos = np.full(Uc.shape[0], -1)
        pos[ids] = np.arange(ids.shape[0])
        masks = []
        for u, i in (train, test):
            m = np.zeros((ids.shape[0], n_items), dtype=bool)
            sel = pos[u] >= 0
            m[pos[u[sel]], i[sel]] = True
            masks.append(m)
        out += _block_sums(Uc[ids] @ V.T, masks[0], masks[1], k)
    return out


def means(sums: np.ndarray, k: int) -> dict:
    """The reduced sums as metric means (None when no user has held-out interactions)."""
    n = sums[4]
    vals = {f"{name}_at_{k}" if name != "auc" else "auc": (float(sums[j] / n) if n else None)
            for j, name in enumerate(NAMES)}
    return {**vals, "users_evaluated": int(n)}
