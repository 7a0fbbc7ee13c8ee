"""Benchmark: training steps of the real application on synthetic logistic data.

    python -m lepton_hpc.bench models [--what steps2v1|epoch|both] [--rows 1000000 --cols 64]
                                      [--steps 20 --rounds 3 --batch-size 65536 --epochs 4 --ranks 2]

Two targets, both ratios of medians measured in one run:

``steps2v1``
    A full-batch gradient-descent step of logistic regression (default
    10⁶ × 64) at ``-n 2`` is at least 1.6× faster than at ``-n 1``
    (``ratio`` = step time at -n 1 / step time at -n 2, target ``>= 1.6``).
``epoch``
    Per epoch, mini-batch SGD (``train.batch_size``) costs at most 1.5× a
    full-batch pass, both at ``--ranks`` ranks (``ratio`` = epoch time /
    full-batch step time, target ``<= 1.5``).

Method: every measurement is one launch of ``mpiexec -n N python -m
lepton_hpc.train`` with ``model.kind=logistic`` on synthetic data generated
per chunk (no file), ``train.tol=0`` and no checkpoints until the end. The
step time is rank 0's wall time per step between progress records
(``t_step_s`` in ``metrics.jsonl``): a record every step for full batches,
every epoch for mini-batches; the first record (warm-up) is dropped and the
rest give the launch's median. Launches alternate (A B, B A, …) over
``--rounds`` rounds, so load drifts on a shared machine hit both sides; the
verdict compares the medians over launches (``paired_ratio``: the spread of
the per-round ratios). Ranks run single-threaded. Prints ONE JSON object;
``--strict`` exits 3 when a target is missed.
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
from .common import check_jobs, executable, positive_int, ranks_type

TARGETS = {"steps2v1": (1.6, ">="), "epoch": (1.5, "<=")}


def job_overrides(args, steps: int, batch_size: int, log_every: int) -> list[str]:
    return ["model.kind=logistic", "data.path=", f"data.rows={args.rows}", f"data.cols={args.cols}",
            "optimizer.name=constant", "optimizer.learning_rate=0.1", f"train.steps={steps}", "train.tol=0",
            f"train.batch_size={batch_size}", f"train.log_every={log_every}", "checkpoint.every=0",
            "train.threads=1", *args.overrides]


def train_once(args, n_ranks: int, overrides: list[str], workdir: Path, label: str) -> dict:
    """One launch of the training app; per-step wall times from metrics.jsonl plus summary phases."""
    out = workdir / f"{label}-n{n_ranks}-{time.monotonic_ns()}"
    cmd = [find_mpiexec(args.mpiexec), "-n", str(n_ranks), sys.executable, "-m", "lepton_hpc.train",
           "--out", str(out), *[f"--set={o}" for o in overrides]]
    t = time.perf_counter()
    proc = launch_ranks(cmd, args.timeout, "bench models", drop_slurm=True)
    if proc.returncode != 0 or not (out / "summary.json").exists():
        raise SystemExit(f"bench models: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary = json.loads((out / "summary.json").read_text())
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    steps = [r["step"] for r in recs]
    per_step = [r["t_step_s"] for r in recs][1:] if len(recs) > 1 else [r["t_step_s"] for r in recs]
    phases = summary["phases_s"]
    note(f"  {label} -n {n_ranks}: {np.median(per_step) * 1e3:.1f} ms/step over {len(per_step)} records, "
         f"launch {time.perf_counter() - t:.1f}s")
    return {"step_s": float(np.median(per_step)), "records": len(recs), "last_step": steps[-1] if steps else 0,
            "phase_per_step_s": {p: phases[p]["median"] / max(summary["steps"], 1)
                                 for p in ("compute", "reduce", "update") if p in phases},
            "data": summary["data"]["source"], "bytes_reduced_per_step": summary["bytes_reduced_per_step"]}


def bench_steps2v1(args, workdir: Path) -> dict:
    over = job_overrides(args, args.steps + 1, 0, 1)
    per = {1: [], 2: []}
    detail = {1: [], 2: []}
    for rnd in range(args.rounds):
        for n in (1, 2) if rnd % 2 == 0 else (2, 1):
            res = train_once(args, n, over, workdir, "full")
            per[n].append(res["step_s"])
            detail[n].append(res)
    return {"data": detail[1][0]["data"], "steps_per_launch": args.steps, "rounds": args.rounds,
            "step_s_n1": spread(per[1]), "step_s_n2": spread(per[2]),
            "step_s_per_launch": {"n1": per[1], "n2": per[2]},
            "phase_per_step_s": {"n1": detail[1][-1]["phase_per_step_s"], "n2": detail[2][-1]["phase_per_step_s"]},
            **verdict(per[1], per[2], *TARGETS["steps2v1"])}


def bench_epoch(args, workdir: Path) -> dict:
    batch = min(args.batch_size, args.rows)
    per_epoch = -(-args.rows // batch)
    full = job_overrides(args, args.steps + 1, 0, 1)
    mini = job_overrides(args, per_epoch * (args.epochs + 1), batch, per_epoch)
    epoch_s, full_s, detail = [], [], {}
    for rnd in range(args.rounds):
        for mode in ("mini", "full") if rnd % 2 == 0 else ("full", "mini"):
            res = train_once(args, args.ranks, mini if mode == "mini" else full, workdir, mode)
            if mode == "mini":
                epoch_s.append(res["step_s"] * per_epoch)
            else:
                full_s.append(res["step_s"])
            detail[mode] = res
    return {"data": detail["full"]["data"], "ranks": args.ranks, "batch_size": batch, "steps_per_epoch": per_epoch,
            "epochs_per_launch": args.epochs, "rounds": args.rounds,
            "epoch_s": spread(epoch_s), "full_step_s": spread(full_s),
            "per_launch": {"epoch_s": epoch_s, "full_step_s": full_s},
            "phase_per_step_s": {m: detail[m]["phase_per_step_s"] for m in detail},
            "bytes_reduced_per_step": {m: detail[m]["bytes_reduced_per_step"] for m in detail},
            **verdict(epoch_s, full_s, *TARGETS["epoch"])}


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench models", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", choices=("steps2v1", "epoch", "both"), default="both",
                   help="steps2v1: full-batch step -n 1 / -n 2; epoch: block mini-batch epoch / full pass; both")
    p.add_argument("--rows", type=positive_int, default=1_000_000, help="rows of the logistic data (default 1000000)")
    p.add_argument("--cols", type=positive_int, default=64, help="feature columns (default 64)")
    p.add_argument("--steps", type=positive_int, default=20, help="timed full-batch steps per launch")
    p.add_argument("--rounds", type=positive_int, default=3, help="launches of each side (alternating order)")
    p.add_argument("--batch-size", type=positive_int, default=65536, help="epoch: the global mini-batch size")
    p.add_argument("--epochs", type=positive_int, default=4, help="epoch: timed epochs per launch")
    p.add_argument("--ranks", type=ranks_type(1), default=2, help="epoch: ranks of both sides")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a job key in every launch (repeatable)")
    p.add_argument("--timeout", type=positive_int, default=600, help="seconds per launch")
    p.add_argument("--mpiexec", type=executable, help="launcher (default: the venv's mpiexec, else PATH's)")
    p.add_argument("--keep", action="store_true", help="keep the run directories (printed in the JSON)")
    p.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    args = p.parse_args(argv)
    check_jobs(p, [job_overrides(args, 1, args.batch_size, 1)])
    return args


def main(argv=None) -> dict:
    """Run the benchmark(s); the result as a dict (``pass``: every target met)."""
    args = parse(sys.argv[1:] if argv is None else list(argv))
    t, load0 = time.perf_counter(), os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="lepton-bench-models-"))
    results = {}
    try:
        if args.what in ("steps2v1", "both"):
            results["steps2v1"] = bench_steps2v1(args, workdir)
        if args.what in ("epoch", "both"):
            results["epoch"] = bench_epoch(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out = {"bench": "models", "what": args.what, "rows": args.rows, "cols": args.cols, **results,
           "pass": all(r["pass"] for r in results.values()), "wall_s": time.perf_counter() - t,
           "loadavg": {"start_1_5_15m": list(load0), "end_1_5_15m": list(os.getloadavg())},
           "run_dirs": str(workdir) if args.keep else None, "provenance": provenance()}
    if len(results) == 1:  # one benchmark: its verdict at the top level too, like the other benches
        only = next(iter(results.values()))
        out.update({k: only[k] for k in ("ratio", "paired_ratio", "target", "target_is")})
    return out


def cli(argv=None) -> int:
    result = main(argv)
    print(json.dumps(result), flush=True)
    return 3 if "--strict" in (sys.argv[1:] if argv is None else list(argv)) and not result["pass"] else 0
