"""Small helpers shared by test files (tests/ is on sys.path through conftest.py)."""

import math

import numpy as np


def uneven_bounds(n_rows, n_cols, size, style="mixed"):
    """Row offsets (length size+1) for an uneven split.

    ``mixed``: rank 0 gets 0 rows when size >= 3, the next rank gets fewer
    rows than columns, the rest grow with rank.  ``last``: all rows on the
    last rank (every other rank is empty).
    """
    if style == "last":
        return np.array([0] * size + [n_rows])
    if size == 1:
        return np.array([0, n_rows])
    sizes = [0] if size >= 3 else []
    sizes.append(min(max(1, n_cols // 2), n_rows))
    n_left, rest = size - len(sizes), n_rows - sum(sizes)
    weights = np.arange(1, n_left + 1)
    parts = (rest * weights) // weights.sum()
    parts[-1] += rest - parts.sum()
    return np.concatenate([[0], np.cumsum(sizes + parts.tolist())])


def positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def assert_spread(s: dict) -> None:
    assert set(s) == {"min", "median", "max"}
    assert all(positive(v) for v in s.values()), s
    assert s["min"] <= s["median"] <= s["max"]
