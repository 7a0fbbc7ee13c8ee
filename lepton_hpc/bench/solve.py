"""Benchmark: time to the answer, lepton_hpc ``train.solver=auto`` vs scikit-learn.

    python -m lepton_hpc.bench solve [--rows 1000000 --cols 64 --reg 1e-4 --ranks 2 --rounds 1]
                                     [--what logistic,softmax,linear --softmax-cols 32 --classes 4]

Each problem's data is written once by ``python -m lepton_hpc.data synth KIND`` to an HDF5 file
on disk (not timed). Then, alternating (A B, B A, ...) over ``--rounds`` rounds, two whole
processes are timed from launch to exit, both reading that file:

* lepton_hpc: ``mpiexec -n RANKS python -m lepton_hpc.train`` with ``train.solver=auto``,
  ``model.penalty=l2``, ``model.reg=REG``, ``train.tol=--tol``, no checkpoints until the end;
  ranks single-threaded;
* scikit-learn with 2 BLAS threads (``threadpoolctl``): h5py reads X and y, then
  ``LogisticRegression(solver="lbfgs", C=1/(n·REG), tol=--sk-tol)`` (multinomial for softmax),
  ``Ridge(alpha=n·REG, solver="cholesky")`` for linear.

The objective of both answers, ``mean(loss) + REG/2·|w|²``, is evaluated afterwards by one
numpy function in this process; both must lie within 1e-8 relative of the lower one
(``same_objective``). ``ratio`` is scikit-learn's median wall time over lepton_hpc's for the
logistic problem (target >= 2.0); softmax and linear are reported with their own ratios.
Where lepton's time goes: ``lepton_startup_s`` is ``mpiexec -n RANKS python -c "import
lepton_hpc.train, scipy.special, h5py"`` alone, ``phases_s`` rank 0's phases from summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import RANK_ENV, find_mpiexec, launch_ranks, note, provenance, spread, verdict
from .common import check_jobs, executable, int_in, non_negative_float, positive_float, positive_int, ranks_type

TARGET = 2.0

SKLEARN = r"""
import json, sys, time
import h5py, numpy as np
from threadpoolctl import threadpool_limits, threadpool_info
kind, path, reg, tol = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
with h5py.File(path, "r") as f:
    X, y = f["X"][()], f["y"][()]
n = len(y)
with threadpool_limits(2):
    from sklearn import linear_model as lm
    if kind == "linear":
        est = lm.Ridge(alpha=n * reg, solver="cholesky").fit(X, y)
        w, b, it = est.coef_.ravel(), np.atleast_1d(est.intercept_), 1
    else:
        est = lm.LogisticRegression(C=1.0 / (n * reg), solver="lbfgs", tol=tol, max_iter=1000).fit(X, y)
        w = est.coef_[0] if kind == "logistic" else est.coef_.T.ravel()
        b = est.intercept_ if kind == "softmax" else est.intercept_[:1]
        it = int(np.max(est.n_iter_))
    blas = [{k: i.get(k) for k in ("internal_api", "num_threads")} for i in threadpool_info()
            if i.get("user_api") == "blas"]
print(json.dumps({"w": w.tolist(), "b": b.tolist(), "iterations": it, "blas": blas}))
"""


def objective(kind: str, X, y, w, b, reg: float) -> float:
    """mean(loss) + reg/2·|w|², the objective both tools minimise (lepton's scaling)."""
    w, b = np.asarray(w, dtype=float), np.asarray(b, dtype=float)
    if kind == "softmax":
        K = len(b)
        Z = X @ w.reshape(X.shape[1], K) + b
        zmax = Z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(Z - zmax).sum(axis=1)) + zmax[:, 0]
        loss = float(np.mean(lse - Z[np.arange(len(y)), y.astype(np.intp)]))
    else:
        z = X @ w.ravel() + b[0]
        loss = float(np.mean(0.5 * (z - y) ** 2)) if kind == "linear" else \
            float(np.mean(np.logaddexp(0.0, z) - y * z))
    return loss + 0.5 * reg * float(w.ravel() @ w.ravel())


def make_data(args, kind: str, workdir: Path) -> tuple[Path, int]:
    cols = args.softmax_cols if kind == "softmax" else args.cols
    path = workdir / f"{kind}.h5"
    cmd = [sys.executable, "-m", "lepton_hpc.data", "synth", kind, "--rows", str(args.rows), "--cols", str(cols),
           "--seed", "0", "--out", str(path)] + (["--classes", str(args.classes)] if kind == "softmax" else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise SystemExit(f"bench solve: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return path, cols


def job_sets(args, kind: str) -> list[str]:
    """The keys of lepton's run of ``kind`` (its data.path aside)."""
    return [f"model.kind={kind}", "model.penalty=l2", f"model.reg={args.reg}", "train.solver=auto",
            f"train.tol={args.tol}", "train.steps=200", "train.log_every=1", "checkpoint.every=0",
            "train.threads=1", *args.overrides]


def run_lepton(args, kind: str, path: Path, workdir: Path) -> dict:
    out = workdir / f"lepton-{kind}-{time.monotonic_ns()}"
    sets = [f"data.path={path}", *job_sets(args, kind)]
    cmd = [find_mpiexec(args.mpiexec), "-n", str(args.ranks), sys.executable, "-m", "lepton_hpc.train",
           "--out", str(out), *[f"--set={s}" for s in sets]]
    t = time.perf_counter()
    proc = launch_ranks(cmd, args.timeout, "bench solve", drop_slurm=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or not (out / "summary.json").exists():
        raise SystemExit(f"bench solve: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    s = json.loads((out / "summary.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return {"wall_s": wall, "w": np.asarray(s["w"]).ravel().tolist(), "b": np.atleast_1d(s["b"]).tolist(),
            "solver": s["solver"], "steps": s["steps"], "stop_reason": s["stop_reason"],
            "solver_stats": s["solver_stats"], "run_wall_s": s["wall_s"],
            "phases_s": {p: v["max"] for p, v in s["phases_s"].items()}}


def run_sklearn(args, kind: str, path: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    cmd = [sys.executable, "-c", SKLEARN, kind, str(path), repr(args.reg), repr(args.sk_tol)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"bench solve: scikit-learn ({kind}) exited {proc.returncode}: {proc.stderr[-1500:]}")
    return {"wall_s": wall, **json.loads(proc.stdout.strip().splitlines()[-1])}


def startup_s(args) -> float:
    """mpiexec + the imports a training rank needs, nothing else."""
    cmd = [find_mpiexec(args.mpiexec), "-n", str(args.ranks), sys.executable, "-c",
           "import lepton_hpc.train, lepton_hpc.problems.glm, scipy.special, scipy.linalg, h5py"]
    t = time.perf_counter()
    launch_ranks(cmd, args.timeout, "bench solve")
    return time.perf_counter() - t


def bench_kind(args, kind: str, workdir: Path) -> dict:
    path, cols = make_data(args, kind, workdir)
    lep, sk = [], []
    for rnd in range(args.rounds):
        for side in ("lepton", "sklearn") if rnd % 2 == 0 else ("sklearn", "lepton"):
            res = run_lepton(args, kind, path, workdir) if side == "lepton" else run_sklearn(args, kind, path)
            (lep if side == "lepton" else sk).append(res)
            note(f"  {kind} {side}: {res['wall_s']:.2f} s")
    import h5py

    with h5py.File(path, "r") as f:
        X, y = f["X"][()], f["y"][()]
    f_lep = objective(kind, X, y, lep[-1]["w"], lep[-1]["b"], args.reg)
    f_sk = objective(kind, X, y, sk[-1]["w"], sk[-1]["b"], args.reg)
    best = min(f_lep, f_sk)
    rel = {"lepton": (f_lep - best) / abs(best), "sklearn": (f_sk - best) / abs(best)}
    t_lep, t_sk = [r["wall_s"] for r in lep], [r["wall_s"] for r in sk]
    last = lep[-1]
    return {"rows": args.rows, "cols": cols, "classes": args.classes if kind == "softmax" else None,
            "lepton_s": spread(t_lep), "sklearn_s": spread(t_sk),
            "objective": {"lepton": f_lep, "sklearn": f_sk, "rel_above_best": rel},
            "same_objective": bool(max(rel.values()) <= 1e-8),
            "lepton": {k: last[k] for k in ("solver", "steps", "stop_reason", "solver_stats", "run_wall_s",
                                            "phases_s")},
            "sklearn_iterations": sk[-1]["iterations"], "sklearn_blas": sk[-1]["blas"],
            **verdict(t_sk, t_lep, TARGET, ">=")}


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench solve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=positive_int, default=1_000_000, help="rows of the generated data")
    p.add_argument("--cols", type=positive_int, default=64, help="logistic and linear")
    p.add_argument("--softmax-cols", type=positive_int, default=32, help="feature columns of the softmax case")
    p.add_argument("--classes", type=int_in(2), default=4, help="classes of the softmax case")
    p.add_argument("--reg", type=non_negative_float, default=1e-4, help="regularisation lambda")
    p.add_argument("--ranks", type=ranks_type(1), default=2, help="MPI ranks of the lepton_hpc run")
    p.add_argument("--rounds", type=positive_int, default=1, help="timed launches of each side (alternating order)")
    p.add_argument("--what", default="logistic,softmax,linear", help="comma-separated cases to run")
    p.add_argument("--tol", type=positive_float, default=1e-8, help="lepton's train.tol (|grad| <= tol |grad_0|)")
    p.add_argument("--sk-tol", type=positive_float, default=1e-6, help="scikit-learn's tol")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help="extra config override for the lepton_hpc runs (repeatable)")
    p.add_argument("--timeout", type=positive_int, default=600, help="seconds before a launch is killed")
    p.add_argument("--mpiexec", type=executable, help="mpiexec to launch with (default: found on PATH)")
    p.add_argument("--strict", action="store_true", help="exit 3 when the target is missed")
    args = p.parse_args(argv)
    kinds = [k for k in args.what.split(",") if k]
    if not kinds or any(k not in ("logistic", "softmax", "linear") for k in kinds):
        p.error("--what takes a comma list of logistic, softmax, linear")
    args.kinds = kinds
    check_jobs(p, [job_sets(args, kind) for kind in kinds])
    return args


def main(argv=None) -> dict:
    args = parse(sys.argv[1:] if argv is None else list(argv))
    t, load0 = time.perf_counter(), os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="lepton-bench-solve-"))
    try:
        results = {kind: bench_kind(args, kind, workdir) for kind in args.kinds}
        start = startup_s(args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    head = results.get("logistic") or next(iter(results.values()))
    out = {"bench": "solve", "ranks": args.ranks, "reg": args.reg, **results,
           "lepton_startup_s": start, "rank_env": RANK_ENV,
           **{k: head[k] for k in ("ratio", "paired_ratio", "target", "target_is")},
           "pass": bool(head["pass"] and all(r["same_objective"] for r in results.values())),
           "wall_s": time.perf_counter() - t,
           "loadavg": {"start_1_5_15m": list(load0), "end_1_5_15m": list(os.getloadavg())},
           "provenance": provenance()}
    return out


def cli(argv=None) -> int:
    result = main(argv)
    print(json.dumps(result), flush=True)
    return 3 if "--strict" in (sys.argv[1:] if argv is None else list(argv)) and not result["pass"] else 0
