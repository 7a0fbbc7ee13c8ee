"""What the ranks of a tabular import agree on after parsing their blocks
(:mod:`lepton_hpc.data.table_import`): the first error, the statistics that fill in missing
values, the categories of the one-hot columns and the target's classes.

Every figure is the same whatever the rank count: the means are sums of per-block partials
reduced in a fixed tree over the blocks (:class:`lepton_hpc.reduce.ChunkReducer`), the medians
are exact (a radix selection over the order-preserving 64-bit keys of the values, with integer
histograms summed over the ranks), and the first error is that of the lowest block.
MPI is reached only through :mod:`lepton_hpc.comm` and :mod:`lepton_hpc.reduce`.
"""

from __future__ import annotations

import numpy as np

from .. import comm as C
from ..errors import UserError
from ..layout import Layout
from ..reduce import ChunkReducer
from .table_blocks import BlockError

MAX_INFERRED_CLASSES = 20  # integer-valued targets with at most this many values are inferred as classes


def first_error(comm, err: BlockError | None, locate) -> None:
    """Raise the error of the lowest failing block on every rank (``locate(err) -> str``: the
    sentence, on the rank that owns the block). Collective."""
    blocks = [b for b in C.allgather(comm, None if err is None else err.block) if b is not None]
    if not blocks:
        return
    message = locate(err) if err is not None and err.block == min(blocks) else None
    C.check(comm, message)


# -- filling in missing values --------------------------------------------------------
def column_sums(comm, n_blocks: int, datas: list, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(sum, count) of the non-missing values of each numeric column over the whole input."""
    red = ChunkReducer(comm, Layout(n_blocks, 1, comm.size, comm.rank), 2 * width, "exact")
    for i, d in enumerate(datas):
        if width and d.rows:
            ok = ~np.isnan(d.num)
            red.partials[i, :width] = np.where(ok, d.num, 0.0).sum(axis=0)
            red.partials[i, width:] = ok.sum(axis=0)
    total = red.reduce()
    return total[:width].copy(), total[width:].copy()


def _keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving unsigned keys of float64 values."""
    bits = values.view(np.uint64)
    return np.where(bits >> np.uint64(63), ~bits, bits | np.uint64(1 << 63))


def _value(key: int) -> float:
    key = np.uint64(key)
    bits = key & ~np.uint64(1 << 63) if key >> np.uint64(63) else ~key
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def _kth(comm, keys: np.ndarray, k: int) -> float:
    """The ``k``-th smallest (0-based) of every rank's ``keys`` together. Collective."""
    prefix = 0
    sel = keys
    for shift in (48, 32, 16, 0):
        digits = ((sel >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64)
        hist = C.allreduce_sum_ints(comm, np.bincount(digits, minlength=1 << 16))
        cum = np.cumsum(hist)
        d = int(np.searchsorted(cum, k, side="right"))
        k -= int(cum[d - 1]) if d else 0
        sel = sel[digits == d]
        prefix |= d << shift
    return _value(prefix)


def column_medians(comm, datas: list, counts: np.ndarray, which: list[int]) -> dict[int, float]:
    """The exact median of numeric column ``k`` (for each ``k`` in ``which``) over the whole input,
    as numpy's median gives it (the mean of the two middle values for an even count)."""
    out = {}
    for k in which:
        n = int(counts[k])
        if n == 0:
            out[k] = 0.0
            continue
        local = [d.num[:, k] for d in datas if d.rows]
        values = np.concatenate(local) if local else np.zeros(0)
        keys = _keys(values[~np.isnan(values)])
        if n % 2:
            out[k] = _kth(comm, keys, n // 2)
        else:
            out[k] = (_kth(comm, keys, n // 2 - 1) + _kth(comm, keys, n // 2)) / 2
    return out


def fill_values(comm, spec, n_blocks: int, datas: list, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The value that replaces a missing entry of each numeric column, and each column's count of
    missing entries (over the whole input). Collective."""
    width = len(spec.numeric)
    sums, counts = column_sums(comm, n_blocks, datas, width)
    missing = n_rows - counts
    fill = np.zeros(width)
    if spec.missing == "mean":
        fill = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    elif spec.missing == "median":
        med = column_medians(comm, datas, counts, [k for k in range(width) if missing[k] > 0])
        for k, v in med.items():
            fill[k] = v
    return fill, missing.astype(np.int64)


# -- categories and classes -----------------------------------------------------------
def categories(comm, spec, datas: list) -> list[list[str]]:
    """The sorted distinct texts of each one-hot column over the whole input. Collective."""
    local = []
    for c in range(len(spec.onehot)):
        seen = set()
        for d in datas:
            seen.update(v for v in d.cats[c][1] if v is not None)
        local.append(seen)
    merged = [set() for _ in spec.onehot]
    for rank_sets in C.allgather(comm, local):
        for c, s in enumerate(rank_sets):
            merged[c] |= s
    return [sorted(s) for s in merged]


def decide_target(infos: list[dict], task: str | None, name: str, where: str, class_task):
    """``(kind, classes, task)`` from every block's target info (the same on every rank):
    kind ``"numbers"`` (regression), ``"values"`` (numeric class labels) or ``"labels"`` (text)."""
    if all(i["numeric"] for i in infos):
        continuous = any(i["values"] is None for i in infos)
        values = sorted(set().union(*(i["values"] or [] for i in infos)))
        integer = all(v == round(v) for v in values)
        if task == "regression" or (task is None and (continuous or not integer
                                                      or len(values) > MAX_INFERRED_CLASSES)):
            return "numbers", None, "regression"
        if continuous:
            raise UserError(f"{where}: the target {name!r} has too many distinct values to be class labels "
                            f"(give --task regression)")
        return "values", values, class_task(len(values), task, where)
    if task == "regression":
        return "text-regression", None, task  # the caller names the first non-numeric value
    if any(i["labels"] is None for i in infos):
        raise UserError(f"{where}: the target {name!r} mixes text labels with too many distinct numbers "
                        f"to be class labels")
    labels = sorted(set().union(*(set(i["labels"]) for i in infos)))
    return "labels", labels, class_task(len(labels), task, where)


def class_codes(d, kind: str, classes) -> np.ndarray:
    """The target of one block as float64: the value (regression) or the class code 0..K-1."""
    if kind == "numbers":
        return d.y_float
    if kind == "values":
        return np.searchsorted(np.asarray(classes, dtype=np.float64), d.y_float).astype(np.float64)
    index = {v: i for i, v in enumerate(classes)}
    lut = np.array([index[v] for v in d.y_dict], dtype=np.float64)
    return lut[d.y_codes]


def first_text_row(d) -> int:
    """The first row of a block whose target is not a number (``--task regression``)."""
    bad = []
    for v in d.y_dict:
        try:
            float(v)
            bad.append(False)
        except (TypeError, ValueError):
            bad.append(True)
    return int(np.argmax(np.asarray(bad)[d.y_codes]))
