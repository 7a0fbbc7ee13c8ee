"""Mini-batches of contiguous row blocks: same bits on any rank count, exact resume."""

import numpy as np

from mpirun import final_params, run_mpi, summary

ARGS = ["--set", "model.kind=logistic", "--set", "data.rows=20011", "--set", "data.cols=8",
        "--set", "data.chunk_rows=1024", "--set", "train.batch_size=2048", "--set", "train.batch_block_rows=256",
        "--set", "optimizer.name=constant", "--set", "optimizer.learning_rate=0.5", "--set", "train.tol=0",
        "--set", "train.log_every=5", "--set", "checkpoint.every=7", "--set", "data.test_fraction=0.2"]


def test_block_batches_are_rank_count_independent_and_resume_exactly(tmp_path):
    params = []
    for n in (1, 2, 3):
        out = tmp_path / f"n{n}"
        proc = run_mpi(n, ["--out", out, *ARGS, "--set", "train.steps=25"])
        assert proc.returncode == 0, proc.stderr
        params.append(final_params(out))
    assert params[0] == params[1] == params[2]
    s = summary(tmp_path / "n3")
    assert s["batch_size"] == 2048 and s["metrics"]["test"]["accuracy"] > 0.8
    split = tmp_path / "split"
    assert run_mpi(3, ["--out", split, *ARGS, "--set", "train.steps=14"]).returncode == 0
    proc = run_mpi(2, ["--out", split, *ARGS, "--set", "train.steps=25", "--resume", "auto"])
    assert proc.returncode == 0, proc.stderr
    assert final_params(split) == params[0]


def test_block_size_must_divide_the_chunk(tmp_path):
    proc = run_mpi(2, ["--out", tmp_path / "r", *ARGS, "--set", "train.batch_block_rows=300"])
    assert proc.returncode == 1
    assert "train.batch_block_rows=300 must divide data.chunk_rows=1024" in proc.stderr


def test_blocks_cover_every_row_once_per_epoch():
    from lepton_hpc.config import build
    from lepton_hpc.data.shard import Shard
    from lepton_hpc.sampling import BlockBatches

    cfg = build({}, "t", ["data.rows=5000", "data.cols=2", "data.chunk_rows=512"])
    seen = []
    for rank in range(3):
        sh = Shard(cfg.data, 3, rank)
        bb = BlockBatches(sh, 1000, seed=4, block_rows=128)
        for step in range(bb.steps_per_epoch):
            seen.extend(bb.blocks(step).tolist())
    assert sorted(seen) == list(range(-(-5000 // 128)))
    # the next epoch visits them in another order
    sh = Shard(cfg.data, 1, 0)
    bb = BlockBatches(sh, 1000, seed=4, block_rows=128)
    first = np.concatenate([bb.blocks(s) for s in range(bb.steps_per_epoch)])
    second = np.concatenate([bb.blocks(bb.steps_per_epoch + s) for s in range(bb.steps_per_epoch)])
    assert sorted(first) == sorted(second) and not np.array_equal(
        [bb.blocks(0)], [bb.blocks(bb.steps_per_epoch)])
