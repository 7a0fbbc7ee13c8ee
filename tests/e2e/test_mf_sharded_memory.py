"""The item-sharded recommender's memory model against the measured peak RSS of real runs under mpiexec.

The model (:mod:`lepton_hpc.recommender.memory`) projects the bytes of the run's arrays; the
process itself (interpreter, numpy, MPI, h5py) is measured by a tiny run of the same job and
added. Run with ``pytest -s`` to see the figures.
"""

import numpy as np

from lepton_hpc.recommender.memory import sharded_per_rank_bytes
from mpirun import run_mpi, summary

ITEMS, RANK, DENSITY = 1000, 32, 0.01


def run(tmp_path, users: int) -> dict:
    out = tmp_path / f"u{users}"
    args = ["--out", out, "--set", "model.kind=mf", "--set", f"data.rows={users}", "--set", f"data.cols={ITEMS}",
            "--set", f"data.density={DENSITY}", "--set", f"model.rank={RANK}", "--set", "data.true_rank=8",
            "--set", "train.solver=gd", "--set", "optimizer.name=adam", "--set", "train.steps=2",
            "--set", "model.shard_items=true", "--set", "checkpoint.every=0"]
    proc = run_mpi(2, args, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return summary(out)["memory"]


def test_projection_is_within_25_percent_of_the_measured_peak_rss(tmp_path):
    users = 150_000
    model = sharded_per_rank_bytes(users, ITEMS, RANK, 2, DENSITY * users * ITEMS, solver="gd", optimizer="adam")
    tiny_users = 1000
    tiny = sharded_per_rank_bytes(tiny_users, ITEMS, RANK, 2, DENSITY * tiny_users * ITEMS, solver="gd")
    base = np.array(run(tmp_path, tiny_users)["peak_rss_bytes"]["per_rank"]) - tiny["total_bytes"]
    mem = run(tmp_path, users)
    rss = np.array(mem["peak_rss_bytes"]["per_rank"])
    projected = base + model["total_bytes"]
    print(f"\nshard_items, {users} users x {ITEMS} items, rank {RANK}, -n 2: peak RSS "
          f"{(rss / 2**20).round(1).tolist()} MiB, projected {(projected / 2**20).round(1).tolist()} MiB "
          f"(arrays {model['total_bytes'] / 2**20:.1f} MiB + process {(base / 2**20).round(1).tolist()} MiB); "
          f"dominant {model['dominant']}")
    assert np.all(np.abs(projected - rss) <= 0.25 * rss), (projected, rss)
    # the model's own components are the run's: U, V, Adam's moments of both
    assert mem["U_block_bytes"]["max"] == model["U_block_bytes"]
    assert mem["V_bytes"]["max"] == model["V_bytes"] and sum(mem["V_bytes"]["per_rank"]) == ITEMS * RANK * 8
    assert mem["optimizer_state_bytes"]["max"] == model["optimizer_state_bytes"]
    measured_plan = mem["ratings_bytes"]["max"] + mem["exchange_bytes"]["max"]
    modelled_plan = (model["ratings_bytes"] + model["in_block_bytes"] + model["exchange_plan_bytes"]
                     + model["fetch_buffer_bytes"] * 2 / 3)  # the transposed copy is transient
    assert abs(modelled_plan - measured_plan) <= 0.25 * measured_plan, (modelled_plan, measured_plan)
