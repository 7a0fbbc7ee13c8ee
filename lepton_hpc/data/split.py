"""The held-out split, drawn per row from (data.seed, global row index).

Row ``r`` is held out when ``u(seed, r) < data.test_fraction``, where ``u`` is a
counter-based uniform on [0, 1): the splitmix64 finaliser of
``key(seed) + (r + 1) * 0x9E3779B97F4A7C15`` (mod 2**64), top 53 bits. It depends
on nothing else, so the split is the same at any ``data.chunk_rows`` and any rank
count, and any rank can draw the rows it owns without the others. No MPI here.
"""

from __future__ import annotations

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
M1, M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
MASK = (1 << 64) - 1
TEST_STREAM = 3  # the stream of the held-out split (other per-row draws would take others)


def mix64(z: int) -> int:
    """splitmix64's finaliser on a Python int (mod 2**64)."""
    z = ((z ^ (z >> 30)) * M1) & MASK
    z = ((z ^ (z >> 27)) * M2) & MASK
    return z ^ (z >> 31)


def key(seed: int, stream: int = TEST_STREAM) -> int:
    return mix64(((seed & MASK) * GOLDEN + stream) & MASK)


def row_uniforms(seed: int, lo: int, hi: int, stream: int = TEST_STREAM) -> np.ndarray:
    """``u(seed, r)`` for the global rows ``lo <= r < hi`` (float64 in [0, 1)), vectorised."""
    rows = np.arange(lo + 1, hi + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(key(seed, stream)) + rows * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(M2)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def held_out(seed: int, fraction: float, lo: int, hi: int) -> np.ndarray:
    """Which of the global rows ``[lo, hi)`` are in the held-out split."""
    if fraction <= 0:
        return np.zeros(hi - lo, dtype=bool)
    return row_uniforms(seed, lo, hi) < fraction
