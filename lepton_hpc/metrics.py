"""Per-phase timers, the progress line, metrics.jsonl, traces and provenance.

Every rank measures; rank 0 prints and writes. Nothing here communicates:
the trainer reduces the per-rank figures through :mod:`lepton_hpc.comm`.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .data.atomic import write_text

PHASES = ("read", "compute", "reduce", "update", "checkpoint")


class PhaseTimer:
    """Accumulates wall seconds per phase; optionally records trace spans."""

    def __init__(self, trace: bool = False, rank: int = 0):
        self.total = {p: 0.0 for p in PHASES}
        self.rank = rank
        self.events: list[dict] | None = [] if trace else None
        self._t0 = time.perf_counter()

    @contextmanager
    def phase(self, name: str, step: int | None = None):
        start = time.perf_counter()
        try:
            yield
        finally:
            end = time.perf_counter()
            self.total[name] = self.total.get(name, 0.0) + (end - start)
            if self.events is not None:
                self.events.append({"name": name, "ph": "X", "pid": self.rank, "tid": 0,
                                    "ts": (start - self._t0) * 1e6, "dur": (end - start) * 1e6,
                                    "args": {} if step is None else {"step": step}})

    def snapshot(self) -> dict[str, float]:
        return dict(self.total)

    def write_trace(self, directory: Path) -> Path | None:
        """Chrome-trace JSON for this rank (Perfetto opens it)."""
        if self.events is None:
            return None
        path = Path(directory) / f"trace-rank{self.rank:05d}.json"
        meta = [{"name": "process_name", "ph": "M", "pid": self.rank, "args": {"name": f"rank {self.rank}"}}]
        write_text(path, json.dumps({"traceEvents": meta + self.events, "displayTimeUnit": "ms"}))
        return path


def spread(values) -> dict[str, float]:
    """min/median/max of per-rank (or per-repeat) figures."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def progress_line(rec: dict, unit: str | None = "samples") -> str:
    """One progress line from a metrics record: the figures it has, in a fixed order."""
    total = rec.get("steps_total")
    width = len(str(total)) if total else 7
    parts = [f"step {rec['step']:>{width}d}" + (f"/{total}" if total else ""), f"loss {rec['loss']:.6e}"]
    if rec.get("train_rmse") is not None:
        parts.append(f"rmse train {rec['train_rmse']:.4f} test {rec.get('test_rmse', float('nan')):.4f}")
    if rec.get("eta") is not None:
        parts.append(f"eta {rec['eta']:.3e}")
    if rec.get("grad_norm") is not None:
        parts.append(f"|grad| {rec['grad_norm']:.3e}")
    if unit and f"{unit}_per_s" in rec:
        parts.append(f"{rec[f'{unit}_per_s']:.3e} {unit}/s")
    parts.append(f"comm {100.0 * rec['comm_share']:.1f}%")
    if rec.get("eta_s") is not None:
        parts.append(f"ETA {duration(rec['eta_s'])}")
    return "  ".join(parts)


def duration(seconds: float) -> str:
    """12s, 3m05s or 2h07m: a time left that reads at a glance."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class MetricsWriter:
    """metrics.jsonl on rank 0 (a no-op on other ranks)."""

    def __init__(self, path: Path | None, append: bool, warn=print):
        self._fh = open(path, "a" if append else "w") if path is not None else None
        self._warn = warn

    def write(self, rec: dict) -> None:
        """Append one record; a failed write (a full disk) is reported once and recording stops,
        so rank 0 never leaves the others waiting (the next checkpoint reports the disk)."""
        if self._fh is None:
            return
        try:
            self._fh.write(json.dumps(rec) + "\n")
            self._fh.flush()
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            self._warn(f"warning: could not append to {self._fh.name} ({reason}); metrics are no longer recorded")
            self.close()

    def close(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            try:
                fh.close()
            except OSError:
                pass


def git_sha() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def blas_summary() -> list[dict]:
    """The BLAS libraries loaded in this process, as threadpoolctl sees them (threads, core type, …)."""
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "num_threads", "architecture", "threading_layer", "prefix")
    return [{k: info.get(k) for k in keys} for info in threadpool_info() if info.get("user_api") == "blas"]


#: Environment variables that change what the BLAS does; recorded, never set.
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS")


def _mpi_library() -> str:
    import mpi4py

    if "mpi4py.MPI" not in sys.modules:  # a launcher or serial bench: stay a non-MPI process
        mpi4py.rc.initialize = mpi4py.rc.finalize = False  # Get_library_version needs no MPI_Init
    from mpi4py import MPI

    return MPI.Get_library_version().splitlines()[0].strip()


def provenance(mpi_library: str | None = None, world_size: int | None = None,
               blas: list[dict] | None = None) -> dict:
    """Versions, MPI, BLAS and the batch-system context of this run (call on the writing rank).

    Parameters
    ----------
    mpi_library : str, optional
        The MPI library's version line (``comm.library_version()``); asked of
        mpi4py when omitted, without initialising MPI if it is not yet.
    world_size : int, optional
        Ranks of the run (None for a process outside MPI).
    blas : list of dict, optional
        :func:`blas_summary` taken where it matters (inside a threadpool
        limit); taken now when omitted.
    """
    import h5py
    import mpi4py
    import numpy
    import scipy

    from . import __version__

    env = os.environ
    return {
        "lepton_hpc": __version__,
        "git_sha": git_sha(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "h5py": h5py.__version__,
        "mpi4py": mpi4py.__version__,
        "mpi_library": _mpi_library() if mpi_library is None else mpi_library,
        "world_size": world_size,
        "cpu_count": os.cpu_count(),
        "blas": blas_summary() if blas is None else blas,
        "env": {k: env.get(k) for k in BLAS_ENV},
        "slurm": {
            "job_id": env.get("SLURM_JOB_ID"),
            "array_job_id": env.get("SLURM_ARRAY_JOB_ID"),
            "array_task_id": env.get("SLURM_ARRAY_TASK_ID"),
            "nodelist": env.get("SLURM_JOB_NODELIST"),
            "restart_count": int(env.get("SLURM_RESTART_COUNT", "0") or 0),
            "ntasks": env.get("SLURM_NTASKS"),
        },
    }
