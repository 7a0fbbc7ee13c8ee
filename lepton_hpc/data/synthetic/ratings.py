"""Synthetic ratings for the recommender: rank-R ground truth plus noise, drawn per user chunk.

Users ``[lo, hi)`` of logical chunk ``c`` come from ``(seed, c)``; the
ground-truth item factors from the seed alone, so any rank count and the
file written by ``python -m lepton_hpc.data synth mf`` see the same ratings.
"""

from __future__ import annotations

import numpy as np

_ITEMS_STREAM = 2**32 - 2  # stream ids no chunk id reaches


def factor_scale(rank: int) -> float:
    """Entry scale of the ground-truth factors: u.v then has unit variance."""
    return float(rank) ** -0.25


def true_item_factors(seed: int, n_items: int, rank: int) -> np.ndarray:
    """Ground-truth item factors V* (n_items x rank), drawn from the seed alone."""
    return np.random.default_rng([seed, _ITEMS_STREAM]).standard_normal((n_items, rank)) * factor_scale(rank)


def bernoulli_positions(rng: np.random.Generator, total: int, p: float) -> np.ndarray:
    """Sorted positions in ``[0, total)``, each present independently with probability ``p``.

    Geometric gaps between successes: O(number drawn) work and memory, and the
    draws depend only on ``(total, p)`` and the generator state.
    """
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    if p >= 1.0:
        return np.arange(total, dtype=np.int64)
    batch = int(total * p * 1.05) + 64
    parts, pos = [], -1
    while True:
        cs = pos + np.cumsum(rng.geometric(p, size=batch))
        parts.append(cs[cs < total])
        if cs[-1] >= total:
            break
        pos = int(cs[-1])
    return np.concatenate(parts).astype(np.int64, copy=False)


def rowdot(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Row-wise dot products of two (n, k) arrays."""
    return np.einsum("ij,ij->i", A, B)


def ratings_chunk(seed: int, chunk: int, user_lo: int, user_hi: int, V_true: np.ndarray, density: float,
                  noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratings of users ``[user_lo, user_hi)`` (logical chunk ``chunk``), sorted by (user, item).

    Each user-item entry is observed with probability ``density``; its value
    is ``u*_u . v*_i + noise * N(0, 1)`` with u*_u drawn from ``(seed, chunk)``.
    Returns global ``rows`` (int64), ``cols`` (int64) and ``vals`` (float64).
    """
    n_items, rank = V_true.shape
    m = user_hi - user_lo
    rng = np.random.default_rng([seed, chunk])
    U_true = rng.standard_normal((m, rank)) * factor_scale(rank)
    pos = bernoulli_positions(rng, m * n_items, density)
    local, cols = np.divmod(pos, n_items)
    vals = rowdot(U_true[local], V_true[cols]) + noise * rng.standard_normal(pos.shape[0])
    return local + user_lo, cols, vals


#: implicit feedback: logits are SHARPNESS * u*.v* (u*.v* has unit variance)
SHARPNESS = 2.0


def interactions_chunk(seed: int, chunk: int, user_lo: int, user_hi: int, V_true: np.ndarray,
                       density: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interaction counts of users ``[user_lo, user_hi)`` (logical chunk ``chunk``), sorted by (user, item).

    A known rank-R model (multinomial logit): user u makes Poisson(density * items) draws of
    items, each item i with probability softmax_i(SHARPNESS * u*_u . v*_i); r_ui is how many
    times it drew i (only r_ui > 0 is stored). u*_u is drawn from ``(seed, chunk)``.
    """
    n_items, rank = V_true.shape
    m = user_hi - user_lo
    rng = np.random.default_rng([seed, chunk])
    U_true = rng.standard_normal((m, rank)) * factor_scale(rank)
    logits = SHARPNESS * (U_true @ V_true.T)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    draws = rng.poisson(density * n_items, size=m)
    # inverse-CDF draws, all users at once: user j's cumulative probabilities shifted into [j, j + 1]
    cum = np.cumsum(p, axis=1)
    cum /= cum[:, -1:]
    cum += np.arange(m)[:, None]
    owner = np.repeat(np.arange(m), draws)
    flat = np.searchsorted(cum.reshape(-1), owner + rng.random(owner.shape[0]), side="right")
    flat = np.minimum(flat, (owner + 1) * n_items - 1)  # a draw of exactly j + 1 stays in row j
    keys, counts = np.unique(flat, return_counts=True)  # sorted by (user, item)
    local, cols = np.divmod(keys, n_items)
    return local.astype(np.int64) + user_lo, cols.astype(np.int64), counts.astype(np.float64)
