"""One run's context: the run directory, rank-0 logging, timers, signals, the Slurm world check
and the checkpoint directory. Built once per run and handed to the problem and the loop."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .. import checkpoint, comm as C
from ..data.atomic import write_text
from ..errors import UserError
from ..log import emit
from ..metrics import PhaseTimer


class RunContext:
    """Parameters: ``cfg`` (JobConfig), ``comm``, ``out`` (run directory, the same on every rank),
    ``resume`` (None, "auto" or a checkpoint path), ``restore_signals`` (put the previous
    SIGUSR1/SIGTERM handlers back at :meth:`close`; the CLI keeps its own until the process
    exits, so a stop request that lands after the last step cannot kill a finished rank)."""

    def __init__(self, cfg, comm, out, resume: str | None = None, restore_signals: bool = True):
        self.cfg, self.comm, self.out, self.resume = cfg, comm, Path(out), resume
        self.restore_signals = restore_signals
        self.rank = comm.rank
        self.timer = PhaseTimer(trace=cfg.metrics.trace, rank=self.rank)
        self.stop_signal = 0
        self.resumed = False
        self.t_start = time.perf_counter()
        self.fingerprint = ""
        # From the start: a signal during setup is honoured at the first step boundary.
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGUSR1, signal.SIGTERM)}

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = 1

    def log(self, text: str) -> None:
        """One line of the run log, from rank 0 (through :mod:`lepton_hpc.log`)."""
        if self.rank == 0:
            emit(text)

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    # -- checks and the run directory (rank 0 through comm.on_root) ---------------------------
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

    def check_out_dir(self) -> None:
        if self.resume is None and checkpoint.list_steps(self.ckpt_dir):
            raise UserError(f"run directory {self.out} already holds checkpoints; pass --resume auto "
                            f"to continue it or choose a new --out")

    def prepare_out_dir(self, checkpoints: bool = True) -> None:
        """Create the run directory and write the resolved config (after every check passed)."""
        (self.ckpt_dir if checkpoints else self.out).mkdir(parents=True, exist_ok=True)
        write_text(self.out / "config.toml", self.cfg.to_toml())

    # -- checkpoints (collective) -----------------------------------------------------------
    def save_checkpoint(self, step: int, parts: dict, attrs: dict) -> None:
        base = {"world_size": self.comm.size, "config": self.cfg.to_toml(), "data_fingerprint": self.fingerprint}
        checkpoint.save(self.comm, self.ckpt_dir, step, parts, {**base, **attrs}, self.cfg.checkpoint.keep)

    def find_snapshot(self):
        """The snapshot ``--resume`` names (None: nothing to resume), fingerprint checked. Collective."""
        if self.resume == "auto":
            snap = checkpoint.latest(self.comm, self.ckpt_dir, warn=self.log)
            source = self.ckpt_dir
            if snap is None:
                self.log(f"no checkpoint in {self.ckpt_dir}; starting from step 0")
                return None
        else:
            snap, source = checkpoint.open_path(self.comm, Path(self.resume)), self.resume
        got = snap.attrs.get("data_fingerprint")
        if got != self.fingerprint:
            raise C.JobError(f"checkpoint in {source} was written for other data ({got}, this job has "
                             f"{self.fingerprint}); resume with the same data or start a fresh --out", 0)
        return snap

    def close(self) -> None:
        if self.restore_signals:
            for sig, old in self._previous.items():
                signal.signal(sig, old)
