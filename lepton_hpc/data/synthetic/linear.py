"""Synthetic regression data drawn per logical chunk from (seed, chunk id).

Chunk ``c`` is always the same numbers, whatever rank generates it, so a
synthetic job gives the same answer on any rank count and needs no file.
"""

from __future__ import annotations

import numpy as np
from ...errors import UserError

_WEIGHTS_STREAM = 2**32 - 1  # a stream id no chunk id reaches


def true_weights(seed: int, n_cols: int, given: list | None = None) -> np.ndarray:
    """The generating weights: ``given`` if set, else drawn from ``seed``."""
    if given:
        return np.asarray(given, dtype=np.float64)
    return np.random.default_rng([seed, _WEIGHTS_STREAM]).standard_normal(n_cols)


def linear_chunk(seed: int, chunk: int, n_rows: int, w: np.ndarray, bias: float, noise: float,
                 features: str = "normal") -> tuple[np.ndarray, np.ndarray]:
    """Rows of chunk ``chunk``: X (n_rows x len(w)) float64 and y = X w + bias + noise·ε."""
    rng = np.random.default_rng([seed, chunk])
    shape = (n_rows, w.shape[0])
    if features == "normal":
        X = rng.standard_normal(shape)
    elif features == "uniform":
        X = rng.random(shape)
    else:
        raise UserError(f"data.features must be normal or uniform, got {features!r}")
    y = X @ w + bias + noise * rng.standard_normal(n_rows)
    return X, y
