"""Allreduce latency/bandwidth sweep and the Hockney fit of this machine's MPI.

    python -m lepton_hpc.bench allreduce [--ranks 2] [--min-bytes 8] [--max-bytes 8388608]
                                         [--reps 15] [--algorithm rabenseifner|ring]
                                         [--launcher auto|mpiexec|srun]

Launches ``--ranks`` ranks of a worker (``mpiexec -n``, or ``srun -n`` inside a
Slurm allocation) that times ``MPI_Allreduce`` (SUM) of float64 vectors of 8 B,
16 B, … ``--max-bytes``: per size, after a warm-up, each repetition lines the
ranks up with a barrier and times a batch of back-to-back calls (sized to take
about ``--batch-s``); a repetition's time is the slowest rank's mean call time,
and the table keeps the median (and min/max) over repetitions.

The fit ``t = a + b·bytes`` is a non-negative least-squares fit of relative
residuals (each size counts alike, from 8 B to megabytes). The Hockney network
parameters follow from the standard Allreduce cost at p ranks (see
:mod:`lepton_hpc.scaling.model`): ``a = L(p)·α``, ``b = B(p)·β`` with
ring L = 2(p−1), Rabenseifner L = 2⌈log2 p⌉, both B = 2(p−1)/p (at p = 2 the two
agree: α = a/2, β = b). β includes the cost of summing the data.

Prints ONE JSON object on stdout (notes go to stderr): ``alpha_s``,
``beta_s_per_byte`` (for ``--algorithm``), ``per_algorithm``, ``fit``
(a, b, residuals), ``table`` (the raw timings), ``mpi_library``, ``provenance``.
``main(argv)`` returns the same dict.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from ..errors import UserError
from .common import find_mpiexec, last_json, launch_ranks, note, provenance
from .common import executable, int_in, positive_float, positive_int, ranks_type


def sizes(min_bytes: int, max_bytes: int) -> list[int]:
    """Powers of two from ``min_bytes`` to ``max_bytes``, multiples of 8 (whole doubles)."""
    if min_bytes < 8 or max_bytes < min_bytes:
        raise UserError(f"need 8 <= --min-bytes <= --max-bytes, got {min_bytes} and {max_bytes}")
    out, n = [], 8
    while n <= max_bytes:
        if n >= min_bytes:
            out.append(n)
        n *= 2
    return out


# -- the worker (runs under mpiexec/srun) ---------------------------------------------

def _time_size(comm, send, recv, batch_s: float, reps: int) -> dict:
    """Median/min/max over ``reps`` of the slowest rank's mean call time at one size. Collective."""
    import numpy as np

    from .. import comm as C

    for _ in range(3):
        C.allreduce_sum_into(comm, send, recv)
    single = []
    for _ in range(7):
        C.barrier(comm)
        t = time.perf_counter()
        C.allreduce_sum_into(comm, send, recv)
        single.append(time.perf_counter() - t)
    est = float(np.median(single))
    iters = C.allreduce_max(comm, int(min(10_000, max(1, batch_s / max(est, 1e-9)))))
    times = []
    for _ in range(reps):
        C.barrier(comm)
        t = time.perf_counter()
        for _ in range(iters):
            C.allreduce_sum_into(comm, send, recv)
        times.append(C.allreduce_max(comm, (time.perf_counter() - t) / iters))
    if recv[0] != comm.size:
        raise RuntimeError(f"Allreduce of ones gave {recv[0]} at {comm.size} ranks")
    return {"bytes": send.nbytes, "count": send.size, "iters": iters, "reps": len(times),
            "median_s": float(np.median(times)), "min_s": float(np.min(times)), "max_s": float(np.max(times))}


def worker(args) -> int:
    """Time Allreduce at every size; rank 0 prints the table. Collective over COMM_WORLD."""
    import numpy as np

    from .. import comm as C

    def body(comm) -> int:
        count_max = max(args.sizes) // 8
        send = np.ones(count_max)
        recv = np.empty(count_max)
        table = [_time_size(comm, send[:n // 8], recv[:n // 8], args.batch_s, args.reps) for n in args.sizes]
        if comm.rank == 0:
            print(json.dumps({"ranks": comm.size, "table": table, "mpi_library": C.library_version()}),
                  flush=True)
        return 0

    return C.run_app(body)


# -- the launcher ------------------------------------------------------------------------

def launcher_command(args) -> list[str]:
    kind = args.launcher
    if kind == "auto":
        kind = "srun" if os.environ.get("SLURM_JOB_ID") and shutil.which("srun") else "mpiexec"
    if kind == "srun":
        srun = shutil.which("srun")
        if not srun:
            raise SystemExit("bench allreduce: --launcher srun but no srun on PATH")
        return [srun, f"--mpi={os.environ.get('LEPTON_MPI', 'pmi2')}", "-n", str(args.ranks)]
    return [find_mpiexec(args.mpiexec), "-n", str(args.ranks)]


def launch(args) -> dict:
    cmd = [*launcher_command(args), sys.executable, "-m", "lepton_hpc.bench", "allreduce", "_worker",
           "--sizes", ",".join(map(str, args.sizes)), "--reps", str(args.reps), "--batch-s", str(args.batch_s)]
    return last_json(launch_ranks(cmd, args.timeout, "bench allreduce"), "bench allreduce")


def analyse(raw: dict, algorithm: str, stat: str = "median") -> dict:
    """Fit the table of a worker run; the JSON report (without provenance)."""
    from ..scaling.model import ALGORITHMS, hockney_fit, hockney_from_allreduce

    table = raw["table"]
    p = int(raw["ranks"])
    fit = hockney_fit([r["bytes"] for r in table], [r[f"{stat}_s"] for r in table])
    for row, f, res in zip(table, fit.pop("fit_s"), fit.pop("residuals_rel")):
        row["fit_s"], row["residual_rel"] = f, res
    per = {}
    for alg in ALGORITHMS:
        a, b = hockney_from_allreduce(fit["a_s"], fit["b_s_per_byte"], p, alg)
        per[alg] = {"alpha_s": a, "beta_s_per_byte": b}
    chosen = per[algorithm]
    return {"bench": "allreduce", "ranks": p, "algorithm": algorithm,
            "alpha_s": chosen["alpha_s"], "beta_s_per_byte": chosen["beta_s_per_byte"],
            "bandwidth_gb_s": (1e-9 / chosen["beta_s_per_byte"]) if chosen["beta_s_per_byte"] > 0 else None,
            "per_algorithm": per,
            "fit": {"model": f"t = a + b*bytes (Allreduce of float64 at `ranks`, {stat} over repetitions)",
                    "stat": stat, **fit},
            "table": table, "mpi_library": raw["mpi_library"]}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench allreduce",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=ranks_type(2), default=2,
                   help="ranks of the Allreduce (>= 2: one rank has no network; default 2)")
    p.add_argument("--min-bytes", type=int_in(8), default=8, help="smallest message in bytes (default 8)")
    p.add_argument("--max-bytes", type=int_in(8), default=8 << 20, help="largest message (default 8 MiB)")
    p.add_argument("--reps", type=positive_int, default=15, help="timed repetitions per size (median kept)")
    p.add_argument("--batch-s", type=positive_float, default=0.002,
                   help="target seconds of one repetition's batch of back-to-back calls")
    p.add_argument("--stat", default="median", choices=("median", "min"),
                   help="which statistic of the repetitions is fitted (min is robust on a busy machine)")
    p.add_argument("--algorithm", default="rabenseifner", choices=("rabenseifner", "ring"),
                   help="Allreduce cost formula used to turn the fit into alpha, beta")
    p.add_argument("--launcher", default="auto", choices=("auto", "mpiexec", "srun"),
                   help="auto: srun inside a Slurm job, else mpiexec")
    p.add_argument("--mpiexec", type=executable, help="mpiexec to use (default: the venv's, else PATH)")
    p.add_argument("--timeout", type=positive_int, default=120, help="seconds before the launch is killed")
    return p


def main(argv=None) -> dict:
    """Run the sweep under the launcher, fit, return the report dict."""
    p = parser()
    args = p.parse_args(argv)
    if args.max_bytes < args.min_bytes:
        p.error(f"argument --max-bytes: must be >= --min-bytes ({args.min_bytes}), got {args.max_bytes}")
    args.sizes = sizes(args.min_bytes, args.max_bytes)
    if len(args.sizes) < 2:
        p.error(f"argument --max-bytes: need at least two message sizes (powers of two) from --min-bytes "
                f"{args.min_bytes} to --max-bytes {args.max_bytes} to fit a line")
    t = time.perf_counter()
    raw = launch(args)
    result = analyse(raw, args.algorithm, args.stat)
    note(f"bench allreduce at {result['ranks']} ranks: alpha {result['alpha_s'] * 1e6:.2f} us, "
         f"beta {result['beta_s_per_byte'] * 1e9:.3f} ns/B ({args.algorithm}), fit rms "
         f"{100 * result['fit']['rms_rel']:.0f}% of the time")
    result.update({"wall_s": time.perf_counter() - t,
                   "provenance": provenance(raw["mpi_library"], raw["ranks"])})
    return result


def worker_cli(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench allreduce _worker")
    p.add_argument("--sizes", required=True)
    p.add_argument("--reps", type=positive_int, default=15)
    p.add_argument("--batch-s", type=positive_float, default=0.002)
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    return worker(args)


def cli(argv) -> int:
    if argv[:1] == ["_worker"]:  # launched by main under mpiexec/srun
        return worker_cli(argv[1:])
    print(json.dumps(main(argv)), flush=True)
    return 0
