"""What the benchmarks share: the verdict, notes, launching ranks, the default job's data."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Callable

import numpy as np

from ..metrics import blas_summary, provenance, spread
from ..mpiexec import find_mpiexec

__all__ = ["RANK_ENV", "note", "verdict", "blas_summary", "provenance", "spread", "find_mpiexec",
           "launch_ranks", "last_json", "job_overrides", "build", "data_info",
           "add_job_args", "job_cli", "int_in", "float_in", "positive_int", "non_negative_int", "positive_float",
           "non_negative_float", "fraction", "ranks_type", "int_list", "existing_file", "existing_dir", "executable"]

RANK_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def note(text: str) -> None:
    """A progress line on stderr (stdout carries only the JSON)."""
    print(text, file=sys.stderr, flush=True)


def verdict(a, b, target: float, target_is: str) -> dict:
    """Ratio of the medians of ``a`` and ``b`` plus the spread of the side-by-side ratios."""
    ratio = float(np.median(a) / np.median(b))
    ok = ratio >= target if target_is == ">=" else ratio <= target
    paired = np.asarray(a, dtype=float) / np.asarray(b, dtype=float)
    return {"ratio": ratio, "paired_ratio": spread(paired), "target": target, "target_is": target_is,
            "pass": bool(ok)}


# -- option types: every bench's options are checked by argparse, before anything runs ------------
# A bad value is argparse's own "error: argument --X: must be ..." line, exit 2.

def int_in(lo: int, hi: int | None = None, what: str = "an integer") -> Callable[[str], int]:
    """An argparse ``type=``: an integer in [lo, hi] (no upper bound when ``hi`` is None)."""
    want = f"{what} >= {lo}" if hi is None else f"{what} in [{lo}, {hi}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {want}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def float_in(lo: float, hi: float | None = None, *, open_lo: bool = False) -> Callable[[str], float]:
    """An argparse ``type=``: a finite number > lo (``open_lo``) or >= lo, and <= hi when given."""
    want = f"a number {'>' if open_lo else '>='} {lo:g}" + ("" if hi is None else f" and <= {hi:g}")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text!r}") from None
        if (not np.isfinite(value) or value < lo or (open_lo and value == lo)
                or (hi is not None and value > hi)):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return value

    parse.__name__ = "float"
    return parse


positive_int = int_in(1)
non_negative_int = int_in(0)
positive_float = float_in(0.0, open_lo=True)
non_negative_float = float_in(0.0)
fraction = float_in(0.0, 1.0, open_lo=True)


def ranks_type(minimum: int = 1) -> Callable[[str], int]:
    """``--ranks``: a rank count >= ``minimum`` (2 where a bench compares with one rank)."""
    return int_in(minimum, what="a rank count")


def int_list(minimum: int = 1) -> Callable[[str], list[int]]:
    """Comma-separated integers, each >= ``minimum`` (at least one)."""
    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"must be comma-separated integers >= {minimum}, got {text!r}")
        return values

    parse.__name__ = "list"
    return parse


def existing_file(text: str) -> str:
    """A path to a file that exists."""
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


def executable(text: str) -> str:
    """``--mpiexec``: a program that can be run (a path, or a name on PATH)."""
    if not shutil.which(text):
        raise argparse.ArgumentTypeError(f"no such program (or not executable): {text!r}")
    return text


def existing_dir(text: str) -> str:
    """A path to a folder that exists (where a bench puts its temporary files)."""
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"no such folder: {text!r}")
    return text


# -- launching ranks ---------------------------------------------------------------

def launch_ranks(cmd: list[str], timeout: int, what: str, *, capture_stderr: bool = True,
                 drop_slurm: bool = False) -> subprocess.CompletedProcess:
    """Run one launch of ranks (``mpiexec``/``srun`` ``cmd``) single-threaded, with a hard timeout.

    ``MPIEXEC_TIMEOUT`` makes the launcher kill a hung job itself; the extra
    30 s are for the launcher to give up. A launch past that ends the bench
    (``what`` names it in the message). ``drop_slurm``: hide an enclosing
    allocation from the ranks (a job of its own, not a step of that one).
    """
    env = {**os.environ, **RANK_ENV, "MPIEXEC_TIMEOUT": str(timeout), "PYTHONUNBUFFERED": "1"}
    if drop_slurm:
        for key in [k for k in env if k.startswith("SLURM_")]:
            del env[key]
    try:
        return subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, timeout=timeout + 30,
                              stderr=subprocess.PIPE if capture_stderr else None)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{what}: {' '.join(cmd)} ran past {timeout + 30}s") from None
    except OSError as exc:  # a --mpiexec that is not there or not executable
        raise SystemExit(f"{what}: cannot run {cmd[0]}: {exc.strerror}") from None


def last_json(proc: subprocess.CompletedProcess, what: str) -> dict:
    """The last stdout line of a successful launch, parsed; else the bench ends with the output's tail."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        tail = f"stderr tail: {proc.stderr[-1500:]}" if proc.stderr else f"stdout tail: {lines[-3:]}"
        raise SystemExit(f"{what}: {' '.join(proc.args)} exited {proc.returncode}; {tail}")
    return json.loads(lines[-1])


# -- the default job's data (gradpass, reduce, ranks) ----------------------------------

def job_overrides(args) -> list[str]:
    return [f"data.rows={args.rows}", f"data.cols={args.cols}", *args.overrides]


def build(args, size: int, rank: int):
    """(config, shard, linear-model kernel) of this rank: the default job's data at --rows x --cols."""
    from ..config import load
    from ..data.shard import Shard
    from ..models.glm import make_kernel

    cfg = load(None, job_overrides(args))
    shard = Shard(cfg.data, size, rank)
    kernel = make_kernel("linear", shard.n_cols, cfg.model.fit_intercept, shard.chunk_rows, shard.dtype)
    return cfg, shard, kernel


def data_info(shard) -> dict:
    return {"rows": shard.n_rows, "cols": shard.n_cols, "dtype": shard.dtype.name,
            "chunk_rows": shard.chunk_rows, "n_chunks": shard.n_chunks, "source": shard.describe()}


def add_job_args(p: argparse.ArgumentParser, steps: bool) -> None:
    """The options of the benches on the default job (``steps``: those that launch gd steps)."""
    p.add_argument("--rows", type=positive_int, default=2_000_000,
                   help="rows of the default job's data (default 2000000)")
    p.add_argument("--cols", type=positive_int, default=32, help="feature columns (default 32)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key of the default job (repeatable)")
    if steps:
        p.add_argument("--steps", type=positive_int, default=20, help="timed steps per mode (per launch)")
        p.add_argument("--block", type=positive_int, default=1, help="steps in a row of one mode (A B B A … order)")
        p.add_argument("--timeout", type=positive_int, default=600, help="seconds per mpiexec launch")
        p.add_argument("--mpiexec", type=executable, help="launcher (default: the venv's mpiexec, else PATH's)")


def check_jobs(p: argparse.ArgumentParser, job_sets) -> None:
    """Build the job of each list of ``--set`` items the options make, before any data is made
    or any launch runs: a bad value is ``p``'s usage error (exit 2)."""
    from ..config import load

    try:
        for sets in job_sets:
            load(None, sets)
    except ValueError as exc:
        p.error(str(exc))


def job_cli(name: str, text: str, run: Callable[[argparse.Namespace], dict], argv,
            extra: Callable[[argparse.ArgumentParser], object], steps: bool) -> int:
    """Parse ``argv``, run ``run(args)`` (a dict with the verdict and ``_blas``), print the report.

    Returns the exit code: 3 when ``--strict`` and the target is missed, else 0.
    """
    from ..cli import prog

    p = argparse.ArgumentParser(prog=f"{prog('bench')} {name}", description=text)
    add_job_args(p, steps)
    p.add_argument("--strict", action="store_true", help="exit 3 when the target is missed")
    extra(p)
    args = p.parse_args(argv)
    check_jobs(p, [job_overrides(args)])
    t, load0 = time.perf_counter(), os.getloadavg()[0]
    result = run(args)
    blas = result.pop("_blas")
    result = {"bench": name, **result, "wall_s": time.perf_counter() - t,
              "loadavg_1m": {"start": load0, "end": os.getloadavg()[0]}, "provenance": provenance(blas=blas)}
    print(json.dumps(result), flush=True)
    return 3 if args.strict and not result["pass"] else 0
