"""lbfgs, owlqn and newton (train.solver) in-process: against scikit-learn on the same data for every
kind and penalty, the same bits at the suite's rank count and on one rank, resume across rank
counts, and the checks on bad combinations.

2003 rows in chunks of 700: 3 chunks, the last one short; at 4 ranks one rank owns nothing.
Penalty scaling: lepton minimises mean(loss) + reg·(l1_ratio·|w|₁ + (1 − l1_ratio)/2·|w|²), so
scikit-learn's LogisticRegression has C = 1/(n·reg) (its l1_ratio as ours), Ridge has alpha = n·reg,
Lasso/ElasticNet alpha = reg.
"""

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

pytest.importorskip("sklearn")

from lepton_hpc import checkpoint  # noqa: E402
from lepton_hpc.config import build  # noqa: E402
from lepton_hpc.engine.job import run_job  # noqa: E402
from lepton_hpc.errors import UserError  # noqa: E402

from passert import parallel_assert, parallel_raises, run_on_root  # noqa: E402

WORLD = MPI.COMM_WORLD
ROWS, COLS, REG = 2003, 4, 1e-2
TRUE_W = np.array([1.5, -2.0, 0.0, 0.5])  # a zero weight: L1 keeps it at 0


def make_data(kind: str, seed: int = 3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((ROWS, COLS))
    if kind == "linear":
        return X, X @ TRUE_W + 0.3 + 0.5 * rng.standard_normal(ROWS)
    if kind == "logistic":
        return X, (X @ TRUE_W - 0.4 + rng.logistic(size=ROWS) > 0).astype(float)
    W = np.stack([TRUE_W, -TRUE_W[::-1], 0.5 * TRUE_W], axis=1)
    return X, np.argmax(X @ W + rng.gumbel(size=(ROWS, 3)), axis=1).astype(float)


DIR = None


def data_file(kind: str) -> Path:
    global DIR
    if DIR is None:
        DIR = Path(run_on_root(WORLD, lambda: tempfile.mkdtemp(prefix="glmsolv-")))
    path = DIR / f"{kind}.h5"

    def write():
        if not path.exists():
            X, y = make_data(kind)
            with h5py.File(path, "w") as f:
                f["X"], f["y"] = X, y

    run_on_root(WORLD, write)
    return path


def config(kind, solver, penalty, *overrides):
    raw = {"data": {"path": str(data_file(kind)), "chunk_rows": 700},
           "model": {"kind": kind, "penalty": penalty, "reg": 0.0 if penalty == "none" else REG,
                     "l1_ratio": 0.5},
           "train": {"steps": 300, "tol": 1e-13, "log_every": 50, "solver": solver},
           "checkpoint": {"every": 0, "keep": 2}}
    return build(raw, "solvertest", list(overrides))


def train(cfg, comm, out, resume=None):
    code, s = run_job(cfg, comm, out, resume)
    s = comm.bcast(s, root=0)
    comm.Barrier()
    snap = checkpoint.latest_local(Path(out) / "checkpoints")
    arrays = snap.replicated("model/")
    return code, s, b"".join(np.asarray(arrays[k]).tobytes() for k in sorted(arrays))


def sklearn_fit(kind, penalty):
    """scikit-learn's coefficients (d x K or d) and intercepts on the same rows, solved tightly."""
    from sklearn import linear_model as lm

    X, y = make_data(kind)
    n, l1r = len(y), 0.5
    if kind == "linear":
        est = {"none": lambda: lm.LinearRegression(),
               "l2": lambda: lm.Ridge(alpha=n * REG, solver="cholesky"),
               "l1": lambda: lm.Lasso(alpha=REG, tol=1e-14, max_iter=200_000),
               "elasticnet": lambda: lm.ElasticNet(alpha=REG, l1_ratio=l1r, tol=1e-14, max_iter=200_000)}[penalty]()
        est.fit(X, y)
        return est.coef_, np.atleast_1d(est.intercept_)
    common = {"tol": 1e-13, "max_iter": 200_000}
    if penalty == "none":
        est = lm.LogisticRegression(C=np.inf, solver="lbfgs", **common)
    elif penalty == "l2":
        est = lm.LogisticRegression(C=1 / (n * REG), solver="lbfgs", **common)
    else:
        est = lm.LogisticRegression(C=1 / (n * REG), solver="saga", l1_ratio=1.0 if penalty == "l1" else l1r,
                                    **common)
    est.fit(X, y)
    if kind == "logistic":
        return est.coef_[0], est.intercept_
    return est.coef_.T, est.intercept_


def comparable(kind, penalty, w, b):
    """Softmax is invariant to one shift of every class's intercept (and, unpenalised, of each
    feature's weights): compare class-centred values there."""
    w, b = np.asarray(w, dtype=float), np.atleast_1d(np.asarray(b, dtype=float))
    if kind == "softmax":
        b = b - b.mean()
        if penalty == "none":
            w = w - w.mean(axis=1, keepdims=True)
    return np.concatenate([w.ravel(), b])


SK_CASES = [(k, p, "auto") for k in ("linear", "logistic", "softmax") for p in ("none", "l2", "l1", "elasticnet")]
SK_CASES += [("logistic", "l2", "lbfgs"), ("linear", "none", "lbfgs"), ("linear", "l2", "newton-cg"),
             ("softmax", "l2", "newton"), ("softmax", "none", "newton"),
             ("logistic", "l2", "newton-cg"), ("softmax", "none", "newton-cg"), ("logistic", "none", "owlqn")]


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("kind,penalty,solver", SK_CASES)
def test_matches_sklearn_with_the_same_bits_on_any_rank_count(kind, penalty, solver):
    extra = ["train.newton_max_params=1"] if solver == "newton-cg" else []  # the Hessian-vector path
    cfg = config(kind, solver.split("-")[0], penalty, *extra)
    out = Path(run_on_root(WORLD, lambda: tempfile.mkdtemp(prefix="glmsolv-run-")))
    code, s, p = train(cfg, WORLD, out / "world")
    code1, s1, p1 = train(cfg, MPI.COMM_SELF, out / f"self{WORLD.rank}")
    parallel_assert(WORLD, code == code1 == 0, lambda: f"exit codes {code}, {code1}")
    parallel_assert(WORLD, p == p1, "the parameters differ from a one-rank run's bits")
    assert s["solver_stats"] == s1["solver_stats"] and s["steps"] == s1["steps"]
    # auto: owlqn with L1; newton for least squares and d·K <= 8 (logistic, 4 columns), else lbfgs
    smooth = "newton" if kind != "softmax" else "lbfgs"
    want = {"none": smooth, "l2": smooth, "l1": "owlqn", "elasticnet": "owlqn"}[penalty] \
        if solver == "auto" else solver.split("-")[0]
    assert s["solver"] == want and s["solver_requested"] == solver.split("-")[0]
    assert s["stop_reason"] in ("tol", "eta_floor"), s["stop_reason"]  # converged, not out of steps
    stats = s["solver_stats"]
    assert stats["iterations"] == s["steps"] and stats["function_evals"] >= s["steps"]
    if want == "newton" and kind == "linear" and solver != "newton-cg":  # X^T X of the reference pass
        assert stats["passes"] == 0 and s["steps"] <= 2, stats
    else:
        assert stats["passes"] >= stats["function_evals"], stats
    if solver == "newton-cg":
        assert stats["hessian"] == "cg" and stats["hv_evals"] > 0 and stats["hessian_evals"] == 0
    elif want == "newton":
        assert stats["hessian"] == "dense" and stats["hessian_evals"] == stats["function_evals"]
    ref_w, ref_b = sklearn_fit(kind, penalty)
    ours = comparable(kind, penalty, s["w"], s["b"])
    ref = comparable(kind, penalty, ref_w, ref_b)
    rel = float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))
    assert rel <= 1e-6, f"{kind}/{penalty}/{solver}: relative difference {rel:.2e} to scikit-learn"
    if penalty in ("l1", "elasticnet"):  # OWL-QN lands on exact zeros where scikit-learn's has them
        zeros = np.asarray(s["w"]) == 0.0
        assert np.array_equal(zeros, np.abs(np.asarray(ref_w)) <= 1e-9), (s["w"], ref_w)
        assert kind != "logistic" or zeros[2], s["w"]  # the zero true weight (the L1 case with one)


RESUME = {"lbfgs": ("logistic", "l2", 6, 3), "owlqn": ("softmax", "l1", 8, 5),
          "newton": ("softmax", "l2", 4, 2), "newton-cg": ("logistic", "l2", 4, 1)}


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("case", list(RESUME))
def test_resume_on_another_rank_count_is_bitwise_exact(case):
    kind, penalty, steps, split = RESUME[case]
    args = ["train.tol=0", "checkpoint.every=1"] + (["train.newton_max_params=1"] if case == "newton-cg" else [])

    # configs first: config() writes the data file through a collective, so never inside run_on_root
    configs = {n: config(kind, case.split("-")[0], penalty, *args, f"train.steps={n}") for n in (split, steps)}
    cfg = configs.__getitem__
    out = Path(run_on_root(WORLD, lambda: tempfile.mkdtemp(prefix="glmsolv-resume-")))
    _, s, whole = train(cfg(steps), WORLD, out / "straight")
    assert s["steps"] == steps and s["stop_reason"] == "steps"
    run_on_root(WORLD, lambda: train(cfg(split), MPI.COMM_SELF, out / "a")[0])  # one rank writes
    code, s_a, p_a = train(cfg(steps), WORLD, out / "a", resume="auto")  # all resume
    parallel_assert(WORLD, code == 0 and p_a == whole, "resumed on the world: other bits than a straight run")
    assert s_a["solver_stats"] == s["solver_stats"], (s_a["solver_stats"], s["solver_stats"])
    train(cfg(split), WORLD, out / "b")  # all write, one resumes
    p_b = run_on_root(WORLD, lambda: train(cfg(steps), MPI.COMM_SELF, out / "b", "auto")[2])
    parallel_assert(WORLD, p_b == whole, "resumed on one rank: other bits than a straight run")


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("solver", ["lbfgs", "newton"])
def test_a_smooth_solver_with_an_l1_penalty_is_one_sentence(solver):
    out = Path(run_on_root(WORLD, lambda: tempfile.mkdtemp(prefix="glmsolv-bad-")))
    with parallel_raises(WORLD, UserError, rf"train.solver={solver} needs a smooth objective; .*use "
                                           rf"train.solver=owlqn"):
        run_job(config("logistic", solver, "l1"), WORLD, out / "r")


@pytest.mark.mpi(min_size=1)
def test_resuming_a_gd_checkpoint_with_lbfgs_is_one_sentence():
    out = Path(run_on_root(WORLD, lambda: tempfile.mkdtemp(prefix="glmsolv-mix-")))
    train(config("logistic", "gd", "l2", "train.steps=3"), WORLD, out / "r")
    with parallel_raises(WORLD, UserError, r"written by train.solver=gd, this job uses lbfgs"):
        run_job(config("logistic", "lbfgs", "l2", "train.steps=6"), WORLD, out / "r", "auto")
