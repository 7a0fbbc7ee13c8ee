"""Entry point: ``mpirun -n N python -m lepton_hpc.train [JOB.toml] [options]``.

Parse → build → run → close. Errors a user can fix end with one sentence
from rank 0 and exit code 1 on every rank; any other exception on any rank
aborts the whole job (MPI_Abort) instead of leaving the others hanging.
Exit codes: 0 done, 1 error, 75 checkpointed on SIGUSR1/SIGTERM (requeue), 130 checkpointed
on SIGINT (Ctrl-C; a second one aborts at once).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from .errors import UserError


def parse_args(argv=None) -> argparse.Namespace:
    from .config import help_text

    p = argparse.ArgumentParser(
        prog="python -m lepton_hpc.train",
        description="Train a model with MPI ranks (run under mpirun/srun). Exit codes: 0 done, "
                    "1 error, 75 checkpointed on SIGUSR1/SIGTERM and needs more time, 130 checkpointed on "
                    "Ctrl-C (SIGINT).",
        epilog=help_text(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", nargs="?", help="job TOML file (default: the packaged jobs/default.toml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key (repeatable)")
    p.add_argument("--out", help="run directory (default runs/<job>-<timestamp>); a fresh run needs it "
                                 "absent or empty, and one run at a time holds it (OUT/.lock)")
    p.add_argument("--resume", help="auto: newest valid checkpoint in --out (none: start fresh), with the "
                                    "run's own config.toml (--set may change only steps, tol, patience, "
                                    "eta_floor, log_every, trace, checkpoint cadence, data.path/in_memory); "
                                    "or a checkpoint file")
    return p.parse_args(argv)


def _resolve(args, comm):
    """Rank 0 parses the job; everyone gets the same config and run directory."""
    from . import comm as C
    from .config import load
    from .engine.rundir import resume_config

    def parse():
        if args.resume == "auto" and not args.out:
            raise UserError("--resume auto needs --out naming the run directory to continue")
        cfg = resume_config(Path(args.out), args.job, args.overrides) if args.resume == "auto" else None
        cfg = cfg or load(args.job, args.overrides)
        out = args.out or f"runs/{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        return cfg, out

    return C.on_root(comm, parse)


def run(args, comm) -> int:
    """Parse → build → run → close. Collective."""
    from threadpoolctl import threadpool_limits

    from .data.atomic import write_json
    from .engine.job import final_line, run_job

    cfg, out = _resolve(args, comm)
    with threadpool_limits(limits=threads_per_rank(cfg.train.threads)):
        code, summary = run_job(cfg, comm, Path(out), args.resume, restore_signals=False)
    from . import comm as C

    C.on_root(comm, write_json, Path(out) / "summary.json", summary)
    if comm.rank == 0:
        print(final_line(summary, code, out), flush=True)
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
