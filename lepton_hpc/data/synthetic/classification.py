"""Synthetic classification data drawn per logical chunk from (seed, chunk id).

Like :mod:`.linear`, chunk ``c`` is always the same numbers, whatever rank
generates it or how the writes are batched, so a synthetic job can generate
the data in-process and get exactly the rows that
``python -m lepton_hpc.data synth logistic|softmax`` writes to a file.

* logistic: ``X`` standard normal, ``y ~ Bernoulli(sigmoid(X w + b + noise·ε))``, y in {0, 1}.
* softmax: ``X`` standard normal, ``y ~ Categorical(softmax(X W + b + noise·ε))``,
  ``W`` cols×classes, y in {0, …, K-1}.

The ground truth comes from the seed alone (:func:`logistic_truth`,
:func:`softmax_truth`). Each weight vector (each column of ``W``) has norm
``scale`` (default 5), so with standard normal features every logit has
standard deviation ``scale`` whatever the column count: the labels are
separable enough for accuracy to be informative (the generating weights
classify about 89% of binary rows right, about 79% with 10 classes) while
staying noisy enough to be a real fitting problem.
"""

from __future__ import annotations

import numpy as np

from ...errors import UserError

DEFAULT_SCALE = 5.0
BIAS_SCALE = 0.5
_TRUTH_STREAM = 2**32 - 1  # a stream id no chunk id reaches (as in .linear)
_LOGISTIC, _SOFTMAX = 1, 2  # third seed word; nonzero so they never equal linear.true_weights' stream


def _unit_columns(g: np.ndarray, scale: float) -> np.ndarray:
    norms = np.linalg.norm(g, axis=0)
    norms[norms == 0] = 1.0
    return scale * g / norms


def logistic_truth(seed: int, n_cols: int, scale: float = DEFAULT_SCALE) -> tuple[np.ndarray, float]:
    """The generating ``(w, b)`` of seed ``seed``: ``w`` (n_cols,) of norm ``scale``, ``b`` ~ N(0, 0.5²)."""
    if n_cols <= 0:
        raise UserError(f"the column count must be > 0, got {n_cols}")
    rng = np.random.default_rng([seed, _TRUTH_STREAM, _LOGISTIC])
    w = _unit_columns(rng.standard_normal((n_cols, 1)), scale)[:, 0]
    b = float(BIAS_SCALE * rng.standard_normal())
    return w, b


def softmax_truth(seed: int, n_cols: int, n_classes: int,
                  scale: float = DEFAULT_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """The generating ``(W, b)`` of seed ``seed``: ``W`` (n_cols, n_classes), every column of
    norm ``scale``; ``b`` (n_classes,) ~ N(0, 0.5²)."""
    if n_cols <= 0:
        raise UserError(f"the column count must be > 0, got {n_cols}")
    if n_classes < 2:
        raise UserError(f"softmax data needs at least 2 classes, got {n_classes}")
    rng = np.random.default_rng([seed, _TRUTH_STREAM, _SOFTMAX])
    W = _unit_columns(rng.standard_normal((n_cols, n_classes)), scale)
    b = BIAS_SCALE * rng.standard_normal(n_classes)
    return W, b


def _features(rng: np.random.Generator, shape: tuple[int, int], features: str) -> np.ndarray:
    if features == "normal":
        return rng.standard_normal(shape)
    if features == "uniform":
        return rng.random(shape)
    raise UserError(f"data.features must be normal or uniform, got {features!r}")


def logistic_chunk(seed: int, chunk: int, n_rows: int, w: np.ndarray, b: float, noise: float = 0.0,
                   features: str = "normal") -> tuple[np.ndarray, np.ndarray]:
    """Rows of chunk ``chunk``: X (n_rows x len(w)) float64 and y in {0., 1.} float64.

    ``y = 1`` with probability ``sigmoid(X w + b + noise·ε)``, ε standard normal.
    """
    w = np.asarray(w, dtype=np.float64)
    rng = np.random.default_rng([seed, chunk])
    X = _features(rng, (n_rows, w.shape[0]), features)
    u = rng.random(n_rows)
    z = X @ w + b
    if noise:
        z += noise * rng.standard_normal(n_rows)
    # u < sigmoid(z)  <=>  logit(u) < z, without overflow for large |z|
    with np.errstate(divide="ignore"):
        y = (np.log(u) - np.log1p(-u) < z).astype(np.float64)
    return X, y


def softmax_chunk(seed: int, chunk: int, n_rows: int, W: np.ndarray, b: np.ndarray, noise: float = 0.0,
                  features: str = "normal") -> tuple[np.ndarray, np.ndarray]:
    """Rows of chunk ``chunk``: X (n_rows x W.shape[0]) float64 and y in {0., …, K-1.} float64.

    ``y`` is drawn from ``softmax(X W + b + noise·ε)``, ε standard normal (n_rows x K).
    """
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if W.ndim != 2 or b.shape != (W.shape[1],):
        raise UserError(f"softmax weights must be cols x classes with one bias per class, "
                         f"got W {W.shape} and b {b.shape}")
    rng = np.random.default_rng([seed, chunk])
    X = _features(rng, (n_rows, W.shape[0]), features)
    u = rng.random(n_rows)
    Z = X @ W + b
    if noise:
        Z += noise * rng.standard_normal(Z.shape)
    Z -= Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    cdf = np.cumsum(P, axis=1)
    y = (u[:, None] * cdf[:, -1:] >= cdf).sum(axis=1)
    np.minimum(y, W.shape[1] - 1, out=y)
    return X, y.astype(np.float64)
