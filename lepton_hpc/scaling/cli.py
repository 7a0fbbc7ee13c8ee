"""Command line of ``python -m lepton_hpc.scaling``."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from ..errors import UserError

USAGE = """\
  {prog} strong JOB.toml --ranks 1,2,4,8 --repeats 3 [--launcher mpiexec|slurm]
         [--out DIR] [--set section.key=value ...] [--alpha S --beta S/B | --network FILE]
  {prog} weak   JOB.toml ...   (data.rows is the size per rank: run p gets rows*p)
  {prog} analyze DIR [--alpha S --beta S/B | --network FILE] [--cores N]
"""

EPILOG = """\
Every run is `python -m lepton_hpc.train JOB.toml --out DIR/runs/nPPPP-rR --set ...` with train.tol=0
added first (every run does the same number of steps; a --set train.tol=... of yours wins).

Outputs in DIR: results.csv (one row per ranks x repeat: phase times min/median/max over ranks,
speedup, efficiency, Karp-Flatt serial fraction, samples/s, bytes reduced per step, the model's
prediction and its error, provenance), projection.csv/.json (the fitted cost model, predicted time,
speedup and efficiency up to --project-to ranks under ring and Rabenseifner costs, the prediction
check at the measured rank counts) and scaling.png.

Speedup is T(b)/T(p) x b for the smallest rank count b (normally 1); weak scaling reports the
scaled speedup p x T(b)/T(p) and the scaled efficiency T(b)/T(p). Karp-Flatt serial fraction:
e = (1/S - 1/p) / (1 - 1/p). Times are the app's own wall_s (summary.json), without the launch.

alpha/beta (Hockney latency, seconds per byte): --alpha/--beta, else --network FILE (the JSON of
`python -m lepton_hpc.bench allreduce`), else DIR/network.json from an earlier analysis, else the
Allreduce bench is run (mpiexec here; srun inside a Slurm job).

Rank counts above the usable cores (--cores, default this machine's) are oversubscribed: plotted
and listed, but left out of the model fit and of the 25% prediction check. On a shared machine
each run's CPU share is measured (CPU seconds of its processes / ranks / seconds): a run below
75% of its fair share was contended by other processes, and where a rank count has undisturbed
runs its contended ones are left out of medians, fit and check (results.csv: contended, used).
--quiet-wait S waits for idle CPUs before each run; --retry-contended N runs a contended repeat again.

--launcher slurm submits one batch job per rank count (its repeats run as srun steps in one
allocation; scripts in DIR/slurm/) and an analysis job with --dependency=afterany on them, then
returns; results appear in DIR when the analysis job ends.
"""


def _ranks(text: str) -> list[int]:
    try:
        ranks = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ranks expects comma-separated integers, got {text!r}") from None
    if not ranks or ranks[0] < 1:
        raise argparse.ArgumentTypeError(f"--ranks needs positive rank counts, got {text!r}")
    return ranks


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cost model")
    g.add_argument("--alpha", type=float, help="network latency alpha in seconds (e.g. 2e-6 for a fast fabric)")
    g.add_argument("--beta", type=float, help="network time per byte beta in seconds (e.g. 1e-10 for ~10 GB/s)")
    g.add_argument("--network", help="JSON with alpha_s and beta_s_per_byte (e.g. the bench allreduce output)")
    g.add_argument("--cores", type=int, help="usable cores per node; more ranks per node are oversubscribed")
    g.add_argument("--project-to", type=int, default=4096, help="largest projected rank count (default 4096)")
    g.add_argument("--bench-ranks", type=int, default=2, help="ranks of the Allreduce bench (default 2)")
    g.add_argument("--bench-max-bytes", type=int, default=8 << 20, help="largest bench message (default 8 MiB)")
    g.add_argument("--bench-reps", type=int, default=15, help="bench repetitions per size (default 15)")
    g.add_argument("--no-plot", action="store_true", help="skip scaling.png")
    g.add_argument("--keep-contended", action="store_true",
                   help="count runs that shared their cores with other processes even where undisturbed runs "
                        "of the same rank count exist")
    g.add_argument("--strict", action="store_true",
                   help="exit 4 when the model misses a measured (not oversubscribed) point by more than 25%%")


def parser() -> argparse.ArgumentParser:
    from ..cli import prog

    name = prog("scaling")
    p = argparse.ArgumentParser(prog=name, usage="\n" + USAGE.format(prog=name),
                                description="Strong and weak scaling studies with a cost-model projection.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    # prog given: otherwise argparse builds the subcommands' usage line out of the whole USAGE text
    sub = p.add_subparsers(dest="command", required=True, metavar="{strong,weak,analyze}", prog=name)
    for mode in ("strong", "weak"):
        q = sub.add_parser(mode, help=f"run a {mode} scaling sweep, then analyze it",
                           description=f"Run a {mode} scaling sweep of JOB.toml, then analyze it.",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("job", help="job TOML file")
        q.add_argument("--ranks", type=_ranks, default=[1, 2, 4, 8], help="rank counts, e.g. 1,2,4,8")
        q.add_argument("--repeats", type=int, default=3, help="runs per rank count (default 3)")
        q.add_argument("--launcher", default="mpiexec", choices=("mpiexec", "slurm"),
                       help="mpiexec: run here, one launch per run; slurm: one batch job per rank count")
        q.add_argument("--out", help="study directory (default runs/scaling-<mode>-<job>-<time>)")
        q.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="passed to every run (repeatable)")
        q.add_argument("--timeout", type=int, default=3600, help="seconds per run before it is killed (mpiexec)")
        q.add_argument("--mpiexec", help="mpiexec to use (default: the venv's, else PATH)")
        q.add_argument("--quiet-wait", type=float, default=0.0, metavar="S",
                       help="on a shared machine: before each run wait up to S seconds for enough idle CPUs "
                            "(mpiexec; default 0: do not wait)")
        q.add_argument("--retry-contended", type=int, default=0, metavar="N",
                       help="run a repeat again (up to N times) when other processes took its cores "
                            "(mpiexec; the contended attempt is kept beside it)")
        q.add_argument("--sbatch-arg", dest="sbatch_args", action="append", default=[], metavar="ARG",
                       help="extra sbatch option for every job, e.g. --sbatch-arg=--time=1:00:00 (repeatable)")
        _model_args(q)
    a = sub.add_parser("analyze", help="(re)analyze a study directory",
                       description="Redo results.csv, projection.csv/json and scaling.png from DIR/study.json "
                                   "and DIR/runs/*/summary.json (no training is run).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("dir", help="study directory")
    _model_args(a)
    return p


def _bench_argv(args) -> list[str]:
    return ["--ranks", str(args.bench_ranks), "--max-bytes", str(args.bench_max_bytes),
            "--reps", str(args.bench_reps)]


def _model_passthrough(args) -> list[str]:
    out = []
    for flag in ("alpha", "beta", "network", "cores"):
        v = getattr(args, flag)
        if v is not None:
            out += [f"--{flag}", str(Path(v).resolve()) if flag == "network" else str(v)]
    out += ["--project-to", str(args.project_to), "--bench-ranks", str(args.bench_ranks),
            "--bench-max-bytes", str(args.bench_max_bytes), "--bench-reps", str(args.bench_reps)]
    flags = [f for f, on in (("--no-plot", args.no_plot), ("--strict", args.strict),
                             ("--keep-contended", args.keep_contended)) if on]
    return out + flags


def _analyze(args, out: Path) -> int:
    from .analysis import analyze

    report = analyze(out, alpha=args.alpha, beta=args.beta, network=args.network, cores=args.cores,
                     bench_argv=_bench_argv(args), project_to=args.project_to, plot=not args.no_plot,
                     keep_contended=args.keep_contended)
    print(f"wrote {out / 'results.csv'}, {out / 'projection.csv'}, {out / 'projection.json'}"
          + ("" if args.no_plot else f", {out / 'scaling.png'}"), flush=True)
    return 4 if args.strict and not report["check"]["pass"] else 0


def sweep(args) -> int:
    from ..config import load
    from .checks import check_numbers, find_launcher, read_network, study_out
    from .launch import Study, run_mpiexec, submit_slurm, usable_cores

    overrides = ["train.tol=0", *args.overrides]
    cfg = load(args.job, overrides)  # a bad job or --set fails here, before any launch
    # every other check too, before study.json or runs/ is written (a failed start leaves nothing)
    check_numbers(args)
    if args.network is not None:
        read_network(args.network)
    exe = find_launcher(args.mpiexec) if args.launcher == "mpiexec" else None
    if args.launcher == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--launcher slurm needs sbatch on PATH (run on a Slurm login node)")
    out = Path(args.out or f"runs/scaling-{args.command}-{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    study = Study(mode=args.command, job=str(Path(args.job).resolve()), overrides=overrides, ranks=args.ranks,
                  repeats=args.repeats, launcher=args.launcher, out=str(out), base_rows=cfg.data.rows,
                  cores=args.cores or usable_cores(), timeout_s=args.timeout,
                  created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    key = lambda s: (s.mode, s.job, s.overrides, s.base_rows)  # noqa: E731 - what makes two studies one
    old = study_out(out, lambda old: key(old) == key(study))
    if old is not None:  # the same study again: it keeps its runs and grows to the old and the new grid
        study.ranks, study.repeats = sorted({*old.ranks, *study.ranks}), max(old.repeats, study.repeats)
        study.created, study.slurm_job_ids = old.created or study.created, dict(old.slurm_job_ids)
        print(f"continuing the study in {out} (ranks {study.ranks} x {study.repeats} repeats): runs with a "
              f"summary.json are kept", flush=True)
    study.save()
    over = [p for p in study.ranks if p > study.cores]
    print(f"{study.mode} scaling of {study.job}: ranks {study.ranks} x {study.repeats} repeats, "
          f"{'rows per rank' if study.mode == 'weak' else 'rows'} {study.base_rows:,}, launcher {args.launcher}, "
          f"out {out}" + (f"; oversubscribed here ({study.cores} cores): {over}" if over and
                          args.launcher == "mpiexec" else ""), flush=True)
    if args.launcher == "slurm":
        needs_bench = args.network is None and (args.alpha is None or args.beta is None)
        submit_slurm(study, _model_passthrough(args), args.sbatch_args,
                     analyze_ntasks=max(2, args.bench_ranks) if needs_bench else 1)
        return 0
    done = run_mpiexec(study, exe, quiet_wait_s=args.quiet_wait, retry_contended=args.retry_contended)
    failed = [d for d in done if d["returncode"] != 0]
    rc = _analyze(args, out)
    if failed:
        print(f"{len(failed)} run(s) failed: " + ", ".join(f"n={d['ranks']} repeat {d['repeat']}" for d in failed),
              file=sys.stderr, flush=True)
        return 1
    return rc


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "analyze":
            from .checks import check_analyze

            check_analyze(args)
            return _analyze(args, Path(args.dir).resolve())
        return sweep(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except OSError as exc:  # a file that vanished, a full disk, no permission: the user's to fix
        what = f"{exc.strerror} ({exc.filename})" if exc.strerror and exc.filename else str(exc)
        print(f"error: {what}", file=sys.stderr, flush=True)
        return 1
