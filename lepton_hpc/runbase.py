"""What every runner shares: run directory, rank-0 logging, timers, Slurm sanity, signals.

A runner is built as ``Runner(cfg, comm, out_dir, resume)``; see
:mod:`lepton_hpc.runners` for the interface the entry point calls.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from . import checkpoint
from .config import JobConfig
from .metrics import PhaseTimer
from .errors import UserError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REQUEUE = 75  # checkpointed on SIGUSR1/SIGTERM: needs more time (sysexits EX_TEMPFAIL)


class RunBase:
    def __init__(self, cfg: JobConfig, comm, out_dir: Path, resume: str | None):
        self.cfg, self.comm, self.out = cfg, comm, Path(out_dir)
        self.rank = comm.rank
        self.resume = resume
        self.timer = PhaseTimer(trace=cfg.metrics.trace, rank=self.rank)
        self.stop_signal = 0
        self.stop_reason = "steps"
        self.t_start = time.perf_counter()
        self.shard = None
        # From the start: a signal during setup is honoured at the first step boundary.
        self.install_signals()

    def log(self, text: str) -> None:
        if self.rank == 0:
            print(text, flush=True)

    def check_world(self) -> None:
        """Under srun, the MPI world must have as many ranks as Slurm started tasks.

        Every rank believing it is rank 0 of 1 is what a PMI mismatch between
        Slurm and the MPI library looks like; running on would train N copies.
        """
        if os.environ.get("LEPTON_SKIP_NTASKS_CHECK") or "SLURM_PROCID" not in os.environ:
            return
        want = os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS")
        if want and int(want) != self.comm.size:
            raise UserError(
                f"Slurm started {want} tasks but MPI sees a world of {self.comm.size} rank(s): the "
                f"launcher and the MPI library disagree (PMI mismatch); launch with `srun --mpi=pmi2` "
                f"or use an MPI built for this cluster")

    def prepare_out_dir(self, checkpoints: bool = True) -> None:
        """Create the run directory and write the resolved config (rank 0 only)."""
        ckpt = self.out / "checkpoints"
        if checkpoints and self.resume is None and checkpoint.list_steps(ckpt):
            raise UserError(f"run directory {self.out} already holds checkpoints; pass --resume auto "
                             f"to continue it or choose a new --out")
        (ckpt if checkpoints else self.out).mkdir(parents=True, exist_ok=True)
        (self.out / "config.toml").write_text(self.cfg.to_toml())

    def install_signals(self) -> dict:
        """SIGUSR1/SIGTERM set ``stop_signal``; returns the previous handlers."""
        def handler(signum, frame):
            self.stop_signal = 1

        return {sig: signal.signal(sig, handler) for sig in (signal.SIGUSR1, signal.SIGTERM)}

    def close(self) -> None:
        if self.shard is not None:
            self.shard.close()


def optimizer_kwargs(cfg: JobConfig) -> dict:
    """The [optimizer] section as keyword arguments of make_optimizer."""
    o = cfg.optimizer
    return {"learning_rate": o.learning_rate, "alpha": o.alpha, "momentum": o.momentum,
            "beta1": o.beta1, "beta2": o.beta2, "eps": o.eps}
