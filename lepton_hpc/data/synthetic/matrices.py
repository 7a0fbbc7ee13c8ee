"""The matmul job's synthetic matrices: ``A = L diag(sigma) R^T + E`` and ``B``, independent of the rank count.

``A`` is drawn per fixed block of ``GEN_CHUNK_ROWS`` rows from
``(seed, block)``, so any split of the rows gives the same matrix; ``R``
(``n x r``) is orthonormal, ``L`` (``m x r``) standard normal over
``sqrt(m)``, ``sigma`` geometric from 1 down to ``SIGMA_MIN`` and ``E``
Gaussian with entries of standard deviation ``noise / (sqrt(m) + sqrt(n))``
(see :mod:`lepton_hpc.problems.matmul`).
"""

from __future__ import annotations

import numpy as np

GEN_CHUNK_ROWS = 64  # rows of A drawn from one (seed, block) stream
SIGMA_MIN = 1e-2  # smallest singular value of the signal (sigma_1 = 1)

# SeedSequence spawn keys of the independent streams drawn from matmul.seed
# (the randomized SVD's sketch uses the plain seed).
_STREAM_RIGHT, _STREAM_B, _STREAM_ROWS = 1, 2, 3


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def signal_spectrum(r: int) -> np.ndarray:
    """Singular values of the signal: geometric from 1 down to ``SIGMA_MIN`` (``r`` values)."""
    if r <= 1:
        return np.ones(r)
    return SIGMA_MIN ** (np.arange(r) / (r - 1))


def right_factor(n: int, r: int, seed: int) -> np.ndarray:
    """The orthonormal right factor ``R`` (``n x r``) of the signal, the same on every rank."""
    # Imported here: lepton_hpc.linalg's package imports MPI, which the other generators never need.
    from ...linalg.kernels import orthonormalize

    return orthonormalize(_rng(seed, _STREAM_RIGHT).standard_normal((n, r)))


def make_b(n: int, p: int, seed: int) -> np.ndarray:
    """``B`` (``n x p``), standard normal, the same on every rank."""
    return _rng(seed, _STREAM_B).standard_normal((n, p))


def rows_of_a(lo: int, hi: int, m: int, n: int, r: int, noise: float, seed: int,
              right: np.ndarray | None = None) -> np.ndarray:
    """Rows ``[lo, hi)`` of ``A = L diag(sigma) R^T + E`` (see the module docstring).

    Rows are drawn per block of ``GEN_CHUNK_ROWS`` from ``(seed, block)``, so any
    row range gives the same rows whatever the split.
    """
    right = right_factor(n, r, seed) if right is None else right
    scaled_right = right * signal_spectrum(r)  # R diag(sigma), n x r
    out = np.empty((hi - lo, n))
    noise_std = noise / (np.sqrt(m) + np.sqrt(n))
    for block in range(lo // GEN_CHUNK_ROWS, -(-hi // GEN_CHUNK_ROWS)):
        b_lo = block * GEN_CHUNK_ROWS
        b_hi = min(b_lo + GEN_CHUNK_ROWS, m)
        rng = _rng(seed, _STREAM_ROWS, block)
        left = rng.standard_normal((b_hi - b_lo, r)) / np.sqrt(m)
        rows = left @ scaled_right.T
        if noise > 0:  # drawn after L, so noise = 0 leaves the signal rows unchanged
            rows += noise_std * rng.standard_normal((b_hi - b_lo, n))
        s_lo, s_hi = max(lo, b_lo), min(hi, b_hi)
        out[s_lo - lo:s_hi - lo] = rows[s_lo - b_lo:s_hi - b_lo]
    return out
