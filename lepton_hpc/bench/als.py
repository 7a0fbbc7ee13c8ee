"""Benchmark: ALS-WR (``model.reg_scaling=count``) against the old single-λ ALS, in one run.

    python -m lepton_hpc.bench als [--users 200000 --items 2000 --density 0.01 --ranks 2 --rounds 2]

The data is issue 13's table: ``data synth mf --density 0.01 --rank 8 --noise 0.5``
(generated in-process per user chunk, the same numbers as the CLI's file),
10% held out, rank 8, 10 sweeps at ``-n 2``. Two sides, launched alternately
(A B, B A, …) over ``--rounds`` rounds:

- ``none``: the old rule, ``model.reg_scaling=none`` with ``--reg-none`` (2.0,
  the job file's old λ);
- ``count``: ALS-WR with ``--reg-count`` (0.05, Spark's regParam).

``ratio`` = median sweep time of ``count`` / of ``none`` (target ``<= 1.2``);
the sweep time is rank 0's ``t_step_s`` per step in ``metrics.jsonl`` (the
first step dropped). ``rmse_pass``: the count side's test RMSE is at most
``--rmse-target`` (0.667, Spark ALS on the same data); ``pass`` needs both.
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

from .common import find_mpiexec, launch_ranks, note, provenance, spread, verdict
from .common import check_jobs, executable, fraction, non_negative_float, positive_float, positive_int, ranks_type

TARGET = 1.2
RANK = 8  # the model's and the data's


def overrides(args, scaling: str, reg: float) -> list[str]:
    return ["model.kind=mf", "data.path=", f"data.rows={args.users}", f"data.cols={args.items}",
            f"data.density={args.density}", f"data.true_rank={RANK}", "data.noise=0.5", "data.seed=0",
            "data.test_fraction=0.1", "data.chunk_rows=4096", f"model.rank={RANK}", f"model.reg={reg}",
            f"model.reg_scaling={scaling}", "train.solver=als", f"train.steps={args.sweeps}", "train.tol=0",
            "train.log_every=1", "checkpoint.every=0", "train.threads=1"]


def launch(args, scaling: str, reg: float, workdir: Path) -> dict:
    """One mpiexec launch of the training app: median sweep time and the final RMSEs."""
    out = workdir / f"{scaling}-{time.monotonic_ns()}"
    cmd = [find_mpiexec(args.mpiexec), "-n", str(args.ranks), sys.executable, "-m", "lepton_hpc.train",
           "--out", str(out), *[f"--set={o}" for o in overrides(args, scaling, reg)]]
    proc = launch_ranks(cmd, args.timeout, "bench als", drop_slurm=True)
    if proc.returncode != 0 or not (out / "summary.json").exists():
        raise SystemExit(f"bench als: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    s = json.loads((out / "summary.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    per = [r["t_step_s"] for r in recs][1:] or [recs[0]["t_step_s"]]
    res = {"sweep_s": float(np.median(per)), "sweeps": s["steps"], "test_rmse": s["test_rmse"],
           "train_rmse": s["train_rmse"], "ratings_train": s["data"]["ratings_train"],
           "test_rmse_per_sweep": [r["test_rmse"] for r in recs]}
    note(f"  {scaling} (reg {reg}): {res['sweep_s'] * 1e3:.0f} ms/sweep, test RMSE {res['test_rmse']:.4f}")
    return res


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench als", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=positive_int, default=200_000, help="number of users (rows of the ratings)")
    p.add_argument("--items", type=positive_int, default=2000, help="number of items (columns of the ratings)")
    p.add_argument("--density", type=fraction, default=0.01, help="share of observed user-item entries")
    p.add_argument("--sweeps", type=positive_int, default=10, help="ALS sweeps per run")
    p.add_argument("--ranks", type=ranks_type(1), default=2, help="MPI ranks of the lepton_hpc run")
    p.add_argument("--rounds", type=positive_int, default=2, help="launches of each side (alternating order)")
    p.add_argument("--reg-none", type=non_negative_float, default=2.0, help="λ of the old rule (reg_scaling=none)")
    p.add_argument("--reg-count", type=non_negative_float, default=0.05, help="λ of ALS-WR (reg_scaling=count)")
    p.add_argument("--rmse-target", type=positive_float, default=0.667, help="test RMSE the ALS-WR run must reach")
    p.add_argument("--timeout", type=positive_int, default=600, help="seconds per launch")
    p.add_argument("--mpiexec", type=executable, help="launcher (default: the venv's mpiexec, else PATH's)")
    p.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    args = p.parse_args(argv)
    for name in ("users", "items"):
        if getattr(args, name) < RANK:
            p.error(f"argument --{name}: must be >= {RANK} (the model rank), got {getattr(args, name)}")
    check_jobs(p, [overrides(args, scaling, reg) for scaling, reg in (("none", args.reg_none),
                                                                      ("count", args.reg_count))])
    return args


def main(argv=None) -> dict:
    args = parse(sys.argv[1:] if argv is None else list(argv))
    t, load0 = time.perf_counter(), os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="lepton-bench-als-"))
    runs = {"none": [], "count": []}
    try:
        for rnd in range(args.rounds):
            for side in ("count", "none") if rnd % 2 == 0 else ("none", "count"):
                runs[side].append(launch(args, side, args.reg_count if side == "count" else args.reg_none,
                                         workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sweep = {side: [r["sweep_s"] for r in rs] for side, rs in runs.items()}
    v = verdict(sweep["count"], sweep["none"], TARGET, "<=")
    rmse = runs["count"][-1]["test_rmse"]
    return {"bench": "als", "data": {"users": args.users, "items": args.items, "density": args.density,
                                     "ratings_train": runs["count"][0]["ratings_train"], "true_rank": 8,
                                     "noise": 0.5, "test_fraction": 0.1},
            "ranks": args.ranks, "sweeps": args.sweeps, "rounds": args.rounds,
            "reg_none": args.reg_none, "reg_count": args.reg_count,
            "sweep_s_none": spread(sweep["none"]), "sweep_s_count": spread(sweep["count"]),
            "test_rmse_none": runs["none"][-1]["test_rmse"], "test_rmse_count": rmse,
            "train_rmse_none": runs["none"][-1]["train_rmse"], "train_rmse_count": runs["count"][-1]["train_rmse"],
            "test_rmse_per_sweep_count": runs["count"][-1]["test_rmse_per_sweep"],
            "rmse_target": args.rmse_target, "rmse_pass": bool(rmse <= args.rmse_target),
            **v, "pass": bool(v["pass"] and rmse <= args.rmse_target), "wall_s": time.perf_counter() - t,
            "loadavg": {"start_1_5_15m": list(load0), "end_1_5_15m": list(os.getloadavg())},
            "provenance": provenance()}


def cli(argv=None) -> int:
    result = main(argv)
    print(json.dumps(result), flush=True)
    return 3 if "--strict" in (sys.argv[1:] if argv is None else list(argv)) and not result["pass"] else 0
