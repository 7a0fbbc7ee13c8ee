"""Bytes per rank of a recommender run, replicated or item-sharded V (``model.shard_items``).

    python -m lepton_hpc.recommender.memory --users 1e8 --items 1e7 --rank 64 --nnz 1e10 --ranks 1024 \\
        --solver als --shard-items

prints the busiest rank's bytes by component and what dominates. Ratings are taken as spread
evenly over users and items (as a uniform random pattern would be). Replicated V is
:func:`lepton_hpc.problems.mf_memory.per_rank_bytes`; item-sharded V (:func:`sharded_per_rank_bytes`)
follows :mod:`lepton_hpc.problems.mf_exchange`: the rank's own V rows, its ratings twice (by user,
and the in-block by item on their owner), the exchange plans, and the fetch buffers of one round
(fetched rows, the rows sent and their transposed copy), bounded by ``EXCHANGE_BUDGET_BYTES``.
Transients (one round's fetch, one group of item sums, the optimizer step's temporaries) are
counted as if they were live at once: a mild upper bound.
"""

from __future__ import annotations

import math
import sys

from ..layout import Layout
from ..models.mf import packed_width
from ..problems import mf_exchange
from ..problems.mf_memory import ACCUMULATORS, parse_sizes, per_rank_bytes, sizes_parser
from .. import reduce as R

F64, I32, I64 = 8, 4, 8


def _distinct(n_values: float, draws: float) -> float:
    """Expected distinct values among ``draws`` uniform draws from ``n_values``."""
    return n_values * -math.expm1(-draws / n_values) if n_values > 0 else 0.0


def sharded_per_rank_bytes(users: int, items: int, rank: int, size: int, nnz: float, chunk_rows: int = 4096,
                           solver: str = "als", optimizer: str = "adam", test_fraction: float = 0.1) -> dict:
    """Projected bytes of the busiest rank with item-sharded V, by component."""
    layout = Layout(users, chunk_rows, size, 0)
    users_r, chunks_r, n_chunks = max(layout.row_counts()), layout.max_local_chunks, layout.n_chunks
    items_r = -(-items // size)
    nnz_r = nnz * users_r / users
    train_r = nnz_r * (1 - test_fraction)
    n_in = nnz * (1 - test_fraction) * items_r / items  # in-block ratings on an item's owner
    n_seg = items_r * _distinct(n_chunks, n_in / items_r)  # (item, user chunk) pairs of the in-block
    k = rank
    budget_rows = max(1, mf_exchange.EXCHANGE_BUDGET_BYTES // (F64 * k))
    # user side: rounds of whole chunks, each fetching the distinct items its ratings touch
    per_chunk = _distinct(items, nnz_r / max(chunks_r, 1))
    group = max(1, min(chunks_r, int(budget_rows // max(per_chunk, 1))))
    v_rounds = -(-chunks_r // group)
    v_round_rows = _distinct(items, nnz_r * group / max(chunks_r, 1))
    # item side: rounds of whole items holding at most budget_rows ratings, fetching their distinct users
    u_rounds = max(1, math.ceil(n_in / budget_rows))
    u_round_rows = _distinct(users, n_in / u_rounds)
    u_block, v_block = users_r * k * F64, items_r * k * F64
    ratings = nnz_r * (I32 + I32 + F64) + nnz_r * I32 + 2 * I64 * users_r  # shard, local item ids, user index
    # in-block: ratings (value, fetched-user index) by item, (item, chunk) segments; gd also keeps the
    # two permutations (int32) that carry residuals to the owners
    in_block = n_in * (F64 + I32) + n_seg * 4 * I64 + items_r * 3 * I64
    if solver == "gd":
        in_block += (train_r + n_in) * I32
    plans = 2 * I64 * (v_rounds * v_round_rows + u_rounds * u_round_rows)  # rows asked and rows to send
    fetch = 3 * F64 * k * (v_round_rows + u_round_rows)  # one round: fetched rows, rows sent, transposed
    width = packed_width(k) if solver == "als" else k
    reduce = min(n_seg, max(1, R.REDUCE_BUDGET_BYTES // (4 * F64 * width))) * 4 * F64 * width + items_r * 2 * F64
    if solver == "gd":
        acc = ACCUMULATORS.get(optimizer, 2)
        opt = acc * (u_block + v_block)
        # gradients; residuals sent and received; the optimizer step's temporaries (U's step is the larger)
        work = u_block + 2 * v_block + 2 * (train_r + n_in) * F64 + (acc + 2) * max(u_block, v_block)
    else:
        opt, work = 0, v_block  # the next V block
    parts = {"U_block_bytes": u_block, "V_bytes": v_block, "ratings_bytes": ratings, "in_block_bytes": in_block,
             "exchange_plan_bytes": plans, "fetch_buffer_bytes": fetch, "optimizer_state_bytes": opt,
             "work_buffer_bytes": work, "reduce_buffer_bytes": reduce,
             "reg_bytes": (users_r + items_r) * F64}  # ALS-WR's λ of the own users and own items
    total = sum(parts.values())
    return {"users_per_rank": users_r, "items_per_rank": items_r, "exchange_rounds": [v_rounds, u_rounds],
            **parts, "total_bytes": total, "U_total_bytes": users * k * F64, "V_total_bytes": items * k * F64,
            "dominant": max(parts, key=parts.get), "checkpoint_root_bytes": 0}


def project(users, items, rank, size, nnz, chunk_rows=4096, solver="als", optimizer="adam",
            shard_items=True, reduction="exact") -> dict:
    if shard_items:
        return sharded_per_rank_bytes(users, items, rank, size, nnz, chunk_rows, solver, optimizer)
    b = per_rank_bytes(users, items, rank, size, nnz, chunk_rows, solver, optimizer, reduction)
    parts = {k: v for k, v in b.items() if k.endswith("_bytes") and k not in ("total_bytes", "U_total_bytes",
                                                                               "checkpoint_root_bytes")}
    return {**b, "dominant": max(parts, key=parts.get)}


def main(argv=None) -> int:
    p = sizes_parser("python -m lepton_hpc.recommender.memory", __doc__, "als")
    p.add_argument("--shard-items", action="store_true", help="model.shard_items = true")
    p.add_argument("--compare", action="store_true", help="also print the replicated projection")
    parsed = parse_sizes(p, argv)
    if parsed is None:
        return 1
    a, users, items, nnz = parsed
    modes = [a.shard_items] + ([not a.shard_items] if a.compare else [])
    for shard in modes:
        b = project(users, items, a.rank, a.ranks, nnz, a.chunk_rows, a.solver, a.optimizer, shard)
        print(f"{users:,} users x {items:,} items, rank {a.rank}, {nnz:.3g} ratings, {a.ranks} ranks, "
              f"{a.solver}, V {'item-sharded' if shard else 'replicated'}; busiest rank:")
        for key, value in b.items():
            if isinstance(value, (int, float)):
                tail = f"  ({value / 2**30:,.2f} GiB)" if key.endswith("bytes") else ""
                print(f"  {key:24s} {value:>18,.0f}{tail}")
        print(f"  dominant: {b['dominant']} ({b[b['dominant']] / b['total_bytes']:.0%} of the total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
