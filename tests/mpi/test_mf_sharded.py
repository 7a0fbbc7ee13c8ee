"""Item-sharded factors (``model.shard_items = true``) in-process at the suite's rank count: the serial
numpy reference (reg_scaling count and none; gd, and ALS items first), the replicated run's bits, a
one-rank run's bits, resume across rank counts and modes, V checkpointed by its owners, the plan's
exact item counts."""

from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

from lepton_hpc import checkpoint, reduce
from lepton_hpc.engine.job import run_job
from lepton_hpc.engine.run import RunContext
from lepton_hpc.layout import block_range
from lepton_hpc.problems.mf import init_factors, init_item_rows
from lepton_hpc.problems import mf_exchange
from lepton_hpc.problems.mf_exchange import chunk_tree_sum
from lepton_hpc.reduce import pairwise_sum

from passert import parallel_assert, run_on_root
from test_mf import CASES, RANK, config, ratings, reference, shared_dir

WORLD = MPI.COMM_WORLD
SHARD = "model.shard_items=true"


def train(cfg, comm, out, resume=None):
    """(exit code, summary, full U, full V) on every rank; V read from its owners' row-sharded files."""
    code, s = run_job(cfg, comm, out, resume, ctx=RunContext(cfg, comm, out, resume))
    s = comm.bcast(s, root=0)
    snap = checkpoint.latest_local(Path(out) / "checkpoints")
    return code, s, snap.rows("model/U", 0, s["data"]["users"]), snap.rows("model/V", 0, s["data"]["items"])


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("case", list(CASES))
def test_sharded_matches_reference_replicated_and_one_rank_bit_for_bit(case):
    out = shared_dir()
    cfg = config(*CASES[case], SHARD)
    code, s, U, V = train(cfg, WORLD, out / "sharded")
    _, s_rep, Ur, Vr = train(config(*CASES[case]), WORLD, out / "replicated")
    _, _, U1, V1 = train(cfg, MPI.COMM_SELF, out / f"self{WORLD.rank}")
    U_ref, V_ref = reference(cfg)
    parallel_assert(WORLD, code == 0 and s["shard_items"] and not s_rep["shard_items"])
    parallel_assert(WORLD, U.tobytes() == Ur.tobytes() and V.tobytes() == Vr.tobytes(),
                    lambda: f"sharded differs from replicated: max |dU| {np.max(np.abs(U - Ur))}, "
                            f"max |dV| {np.max(np.abs(V - Vr))}")
    parallel_assert(WORLD, U.tobytes() == U1.tobytes() and V.tobytes() == V1.tobytes(),
                    "the factors differ from a one-rank run's bits")
    parallel_assert(WORLD, np.allclose(U, U_ref, rtol=1e-9, atol=1e-12)
                    and np.allclose(V, V_ref, rtol=1e-9, atol=1e-12),
                    lambda: f"max |U - U_ref| = {np.max(np.abs(U - U_ref))}, "
                            f"max |V - V_ref| = {np.max(np.abs(V - V_ref))}")
    def loaded_alike():  # lepton_hpc.load reads V from its owners' files
        import lepton_hpc

        a, b = lepton_hpc.load(out / "sharded"), lepton_hpc.load(out / "replicated")
        return a.V.tobytes() == b.V.tobytes() == V.tobytes() and a.U.tobytes() == U.tobytes()

    parallel_assert(WORLD, run_on_root(WORLD, loaded_alike), "lepton_hpc.load of the sharded run differs")
    # the objective sums |V|^2 in another order than the replicated run: equal to rounding
    assert s["steps"] == s_rep["steps"] == 4
    assert s["final_loss"] == pytest.approx(s_rep["final_loss"], rel=1e-12)
    assert s["train_rmse"] == s_rep["train_rmse"] and s["test_rmse"] == s_rep["test_rmse"]
    v_rows = [(hi - lo) * RANK * 8 for lo, hi in (block_range(23, WORLD.size, q) for q in range(WORLD.size))]
    assert s["memory"]["V_bytes"]["per_rank"] == v_rows


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("solver", ["gd", "als"])
def test_sharded_resume_on_another_rank_count_and_v_written_by_its_owners(solver):
    out = shared_dir()
    args = [f"train.solver={solver}", "checkpoint.every=2", SHARD]
    _, _, U, V = train(config(*args, "train.steps=5"), WORLD, out / "straight")
    run_on_root(WORLD, lambda: train(config(*args, "train.steps=3"), MPI.COMM_SELF, out / "a")[0])
    code, s, Ua, Va = train(config(*args, "train.steps=5"), WORLD, out / "a", resume="auto")
    train(config(*args, "train.steps=3"), WORLD, out / "b")

    def resume_alone():
        _, _, Ub, Vb = train(config(*args, "train.steps=5"), MPI.COMM_SELF, out / "b", resume="auto")
        return Ub.tobytes() == U.tobytes() and Vb.tobytes() == V.tobytes()

    ok_b = run_on_root(WORLD, resume_alone)
    parallel_assert(WORLD, code == 0 and Ua.tobytes() == U.tobytes() and Va.tobytes() == V.tobytes() and ok_b)
    snap = checkpoint.latest_local(out / "a" / "checkpoints")
    pieces = snap.marker["sharded"]["model/V"]["pieces"]
    owners = [block_range(23, WORLD.size, q) for q in range(WORLD.size)]
    assert [(a, b) for _, a, b in pieces] == owners  # each owner wrote its own item rows
    with checkpoint.h5py.File(snap.path, "r") as f:
        assert "model" not in f or "V" not in f["model"]  # nothing gathered to rank 0
    if solver == "gd":
        assert snap.shape("optimizer/moment1") == (23, RANK) and "optimizer/moment1" in snap.marker["sharded"]


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("solver", ["gd", "als"])
def test_item_groups_and_exchange_rounds_keep_the_bits(monkeypatch, solver):
    out = shared_dir()
    _, s, U, V = train(config(f"train.solver={solver}", SHARD), WORLD, out / "whole")
    monkeypatch.setattr(reduce, "REDUCE_BUDGET_BYTES", 3000)  # a few items per group
    monkeypatch.setattr(mf_exchange, "EXCHANGE_BUDGET_BYTES", 8 * RANK * 30)  # fetches of 30 rows a round
    _, sg, Ug, Vg = train(config(f"train.solver={solver}", SHARD), WORLD, out / "groups")
    monkeypatch.undo()
    parallel_assert(WORLD, Ug.tobytes() == U.tobytes() and Vg.tobytes() == V.tobytes())
    assert s["exchange_rounds"] == [1, 1] and min(sg["exchange_rounds"]) > 1, sg["exchange_rounds"]


@pytest.mark.mpi(min_size=1)
def test_als_resumes_across_modes_and_gd_refuses_clearly():
    from lepton_hpc.comm import JobError

    out = shared_dir()
    _, _, U, V = train(config("train.solver=als", "train.steps=4"), WORLD, out / "straight")
    train(config("train.solver=als", "train.steps=2", "checkpoint.every=2"), WORLD, out / "a")
    code, _, Ua, Va = train(config("train.solver=als", "train.steps=4", SHARD), WORLD, out / "a", resume="auto")
    parallel_assert(WORLD, code == 0 and Ua.tobytes() == U.tobytes() and Va.tobytes() == V.tobytes())
    train(config("train.steps=2", "checkpoint.every=2", SHARD), WORLD, out / "g")
    with pytest.raises(JobError, match=r"written with model\.shard_items=true and train\.solver=gd .*resume "
                                       r"with the same model\.shard_items or start a fresh --out"):
        run_job(config("train.steps=4"), WORLD, out / "g", "auto")


@pytest.mark.mpi(min_size=1)
def test_plan_item_counts_are_exact_and_rows_init_matches_the_whole_draw():
    from lepton_hpc.problems.mf import MFProblem

    cfg = config(SHARD, "data.chunk_rows=5")
    ctx = RunContext(cfg, WORLD, shared_dir() / "p")
    pb = MFProblem(ctx)
    pb.setup()
    plan = pb.item_side.plan
    _, (r, c, y) = ratings(cfg)
    want = np.bincount(c, minlength=23)[plan.item_lo:plan.item_hi]
    parallel_assert(WORLD, np.array_equal(plan.item_counts, want), lambda: f"{plan.item_counts} != {want}")
    _, V = init_factors(cfg.data.seed, RANK, 23, [], 50, 5)
    parallel_assert(WORLD, pb.V.tobytes() == V[plan.item_lo:plan.item_hi].tobytes())
    assert init_item_rows(1, 3, 10, 4, 9, block=3).tobytes() == init_item_rows(1, 3, 10, 0, 10)[4:9].tobytes()
    pb.close()


def test_chunk_tree_sum_is_the_dense_tree_of_zero_padded_chunks():
    rng = np.random.default_rng(0)
    for n_chunks, share in [(n, s) for n in (1, 2, 3, 5, 8, 13, 40) for s in (0.1, 0.5, 0.9)]:
        dense = np.zeros((4, n_chunks, 3))
        mask = rng.random((4, n_chunks)) < share  # sparse cells: the sparse tree; most cells: the dense one
        dense[mask] = rng.standard_normal((int(mask.sum()), 3)) * 10.0 ** rng.integers(-8, 8, (int(mask.sum()), 1))
        dense[0, 0] = -0.0  # signed zeros behave as in the dense tree
        mask[0, 0] = True
        item, chunk = np.nonzero(mask)
        items, got = chunk_tree_sum(item, chunk, dense[mask], n_chunks)
        want = np.stack([pairwise_sum(dense[j]) for j in items])
        assert list(items) == sorted(set(item)) and got.tobytes() == want.tobytes(), n_chunks


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("extra,message", [
    (["model.rank=24"], r"model\.rank=24 exceeds min\(users, items\) = min\(50, 23\) = 23"),
    (["train.batch_size=10"], r"train\.batch_size=10: model\.kind=mf trains full-batch; set train\.batch_size=0"),
])
def test_the_same_errors_on_every_rank_together(extra, message):
    from lepton_hpc.comm import JobError

    out = shared_dir() / "r"
    with pytest.raises(JobError, match=message):
        run_job(config(*extra, SHARD), WORLD, out)
    assert not out.exists()
