"""The MF runner in-process at the suite's rank count: serial numpy references, bitwise identity
with a one-rank run (exact mode), empty shards, resume across rank counts, signals, memory."""

import os
import tempfile
from signal import SIGUSR1
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from lepton_hpc.config import build
from lepton_hpc.data.ratings import RatingsShard
from lepton_hpc.layout import rows_of_rank
from lepton_hpc import checkpoint, reduce
from lepton_hpc.engine.job import run_job
from lepton_hpc.engine.run import RunContext
from lepton_hpc.problems.mf import init_factors

from passert import parallel_assert, run_on_root

WORLD = MPI.COMM_WORLD
RANK = 3


def shared_dir() -> Path:
    return Path(run_on_root(WORLD, lambda: tempfile.mkdtemp(prefix="mf-")))


def config(*overrides, **data):
    d = {"rows": 50, "cols": 23, "density": 0.35, "true_rank": 2, "noise": 0.1, "seed": 3,
         "test_fraction": 0.2, "chunk_rows": 8}
    d.update(data)
    raw = {"data": d, "model": {"kind": "mf", "rank": RANK, "reg": 0.5},
           "optimizer": {"name": "adam", "learning_rate": 0.05, "alpha": 0.0},
           "train": {"solver": "gd", "steps": 4, "tol": 0.0, "log_every": 2},
           "checkpoint": {"every": 0, "keep": 2}}
    return build(raw, "mftest", list(overrides))


def train(cfg, comm, out, resume=None, signal=False):
    """Run the job in-process; every rank of ``comm`` gets (exit code, summary, full U, V).

    ``signal``: this rank sees SIGUSR1 during setup, as a batch system would send it.
    """
    ctx = RunContext(cfg, comm, out, resume)  # installs the SIGUSR1/SIGTERM handlers
    if signal:
        os.kill(os.getpid(), SIGUSR1)  # a real signal during setup: honoured at the first step
    code, s = run_job(cfg, comm, out, resume, ctx=ctx)
    s = comm.bcast(s, root=0)  # every rank asserts on it
    snap = checkpoint.latest_local(Path(out) / "checkpoints")
    U = snap.rows("model/U", 0, s["data"]["users"])
    V = snap.replicated("model/V")["model/V"]
    return code, s, U, V


def ratings(cfg):
    """All training ratings (global user, item, value), through a one-rank shard."""
    sh = RatingsShard(cfg.data, 1, 0)
    parts = [(b.train[0] + b.user_lo, b.train[1], b.train[2]) for b in sh.blocks]
    return sh, tuple(np.concatenate(x) for x in zip(*parts))


def reference(cfg):
    """Serial numpy training: dense gradient with np.add.at, textbook optimizers and per-user ALS."""
    sh, (r, c, y) = ratings(cfg)
    k, reg, N = cfg.model.rank, cfg.model.reg, r.size
    U, V = init_factors(cfg.data.seed, k, sh.n_items, range(sh.n_chunks), sh.n_users, sh.chunk_rows)
    # ALS-WR (reg_scaling=count): lambda * n for a row with n training ratings (a row without: lambda)
    count = cfg.model.reg_scaling == "count"
    lam_u = reg * (np.maximum(np.bincount(r, minlength=sh.n_users), 1) if count else np.ones(sh.n_users))
    lam_v = reg * (np.maximum(np.bincount(c, minlength=sh.n_items), 1) if count else np.ones(sh.n_items))
    o = cfg.optimizer
    state = {}
    for t in range(1, cfg.train.steps + 1):
        if cfg.train.solver == "als":
            for F, G, keys, other, lam in ((V, U, c, r, lam_v), (U, V, r, c, lam_u)):  # items first
                for j in range(F.shape[0]):
                    sel = keys == j
                    X = G[other[sel]]
                    F[j] = np.linalg.solve(X.T @ X + lam[j] * np.eye(k), X.T @ y[sel]) if sel.any() else 0.0
            continue
        e = (U[r] * V[c]).sum(axis=1) - y
        gU, gV = lam_u[:, None] * U, lam_v[:, None] * V
        np.add.at(gU, r, e[:, None] * V[c])
        np.add.at(gV, c, e[:, None] * U[r])
        for name, P, g in (("U", U, gU / N), ("V", V, gV / N)):
            if o.name == "adam":
                m, v = state.get(name, (np.zeros_like(P), np.zeros_like(P)))
                m = o.beta1 * m + (1 - o.beta1) * g
                v = o.beta2 * v + (1 - o.beta2) * g * g
                state[name] = (m, v)
                P -= o.learning_rate * (m / (1 - o.beta1 ** t)) / (np.sqrt(v / (1 - o.beta2 ** t)) + o.eps)
            else:  # the Lepton rule: eta_t = eta_{t-1} / (1 + alpha t)
                eta = state.get("eta", o.learning_rate) / (1 + o.alpha * t) if name == "U" else state["eta"]
                state["eta"] = eta
                P -= eta * g
    return U, V


CASES = {
    "gd-adam": [],
    "gd-adam-reg-none": ["model.reg_scaling=none"],
    "gd-lepton": ["optimizer.name=adaptive", "optimizer.learning_rate=20.0", "optimizer.alpha=0.05"],
    "als": ["train.solver=als"],
    "als-reg-none": ["train.solver=als", "model.reg_scaling=none"],
    "als-empty-shards": ["train.solver=als", "data.chunk_rows=25"],  # 2 chunks: at 3 and 4 ranks some own none
    "gd-empty-shards": ["data.chunk_rows=25"],
}


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_serial_reference_and_one_rank_bit_for_bit(case):
    cfg = config(*CASES[case])
    out = shared_dir()
    code, s, U, V = train(cfg, WORLD, out / "world")
    _, _, U1, V1 = train(cfg, MPI.COMM_SELF, out / f"self{WORLD.rank}")
    U_ref, V_ref = reference(cfg)
    parallel_assert(WORLD, code == 0, lambda: f"exit code {code}")
    parallel_assert(WORLD, U.tobytes() == U1.tobytes() and V.tobytes() == V1.tobytes(),
                    "the factors differ from a one-rank run's bits")
    parallel_assert(WORLD, np.allclose(U, U_ref, rtol=1e-9, atol=1e-12)
                    and np.allclose(V, V_ref, rtol=1e-9, atol=1e-12),
                    lambda: f"max |U - U_ref| = {np.max(np.abs(U - U_ref))}, "
                            f"max |V - V_ref| = {np.max(np.abs(V - V_ref))}")
    assert s["steps"] == 4 and s["world_size"] == WORLD.size and s["solver"] == cfg.train.solver
    assert 0 < s["train_rmse"] and 0 < s["test_rmse"] and s["noise"] == 0.1
    users = s["memory"]["users"]["per_rank"]
    if case.endswith("empty-shards"):
        assert users == ([25, 25] + [0] * (WORLD.size - 2) if WORLD.size > 1 else [50])


@pytest.mark.mpi(min_size=1)
def test_users_and_items_without_ratings_train(tmp_path_factory):
    out = shared_dir()
    path = out / "sparse.h5"

    def write():
        rng = np.random.default_rng(0)
        mask = rng.random((40, 12)) < 0.5
        mask[[3, 17, 39]] = False  # users without ratings (the last one too)
        mask[:, [0, 5]] = False  # items without ratings
        r, c = np.nonzero(mask)
        with h5py.File(path, "w") as f:
            f["rows"], f["cols"], f["vals"] = r, c, rng.standard_normal(r.size)
            f.attrs["shape"] = [40, 12]

    run_on_root(WORLD, write)
    for solver in ("gd", "als"):
        cfg = config(f"train.solver={solver}", f"data.path={path}", "data.test_fraction=0.0", "model.reg=0.1")
        code, s, U, V = train(cfg, WORLD, out / solver)
        U_ref, V_ref = reference(cfg)
        parallel_assert(WORLD, code == 0 and np.allclose(U, U_ref, rtol=1e-9, atol=1e-12)
                         and np.allclose(V, V_ref, rtol=1e-9, atol=1e-12))
        parallel_assert(WORLD, np.all(V[[0, 5]] == 0) if solver == "als" else True)
        assert s["data"]["users_without_ratings"] == 3 and s["data"]["items_without_ratings"] == 2
        assert s["noise"] is None and s["test_rmse"] is None and s["test_rmse_over_noise"] is None


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("solver", ["gd", "als"])
def test_resume_on_another_rank_count_is_bitwise_exact(solver):
    out = shared_dir()
    args = [f"train.solver={solver}", "checkpoint.every=2"]
    _, _, U, V = train(config(*args, "train.steps=5"), WORLD, out / "straight")
    # written by one rank, resumed by all ...
    run_on_root(WORLD, lambda: train(config(*args, "train.steps=3"), MPI.COMM_SELF, out / "a")[0])
    code, s, Ua, Va = train(config(*args, "train.steps=5"), WORLD, out / "a", resume="auto")
    # ... and written by all, resumed by one
    train(config(*args, "train.steps=3"), WORLD, out / "b")

    def resume_alone():
        _, _, Ub, Vb = train(config(*args, "train.steps=5"), MPI.COMM_SELF, out / "b", resume="auto")
        return Ub.tobytes() == U.tobytes() and Vb.tobytes() == V.tobytes()

    ok_b = run_on_root(WORLD, resume_alone)
    parallel_assert(WORLD, code == 0 and Ua.tobytes() == U.tobytes() and Va.tobytes() == V.tobytes() and ok_b)
    assert s["steps"] == 5
    snap = checkpoint.latest_local(out / "a" / "checkpoints")
    assert snap.step == 5 and snap.shape("model/U") == (50, RANK) and snap.shape("model/V") == (23, RANK)
    assert snap.attrs["world_size"] == WORLD.size and "model/U" in snap.marker["sharded"]
    if solver == "gd":  # U's optimizer state is stored by user rows (sharded), V's whole (replicated)
        assert snap.shape("optimizer_u/moment1") == (50, RANK)
        assert snap.shape("optimizer/moment1") == (23 * RANK,)


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("solver", ["gd", "als"])
def test_a_signal_on_one_rank_checkpoints_and_exits_75(solver):
    out = shared_dir()
    cfg = config(f"train.solver={solver}", "train.steps=50")
    code, s, _, _ = train(cfg, WORLD, out / "r", signal=WORLD.rank == WORLD.size - 1)
    parallel_assert(WORLD, code == 75, lambda: f"exit code {code}")
    assert s["stop_reason"] == "signal" and s["exit_code"] == 75
    step = s["steps"]
    assert step == 0  # the stop is agreed before the first step changes anything
    assert (out / "r" / "checkpoints" / f"step-{step:08d}.commit").exists()


@pytest.mark.mpi(min_size=1)
def test_fast_reduction_is_close_and_item_blocks_keep_the_bits(monkeypatch):
    out = shared_dir()
    _, _, U, V = train(config(), WORLD, out / "exact")
    _, _, Uf, Vf = train(config("comm.reduction=fast"), WORLD, out / "fast")
    monkeypatch.setattr(reduce, "REDUCE_BUDGET_BYTES", 2000)  # a few items per block
    code, s, Ub, Vb = train(config(), WORLD, out / "blocks")
    _, s_als, Ua, Va = train(config("train.solver=als"), WORLD, out / "blocks-als")
    monkeypatch.undo()
    _, _, Ua1, Va1 = train(config("train.solver=als"), WORLD, out / "als")
    parallel_assert(WORLD, np.allclose(U, Uf, rtol=1e-10) and np.allclose(V, Vf, rtol=1e-10))
    parallel_assert(WORLD, Ub.tobytes() == U.tobytes() and Vb.tobytes() == V.tobytes())
    parallel_assert(WORLD, Ua.tobytes() == Ua1.tobytes() and Va.tobytes() == Va1.tobytes())
    assert s["item_blocks"] > 1 and s_als["item_blocks"] > 1


@pytest.mark.mpi(min_size=1)
def test_memory_per_rank_u_is_sharded():
    cfg = config("data.rows=300", "data.chunk_rows=16", "model.rank=4")
    _, s, _, _ = train(cfg, WORLD, shared_dir() / "m")
    mem = s["memory"]
    rows = [hi - lo for lo, hi in (rows_of_rank(300, 16, WORLD.size, q) for q in range(WORLD.size))]
    assert mem["U_block_bytes"]["per_rank"] == [r * 4 * 8 for r in rows]
    assert sum(mem["U_block_bytes"]["per_rank"]) == mem["U_total_bytes"] == 300 * 4 * 8
    assert mem["U_block_bytes"]["max"] <= mem["U_total_bytes"] / WORLD.size + 16 * 4 * 8
    assert mem["U_replicated"] is False
    assert mem["V_bytes"]["min"] == mem["V_bytes"]["max"] == 23 * 4 * 8
    assert min(mem["peak_rss_bytes"]["per_rank"]) > 0 and min(mem["ratings_bytes"]["per_rank"]) >= 0


@pytest.mark.mpi(min_size=1)
def test_divergence_stops_on_every_rank_and_keeps_the_last_good_checkpoint():
    from lepton_hpc.comm import JobError

    out = shared_dir()
    cfg = config("optimizer.name=constant", "optimizer.learning_rate=1e6", "train.steps=40", "checkpoint.every=1",
                 "model.reg_scaling=none")
    with pytest.raises(JobError, match=r"the loss became (nan|inf) at step \d+ .* last good checkpoint is intact"):
        run_job(cfg, WORLD, out / "r")
    WORLD.Barrier()
    snap = checkpoint.latest_local(out / "r" / "checkpoints")
    assert np.all(np.isfinite(snap.rows("model/U", 0, 50))) and np.all(np.isfinite(snap.replicated()["model/V"]))


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("extra,reason", [
    (["optimizer.name=adaptive", "optimizer.learning_rate=1.0", "optimizer.alpha=5.0", "train.eta_floor=1e-6"],
     "eta_floor"),
    (["train.solver=als", "train.tol=1e-3", "train.patience=2"], "plateau"),
    (["train.solver=als", "train.tol=1e-3"], "tol"),
])
def test_stop_rules(extra, reason):
    code, s, _, _ = train(config(*extra, "train.steps=60"), WORLD, shared_dir() / "r")
    parallel_assert(WORLD, code == 0)
    assert s["stop_reason"] == reason and s["steps"] < 60


@pytest.mark.mpi(min_size=1)
def test_bad_rank_fails_on_every_rank_together():
    from lepton_hpc.comm import JobError

    out = shared_dir() / "r"
    with pytest.raises(JobError, match=r"model\.rank=24 exceeds min\(users, items\) = min\(50, 23\) = 23"):
        run_job(config("model.rank=24"), WORLD, out)
    assert not out.exists()  # a failed start leaves nothing behind
