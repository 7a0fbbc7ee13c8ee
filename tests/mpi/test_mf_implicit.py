"""Implicit-feedback ALS in-process at the suite's rank count: a dense serial numpy reference,
bitwise identity with a one-rank run (factors and ranking metrics), resume across rank counts;
item-sharded V (``model.shard_items = true``): the replicated run's bits and metrics, resume."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

from lepton_hpc import checkpoint
from lepton_hpc.config import build
from lepton_hpc.data.ratings import RatingsShard
from lepton_hpc.engine.job import run_job
from lepton_hpc.problems import mf_ranking
from lepton_hpc.problems.mf import init_factors

from passert import parallel_assert, run_on_root

WORLD = MPI.COMM_WORLD
METRICS = ("precision_at_5", "recall_at_5", "ndcg_at_5", "auc", "users_evaluated", "final_loss")


def shared_dir() -> Path:
    return Path(run_on_root(WORLD, lambda: tempfile.mkdtemp(prefix="mfi-")))


def config(*overrides):
    raw = {"data": {"rows": 50, "cols": 23, "density": 0.2, "true_rank": 2, "seed": 3, "test_fraction": 0.2,
                    "chunk_rows": 8, "implicit": True},
           "model": {"kind": "mf", "rank": 3, "reg": 0.2, "feedback": "implicit", "alpha": 3.0, "top_k": 5},
           "train": {"solver": "als", "steps": 4, "tol": 0.0, "log_every": 2},
           "checkpoint": {"every": 0, "keep": 2}}
    return build(raw, "mfitest", list(overrides))


def train(cfg, comm, out, resume=None):
    code, s = run_job(cfg, comm, out, resume)
    s = comm.bcast(s, root=0)
    snap = checkpoint.latest_local(Path(out) / "checkpoints")
    return (code, s, snap.rows("model/U", 0, s["data"]["users"]),
            snap.rows("model/V", 0, s["data"]["items"]))  # V replicated or row-sharded by its owners


def reference(cfg):
    """Dense serial HKV: every pair weighted, one solve (or textbook CG) per row, users then items."""
    sh = RatingsShard(cfg.data, 1, 0)
    R = np.zeros((sh.n_users, sh.n_items))
    for b in sh.blocks:
        R[b.train[0] + b.user_lo, b.train[1]] = b.train[2]
    m, k = cfg.model, cfg.model.rank
    C, P = 1 + m.alpha * R, (R > 0).astype(float)
    lam = lambda n: m.reg * (np.maximum(n, 1) if m.reg_scaling == "count" else np.ones_like(n))  # noqa: E731
    lam_u, lam_v = lam((R > 0).sum(axis=1)), lam((R > 0).sum(axis=0))
    U, V = init_factors(cfg.data.seed, k, sh.n_items, range(sh.n_chunks), sh.n_users, sh.chunk_rows)
    for _ in range(cfg.train.steps):
        for F, G, Cm, Pm, lam_f in ((U, V, C, P, lam_u), (V, U, C.T, P.T, lam_v)):
            for j in range(F.shape[0]):
                if not Pm[j].any():
                    F[j] = 0.0
                    continue
                A = G.T @ (Cm[j][:, None] * G) + lam_f[j] * np.eye(k)
                b = G.T @ (Cm[j] * Pm[j])
                F[j] = np.linalg.solve(A, b) if m.inner_solver == "cholesky" else cg(A, b, F[j], m.cg_steps)
    return sh, U, V


def cg(A, b, x, steps):
    x = x.copy()
    r = b - A @ x
    p, rs = r.copy(), r @ r
    for _ in range(steps):
        if rs < 1e-20:
            break
        Ap = A @ p
        a = rs / (p @ Ap)
        x, r = x + a * p, r - a * Ap
        rs_new = r @ r
        if rs_new < 1e-20:
            break
        p, rs = r + rs_new / rs * p, rs_new
    return x


CASES = {
    "cholesky-count": [],
    "cholesky-none": ["model.reg_scaling=none"],
    "cg": ["model.inner_solver=cg", "model.cg_steps=2"],
    "empty-shards": ["data.chunk_rows=25"],  # 2 chunks: at 3 and 4 ranks some ranks own none
}


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_dense_reference_and_one_rank_bit_for_bit(case):
    cfg = config(*CASES[case])
    out = shared_dir()
    code, s, U, V = train(cfg, WORLD, out / "world")
    _, s1, U1, V1 = train(cfg, MPI.COMM_SELF, out / f"self{WORLD.rank}")
    sh, U_ref, V_ref = reference(cfg)
    parallel_assert(WORLD, code == 0, lambda: f"exit code {code}")
    parallel_assert(WORLD, U.tobytes() == U1.tobytes() and V.tobytes() == V1.tobytes(),
                    "the factors differ from a one-rank run's bits")
    parallel_assert(WORLD, all(s[key] == s1[key] for key in METRICS), "the metrics differ from a one-rank run's")
    parallel_assert(WORLD, np.allclose(U, U_ref, rtol=1e-9, atol=1e-11)
                    and np.allclose(V, V_ref, rtol=1e-9, atol=1e-11),
                    lambda: f"max |U - U_ref| = {np.max(np.abs(U - U_ref))}, "
                            f"max |V - V_ref| = {np.max(np.abs(V - V_ref))}")
    sums = sum(mf_ranking.chunk_sums(U_ref[b.user_lo:b.user_lo + b.n_users], V_ref, b.train[:2], b.test[:2], 5)
               for b in sh.blocks)
    want = mf_ranking.means(sums, 5)
    assert s["users_evaluated"] == want["users_evaluated"] > 0
    assert np.allclose([s[key] for key in METRICS[:4]], [want[key] for key in METRICS[:4]], rtol=1e-8)
    assert s["feedback"] == "implicit" and s["steps"] == 4 and s["world_size"] == WORLD.size


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("inner", ["cholesky", "cg"])
def test_resume_on_another_rank_count_is_bitwise_exact(inner):
    out = shared_dir()
    args = [f"model.inner_solver={inner}", "checkpoint.every=2"]
    _, s, U, V = train(config(*args, "train.steps=5"), WORLD, out / "straight")
    run_on_root(WORLD, lambda: train(config(*args, "train.steps=3"), MPI.COMM_SELF, out / "a")[0])
    code, sa, Ua, Va = train(config(*args, "train.steps=5"), WORLD, out / "a", resume="auto")
    parallel_assert(WORLD, code == 0 and Ua.tobytes() == U.tobytes() and Va.tobytes() == V.tobytes())
    assert sa["steps"] == 5 and all(sa[key] == s[key] for key in METRICS)


@pytest.mark.mpi(min_size=1)
def test_an_explicit_checkpoint_is_not_resumed_as_implicit():
    from lepton_hpc.comm import JobError

    out = shared_dir()
    train(config("model.feedback=explicit"), WORLD, out / "r")  # the same counts, fitted as ratings
    with pytest.raises(JobError, match="written with model.feedback=explicit, this job uses implicit"):
        run_job(config("train.steps=6"), WORLD, out / "r", resume="auto")


SHARD = "model.shard_items=true"


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("case", list(CASES))
def test_sharded_matches_replicated_one_rank_and_reference_bit_for_bit(case):
    out = shared_dir()
    cfg = config(*CASES[case], SHARD)
    code, s, U, V = train(cfg, WORLD, out / "sharded")
    _, s_rep, Ur, Vr = train(config(*CASES[case]), WORLD, out / "replicated")
    _, s1, U1, V1 = train(cfg, MPI.COMM_SELF, out / f"self{WORLD.rank}")
    _, U_ref, V_ref = reference(cfg)
    parallel_assert(WORLD, code == 0 and s["shard_items"] and not s_rep["shard_items"])
    parallel_assert(WORLD, U.tobytes() == Ur.tobytes() and V.tobytes() == Vr.tobytes(),
                    lambda: f"sharded differs from replicated: max |dU| {np.max(np.abs(U - Ur))}, "
                            f"max |dV| {np.max(np.abs(V - Vr))}")
    parallel_assert(WORLD, U.tobytes() == U1.tobytes() and V.tobytes() == V1.tobytes(),
                    "the factors differ from a one-rank run's bits")
    parallel_assert(WORLD, np.allclose(U, U_ref, rtol=1e-9, atol=1e-11)
                    and np.allclose(V, V_ref, rtol=1e-9, atol=1e-11))
    parallel_assert(WORLD, all(s[key] == s1[key] == s_rep[key] for key in METRICS[:5]),
                    lambda: f"metrics differ: {[(s[key], s1[key], s_rep[key]) for key in METRICS[:5]]}")
    # the objective sums the item penalty along the item tree, the replicated run in numpy's order
    assert s["final_loss"] == s1["final_loss"] == pytest.approx(s_rep["final_loss"], rel=1e-12)
    assert s["users_evaluated"] > 0 and s["steps"] == 4


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("inner", ["cholesky", "cg"])
def test_sharded_resume_on_another_rank_count_and_from_replicated(inner):
    out = shared_dir()
    args = [f"model.inner_solver={inner}", "checkpoint.every=2", SHARD]
    _, s, U, V = train(config(*args, "train.steps=5"), WORLD, out / "straight")
    run_on_root(WORLD, lambda: train(config(*args, "train.steps=3"), MPI.COMM_SELF, out / "a")[0])
    code, sa, Ua, Va = train(config(*args, "train.steps=5"), WORLD, out / "a", resume="auto")
    train(config(*args[:2], "train.steps=3"), WORLD, out / "r")  # replicated V, resumed item-sharded
    code_r, sr, Ur, Vr = train(config(*args, "train.steps=5"), WORLD, out / "r", resume="auto")
    parallel_assert(WORLD, code == code_r == 0 and Ua.tobytes() == U.tobytes() and Va.tobytes() == V.tobytes()
                    and Ur.tobytes() == U.tobytes() and Vr.tobytes() == V.tobytes())
    assert sa["steps"] == sr["steps"] == 5 and all(sa[key] == s[key] == sr[key] for key in METRICS)


@pytest.mark.mpi(min_size=1)
def test_sharded_item_groups_and_exchange_rounds_keep_the_bits(monkeypatch):
    from lepton_hpc import reduce
    from lepton_hpc.problems import mf_exchange

    out = shared_dir()
    _, s, U, V = train(config(SHARD), WORLD, out / "whole")
    monkeypatch.setattr(reduce, "REDUCE_BUDGET_BYTES", 3000)  # a few items per group
    monkeypatch.setattr(mf_exchange, "EXCHANGE_BUDGET_BYTES", 8 * 3 * 20)  # fetches of 20 rows a round
    monkeypatch.setattr(mf_ranking, "BLOCK_ITEMS", 4)  # the metrics' item blocks cut each owner's block
    _, sg, Ug, Vg = train(config(SHARD), WORLD, out / "groups")
    monkeypatch.undo()
    parallel_assert(WORLD, Ug.tobytes() == U.tobytes() and Vg.tobytes() == V.tobytes())
    assert s["exchange_rounds"] == [1, 1] and min(sg["exchange_rounds"]) > 1, sg["exchange_rounds"]
    assert all(s[key] == sg[key] for key in METRICS)
