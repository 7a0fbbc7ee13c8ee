"""In-process synthetic data per model kind: ``generator(chunk, n_rows) -> (X, y)``."""

from __future__ import annotations

from ..config import DataConfig
from . import classification
from ..errors import UserError

DEFAULT_CLASSES = 3


def chunk_generator(kind: str, cfg: DataConfig, classes: int = 0):
    """The chunk generator for synthetic ``kind`` data (same rows as ``synth KIND`` writes)."""
    if kind == "logistic":
        w, b = classification.logistic_truth(cfg.seed, cfg.cols)
        return lambda chunk, m: classification.logistic_chunk(cfg.seed, chunk, m, w, b, cfg.noise, cfg.features)
    if kind == "softmax":
        W, b = classification.softmax_truth(cfg.seed, cfg.cols, classes or DEFAULT_CLASSES)
        return lambda chunk, m: classification.softmax_chunk(cfg.seed, chunk, m, W, b, cfg.noise, cfg.features)
    raise UserError(f"no synthetic data for model.kind={kind}; set data.path to a data file")
