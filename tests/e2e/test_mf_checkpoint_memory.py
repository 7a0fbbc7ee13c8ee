"""The recommender at 200,000 users, rank 32, under mpiexec: U is the dominant array, it is
checkpointed row-sharded by its owners (nothing gathered on rank 0), and the run resumes on
another rank count to the bits of a straight run.

Run with ``pytest -s`` to see the measured peak RSS per rank.
"""

import statistics

import numpy as np

from lepton_hpc import checkpoint
from mpirun import run_mpi, summary

USERS, ITEMS, RANK = 200_000, 200, 32
ARGS = ["--set", "model.kind=mf", "--set", f"data.rows={USERS}", "--set", f"data.cols={ITEMS}",
        "--set", "data.density=0.01", "--set", f"model.rank={RANK}", "--set", "data.true_rank=8",
        "--set", "data.chunk_rows=2500",  # 80 chunks: the same users on every rank at -n 4 (no imbalance)
        "--set", "train.solver=gd", "--set", "optimizer.name=adam",  # U's moments are sharded too
        "--set", "optimizer.learning_rate=0.05", "--set", "train.tol=0", "--set", "checkpoint.every=1",
        "--set", "checkpoint.keep=2"]


def factors(run_dir) -> tuple[bytes, bytes]:
    snap = checkpoint.latest_local(run_dir / "checkpoints")
    assert snap.shape("model/U") == (USERS, RANK)
    return snap.rows("model/U", 0, USERS).tobytes(), snap.replicated("model/V")["model/V"].tobytes()


def test_sharded_checkpoint_keeps_rank_0_lean_and_resumes_on_another_rank_count(tmp_path):
    run = tmp_path / "run"
    proc = run_mpi(4, ["--out", run, *ARGS, "--set", "train.steps=2"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = summary(run)
    rss = s["peak_rss_bytes"]["per_rank"]
    u_total = s["memory"]["U_total_bytes"]
    assert u_total == USERS * RANK * 8 and len(rss) == 4
    assert s["memory"]["U_block_bytes"]["per_rank"] == [u_total // 4] * 4
    excess = rss[0] - statistics.median(rss)
    print(f"\nMF {USERS} users x rank {RANK} at -n 4: U {u_total / 2**20:.1f} MiB; peak RSS per rank "
          f"{[round(r / 2**20, 1) for r in rss]} MiB; rank 0 over the median {excess / 2**20:.1f} MiB "
          f"(limit U/4 = {u_total / 4 / 2**20:.1f} MiB)")
    assert excess < u_total / 4, (rss, u_total)
    # rank 0's file holds the replicated parts only; U and its moments lie in the owners' files
    step = checkpoint.list_steps(run / "checkpoints")[-1]
    assert checkpoint.main_file(run / "checkpoints", step).stat().st_size < u_total / 4
    assert len(list(checkpoint.shard_dir(run / "checkpoints", step).glob("rank-*.h5"))) == 4

    proc = run_mpi(3, ["--out", run, *ARGS, "--set", "train.steps=4", "--resume", "auto"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from step 2 (written by 4 ranks)" in proc.stdout
    straight = tmp_path / "straight"
    proc = run_mpi(2, ["--out", straight, *ARGS, "--set", "train.steps=4"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    U, V = factors(run)
    U_ref, V_ref = factors(straight)
    assert U == U_ref and V == V_ref
    assert np.all(np.isfinite(np.frombuffer(U))) and summary(run)["steps"] == 4
