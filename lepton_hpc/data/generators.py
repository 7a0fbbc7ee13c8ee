"""Kept for :mod:`lepton_hpc.trainer`, which imports ``chunk_generator`` from here until its rewrite;
the generators live in :mod:`lepton_hpc.data.synthetic`."""

from .synthetic import DEFAULT_CLASSES, chunk_generator

__all__ = ["DEFAULT_CLASSES", "chunk_generator"]
