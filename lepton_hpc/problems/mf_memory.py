"""Bytes per rank of a matrix-factorization run: the model the trainer's figures follow.

``python -m lepton_hpc.problems.mf_memory --users 1000000 --items 100000 --rank 32 --ranks 64
--density 0.001`` prints the projection for the busiest rank. U is sharded by
user chunks (never replicated): a rank holds ``ceil(chunks / size) x chunk_rows``
users at most, about total/size. V, its gradient and its optimizer state are
replicated. A checkpoint gathers nothing: each rank writes its own U rows (and
U's optimizer accumulators), rank 0 the replicated V.
"""

from __future__ import annotations

import argparse
import sys

from ..layout import Layout
from ..metrics import spread
from ..models.mf import packed_width
from ..reduce import REDUCE_BUDGET_BYTES, item_block_rows

F64, I32, I64 = 8, 4, 8
ACCUMULATORS = {"adaptive": 0, "inverse_time": 0, "constant": 0, "momentum": 1, "adagrad": 1, "adam": 2}


def per_rank_bytes(users: int, items: int, rank: int, size: int, nnz: float, chunk_rows: int = 4096,
                   solver: str = "gd", optimizer: str = "adam", reduction: str = "exact") -> dict:
    """Projected bytes of the busiest rank by component (ratings spread evenly over users)."""
    layout = Layout(users, chunk_rows, size, 0)
    users_r = max(layout.row_counts())
    chunks_r = layout.max_local_chunks
    nnz_r = nnz * users_r / users
    u_block = users_r * rank * F64
    v = items * rank * F64
    # ratings: users, items (int32), vals (float64); index: perm (int64), users by item (int32),
    # user and item segment ids/starts (int64), bounded by users and by min(items, ratings) per chunk.
    per_chunk_items = min(items, nnz_r / max(chunks_r, 1))
    ratings = nnz_r * (I32 + I32 + F64) + nnz_r * (I64 + I32) + 2 * I64 * (users_r + chunks_r * per_chunk_items)
    width = rank if solver == "gd" else packed_width(rank)
    rows = item_block_rows(layout, reduction)
    reduce = min(items, max(1, REDUCE_BUDGET_BYTES // (rows * width * F64))) * width * F64 * rows
    if solver == "gd":
        acc = ACCUMULATORS.get(optimizer, 2)
        opt = acc * (u_block + v)
        work = u_block + v + nnz_r * F64  # gradients and residuals
    else:
        opt = 0
        work = v  # the next V
    reg = (users_r + 2 * items) * F64  # ALS-WR's λ per user and per item, and the exact item counts
    total = u_block + v + ratings + opt + work + reduce + reg
    return {"users_per_rank": users_r, "U_block_bytes": u_block, "U_total_bytes": users * rank * F64,
            "V_bytes": v, "ratings_bytes": ratings, "optimizer_state_bytes": opt, "work_buffer_bytes": work,
            "reduce_buffer_bytes": reduce, "reg_bytes": reg, "total_bytes": total,
            # rank 0 writes the replicated parts (V and its optimizer state); U rows go from their owners
            "checkpoint_root_bytes": v * (1 + (ACCUMULATORS.get(optimizer, 2) if solver == "gd" else 0))}


KEYS = ("peak_rss_bytes", "users", "U_block_bytes", "V_bytes", "ratings_bytes", "optimizer_state_bytes",
        "work_buffer_bytes", "reduce_buffer_bytes", "exchange_bytes")


def measured(every: list[dict], u_total_bytes: int) -> dict:
    """The summary's ``memory`` section from every rank's figures (rank order)."""
    memory = {key: {"per_rank": [e[key] for e in every], **spread([e[key] for e in every])} for key in KEYS}
    memory["U_total_bytes"] = u_total_bytes
    memory["U_replicated"] = False
    return memory


def sizes_parser(prog: str, doc: str, solver: str) -> argparse.ArgumentParser:
    """The options both memory models take (this one and :mod:`lepton_hpc.recommender.memory`)."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=float, required=True, help="number of users")
    p.add_argument("--items", type=float, required=True, help="number of items")
    p.add_argument("--rank", type=int, required=True, help="rank of the factors")
    p.add_argument("--ranks", type=int, required=True, help="MPI ranks")
    p.add_argument("--density", type=float, default=None, help="share of observed entries")
    p.add_argument("--nnz", type=float, default=None, help="number of ratings (instead of --density)")
    p.add_argument("--chunk-rows", type=int, default=4096, help="users per logical chunk (data.chunk_rows)")
    p.add_argument("--solver", choices=["gd", "als"], default=solver, help="train.solver")
    p.add_argument("--optimizer", default="adam", help="optimizer.name (gd: its accumulators count)")
    return p


def parse_sizes(p: argparse.ArgumentParser, argv) -> tuple | None:
    """(args, users, items, nnz), or None after one sentence for bad sizes."""
    a = p.parse_args(argv)
    users, items = int(a.users), int(a.items)
    if min(users, items, a.rank, a.ranks) <= 0 or (a.density is None) == (a.nnz is None):
        print("error: give positive sizes and exactly one of --density and --nnz", file=sys.stderr)
        return None
    return a, users, items, (a.nnz if a.nnz is not None else a.density * users * items)


def main(argv=None) -> int:
    p = sizes_parser("python -m lepton_hpc.problems.mf_memory", __doc__, "gd")
    p.add_argument("--reduction", choices=["exact", "fast"], default="exact", help="comm.reduction")
    parsed = parse_sizes(p, argv)
    if parsed is None:
        return 1
    a, users, items, nnz = parsed
    b = per_rank_bytes(users, items, a.rank, a.ranks, nnz, a.chunk_rows, a.solver, a.optimizer, a.reduction)
    print(f"{users} users x {items} items, rank {a.rank}, {nnz:.3g} ratings, {a.ranks} ranks "
          f"({a.solver}, {a.optimizer if a.solver == 'gd' else 'no optimizer'}, {a.reduction}); busiest rank:")
    for key, value in b.items():
        print(f"  {key:24s} {value:>14,.0f}" + (f"  ({value / 2**20:,.1f} MiB)" if key.endswith("bytes") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
