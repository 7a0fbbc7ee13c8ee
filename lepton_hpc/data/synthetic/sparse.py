"""Synthetic sparse (CSR) rows drawn per logical chunk from (seed, chunk id), with known weights.

Every row has up to ``nnz_per_row`` non-zeros (columns drawn uniformly, sorted,
duplicates dropped) with standard normal values. The generating weights come
from the seed alone and are scaled so that a row's score ``x·w`` has standard
deviation ``scale`` whatever ``nnz_per_row`` is (the classification generators'
convention), so logistic/softmax labels stay informative at any density.

* sparse-linear: ``y = X w + bias + noise·ε``;
* sparse-logistic: ``y ~ Bernoulli(sigmoid(X w + b + noise·ε))``;
* sparse-softmax: ``y ~ Categorical(softmax(X W + b + noise·ε))``, ``W`` cols × K.

Chunk ``c`` is always the same arrays, whatever writes it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ...errors import UserError

KINDS = ("sparse-linear", "sparse-logistic", "sparse-softmax")
DEFAULT_SCALE = 5.0
_TRUTH_STREAM = 2**32 - 1
_SPARSE = 7  # third seed word of the truth: distinct from the dense generators' streams


def sparse_truth(kind: str, seed: int, cols: int, nnz_per_row: int, classes: int = 2,
                 scale: float = DEFAULT_SCALE) -> tuple[np.ndarray, np.ndarray | float]:
    """The generating ``(w, b)``: ``w`` (cols,) or (cols, K) for softmax; ``b`` float or (K,)."""
    rng = np.random.default_rng([seed, _TRUTH_STREAM, _SPARSE])
    k = classes if kind == "sparse-softmax" else 1
    W = rng.standard_normal((cols, k)) * (scale / np.sqrt(max(nnz_per_row, 1)))
    b = 0.5 * rng.standard_normal(k)
    return (W, b) if k > 1 else (W[:, 0], float(b[0]))


def sparse_chunk(kind: str, seed: int, chunk: int, n_rows: int, cols: int, nnz_per_row: int,
                 w: np.ndarray, b, noise: float) -> tuple[sp.csr_matrix, np.ndarray]:
    """Chunk ``chunk``: a CSR matrix (n_rows × cols, int64 indices, sorted, no duplicates) and y."""
    if kind not in KINDS:
        raise UserError(f"unknown sparse kind {kind!r}; one of {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, chunk])
    m = min(nnz_per_row, cols)
    cols_drawn = np.sort(rng.integers(0, cols, size=(n_rows, m)), axis=1)
    keep = np.ones(cols_drawn.shape, dtype=bool)
    keep[:, 1:] = cols_drawn[:, 1:] != cols_drawn[:, :-1]
    values = rng.standard_normal((n_rows, m))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    X = sp.csr_matrix((values[keep], cols_drawn[keep].astype(np.int64), indptr), shape=(n_rows, cols))
    z = X @ w + b
    u = rng.random(n_rows)
    if noise:
        z = z + noise * rng.standard_normal(z.shape)
    if kind == "sparse-linear":
        return X, z
    if kind == "sparse-logistic":
        with np.errstate(divide="ignore"):
            return X, (np.log(u) - np.log1p(-u) < z).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    cdf = np.cumsum(np.exp(z), axis=1)
    y = np.minimum((u[:, None] * cdf[:, -1:] >= cdf).sum(axis=1), z.shape[1] - 1)
    return X, y.astype(np.float64)
