"""Sparse (CSR) X in the GLM loop in-process, at the suite's rank count and on one rank (COMM_SELF):
the same bits for every model, penalty, optimizer and mini-batch path; resume across rank counts;
the same model as dense X holding the same numbers (close, not bitwise); refused solvers.

2003 rows in chunks of 700 (3 chunks, the last short): at 4 ranks one rank owns nothing.
"""

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from mpi4py import MPI

from lepton_hpc import checkpoint
from lepton_hpc.comm import JobError
from lepton_hpc.config import build
from lepton_hpc.data.sparse_synth import synth_sparse
from lepton_hpc.engine.job import run_job
from lepton_hpc.engine.run import RunContext

from passert import parallel_assert, parallel_raises, run_on_root

WORLD = MPI.COMM_WORLD
ROWS, COLS = 2003, 50
WIDE = 70_000  # partials of >= reduce.WIDE_PARTIAL floats: the full batch makes them inside the tree


def _files() -> Path:
    def make():
        d = Path(tempfile.mkdtemp(prefix="sparse-"))
        for kind, extra in (("linear", {}), ("logistic", {}), ("softmax", {"classes": 3}),
                            ("wide-linear", {}), ("wide-softmax", {"classes": 3})):
            p = d / f"{kind}.h5"
            cols = WIDE if kind.startswith("wide") else COLS
            synth_sparse(str(p), f"sparse-{kind.replace('wide-', '')}", ROWS, cols, 6, 0.1, 5, chunk_rows=512,
                         **extra)
            with h5py.File(p, "r+") as f:  # sample weights, and the same numbers as a dense file
                f["w"] = np.random.default_rng(1).random(ROWS) + 0.5
                g = f["X"]
                X = sp.csr_matrix((g["data"][()], g["indices"][()], g["indptr"][()]), shape=(ROWS, COLS))
                with h5py.File(d / f"{kind}-dense.h5", "w") as dense:
                    dense["X"], dense["y"], dense["w"] = X.toarray(), f["y"][()], f["w"][()]
                    dense["y"].attrs.update(f["y"].attrs)
        return str(d)

    return Path(run_on_root(WORLD, make))


FILES = None


def data(kind: str, dense: bool = False) -> str:
    global FILES
    if FILES is None:
        FILES = _files()
    return str(FILES / f"{kind}{'-dense' if dense else ''}.h5")


def config(kind, *overrides, dense=False):
    raw = {"data": {"path": data(kind, dense), "chunk_rows": 700, "seed": 1},
           "model": {"kind": kind.replace("wide-", "")},
           "optimizer": {"name": "constant", "learning_rate": 0.5},
           "train": {"steps": 10, "tol": 0.0, "log_every": 5, "solver": "gd"},  # the optimizers on CSR X
           "checkpoint": {"every": 0, "keep": 2}}
    return build(raw, "sparsetest", list(overrides))


def params(out) -> bytes:
    arrays = checkpoint.latest_local(Path(out) / "checkpoints").replicated("model/")
    return b"".join(np.asarray(arrays[k]).tobytes() for k in sorted(arrays))


def train(cfg, comm, out, resume=None):
    ctx = RunContext(cfg, comm, out, resume)
    code, s = run_job(cfg, comm, out, resume, ctx=ctx)
    s = comm.bcast(s, root=0)
    comm.Barrier()
    return code, s, params(out)


def shared_dir() -> Path:
    return Path(run_on_root(WORLD, lambda: tempfile.mkdtemp(prefix="sparse-run-")))


MB = ["train.batch_size=300"]
CASES = {  # (kind, overrides): every penalty, weights, standardisation, optimizers, mini-batch paths
    "linear-adaptive": ("linear", ["optimizer.name=adaptive", "optimizer.alpha=0.01"]),
    "linear-elasticnet-weighted": ("linear", ["model.penalty=elasticnet", "model.reg=0.01", "data.w_dataset=w"]),
    "linear-l1-standardize": ("linear", ["model.penalty=l1", "model.reg=0.001", "model.standardize=true"]),
    "logistic-adam-test-split": ("logistic", ["optimizer.name=adam", "optimizer.learning_rate=0.05",
                                              "data.test_fraction=0.2", "model.penalty=l2", "model.reg=0.01"]),
    "logistic-minibatch-rows": ("logistic", [*MB, "data.w_dataset=w"]),
    "logistic-minibatch-segments": ("logistic", ["train.batch_size=1500", "model.standardize=true"]),
    "linear-minibatch-blocks": ("linear", [*MB, "train.batch_block_rows=100", "optimizer.name=momentum",
                                           "optimizer.learning_rate=0.1"]),
    "softmax-momentum-standardize": ("softmax", ["optimizer.name=momentum", "optimizer.learning_rate=0.2",
                                                 "model.standardize=true", "model.penalty=l2", "model.reg=0.001"]),
    "softmax-minibatch-weighted": ("softmax", [*MB, "data.w_dataset=w", "optimizer.name=adam",
                                               "optimizer.learning_rate=0.05"]),
    "wide-linear-standardize": ("wide-linear", ["model.standardize=true", "data.w_dataset=w"]),
    # train.solver = auto on CSR X: lbfgs (owlqn with L1); the quasi-Newton solvers need no dense rows
    "logistic-auto-lbfgs": ("logistic", ["train.solver=auto", "train.steps=20", "model.penalty=l2",
                                         "model.reg=0.01"]),
    "softmax-auto-owlqn": ("softmax", ["train.solver=auto", "train.steps=20", "model.penalty=l1",
                                       "model.reg=0.001"]),
    "wide-softmax-l2": ("wide-softmax", ["model.penalty=l2", "model.reg=0.001"]),
}


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("case", list(CASES))
def test_sparse_world_and_one_rank_give_the_same_bits(case):
    kind, extra = CASES[case]
    cfg = config(kind, *extra)
    out = shared_dir()
    code, s, p = train(cfg, WORLD, out / "world")
    code1, s1, p1 = train(cfg, MPI.COMM_SELF, out / f"self{WORLD.rank}")
    parallel_assert(WORLD, code == code1 == 0, lambda: f"exit codes {code}, {code1}")
    parallel_assert(WORLD, p == p1, "the parameters differ from a one-rank run's bits")
    parallel_assert(WORLD, s["final_loss"] == s1["final_loss"], "the final loss differs")
    checks = {"sparse source": "sparse CSR" in s["data"]["source"],
              "fingerprint": s["data"]["fingerprint"] == s1["data"]["fingerprint"],
              "a rank owns nothing at 4 ranks": WORLD.size != 4 or s["shard_rows"]["min"] == 0,
              "it learns": kind.startswith("wide") or (s["metrics"]["train"]["r2"] > 0.05 if kind == "linear"
                                                       else s["metrics"]["train"]["accuracy"] > 0.55),
              "metrics the same": s["metrics"] == s1["metrics"],
              "auto's solver": "auto" not in case or s["solver"] == case.rsplit("-", 1)[1]}
    parallel_assert(WORLD, all(checks.values()), lambda: f"{[k for k, ok in checks.items() if not ok]}")


RESUME = {
    "softmax-adam-standardize": ("softmax", ["optimizer.name=adam", "optimizer.learning_rate=0.05",
                                             "model.standardize=true"], 4),
    "logistic-minibatch-rows": ("logistic", [*MB, "optimizer.name=momentum", "optimizer.learning_rate=0.2"], 5),
}


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("case", list(RESUME))
def test_sparse_resume_on_another_rank_count_is_bitwise_exact(case):
    kind, extra, split = RESUME[case]
    args = [*extra, "checkpoint.every=2"]
    out = shared_dir()
    _, _, whole = train(config(kind, *args, "train.steps=10"), WORLD, out / "straight")
    run_on_root(WORLD, lambda: train(config(kind, *args, f"train.steps={split}"), MPI.COMM_SELF, out / "a")[0])
    code_a, s_a, p_a = train(config(kind, *args, "train.steps=10"), WORLD, out / "a", resume="auto")
    train(config(kind, *args, f"train.steps={split}"), WORLD, out / "b")
    p_b = run_on_root(WORLD, lambda: train(config(kind, *args, "train.steps=10"), MPI.COMM_SELF, out / "b",
                                           "auto")[2])
    parallel_assert(WORLD, code_a == 0 and p_a == whole, "resumed on the world: other bits")
    parallel_assert(WORLD, p_b == whole, "resumed on one rank: other bits than a straight run")
    assert s_a["steps"] == 10


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("kind, extra", [
    ("linear", ["model.penalty=l2", "model.reg=0.01", "data.w_dataset=w"]),
    ("logistic", ["train.batch_size=300"]),
    ("softmax", ["data.test_fraction=0.2"]),
])
def test_sparse_and_dense_x_with_the_same_numbers_give_the_same_model(kind, extra):
    out = shared_dir()
    _, s, _ = train(config(kind, *extra), WORLD, out / "sparse")
    _, d, _ = train(config(kind, *extra, dense=True), WORLD, out / "dense")
    ws, wd = np.asarray(s["w"]), np.asarray(d["w"])
    parallel_assert(WORLD, np.allclose(ws, wd, rtol=1e-10, atol=1e-12), lambda: f"{np.abs(ws - wd).max()}")
    parallel_assert(WORLD, abs(s["final_loss"] - d["final_loss"]) <= 1e-10 * abs(d["final_loss"]), "loss differs")
    parallel_assert(WORLD, "sparse CSR" in s["data"]["source"] and "sparse CSR" not in d["data"]["source"], "sources")


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("solver", ["gram", "svd", "svd_gd"])
def test_dense_factor_solvers_are_refused_on_sparse_x(solver):
    out = shared_dir()
    with parallel_raises(WORLD, JobError, match=f"train.solver={solver} forms dense"):
        train(config("linear", f"train.solver={solver}"), WORLD, out / "r")
    parallel_assert(WORLD, not list((out / "r").glob("checkpoints/step-*.h5")), "a checkpoint was written")


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("kind, mode", [("wide-linear", "exact"), ("wide-softmax", "exact"),
                                        ("wide-linear", "fast")])
def test_wide_partials_made_inside_the_tree_equal_the_table(kind, mode):
    """The full batch on wide sparse partials never fills the n_chunks x width table: the
    on-demand tree gives the table's reduction to the bit (exact) and never touches it."""
    from lepton_hpc.data.shard import Shard
    from lepton_hpc.metrics import PhaseTimer
    from lepton_hpc.models.glm import make_kernel
    from lepton_hpc.problems.glm_solvers import FullBatch

    cfg = config(kind, f"comm.reduction={mode}")
    sh = Shard(cfg.data, WORLD.size, WORLD.rank)
    k = 3 if "softmax" in kind else 1
    kern = make_kernel(cfg.model.kind, sh.n_cols, True, sh.chunk_rows, sh.dtype, k)
    fb = FullBatch(WORLD, sh, kern, mode, PhaseTimer())
    theta = np.random.default_rng(0).standard_normal(kern.n_params) * 0.01
    g_lazy, g_table = np.empty(kern.n_params), np.empty(kern.n_params)
    loss_lazy = fb.gradient(theta, g_lazy, 0)
    untouched = not fb.reducer.partials.any()
    fb.partials(theta, 0)  # the table, as before
    total = fb.reducer.reduce()
    weight = total[-1]
    np.divide(total[:kern.n_params], weight, out=g_table)
    parallel_assert(WORLD, fb.lazy and untouched, "the partials table was used")
    if mode == "exact":
        parallel_assert(WORLD, g_lazy.tobytes() == g_table.tobytes() and loss_lazy == total[kern.n_params] / weight,
                        "the on-demand tree differs from the table's bits")
    else:
        parallel_assert(WORLD, np.allclose(g_lazy, g_table, rtol=1e-12, atol=1e-15), "fast sums differ")
    sh.close()


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("opt", ["adaptive", "inverse_time", "constant", "momentum", "adagrad", "adam"])
def test_every_optimizer_trains_on_sparse_x(opt):
    import json

    out = shared_dir() / "r"
    lr = {"momentum": 0.5, "adagrad": 0.5, "adam": 0.1}.get(opt, 2.0)  # plain steps: curvature ~ 0.4
    cfg = config("logistic", f"optimizer.name={opt}", f"optimizer.learning_rate={lr}", "optimizer.alpha=0.001",
                 "train.steps=30", "train.log_every=1")
    code, s, _ = train(cfg, WORLD, out)
    first = run_on_root(WORLD, lambda: json.loads((out / "metrics.jsonl").read_text().splitlines()[0]))
    parallel_assert(WORLD, code == 0 and s["optimizer"]["name"] == opt and s["steps"] == 30, f"exit {code}")
    # the first record is the loss at theta = 0 (log 2), before any update
    parallel_assert(WORLD, s["final_loss"] < 0.9 * first["loss"], lambda: f"{first['loss']} -> {s['final_loss']}")
