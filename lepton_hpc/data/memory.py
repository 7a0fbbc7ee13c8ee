"""Will this rank's shard fit in memory? Checked before anything is allocated.

The estimate is what :class:`~lepton_hpc.data.shard.Shard` allocates: X in its storage
dtype, y (float64) and, with weights or a held-out split, two float64 weight vectors,
for the busiest rank's chunk slots. It is compared with the node's ``MemAvailable``
(``/proc/meminfo``), shared by the ranks on the node. No MPI here: the caller passes
the number of ranks on this node.
"""

from __future__ import annotations

import math

from ..errors import UserError

#: leave this share of MemAvailable for everything else (Python, MPI buffers, the kernel's work arrays)
HEADROOM = 0.9


def available_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    """The node's available memory (``MemAvailable``), None where the kernel does not say."""
    try:
        with open(meminfo) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def human(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    return ""  # pragma: no cover


def row_bytes(n_cols: int, itemsize: int, weighted: bool) -> int:
    """Bytes of one row in memory: X, y and (weighted) the training and test weights."""
    return n_cols * itemsize + 8 + (16 if weighted else 0)


def check_fits(n_rows: int, n_cols: int, itemsize: int, weighted: bool, busiest_rows: int, chunk_rows: int,
               size: int, node_ranks: int, in_memory: bool, available: int | None = None) -> None:
    """A UserError, before allocating, when the busiest rank's shard cannot fit in this node's memory.

    ``busiest_rows``: the rows (chunk slots) the busiest rank holds; ``node_ranks``: the ranks
    sharing this node's memory. The sentence says how many ranks, or which
    ``data.in_memory=false`` setting, would fit.
    """
    available = available_bytes() if available is None else available
    if available is None:
        return
    per_row = row_bytes(n_cols, itemsize, weighted)
    per_rank = (busiest_rows if in_memory else min(chunk_rows, busiest_rows)) * per_row
    budget = HEADROOM * available / max(node_ranks, 1)
    if per_rank <= budget:
        return
    where = f"{size} rank(s), {node_ranks} on this node"
    streamed = min(chunk_rows, busiest_rows) * per_row
    if not in_memory:
        raise UserError(f"one chunk of data.chunk_rows={chunk_rows} rows x {n_cols} columns needs "
                        f"{human(streamed)} per rank streamed ({where}), but the node has {human(available)} "
                        f"available (MemAvailable); lower data.chunk_rows")
    nodes = math.ceil(n_rows * per_row / (HEADROOM * available))
    ranks = max(nodes * max(node_ranks, 1), size + 1)
    fix = (f"set data.in_memory=false to stream each rank's rows chunk by chunk ({human(streamed)} per rank)"
           if streamed <= budget else f"lower data.chunk_rows and set data.in_memory=false")
    raise UserError(f"the data ({n_rows} rows x {n_cols} columns, {human(per_row)} per row) needs "
                    f"{human(per_rank)} per rank in memory at {where}, but the node has {human(available)} "
                    f"available (MemAvailable, {human(budget)} per rank); run on at least {ranks} ranks with "
                    f"{max(node_ranks, 1)} per node (memory like this node's), or {fix}")


def check_budget(per_rank: float, node_ranks: int, what: str, fix: str, available: int | None = None) -> None:
    """A UserError when ``per_rank`` bytes on each of ``node_ranks`` ranks exceed this node's memory.

    ``what`` names the data (a sentence fragment), ``fix`` what would make it fit."""
    available = available_bytes() if available is None else available
    if available is None:
        return
    budget = HEADROOM * available / max(node_ranks, 1)
    if per_rank > budget:
        raise UserError(f"{what} needs {human(per_rank)} per rank ({node_ranks} rank(s) on this node), but the "
                        f"node has {human(available)} available (MemAvailable, {human(budget)} per rank); {fix}")
