"""The recommender's L2 regularisation per row: one λ, or λ scaled by the row's rating count (ALS-WR).

``model.reg_scaling = "count"`` (the default) is the weighted-λ rule of Zhou et
al. (2008), as in Spark MLlib: user u's row is penalised by ``λ·n_u``, item i's
by ``λ·n_i``, with n the training ratings of the row, so the objective is

    ( 1/2 Σ (u·v - r)² + λ/2 (Σ_u n_u |u_u|² + Σ_i n_i |v_i|²) ) / N

and every ALS row solve is ``(X^T X + λ n I) x = X^T r``. ``"none"`` is the old
rule (``λ`` for every row). The counts are integers: the user counts come from
the rank's own chunks, the item counts from an exact integer reduction, so
they are the same on any rank count. A row without ratings gets ``λ`` (its
solve is 0 either way), which keeps every system positive definite.

Weights are ``(rows, 1)`` arrays that broadcast over the factor columns, or
the plain float λ for ``"none"``, which keeps that rule's old bits.
"""

from __future__ import annotations

import numpy as np

from ..models import mf as K


def row_weights(reg: float, scaling: str, counts: np.ndarray):
    """λ per row as a (rows, 1) column (``count``), or ``reg`` itself (``none``)."""
    if scaling == "none":
        return float(reg)
    return (reg * np.maximum(np.asarray(counts, dtype=np.float64), 1.0))[:, None]


def user_weights(reg: float, scaling: str, blocks) -> list:
    """λ per user of each local chunk (counts from the chunk's training ratings)."""
    return [row_weights(reg, scaling, np.bincount(b.train[0], minlength=b.n_users)) for b in blocks]


def rows(weights, lo: int, hi: int):
    """The weights of rows ``[lo, hi)`` (a float stays a float)."""
    return weights if isinstance(weights, float) else weights[lo:hi]


def vector(weights, lo: int, hi: int):
    """The weights of rows ``[lo, hi)`` as a flat vector, one per row solve (a float stays a float)."""
    return weights if isinstance(weights, float) else weights[lo:hi, 0]


def at(weights, ids: np.ndarray):
    """The weights of rows ``ids`` as a flat vector, one per row solve (a float stays a float)."""
    return weights if isinstance(weights, float) else weights[ids, 0]


def penalty(weights, F: np.ndarray) -> float:
    """Σ_rows w_row |f_row|² (numpy's own loops: the same bits wherever F lies)."""
    if isinstance(weights, float):
        return weights * K.sumsq(F)
    return float(np.einsum("ij,ij,i->", F, F, weights[:, 0]))


def row_penalties(weights, F: np.ndarray) -> np.ndarray:
    """w_row |f_row|² per row (each row's own sum, then one product: the same bits on any rank)."""
    sq = np.einsum("ij,ij->i", F, F)
    return sq * (weights if isinstance(weights, float) else weights[:, 0])
