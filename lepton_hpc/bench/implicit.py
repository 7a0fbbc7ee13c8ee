"""Benchmark: implicit-feedback ALS against the ``implicit`` library's AlternatingLeastSquares.

    python -m lepton_hpc.bench implicit [--users 50000 --items 2000 --density 0.01 --factors 16
                                         --iterations 10 --reg 0.1 --alpha 5 --inner cg --threads 2]

The same data and split (``data synth mf --implicit``, generated in-process per user
chunk; 10% of the interactions held out), the same initial factors (lepton_hpc's, handed
to the library), factors, regularisation (``model.reg_scaling = none``: the library's λ is
not count-scaled), confidence and iterations. The library (0.7) weighs an interaction by
the value it is given times its ``alpha``: it gets 1 + α r and ``alpha = 1``, the
confidence 1 + α r of ``model.alpha = α``. Its CG (``use_cg``, 3 steps) is compared with
``model.inner_solver = cg`` (``model.cg_steps = 3``), its Cholesky with ``cholesky``.

Sides, alternating over ``--rounds`` (A B, B A, …): ``ours`` is one ``mpiexec -n
--ranks`` launch of the training app (time per iteration: rank 0's ``t_step_s``, the
first sweep dropped); ``implicit`` is ``fit`` in this process with ``--threads`` threads
(BLAS at 1 thread, as the library asks), time per iteration from its callback, the
first dropped. ``ratio`` = implicit's time / ours (target ``>= 1.0``: ours no slower).
``precision_pass``: |precision@10 ours − theirs| <= 0.01, both scored by
:mod:`lepton_hpc.problems.mf_ranking` on the same held-out interactions; ``pass`` needs both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import blas_summary, find_mpiexec, launch_ranks, note, provenance, spread, verdict
from .common import check_jobs, executable, non_negative_float, non_negative_int
from .common import positive_float, positive_int, ranks_type

TARGET = 1.0
CHUNK = 4096


def data_keys(args) -> list[str]:
    return ["data.path=", f"data.rows={args.users}", f"data.cols={args.items}", f"data.density={args.density}",
            f"data.true_rank={args.true_rank}", "data.implicit=true", f"data.seed={args.seed}",
            "data.test_fraction=0.1", f"data.chunk_rows={CHUNK}"]


def job_keys(args) -> list[str]:
    return ["model.kind=mf", *data_keys(args), f"model.rank={args.factors}", f"model.reg={args.reg}",
            "model.reg_scaling=none", "model.feedback=implicit", f"model.alpha={args.alpha}",
            f"model.inner_solver={args.inner}", "model.cg_steps=3", "model.top_k=10", "train.solver=als",
            f"train.steps={args.iterations}", "train.tol=0", "train.log_every=1", "checkpoint.every=0",
            "train.threads=1"]


def ours(args, workdir: Path) -> dict:
    out = workdir / f"ours-{time.monotonic_ns()}"
    cmd = [find_mpiexec(args.mpiexec), "-n", str(args.ranks), sys.executable, "-m", "lepton_hpc.train",
           "--out", str(out), *[f"--set={o}" for o in job_keys(args)]]
    proc = launch_ranks(cmd, args.timeout, "bench implicit", drop_slurm=True)
    if proc.returncode != 0 or not (out / "summary.json").exists():
        raise SystemExit(f"bench implicit: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    s = json.loads((out / "summary.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    per = [r["t_step_s"] for r in recs][1:] or [recs[0]["t_step_s"]]
    res = {"iter_s": float(np.median(per)), "precision_at_10": s["precision_at_10"], "recall_at_10": s["recall_at_10"],
           "ndcg_at_10": s["ndcg_at_10"], "auc": s["auc"], "users_evaluated": s["users_evaluated"],
           "interactions_train": s["data"]["interactions_train"]}
    note(f"  ours -n {args.ranks}: {res['iter_s'] * 1e3:.0f} ms/iteration, precision@10 {res['precision_at_10']:.4f}")
    return res


def load_split(args):
    """The training matrix (1 + α r, CSR), the initial factors and the one-rank shard, as the job sees them."""
    import scipy.sparse as sp

    from ..config import build
    from ..data.ratings import RatingsShard
    from ..problems.mf import init_factors

    cfg = build({}, "bench-implicit", data_keys(args))
    sh = RatingsShard(cfg.data, 1, 0)
    r, c, v = (np.concatenate([(b.train[0] + b.user_lo, b.train[1], b.train[2])[j] for b in sh.blocks])
               for j in range(3))
    M = sp.csr_matrix((1.0 + args.alpha * v, (r, c)), shape=(sh.n_users, sh.n_items))
    U0, V0 = init_factors(args.seed, args.factors, sh.n_items, range(sh.n_chunks), sh.n_users, CHUNK)
    return M, U0, V0, sh


def theirs(args, M, U0, V0, sh) -> dict:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from ..problems import mf_ranking

    dtype = np.dtype(args.dtype)
    model = AlternatingLeastSquares(factors=args.factors, regularization=args.reg, alpha=1.0, dtype=dtype,
                                    use_cg=args.inner == "cg", iterations=args.iterations, num_threads=args.threads,
                                    random_state=args.seed)
    model.user_factors, model.item_factors = U0.astype(dtype), V0.astype(dtype)
    stamps = [time.perf_counter()]
    with threadpool_limits(1, "blas"):
        model.fit(M.astype(dtype), show_progress=False, callback=lambda *a, **k: stamps.append(time.perf_counter()))
        blas = blas_summary()
    per = np.diff(stamps)[1:] if len(stamps) > 2 else np.diff(stamps)
    U, V = np.asarray(model.user_factors, dtype=np.float64), np.asarray(model.item_factors, dtype=np.float64)
    sums = sum(mf_ranking.chunk_sums(U[b.user_lo:b.user_lo + b.n_users], V, b.train[:2], b.test[:2], 10)
               for b in sh.blocks)
    res = {"iter_s": float(np.median(per)), **mf_ranking.means(sums, 10), "_blas": blas}
    note(f"  implicit {args.threads} threads: {res['iter_s'] * 1e3:.0f} ms/iteration, "
         f"precision@10 {res['precision_at_10']:.4f}")
    return res


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench implicit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=positive_int, default=50_000, help="number of users (rows of the ratings)")
    p.add_argument("--items", type=positive_int, default=2000, help="number of items (columns of the ratings)")
    p.add_argument("--density", type=positive_float, default=0.01, help="draws per user-item entry")
    p.add_argument("--true-rank", type=positive_int, default=8, help="rank of the ground-truth factors")
    p.add_argument("--factors", type=positive_int, default=16, help="rank of the fitted factors")
    p.add_argument("--iterations", type=positive_int, default=10, help="ALS iterations per run")
    p.add_argument("--reg", type=non_negative_float, default=0.1, help="regularisation lambda")
    p.add_argument("--alpha", type=non_negative_float, default=5.0, help="confidence 1 + alpha * r of an interaction")
    p.add_argument("--inner", choices=("cg", "cholesky"), default="cg", help="per-row solver: conjugate gradient or Cholesky")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="the library's factors")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the generated data")
    p.add_argument("--ranks", type=ranks_type(1), default=2, help="MPI ranks of the lepton_hpc run")
    p.add_argument("--threads", type=positive_int, default=2, help="the library's num_threads")
    p.add_argument("--rounds", type=positive_int, default=2, help="timed A/B rounds (medians are reported)")
    p.add_argument("--timeout", type=positive_int, default=600, help="seconds before a launch is killed")
    p.add_argument("--mpiexec", type=executable, help="mpiexec to launch with (default: found on PATH)")
    p.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    args = p.parse_args(argv)
    for name in ("factors", "true_rank"):
        if getattr(args, name) > min(args.users, args.items):
            p.error(f"argument --{name.replace('_', '-')}: must be <= min(--users, --items) = "
                    f"{min(args.users, args.items)}, got {getattr(args, name)}")
    check_jobs(p, [job_keys(args)])
    return args


def main(argv=None) -> dict:
    args = parse(sys.argv[1:] if argv is None else list(argv))
    t, load0 = time.perf_counter(), os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="lepton-bench-implicit-"))
    M, U0, V0, sh = load_split(args)
    runs = {"ours": [], "implicit": []}
    try:
        for rnd in range(args.rounds):
            for side in ("ours", "implicit") if rnd % 2 == 0 else ("implicit", "ours"):
                runs[side].append(ours(args, workdir) if side == "ours" else theirs(args, M, U0, V0, sh))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    blas = runs["implicit"][-1].pop("_blas")
    for r in runs["implicit"]:
        r.pop("_blas", None)
    t_ours, t_lib = [r["iter_s"] for r in runs["ours"]], [r["iter_s"] for r in runs["implicit"]]
    v = verdict(t_lib, t_ours, TARGET, ">=")
    p_ours, p_lib = runs["ours"][-1]["precision_at_10"], runs["implicit"][-1]["precision_at_10"]
    import implicit

    return {"bench": "implicit", "implicit_version": implicit.__version__,
            "data": {"users": args.users, "items": args.items, "density": args.density, "true_rank": args.true_rank,
                     "interactions_train": runs["ours"][0]["interactions_train"], "test_fraction": 0.1},
            "factors": args.factors, "iterations": args.iterations, "reg": args.reg, "alpha": args.alpha,
            "inner_solver": args.inner, "ranks": args.ranks, "implicit_threads": args.threads,
            "implicit_dtype": args.dtype, "rounds": args.rounds,
            "iter_s_ours": spread(t_ours), "iter_s_implicit": spread(t_lib),
            "metrics_ours": {k: runs["ours"][-1][k] for k in ("precision_at_10", "recall_at_10", "ndcg_at_10", "auc")},
            "metrics_implicit": {k: runs["implicit"][-1][k]
                                 for k in ("precision_at_10", "recall_at_10", "ndcg_at_10", "auc")},
            "precision_diff": abs(p_ours - p_lib), "precision_pass": bool(abs(p_ours - p_lib) <= 0.01),
            **v, "pass": bool(v["pass"] and abs(p_ours - p_lib) <= 0.01), "wall_s": time.perf_counter() - t,
            "loadavg": {"start_1_5_15m": list(load0), "end_1_5_15m": list(os.getloadavg())},
            "provenance": provenance(blas=blas)}


def cli(argv=None) -> int:
    result = main(argv)
    print(json.dumps(result), flush=True)
    return 3 if "--strict" in (sys.argv[1:] if argv is None else list(argv)) and not result["pass"] else 0
