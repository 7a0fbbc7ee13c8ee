"""The engine loop for the GLMs in-process, at the suite's rank count and on one rank (COMM_SELF):
bitwise identity across rank counts for every solver and mini-batch path, resume across rank
counts, a real SIGUSR1, the stop rules, divergence and bad data.

The data are tiny and split unevenly: 2003 rows in chunks of 700 make 3 chunks (the last one
short), so at 4 ranks one rank owns nothing and at 2 ranks the shards differ in size.
"""

import json
import os
import tempfile
from pathlib import Path
from signal import SIGUSR1

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from lepton_hpc import checkpoint
from lepton_hpc.comm import JobError
from lepton_hpc.config import build
from lepton_hpc.engine.job import run_job
from lepton_hpc.engine.run import RunContext
from lepton_hpc.optimizers import MomentumOptimizer

from passert import parallel_assert, parallel_raises, run_on_root

WORLD = MPI.COMM_WORLD
ROWS = 2003


def shared_dir() -> Path:
    return Path(run_on_root(WORLD, lambda: tempfile.mkdtemp(prefix="glm-")))


def config(*overrides):
    raw = {"data": {"rows": ROWS, "cols": 3, "chunk_rows": 700, "seed": 1, "noise": 0.1},
           "model": {"kind": "linear"},
           "optimizer": {"name": "adaptive", "learning_rate": 0.1, "alpha": 0.01},
           "train": {"steps": 12, "tol": 0.0, "log_every": 4, "solver": "gd"},
           "checkpoint": {"every": 0, "keep": 2}}
    return build(raw, "glmtest", list(overrides))


def params(out) -> bytes:
    """The bytes of every /model/ array (w, b and the exact-resume coordinates) of the newest step."""
    snap = checkpoint.latest_local(Path(out) / "checkpoints")
    arrays = snap.replicated("model/")
    return b"".join(np.asarray(arrays[k]).tobytes() for k in sorted(arrays))


def same(p: bytes, q: bytes) -> bool:
    """Bitwise equal (the SVD solvers too: their Cholesky QR reduces over fixed chunks)."""
    return p == q


def train(cfg, comm, out, resume=None):
    """Run the job in-process; every rank of ``comm`` gets (exit code, summary, parameter bytes)."""
    ctx = RunContext(cfg, comm, out, resume)  # installs the SIGUSR1/SIGTERM handlers
    code, s = run_job(cfg, comm, out, resume, ctx=ctx)
    s = comm.bcast(s, root=0)
    comm.Barrier()  # rank 0's checkpoint is committed before anyone reads it
    return code, s, params(out)


MB = ["model.kind=logistic", "train.batch_size=300", "optimizer.name=constant", "optimizer.learning_rate=0.5"]
CASES = {  # every solver, every mini-batch path, stateful optimizers, standardisation
    "gd-adaptive": [],
    "gd-adam": ["optimizer.name=adam", "optimizer.learning_rate=0.05"],
    "gd-momentum-standardize": ["optimizer.name=momentum", "model.standardize=true"],
    "gram": ["train.solver=gram"],
    "gram-adam": ["train.solver=gram", "optimizer.name=adam"],
    "svd_gd": ["train.solver=svd_gd", "optimizer.learning_rate=0.5"],
    "svd": ["train.solver=svd"],
    "minibatch-rows": MB,  # 7 batches an epoch, the last one short
    "minibatch-rows-many-per-chunk": [*MB, "train.batch_size=1500", "model.standardize=true"],
    "minibatch-blocks": [*MB, "train.batch_block_rows=100", "data.test_fraction=0.2"],
    "softmax-adam-standardize": ["model.kind=softmax", "optimizer.name=adam", "model.standardize=true",
                                 "model.penalty=l2", "model.reg=0.01"],
    "logistic-l1": ["model.kind=logistic", "model.penalty=l1", "model.reg=0.01", "optimizer.name=constant"],
}


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("case", list(CASES))
def test_world_and_one_rank_give_the_same_bits(case):
    cfg = config(*CASES[case])
    out = shared_dir()
    code, s, p = train(cfg, WORLD, out / "world")
    code1, s1, p1 = train(cfg, MPI.COMM_SELF, out / f"self{WORLD.rank}")
    parallel_assert(WORLD, code == code1 == 0, lambda: f"exit codes {code}, {code1}")
    parallel_assert(WORLD, same(p, p1), "the parameters differ from a one-rank run's bits")
    parallel_assert(WORLD, s["final_loss"] == s1["final_loss"], "the final loss differs")
    n_steps = 0 if case == "svd" else 12
    checks = {"world size": s["world_size"] == WORLD.size, "rows": s["data"]["rows"] == ROWS,
              "steps": s["steps"] == n_steps and s["stop_reason"] == ("direct" if case == "svd" else "steps"),
              "qr path": s["qr_path"] == ("cholesky_qr2" if case.startswith("svd") else None),
              "a rank owns nothing at 4 ranks (3 chunks)": WORLD.size != 4 or s["shard_rows"]["min"] == 0,
              "batch size": s["batch_size"] in ((300, 1500) if "batch_size" in " ".join(CASES[case]) else (0,)),
              "test accuracy": "data.test_fraction=0.2" not in CASES[case]
              or s["metrics"]["test"]["accuracy"] > 0.8}
    parallel_assert(WORLD, all(checks.values()), lambda: f"{[k for k, ok in checks.items() if not ok]}: {s}")


RESUME = {  # (overrides, steps of the first part): mid-epoch splits for the mini-batches
    "adam-standardize": (["optimizer.name=adam", "optimizer.learning_rate=0.05", "model.standardize=true"], 5),
    "momentum": (["optimizer.name=momentum"], 5),
    "adaptive-gram": (["train.solver=gram"], 5),
    "svd_gd": (["train.solver=svd_gd", "optimizer.learning_rate=0.5"], 5),
    "minibatch-rows-standardize": ([*MB, "model.standardize=true", "optimizer.name=momentum",
                                    "optimizer.learning_rate=0.2", "optimizer.alpha=0"], 10),
    "minibatch-blocks": ([*MB, "train.batch_block_rows=100", "optimizer.name=adam"], 9),
}


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("case", list(RESUME))
def test_resume_on_another_rank_count_is_bitwise_exact(case):
    extra, split = RESUME[case]
    args = [*extra, "checkpoint.every=3"]
    out = shared_dir()
    _, s, whole = train(config(*args, "train.steps=16"), WORLD, out / "straight")
    # written by one rank, resumed by all ...
    run_on_root(WORLD, lambda: train(config(*args, f"train.steps={split}"), MPI.COMM_SELF, out / "a")[0])
    code_a, s_a, p_a = train(config(*args, "train.steps=16"), WORLD, out / "a", resume="auto")
    # ... and written by all, resumed by one
    train(config(*args, f"train.steps={split}"), WORLD, out / "b")
    p_b = run_on_root(WORLD, lambda: train(config(*args, "train.steps=16"), MPI.COMM_SELF, out / "b", "auto")[2])
    parallel_assert(WORLD, code_a == 0 and same(p_a, whole), "resumed on the world: other bits")
    parallel_assert(WORLD, same(p_b, whole), "resumed on one rank: other bits than a straight run")
    assert s_a["steps"] == s["steps"] == 16
    if "train.solver=svd_gd" in extra:  # and at the same rank count: the checkpoint holds phi itself
        train(config(*args, f"train.steps={split}"), WORLD, out / "c")
        _, _, p_c = train(config(*args, "train.steps=16"), WORLD, out / "c", resume="auto")
        parallel_assert(WORLD, p_c == whole, "resumed on the same ranks: other bits than a straight run")
    snap = checkpoint.latest_local(out / "a" / "checkpoints")
    assert snap.step == 16 and snap.attrs["world_size"] == WORLD.size
    assert snap.attrs["standardized"] == ("model.standardize=true" in extra)


class SignalsOnce(MomentumOptimizer):
    """Momentum that sends this process a real SIGUSR1 after update ``AT`` on the last rank (when set)."""

    name = "signals_once"
    AT = None

    def _direction(self, w, gradient, eta):
        if SignalsOnce.AT == self.t and WORLD.rank == WORLD.size - 1:
            os.kill(os.getpid(), SIGUSR1)  # as a batch system would send it, to one rank only
        return super()._direction(w, gradient, eta)


@pytest.mark.mpi(min_size=1)
def test_a_signal_on_one_rank_checkpoints_exits_75_and_resumes_exactly():
    out = shared_dir()
    args = [f"optimizer.name={__name__}:SignalsOnce", "model.standardize=true", "train.steps=1000"]
    SignalsOnce.AT = 3
    try:
        code, s, _ = train(config(*args), WORLD, out / "r")
    finally:
        SignalsOnce.AT = None
    parallel_assert(WORLD, code == 75, lambda: f"exit code {code}")
    assert s["stop_reason"] == "signal" and s["exit_code"] == 75
    assert s["optimizer"]["name"] == "signals_once"  # a user optimizer by its dotted path
    assert s["steps"] == 3  # the flag posted at the next step boundary stops the run before step 4
    assert (out / "r" / "checkpoints" / "step-00000003.commit").exists()
    code, s, resumed = train(config(*args[:-1], "train.steps=9"), WORLD, out / "r", resume="auto")
    _, _, straight = train(config(*args[:-1], "train.steps=9"), WORLD, out / "straight")
    parallel_assert(WORLD, code == 0 and resumed == straight, "the resumed run differs from a straight run")
    assert s["steps"] == 9 and s["stop_reason"] == "steps"


@pytest.mark.mpi(min_size=1)
def test_a_signal_during_setup_stops_before_the_first_step():
    out = shared_dir() / "r"
    cfg = config("train.steps=50")
    ctx = RunContext(cfg, WORLD, out)
    if WORLD.rank == 0:
        os.kill(os.getpid(), SIGUSR1)
    code, s = run_job(cfg, WORLD, out, ctx=ctx)
    s = WORLD.bcast(s, root=0)
    parallel_assert(WORLD, code == 75, lambda: f"exit code {code}")
    assert s["steps"] == 0 and s["stop_reason"] == "signal"
    assert (out / "checkpoints" / "step-00000000.commit").exists()


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("extra,reason", [
    (["train.tol=1e-9", "optimizer.learning_rate=0.5", "optimizer.alpha=0"], "tol"),
    (["train.tol=1e-4", "train.patience=3", "optimizer.alpha=0.05"], "plateau"),  # the schedule dies out
    ([*MB, "train.tol=1e-2", "train.patience=2"], "plateau"),  # judged on whole epochs
    (["optimizer.learning_rate=1.0", "optimizer.alpha=5.0", "train.eta_floor=1e-6"], "eta_floor"),
])
def test_stop_rules(extra, reason):
    code, s, _ = train(config(*extra, "train.steps=2000"), WORLD, shared_dir() / "r")
    parallel_assert(WORLD, code == 0, lambda: f"exit code {code}")
    assert s["stop_reason"] == reason and 0 < s["steps"] < 2000, (s["stop_reason"], s["steps"])
    if s["batch_size"]:
        assert s["steps"] % -(-ROWS // 300) == 0  # 7 batches an epoch
    if reason == "tol":
        assert s["rel_error_to_exact"] < 1e-4


@pytest.mark.mpi(min_size=1)
def test_divergence_raises_on_every_rank_and_keeps_the_last_good_checkpoint():
    out = shared_dir() / "r"
    cfg = config("optimizer.name=constant", "optimizer.learning_rate=1e3", "train.steps=500",
                 "checkpoint.every=1", "checkpoint.keep=2")
    with parallel_raises(WORLD, JobError, r"the loss became (nan|inf) at step (\d+) .* last good checkpoint "
                                          r"is intact") as caught:
        run_job(cfg, WORLD, out)
    WORLD.Barrier()
    import re

    step = int(re.search(r"at step (\d+)", str(caught[0])).group(1))
    snap = checkpoint.latest_local(out / "checkpoints")
    w = snap.replicated("model/")
    parallel_assert(WORLD, snap.step == step - 1 and all(np.all(np.isfinite(v)) for v in w.values()),
                    lambda: f"newest checkpoint step {snap.step} for a loss gone bad at step {step}")


@pytest.mark.mpi(min_size=1)
def test_non_finite_rows_on_any_rank_name_the_first_bad_row():
    out = shared_dir()
    path = out / "bad.h5"

    def write():
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((ROWS, 3)), rng.standard_normal(ROWS)
        X[1900, 1] = np.inf  # the last chunk: rank 2 of 3, rank 1 of 2
        X[1500, 0] = np.nan  # the first bad row, in chunk 2 too
        y[1999] = np.nan
        with h5py.File(path, "w") as f:
            f["X"], f["y"] = X, y

    run_on_root(WORLD, write)
    with parallel_raises(WORLD, JobError, r"NaN or Inf at row 1500 \(the first bad row\) in .*bad\.h5"):
        run_job(config(f"data.path={path}"), WORLD, out / "r")
    assert not (out / "r" / "checkpoints").exists()


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("solver", ["gd", "gram"])
@pytest.mark.parametrize("opt", ["adaptive", "inverse_time", "constant", "momentum", "adagrad", "adam"])
def test_every_optimizer_with_every_solver(solver, opt):
    out = shared_dir() / "r"
    cfg = config(f"train.solver={solver}", f"optimizer.name={opt}", "optimizer.learning_rate=0.1",
                 "optimizer.alpha=0.001", "train.steps=40", "train.log_every=1")
    code, s, _ = train(cfg, WORLD, out)
    first = run_on_root(WORLD, lambda: json.loads((out / "metrics.jsonl").read_text().splitlines()[0]))
    parallel_assert(WORLD, code == 0, lambda: f"exit code {code}")
    assert s["solver"] == solver and s["optimizer"]["name"] == opt and s["steps"] == 40
    # the first record is the loss at theta = 0 (step 1 logs the loss before its update)
    assert s["final_loss"] < 0.5 * first["loss"], (first["loss"], s["final_loss"])


@pytest.mark.mpi(min_size=1)
def test_fast_reduction_is_close_and_recorded():
    out = shared_dir()
    _, _, exact = train(config("train.steps=25"), WORLD, out / "exact")
    _, s, fast = train(config("train.steps=25", "comm.reduction=fast"), WORLD, out / "fast")
    assert s["reduction"] == "fast"
    parallel_assert(WORLD, np.allclose(np.frombuffer(exact), np.frombuffer(fast), rtol=1e-10))


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("extra,message", [
    ([*MB, "train.batch_block_rows=300"], r"train\.batch_block_rows=300 must divide data\.chunk_rows=700"),
    (["train.solver=svd", "model.standardize=true"], r"train\.solver=svd factors X itself"),
    (["model.kind=logistic", "model.penalty=l1", "model.reg=0.01", "optimizer.name=momentum"],
     r"model\.penalty=l1 takes its L1 part as a proximal step.*optimizer\.name=momentum keeps"),
])
def test_a_refused_job_fails_on_every_rank_and_leaves_nothing(extra, message):
    out = shared_dir() / "r"
    with parallel_raises(WORLD, JobError, message):
        run_job(config(*extra), WORLD, out)
    parallel_assert(WORLD, not out.exists(), "a refused job left its run directory")
