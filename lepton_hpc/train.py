"""Entry point: ``mpirun -n N python -m lepton_hpc.train [JOB.toml] [options]``.

Parse → build → run → close. Errors a user can fix end with one sentence
from rank 0 and exit code 1 on every rank; any other exception on any rank
aborts the whole job (MPI_Abort) instead of leaving the others hanging.
Exit codes: 0 done, 1 error, 3 not converged (train.require_convergence), 75 checkpointed on
SIGUSR1/SIGTERM (requeue), 130 checkpointed
on SIGINT (Ctrl-C; a second one aborts at once).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from .errors import UserError


def _job_for_help(argv) -> tuple[str | None, list[str]]:
    """The job file and --set items of a command line, read before --help is printed."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("job", nargs="?")
    pre.add_argument("--job", dest="job_option")
    pre.add_argument("--set", dest="overrides", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    return known.job_option or known.job, known.overrides


def help_epilog(argv) -> str:
    """The config keys of the job this command line names (the default job if none), with its values."""
    from .config import help_text, load

    job, overrides = _job_for_help(argv)
    try:
        return help_text(load(job, overrides))
    except UserError as exc:
        return f"({exc}: showing the default job's keys)\n" + help_text()


def parser(argv=()) -> argparse.ArgumentParser:
    """The train command line; with -h/--help in ``argv`` its epilog lists the named job's keys."""
    from .cli import prog

    wants_help = any(a in ("-h", "--help") for a in argv)
    p = argparse.ArgumentParser(
        prog=prog("train"),
        description="Train a model with MPI ranks (run under mpirun/srun).\n"
                    "Exit codes: 0 done, 1 error, 3 stopped short of train.tol with\n"
                    "train.require_convergence, 75 checkpointed on SIGUSR1/SIGTERM and needs more time,\n"
                    "130 checkpointed on Ctrl-C (SIGINT).\n"
                    "--help after a job file (or --job FILE) shows that job's values; the sections\n"
                    "its model.kind does not read are hidden.",
        epilog=help_epilog(argv) if wants_help else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", nargs="?", help="job TOML file (default: the packaged jobs/default.toml)")
    p.add_argument("--job", dest="job_option", metavar="JOB", help="the job file, as an option (same as JOB)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key (repeatable)")
    p.add_argument("--out", help="run directory (default runs/<job>-<timestamp>); a fresh run needs it "
                                 "absent or empty, and one run at a time holds it (OUT/.lock)")
    p.add_argument("--resume", help="auto: newest valid checkpoint in --out (none: start fresh), with the "
                                    "run's own config.toml (--set may change only steps, tol, patience, "
                                    "eta_floor, log_every, trace, checkpoint cadence, data.path/in_memory); "
                                    "or a checkpoint file, with the config it was written with (the same "
                                    "--set rule) unless a job file is given")
    p.add_argument("-q", "--quiet", action="count", default=0,
                   help="less output: -q only the final line, warnings and errors; -qq no final line")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more output: debug records, each line with its time and rank")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = parser(argv)
    args = p.parse_args(argv)
    if args.job_option:
        if args.job and args.job != args.job_option:
            p.error(f"two job files given: {args.job} and --job {args.job_option}")
        args.job = args.job_option
    return args


def _resolve(args, comm):
    """Rank 0 parses the job; everyone gets the same config and run directory."""
    from . import comm as C
    from .config import load
    from .engine.rundir import checkpoint_config, resume_config

    def parse():
        if args.resume == "auto" and not args.out:
            raise UserError("--resume auto needs --out naming the run directory to continue")
        cfg = None
        if args.resume and args.out:  # continuing a run directory: its own config.toml rules
            cfg = resume_config(Path(args.out), args.job, args.overrides, f"--resume {args.resume}")
        if cfg is None and args.resume not in (None, "auto") and args.job is None:
            cfg = checkpoint_config(args.resume, args.overrides)  # the checkpoint's own, not the default job's
        cfg = cfg or load(args.job, args.overrides)
        out = args.out or f"runs/{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        return cfg, out

    return C.on_root(comm, parse)


def run(args, comm) -> int:
    """Parse → build → run → close. Collective."""
    from threadpoolctl import threadpool_limits

    from . import log
    from .data.atomic import write_json
    from .engine.job import final_line, run_job

    log.configure(comm.rank, getattr(args, "verbose", 0) - getattr(args, "quiet", 0))
    cfg, out = _resolve(args, comm)
    if comm.size == 1 and comm.rank == 0:
        from .info import launcher

        if launcher() is None:
            log.emit("note: running on 1 rank (not started by mpirun or srun); `mpirun -n N` spreads the "
                     "work over N ranks")
    with threadpool_limits(limits=threads_per_rank(cfg.train.threads)):
        code, summary = run_job(cfg, comm, Path(out), args.resume, restore_signals=False)
    from . import comm as C

    C.on_root(comm, write_json, Path(out) / "summary.json", summary)
    if comm.rank == 0:
        log.emit(final_line(summary, code, out), log.RESULT)
    return code


def threads_per_rank(configured: int) -> int:
    """BLAS threads per rank: train.threads, else $SLURM_CPUS_PER_TASK, else 1."""
    if configured > 0:
        return configured
    try:
        return max(1, int(os.environ.get("SLURM_CPUS_PER_TASK", "1")))
    except ValueError:
        return 1


def main(argv=None) -> int:
    args = parse_args(argv)
    from . import comm as C

    return C.run_app(lambda comm: run(args, comm))


if __name__ == "__main__":
    sys.exit(main())
