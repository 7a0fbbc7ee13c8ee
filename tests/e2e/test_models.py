"""Linear, logistic and softmax models on real and synthetic data, against scikit-learn.

Starting ranks dominates on a small shared machine, so the runs are batched:
three ``mpiexec`` launches (-n 1, -n 3, -n 2) each run this file as a driver
that calls the real entry points (``lepton_hpc.train.main`` and
``lepton_hpc.evaluate.main``) once per job, in one MPI world. The tests then
read the run directories. Every job is an ordinary command line: the plan
files under the session's temporary folder list them.

The held-out split is rebuilt exactly as :meth:`Shard.test_mask` draws it
(per row from (seed, global row), :mod:`lepton_hpc.data.split`), and
scikit-learn is fitted on the same standardized training rows with the same
penalty: ``LogisticRegression(C = 1 / (reg · Σ train weights))``,
``Ridge(alpha = reg · n_train)``, ``ElasticNet(alpha = reg, l1_ratio)``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: mpirun (also as a script)

from mpirun import ROOT, final_params, mpiexec, rank_env, summary  # noqa: E402

JOBS = {  # data set: (job file, kind, chunk_rows of the job)
    "diabetes": ("diabetes_linear.toml", "linear", 64),
    "breast_cancer": ("breast_cancer_logistic.toml", "logistic", 64),
    "digits": ("digits_softmax.toml", "softmax", 256),
    "wine": ("wine_softmax.toml", "softmax", 32),
}
EVALUATED = ("diabetes", "breast_cancer", "digits")  # one data set per kind goes through evaluate
THREE_RANKS = ("breast_cancer", "digits")  # also run at -n 3: the same bits as at -n 1 (every solver: test_glm_loop)
SEED, TEST_FRACTION = 0, 0.25
MB_COMMON = ["--set", "data.rows=3000", "--set", "data.cols=6", "--set", "data.chunk_rows=250",
             "--set", "data.test_fraction=0.2", "--set", "train.tol=0",
             "--set", "train.log_every=5", "--set", "checkpoint.every=5"]
MB = {  # mini-batches of both sampling paths (lepton_hpc.sampling): 200 rows of 3000 are a few per chunk
    # (numpy over the whole batch), 600 rows are many per chunk (a kernel call per chunk segment)
    "softmax": [*MB_COMMON, "--set", "train.batch_size=200", "--set", "model.kind=softmax",
                "--set", "model.standardize=true", "--set", "model.penalty=elasticnet", "--set", "model.reg=0.01",
                "--set", "model.l1_ratio=0.3",
                "--set", "optimizer.name=inverse_time", "--set", "optimizer.alpha=0.05",
                "--set", "optimizer.learning_rate=0.5"],
    "logistic": [*MB_COMMON, "--set", "train.batch_size=600", "--set", "model.kind=logistic",
                 "--set", "model.penalty=l2", "--set", "model.reg=0.01",
                 "--set", "optimizer.name=momentum", "--set", "optimizer.alpha=0",
                 "--set", "optimizer.learning_rate=0.2"],
}
MB_STEPS, MB_SPLIT = 50, 23  # 15 (5) batches an epoch: the split falls mid-epoch
# option matrix: every kind with every penalty, and intercept / standardize / sample weights varied
OPTIONS = [  # (kind, penalty, fit_intercept, standardize, weighted)
    ("linear", "none", True, False, True), ("linear", "l2", False, False, False),
    ("linear", "l1", True, True, True), ("linear", "elasticnet", True, True, False),
    ("logistic", "none", False, False, False), ("logistic", "l2", True, True, True),
    ("logistic", "l1", True, True, True), ("logistic", "elasticnet", False, False, True),
    ("softmax", "none", True, False, True), ("softmax", "l2", False, False, False),
    ("softmax", "l1", True, True, False), ("softmax", "elasticnet", True, True, True),
]
OPT_REG, OPT_L1_RATIO, OPT_CHUNK = 0.05, 0.5, 100
SCALE = {"logistic": (200_000, 20), "softmax": (100_000, 16)}  # synthetic at scale: rows, cols


# -- the driver (runs under mpiexec) -------------------------------------------------
def drive(plan_file: str) -> int:
    """Run every job of a plan in this MPI world; rank 0 writes the exit codes."""
    from mpi4py import MPI

    from lepton_hpc import evaluate, train

    rank = MPI.COMM_WORLD.rank
    plan = json.loads(Path(plan_file).read_text())
    codes = []
    for item in plan["runs"]:
        log = item["log"] if rank == 0 else f"{item['log']}.rank{rank}"
        with open(log, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            main = train.main if item["cmd"] == "train" else evaluate.main
            codes.append(main(item["args"]))
    if rank == 0:
        Path(plan["codes"]).write_text(json.dumps(codes))
    return 0


def launch(n: int, runs: list[dict], where: Path, timeout: float = 400) -> None:
    """One ``mpiexec -n n`` of the driver over ``runs``; fails the test with the logs of a failed job."""
    plan = {"runs": runs, "codes": str(where / f"codes-n{n}.json")}
    plan_file = where / f"plan-n{n}.json"
    plan_file.write_text(json.dumps(plan, indent=1))
    cmd = [mpiexec(), "-n", str(n), sys.executable, str(Path(__file__).resolve()), str(plan_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=rank_env({"MPIEXEC_TIMEOUT": str(int(timeout) - 20)}))
    codes = json.loads(Path(plan["codes"]).read_text()) if Path(plan["codes"]).exists() else []
    want = [r.get("expect", 0) for r in runs]
    if proc.returncode != 0 or codes != want:
        bad = next((r for r, c, w in zip(runs, codes + [None] * len(runs), want) if c != w), runs[-1])
        text = Path(bad["log"]).read_text() if Path(bad["log"]).exists() else ""
        pytest.fail(f"mpiexec -n {n} driver: exit {proc.returncode}, codes {codes}; failed job "
                    f"{bad['cmd']} {' '.join(bad['args'])}\n{text[-4000:]}\n{proc.stderr[-3000:]}")


def train_run(out: Path, args: list) -> dict:
    return {"cmd": "train", "args": [*map(str, args), "--out", str(out)], "log": f"{out}.log"}


def evaluate_run(run_dir: Path, data: Path | None = None) -> dict:
    args = [str(run_dir)] + ([] if data is None else ["--data", str(data)])
    return {"cmd": "evaluate", "args": args, "log": f"{run_dir}.eval{'' if data is None else '-data'}.log"}


# -- data --------------------------------------------------------------------------
def _add_weights(path: Path, seed: int) -> None:
    with h5py.File(path, "a") as f:
        n = f["y"].shape[0]
        f["w"] = np.random.default_rng(seed).uniform(0.5, 2.0, n)


def make_data(where: Path) -> dict:
    from lepton_hpc.data.classification import synth_classification
    from lepton_hpc.data.importers import import_sklearn

    files = {}
    for name in JOBS:
        files[name] = where / f"{name}.h5"
        import_sklearn(name, str(files[name]))
    files["wine_w"] = where / "wine_w.h5"
    import_sklearn("wine", str(files["wine_w"]))
    _add_weights(files["wine_w"], 1)
    for kind in ("linear", "logistic", "softmax"):  # small, for the option matrix
        files[f"opt_{kind}"] = where / f"opt_{kind}.h5"
        option_data(files[f"opt_{kind}"], kind)
    for kind, (rows, cols) in SCALE.items():
        p = where / f"scale_{kind}.h5"
        synth_classification(str(p), kind, rows, cols, 4 if kind == "softmax" else None, 0.5, 3, 4096)
        files[f"scale_{kind}"] = p
    return files


def option_data(path: Path, kind: str, rows: int = 800) -> None:
    """Five mildly scaled columns of which the last two are noise (L1 zeroes them), and weights /w."""
    from scipy.special import softmax

    rng = np.random.default_rng(7)
    X = rng.standard_normal((rows, 5)) * [1.0, 1.5, 0.7, 1.0, 1.2] + [0.0, 0.5, -0.5, 0.0, 0.3]
    W = np.array([[1.5, -1.0, 0.5], [-0.7, 0.8, 0.0], [2.0, 0.0, -1.5], [0, 0, 0], [0, 0, 0]])
    if kind == "linear":
        y = X @ W[:, 0] + 0.5 + rng.standard_normal(rows)
    elif kind == "logistic":
        y = (rng.random(rows) < 1 / (1 + np.exp(-(X @ W[:, 0] + 0.3)))).astype(float)
    else:
        P = softmax(X @ W + [0.2, 0.0, -0.2], axis=1)
        y = (rng.random(rows)[:, None] > np.cumsum(P, axis=1)).sum(axis=1).astype(float)
    with h5py.File(path, "w") as f:
        f["X"], f["y"], f["w"] = X, y, rng.uniform(0.5, 2.0, rows)


def option_args(kind, penalty, intercept, standardize, weighted, data: Path) -> list[str]:
    lr = {"linear": 0.5, "logistic": 2.0, "softmax": 2.0}[kind]
    # the L1 part is a proximal step, exact after plain gradient steps (momentum is refused with it)
    name = "constant" if penalty in ("l1", "elasticnet") else "momentum"
    return ["--set", f"data.path={data}", "--set", f"data.chunk_rows={OPT_CHUNK}",
            "--set", f"model.kind={kind}", "--set", f"model.penalty={penalty}",
            "--set", f"model.reg={OPT_REG}", "--set", f"model.l1_ratio={OPT_L1_RATIO}",
            "--set", f"model.fit_intercept={str(intercept).lower()}",
            "--set", f"model.standardize={str(standardize).lower()}",
            "--set", f"data.w_dataset={'w' if weighted else ''}",
            "--set", f"optimizer.name={name}", "--set", f"optimizer.learning_rate={lr}",
            "--set", "optimizer.momentum=0.9", "--set", "optimizer.alpha=0", "--set", "train.steps=3000",
            "--set", "train.tol=1e-13", "--set", "train.log_every=500", "--set", "checkpoint.every=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of this module, made by three driver launches; {name: run directory}."""
    where = tmp_path_factory.mktemp("models")
    files = make_data(where)
    r = {"files": files}

    def job(name, out, extra=()):
        r[out] = where / out
        return train_run(where / out, [ROOT / "jobs" / JOBS[name][0], "--set", f"data.path={files[name]}", *extra])

    for n in (1, 3, 2):
        plan = []
        if n in (1, 3):
            names = list(JOBS) if n == 1 else THREE_RANKS
            plan += [job(name, f"{name}-n{n}") for name in names]
            plan += [evaluate_run(where / f"{name}-n{n}") for name in EVALUATED if name in names]
            plan.append(evaluate_run(where / f"digits-n{n}", files["digits"]))
        for kind, args in MB.items():
            mb = where / f"mb-{kind}-n{n}"
            if n in (1, 2):  # -n 3 writes the split run; 1-4 ranks in-process: test_glm_loop
                plan.append(train_run(mb, [*args, "--set", f"train.steps={MB_STEPS}"]))
                r[f"mb-{kind}-n{n}"] = mb
            split = where / f"mb-{kind}-split"
            r[f"mb-{kind}-split"] = split
            if n == 3:
                plan.append(train_run(split, [*args, "--set", f"train.steps={MB_SPLIT}"]))
            if n == 2:
                resumed = train_run(split, [*args, "--set", f"train.steps={MB_STEPS}", "--resume", "auto"])
                resumed["log"] = f"{split}.resume.log"
                plan.append(resumed)
        if n == 2:
            for opt in OPTIONS:
                name = "opt-" + "-".join(map(str, opt))
                plan.append(train_run(where / name, option_args(*opt, files[f"opt_{opt[0]}"])))
                r[name] = where / name
            plan.append(job("wine", "wine_w", ["--set", "data.w_dataset=w", "--set", f"data.path={files['wine_w']}"]))
            # patience: full-batch and mini-batch plateaus
            plan.append(job("wine", "patience", ["--set", "train.patience=5", "--set", "train.tol=1e-4",
                                                 "--set", "train.steps=3000",
                                                 "--set", "train.solver=gd", "--set", "optimizer.name=constant",
                                                 "--set", "optimizer.learning_rate=1"]))
            refused = job("wine", "l1-momentum", ["--set", "model.penalty=l1", "--set", "train.solver=gd",
                                                  "--set", "optimizer.name=momentum"])
            plan.append({**refused, "expect": 1})
            plan.append(job("wine", "patience-mb", ["--set", "train.batch_size=32", "--set", "train.patience=2",
                                                    "--set", "train.steps=3000", "--set", "optimizer.name=momentum",
                                                    "--set", "optimizer.alpha=0",
                                                    "--set", "optimizer.learning_rate=0.5", "--set", "train.tol=1e-3"]))
            for kind in SCALE:
                out = where / f"scale-{kind}"
                plan.append(train_run(out, ["--set", f"data.path={files['scale_' + kind]}",
                                            "--set", f"model.kind={kind}", "--set", "data.test_fraction=0.25",
                                            "--set", "optimizer.name=momentum", "--set", "optimizer.alpha=0",
                                            "--set", "optimizer.learning_rate=2", "--set", "train.steps=40",
                                            "--set", "train.tol=0", "--set", "train.log_every=10",
                                            "--set", "checkpoint.every=0"]))
                r[f"scale-{kind}"] = out
        launch(n, plan, where)
    return r


# -- references ----------------------------------------------------------------------
def read_h5(path: Path, weights: bool = False):
    with h5py.File(path, "r") as f:
        X, y = f["X"][()], f["y"][()]
        s = f["w"][()] if weights else np.ones(len(y))
    return X, y, s


def test_mask(n_rows: int, chunk_rows: int, seed: int = SEED, fraction: float = TEST_FRACTION) -> np.ndarray:
    """The held-out rows, drawn as lepton_hpc.data.split documents it, in plain Python integers: row r
    is held out when the splitmix64 finaliser of key(seed) + (r + 1) * golden, top 53 bits, is below
    ``fraction``. ``chunk_rows`` must not matter (it is kept to show that it does not)."""
    golden, mask = 0x9E3779B97F4A7C15, (1 << 64) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    key = mix((seed * golden + 3) & mask)
    return np.array([(mix((key + (r + 1) * golden) & mask) >> 11) * 2.0 ** -53 < fraction
                     for r in range(n_rows)])


test_mask.__test__ = False  # a helper, not a test


def moments(X: np.ndarray, s: np.ndarray):
    """Weighted mean and standard deviation as Standardizer computes them (constant columns: 1)."""
    mu = s @ X / s.sum()
    sd = np.sqrt(np.maximum(s @ (X * X) / s.sum() - mu * mu, 0.0))
    sd[sd <= 1e-12 * np.maximum(np.abs(mu), 1.0)] = 1.0
    return mu, sd


def checkpoint_params(run_dir: Path):
    ckpt = sorted((Path(run_dir) / "checkpoints").glob("step-*.h5"))[-1]
    with h5py.File(ckpt, "r") as f:
        return f["model/w"][()], (f["model/b"][()] if "model/b" in f else None)


def sklearn_fit(kind, Xs, y, s, reg, intercept=True, penalty="l2", l1_ratio=0.0):
    """The scikit-learn model of the same penalised problem on (standardized) rows; (W, b) in those units."""
    from sklearn.linear_model import ElasticNet, LinearRegression, LogisticRegression, Ridge

    n_w = s.sum()
    if kind == "linear":
        if penalty == "none":
            m = LinearRegression(fit_intercept=intercept)
        elif penalty == "l2":
            m = Ridge(alpha=reg * n_w, fit_intercept=intercept, solver="cholesky")
        else:
            m = ElasticNet(alpha=reg, l1_ratio=1.0 if penalty == "l1" else l1_ratio, fit_intercept=intercept,
                           tol=1e-13, max_iter=200_000)
        m.fit(Xs, y, sample_weight=s)
        return m, np.ravel(m.coef_), (float(m.intercept_) if intercept else None)
    assert penalty in ("none", "l2")
    C = np.inf if penalty == "none" else 1.0 / (reg * n_w)
    m = LogisticRegression(C=C, fit_intercept=intercept, tol=1e-12, max_iter=20_000).fit(Xs, y, sample_weight=s)
    if kind == "logistic":
        return m, m.coef_[0], (float(m.intercept_[0]) if intercept else None)
    return m, m.coef_.T, (m.intercept_ if intercept else None)


def to_original(W, b, mu, sd):
    """Weights fitted on (X − μ)/σ, in the units of X."""
    W = W / (sd[:, None] if W.ndim == 2 else sd)
    return W, (None if b is None else b - mu @ W)


def rel(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def theta(W, b, kind):
    """Flat parameters for comparison; softmax intercepts are defined up to a shift: centre them."""
    if b is None:
        return np.ravel(W)
    b = np.asarray(b, dtype=float)
    return np.r_[np.ravel(W), np.ravel(b - b.mean() if kind == "softmax" else b)]


def reference(name: str, files: dict, reg: float, weights: bool = False):
    """(sklearn model, W, b in original units, standardized X, test mask) for a data set's job."""
    _, kind, chunk = JOBS[name]
    X, y, s = read_h5(files[name if not weights else name + "_w"], weights)
    test = test_mask(len(y), chunk)
    mu, sd = moments(X[~test], s[~test])
    Xs = (X - mu) / sd
    m, W, b = sklearn_fit(kind, Xs[~test], y[~test], s[~test], reg)
    W, b = to_original(W, b, mu, sd)
    return m, W, b, Xs, y, test


# -- tests: real data against scikit-learn ----------------------------------------------
@pytest.mark.parametrize("name", list(JOBS))
def test_real_data_matches_sklearn(runs, name):
    _, kind, _ = JOBS[name]
    run = runs[f"{name}-n1"]
    s = summary(run)
    assert s["stop_reason"] == "tol", s["stop_reason"]  # solved to train.tol, not cut by train.steps
    m, W, b, Xs, y, test = reference(name, runs["files"], _cfg(run)["reg"])
    w_ours, b_ours = checkpoint_params(run)
    assert rel(theta(w_ours, b_ours, kind), theta(W, b, kind)) < 1e-4
    t = s["metrics"]["test"]
    assert t["weight"] == test.sum()
    if kind == "linear":
        from sklearn.linear_model import LinearRegression

        assert abs(t["r2"] - m.score(Xs[test], y[test])) < 0.01
        ols = LinearRegression().fit(Xs[~test], y[~test])
        assert abs(t["r2"] - ols.score(Xs[test], y[test])) < 0.01
    else:
        assert abs(t["accuracy"] - m.score(Xs[test], y[test])) <= 0.01


@pytest.mark.parametrize("name", THREE_RANKS)
def test_real_data_at_3_ranks_gives_the_1_rank_bits(runs, name):
    s1, s3 = summary(runs[f"{name}-n1"]), summary(runs[f"{name}-n3"])
    assert s3["world_size"] == 3 and s1["world_size"] == 1
    assert final_params(runs[f"{name}-n1"]) == final_params(runs[f"{name}-n3"])
    assert s3["steps"] == s1["steps"] and s3["metrics"] == s1["metrics"]


def _cfg(run_dir: Path) -> dict:
    import tomllib

    return tomllib.loads((Path(run_dir) / "config.toml").read_text())["model"]


def test_sample_weights_match_sklearn(runs):
    s = summary(runs["wine_w"])
    assert s["stop_reason"] == "tol"
    m, W, b, Xs, y, test = reference("wine", runs["files"], _cfg(runs["wine_w"])["reg"], weights=True)
    w_ours, b_ours = checkpoint_params(runs["wine_w"])
    assert rel(theta(w_ours, b_ours, "softmax"), theta(W, b, "softmax")) < 1e-4
    _, _, sw = read_h5(runs["files"]["wine_w"], True)
    assert s["metrics"]["test"]["weight"] == pytest.approx(sw[test].sum(), rel=1e-12)


# -- every kind with every option ---------------------------------------------------------
def smooth_grad(kind, Xs, y, s, theta_w, theta_b, l2):
    """Gradient of Σsℓ/Σs + ½·l2·|w|² on the rows given (θ on those features)."""
    from scipy.special import expit, softmax

    z = Xs @ theta_w + (0.0 if theta_b is None else theta_b)
    if kind == "linear":
        r = z - y
    elif kind == "logistic":
        r = expit(z) - y
    else:
        r = softmax(z, axis=1)
        r[np.arange(len(y)), y.astype(int)] -= 1.0
    r = r * (s[:, None] if r.ndim == 2 else s) / s.sum()
    gw = Xs.T @ r + l2 * theta_w
    gb = None if theta_b is None else r.sum(axis=0)
    return gw, gb


@pytest.mark.parametrize("opt", OPTIONS, ids=["-".join(map(str, o)) for o in OPTIONS])
def test_every_kind_with_every_option(runs, opt):
    """Each run stops on train.tol at the optimum: the smallest subgradient vanishes (KKT), and
    where scikit-learn solves the same problem, the weights agree."""
    kind, penalty, intercept, standardize, weighted = opt
    run = runs["opt-" + "-".join(map(str, opt))]
    s = summary(run)
    assert s["stop_reason"] == "tol", (s["stop_reason"], s["steps"])
    X, y, sw = read_h5(runs["files"][f"opt_{kind}"], weighted)
    mu, sd = moments(X, sw) if standardize else (np.zeros(X.shape[1]), np.ones(X.shape[1]))
    Xs = (X - mu) / sd
    W, b = checkpoint_params(run)
    assert (b is not None) == intercept
    # back to the fitted (standardized) coordinates: W' = W σ, b' = b + μ W
    Ws = W * (sd[:, None] if W.ndim == 2 else sd)
    bs = None if b is None else b + mu @ W
    l1 = {"none": 0, "l2": 0, "l1": OPT_REG, "elasticnet": OPT_REG * OPT_L1_RATIO}[penalty]
    l2 = {"none": 0, "l2": OPT_REG, "l1": 0, "elasticnet": OPT_REG * (1 - OPT_L1_RATIO)}[penalty]
    gw, gb = smooth_grad(kind, Xs, y, sw, Ws, bs, l2)
    g0w, _ = smooth_grad(kind, Xs, y, sw, np.zeros_like(Ws), None if bs is None else np.zeros_like(bs), l2)
    sub = np.where(Ws != 0, gw + l1 * np.sign(Ws), np.sign(gw) * np.maximum(np.abs(gw) - l1, 0.0))
    kkt = np.sqrt(np.sum(sub ** 2) + (0.0 if gb is None else np.sum(gb ** 2)))
    assert kkt <= 1e-5 * np.linalg.norm(g0w), (kkt, np.linalg.norm(g0w))
    if l1:
        assert np.any(Ws == 0) or penalty == "elasticnet"  # the proximal step gives exact zeros
    if kind == "linear" or penalty in ("none", "l2"):
        _, Wr, br = sklearn_fit(kind, Xs, y, sw, OPT_REG, intercept, penalty, OPT_L1_RATIO)
        assert rel(theta(Ws, bs, kind), theta(Wr, br, kind)) < 1e-4
        if l1:
            assert np.array_equal(Ws == 0, np.asarray(Wr) == 0)


# -- evaluation -----------------------------------------------------------------------------
def sklearn_metrics(kind, z, y):
    from scipy.special import expit, softmax
    from sklearn import metrics

    if kind == "linear":
        return {"mse": metrics.mean_squared_error(y, z), "r2": metrics.r2_score(y, z)}
    k = 2 if kind == "logistic" else z.shape[1]
    pred = (z > 0).astype(int) if kind == "logistic" else z.argmax(axis=1)
    proba = expit(z) if kind == "logistic" else softmax(z, axis=1)
    out = {"log_loss": metrics.log_loss(y, proba, labels=list(range(k))),
           "accuracy": metrics.accuracy_score(y, pred),
           "confusion": metrics.confusion_matrix(y, pred, labels=list(range(k))).tolist()}
    if kind == "logistic":
        out["roc_auc"] = metrics.roc_auc_score(y, z)
    return out


def _check_metrics(got: dict, want: dict) -> None:
    for key, value in want.items():
        if key == "confusion":  # labelled, integer counts (unit weights: no "weighted" matrix)
            assert got[key]["counts"] == value and "weighted" not in got[key]
            assert len(got[key]["labels"]) == len(value)
        else:
            assert got[key] == pytest.approx(value, rel=1e-7, abs=1e-12), key


@pytest.mark.parametrize("name,n", [(name, n) for name in EVALUATED for n in (1, 3)
                                    if n == 1 or name in THREE_RANKS])
def test_evaluate_equals_sklearn_metrics(runs, name, n):
    _, kind, chunk = JOBS[name]
    run = runs[f"{name}-n{n}"]
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["world_size"] == n and set(ev) >= {"train", "test"}
    X, y, _ = read_h5(runs["files"][name])
    W, b = checkpoint_params(run)
    z = X @ W + b
    if kind != "linear":  # the classes are named: scikit-learn's target_names
        from sklearn import datasets

        names = getattr(datasets, f"load_{name}")().target_names.tolist()
        assert ev["classes"] == names and ev["train"]["confusion"]["labels"] == names
    test = test_mask(len(y), chunk)
    for split, rows in (("train", ~test), ("test", test)):
        assert ev[split]["weight"] == rows.sum()
        _check_metrics(ev[split], sklearn_metrics(kind, z[rows], y[rows]))
    # the held-out metrics of summary.json are the same numbers
    held_out = summary(run)["metrics"]["test"]
    assert held_out.keys() == ev["test"].keys() and held_out.get("confusion") == ev["test"].get("confusion")
    for key, value in ev["test"].items():
        if isinstance(value, float):
            assert held_out[key] == pytest.approx(value, rel=1e-9), key
    if name in THREE_RANKS:
        other = json.loads((runs[f"{name}-n{4 - n}"] / "evaluation.json").read_text())
        assert (other["train"], other["test"]) == (ev["train"], ev["test"])  # the same bits on 1 and 3 ranks
    if name == "digits":  # --data: every row of another file
        ev_all = json.loads((run / "evaluation-digits.json").read_text())
        assert ev_all["all"]["weight"] == len(y)
        _check_metrics(ev_all["all"], sklearn_metrics(kind, z, y))


# -- mini-batches, stopping, scale -------------------------------------------------------------
def test_batches_partition_each_epoch_whatever_the_ranks():
    """The epoch order is a bijection of the rows; the ranks' batch rows add up to each global batch."""
    from types import SimpleNamespace

    from lepton_hpc.sampling import MiniBatches, epoch_positions

    for n in (1, 2, 7, 178, 3001):
        assert np.array_equal(np.sort(epoch_positions(np.arange(n), n, 3, 1)), np.arange(n))
    n, batch = 3001, 200
    def batches(bounds):
        ranks = [MiniBatches(SimpleNamespace(n_rows=n, chunk_rows=250, row_lo=lo, row_hi=hi), batch, 0)
                 for lo, hi in zip(bounds[:-1], bounds[1:])]
        return [np.concatenate([r.rows(step) for r in ranks]) for step in range(2 * 16)]
    one, three = batches([0, n]), batches([0, 1000, 2250, n])
    assert all(np.array_equal(a, b) for a, b in zip(one, three))
    assert [len(b) for b in one[:16]] == [200] * 15 + [1]  # the last batch of an epoch is the rest
    assert np.array_equal(np.sort(np.concatenate(one[:16])), np.arange(n))
    assert not np.array_equal(one[0], one[16])  # a new order every epoch


@pytest.mark.parametrize("kind", list(MB))
def test_minibatch_is_bitwise_identical_on_1_2_ranks_and_resumes_exactly(runs, kind):
    params = [final_params(runs[f"mb-{kind}-n{n}"]) for n in (1, 2)]
    assert params[0] == params[1]
    split = runs[f"mb-{kind}-split"]
    assert final_params(split) == params[0]  # 23 steps at -n 3, resumed at -n 2
    assert f"resumed from step {MB_SPLIT} (written by 3 ranks)" in Path(f"{split}.resume.log").read_text()
    s = summary(runs[f"mb-{kind}-n2"])
    assert s["batch_size"] in (200, 600) and s["steps"] == MB_STEPS
    recs = [json.loads(l) for l in (runs[f"mb-{kind}-n2"] / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert s["metrics"]["test"]["accuracy"] > 0.7


def test_patience_stops_on_a_plateau(runs):
    full, mb = summary(runs["patience"]), summary(runs["patience-mb"])
    tol_run = summary(runs["wine-n1"])
    assert full["stop_reason"] == "plateau"
    assert full["steps"] < 3000  # train.steps
    assert full["final_loss"] == pytest.approx(tol_run["final_loss"], rel=0.02)  # a real plateau, near the optimum
    assert mb["stop_reason"] == "plateau" and mb["steps"] < 3000
    assert mb["steps"] % -(-mb["data"]["rows"] // 32) == 0  # judged on whole epochs (of all rows)


def test_l1_with_a_stateful_optimizer_is_refused(runs):
    log = Path(f"{runs['l1-momentum']}.log").read_text()
    assert "error: model.penalty=l1 takes its L1 part as a proximal step" in log
    assert "optimizer.name=momentum keeps per-coordinate state (velocity)" in log


@pytest.mark.parametrize("kind", list(SCALE))
def test_synthetic_at_scale_reaches_the_generating_accuracy(runs, kind):
    path = runs["files"][f"scale_{kind}"]
    X, y, _ = read_h5(path)
    with h5py.File(path, "r") as f:
        W = f.attrs["true_weights"]
        b = f.attrs["true_bias"] if kind == "logistic" else f.attrs["true_biases"]
    test = test_mask(len(y), 4096)
    z = X[test] @ W + b
    truth = np.mean(((z > 0) if kind == "logistic" else z.argmax(axis=1)) == y[test])
    s = summary(runs[f"scale-{kind}"])
    assert s["data"]["rows"] == SCALE[kind][0] and s["world_size"] == 2
    assert s["metrics"]["test"]["accuracy"] >= truth - 0.01, (s["metrics"]["test"]["accuracy"], truth)


if __name__ == "__main__":
    sys.exit(drive(sys.argv[1]))
