"""One run's context: the run directory, rank-0 logging, timers, signals, the Slurm world check
and the checkpoint directory. Built once per run and handed to the problem and the loop."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from .. import checkpoint, comm as C
from . import rundir
from ..data.atomic import write_text
from ..errors import UserError
from ..log import emit, logger
from ..metrics import PhaseTimer


#: ``stop_signal`` values, agreed across the ranks with MAX: an interrupt wins over a requeue request
STOP_REQUEUE, STOP_INTERRUPT = 1, 2
EXIT_INTERRUPT = 130  # 128 + SIGINT, the shell's code for a Ctrl-C


class RunContext:
    """Parameters: ``cfg`` (JobConfig), ``comm``, ``out`` (run directory, the same on every rank),
    ``resume`` (None, "auto" or a checkpoint path), ``restore_signals`` (put the previous
    SIGUSR1/SIGTERM/SIGINT handlers back at :meth:`close`; the CLI keeps its own until the process
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
        self.lock = None  # rank 0's hold on OUT/.lock (claim_out_dir)
        self.started = False  # config.toml written: from here on the run directory is kept
        # From the start: a signal during setup is honoured at the first step boundary.
        self._previous = {sig: signal.signal(sig, self._on_signal)
                          for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)}

    def _on_signal(self, signum, frame) -> None:
        """SIGUSR1/SIGTERM: stop at the next step boundary, checkpoint, exit 75 (requeue). SIGINT
        (Ctrl-C; mpiexec forwards it to every rank): the same, exit 130. A second SIGINT aborts at once."""
        if signum == signal.SIGINT and self.stop_signal == STOP_INTERRUPT:
            if self.rank == 0:
                os.write(2, b"\nsecond interrupt: aborting now, without a checkpoint of this step\n")
            if self.restore_signals:  # a library caller (a notebook): its own KeyboardInterrupt
                raise KeyboardInterrupt
            os._exit(EXIT_INTERRUPT)
        self.stop_signal = max(self.stop_signal, STOP_INTERRUPT if signum == signal.SIGINT else STOP_REQUEUE)

    def log(self, text: str) -> None:
        """One line of the run log, from rank 0 (through :mod:`lepton_hpc.log`)."""
        if self.rank == 0:
            emit(text)

    def debug(self, text: str) -> None:
        """One debug record of the run log (shown with ``-v``), from rank 0."""
        if self.rank == 0:
            emit(text, logging.DEBUG)

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

    def claim_out_dir(self) -> None:
        """Rank 0: check ``--out`` (see :mod:`.rundir`) and lock it for this run's lifetime."""
        rundir.check(self.out, self.resume, bool(checkpoint.list_steps(self.ckpt_dir)))
        self.lock = rundir.Lock(self.out, warn=self.log)
        try:  # again under the lock: another run may have started in between
            rundir.check(self.out, self.resume, bool(checkpoint.list_steps(self.ckpt_dir)))
        except UserError:
            self.lock.release(clean=True)
            self.lock = None
            raise

    def prepare_out_dir(self, checkpoints: bool = True) -> None:
        """Create the run directory and write the resolved config (after every check passed)."""
        (self.ckpt_dir if checkpoints else self.out).mkdir(parents=True, exist_ok=True)
        write_text(self.out / "config.toml", self.cfg.to_toml())
        self.started = True

    # -- checkpoints (collective) -----------------------------------------------------------
    def save_checkpoint(self, step: int, parts: dict, attrs: dict) -> Path:
        """Write and commit the checkpoint of ``step``; its main file (``-v``: the time and bytes). Collective."""
        base = {"world_size": self.comm.size, "config": self.cfg.to_toml(), "data_fingerprint": self.fingerprint}
        t0 = time.perf_counter()
        path = checkpoint.save(self.comm, self.ckpt_dir, step, parts, {**base, **attrs}, self.cfg.checkpoint.keep)
        if self.rank == 0 and logger().isEnabledFor(logging.DEBUG):
            size = path.stat().st_size if path.exists() else 0
            self.debug(f"checkpoint step {step}: {path.name}, {size:,} bytes in {time.perf_counter() - t0:.3f} s")
        return path

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

    def release_out_dir(self) -> None:
        """Rank 0: give the lock up; a start that failed (no config.toml yet) leaves nothing behind."""
        if self.lock is not None:
            self.lock.release(clean=not self.started)
            self.lock = None

    def close(self) -> None:
        """Release the run directory (see :meth:`release_out_dir`) and the signals."""
        self.release_out_dir()
        if self.restore_signals:
            for sig, old in self._previous.items():
                signal.signal(sig, old)
