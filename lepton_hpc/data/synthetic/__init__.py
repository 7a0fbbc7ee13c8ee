"""All synthetic data of the application, generated in-process (pure numpy, no MPI, no files).

Every generator draws a logical chunk (or row block) from ``(seed, chunk id)``
alone, so the numbers do not depend on the rank count, and the files that
``python -m lepton_hpc.data synth ...`` writes hold exactly the rows a job
with ``data.path = ""`` generates.

* :mod:`.linear` — regression rows ``y = X w + bias + noise·ε`` (:func:`linear_chunk`, :func:`true_weights`).
* :mod:`.classification` — logistic and softmax rows and their ground truth.
* :mod:`.ratings` — recommender ratings from rank-R ground-truth factors.
* :mod:`.matrices` — the matmul job's low-rank-plus-noise ``A`` and ``B`` (import it directly).

:func:`chunk_generator` picks the per-chunk generator of a classification model kind.
"""

from __future__ import annotations

from ...errors import UserError
from . import classification
from .linear import linear_chunk, true_weights

DEFAULT_CLASSES = 3


def chunk_generator(kind: str, cfg, classes: int = 0):
    """The chunk generator ``gen(chunk, n_rows) -> (X, y)`` for synthetic ``kind`` data.

    Parameters
    ----------
    kind : str
        ``logistic`` or ``softmax``.
    cfg : lepton_hpc.config.DataConfig
        Its seed, cols, noise and features.
    classes : int
        softmax: the class count (0: ``DEFAULT_CLASSES``).
    """
    if kind == "logistic":
        w, b = classification.logistic_truth(cfg.seed, cfg.cols)
        return lambda chunk, m: classification.logistic_chunk(cfg.seed, chunk, m, w, b, cfg.noise, cfg.features)
    if kind == "softmax":
        W, b = classification.softmax_truth(cfg.seed, cfg.cols, classes or DEFAULT_CLASSES)
        return lambda chunk, m: classification.softmax_chunk(cfg.seed, chunk, m, W, b, cfg.noise, cfg.features)
    raise UserError(f"no synthetic data for model.kind={kind}; set data.path to a data file")


__all__ = ["DEFAULT_CLASSES", "chunk_generator", "linear_chunk", "true_weights"]
