"""``reduce``: gd step time with the exact reduction over the fast one (target <= 1.10).

    python -m lepton_hpc.bench reduce [--rows 2000000 --cols 32 --ranks 2 --steps 20 --block 1]

Both modes run in one ``mpiexec`` launch of :func:`worker`, in blocks of
``--block`` steps in the order A B B A …; a step lasts as long as its slowest
rank's compute plus reduction. The worker is also the one :mod:`.ranks` launches.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from .common import (add_job_args, blas_summary, build, data_info, find_mpiexec, job_cli, last_json,
                     launch_ranks, note, spread, verdict)
from .common import ranks_type

HELP = "step time exact / fast reduction (target <= 1.10)"


def launch(args, n_ranks: int, modes: str) -> dict:
    """Run the worker under ``mpiexec -n n_ranks``; return rank 0's JSON."""
    cmd = [find_mpiexec(args.mpiexec), "-n", str(n_ranks), sys.executable, "-m", "lepton_hpc.bench", "reduce",
           "_worker", "--rows", str(args.rows), "--cols", str(args.cols), "--steps", str(args.steps),
           "--block", str(args.block), "--modes", modes, *[f"--set={o}" for o in args.overrides]]
    t = time.perf_counter()
    res = last_json(launch_ranks(cmd, args.timeout, "bench", capture_stderr=False), "bench")
    note(f"  mpiexec -n {n_ranks} ({modes}): {time.perf_counter() - t:.1f}s")
    return res


def bench_reduce(args) -> dict:
    res = launch(args, args.ranks, "exact,fast")
    ex, fa = res["modes"]["exact"], res["modes"]["fast"]
    return {"data": res["data"], "ranks": args.ranks, "steps": args.steps, "block": args.block,
            "step_s": {m: spread(res["modes"][m]["step_s"]) for m in ("exact", "fast")},
            "reduce_in_step_s": {m: spread(res["modes"][m]["reduce_s"]) for m in ("exact", "fast")},
            "reduce_only_s": {m: spread(res["modes"][m]["reduce_only_s"]) for m in ("exact", "fast")},
            "bytes_per_reduce": {m: res["modes"][m]["bytes_per_reduce"] for m in ("exact", "fast")},
            "compute_s_by_rank": {m: res["modes"][m]["compute_s_by_rank"] for m in ("exact", "fast")},
            **verdict(ex["step_s"], fa["step_s"], 1.10, "<="), "_blas": res["blas"]}


def _time_steps(comm, args, shard, kernel, passes: dict) -> dict:
    """This rank's compute, reduce and reduce-alone seconds per mode. Collective over comm.

    ``passes``: the engine's own full-batch gradient strategy per reduction mode.
    """
    from .. import comm as C

    modes = list(passes)
    reducers = {m: passes[m].reducer for m in modes}
    theta = np.full(kernel.n_params, 0.01)
    times = {m: {"compute_s": [], "reduce_s": [], "reduce_only_s": []} for m in modes}

    def step(m: str, record: bool) -> None:
        red = reducers[m]
        t0 = time.perf_counter()
        passes[m].partials(theta, 0)
        t1 = time.perf_counter()
        red.reduce()
        t2 = time.perf_counter()
        if record:
            times[m]["compute_s"].append(t1 - t0)
            times[m]["reduce_s"].append(t2 - t1)

    for m in modes:
        step(m, False)  # warm-up
    C.barrier(comm)
    for blk in range(-(-args.steps // args.block)):
        for m in modes if blk % 2 == 0 else modes[::-1]:
            for _ in range(min(args.block, args.steps - blk * args.block)):
                step(m, True)
    for _ in range(max(args.steps, 10)):  # the reduction alone, ranks lined up by a barrier
        for m in modes:
            C.barrier(comm)
            t = time.perf_counter()
            reducers[m].reduce()
            times[m]["reduce_only_s"].append(time.perf_counter() - t)
    return times


def _time_reads(comm, shard, reps: int) -> list[float]:
    """Seconds this rank takes to read its X once (gemv per chunk), all ranks together. Collective."""
    from .. import comm as C

    w = np.full(shard.n_cols, 0.01)
    views = [X for _, X, _y, _w in shard.chunks_iter()]
    out = []
    for _ in range(reps + 1):
        C.barrier(comm)
        t = time.perf_counter()
        for X in views:
            X @ w
        out.append(time.perf_counter() - t)
    return out[1:]  # the first is a warm-up


def worker(args) -> int:
    """Every rank: time gd steps (compute + reduce) of each mode; rank 0 prints the JSON. Collective."""
    from .. import comm as C
    from ..metrics import PhaseTimer
    from ..problems.glm_solvers import FullBatch

    def body(comm) -> int:
        _, shard, kernel = build(args, comm.size, comm.rank)
        modes = args.modes.split(",")
        passes = {m: FullBatch(comm, shard, kernel, m, PhaseTimer()) for m in modes}
        times = _time_steps(comm, args, shard, kernel, passes)
        read_s = _time_reads(comm, shard, max(args.steps, 5))
        everyone = C.gather(comm, times)
        reads = C.gather(comm, read_s)
        x_bytes = C.gather(comm, sum(X.nbytes for _, X, _y, _w in shard.chunks_iter()))
        if comm.rank == 0:
            out = {}
            for m in modes:  # a step lasts as long as its slowest rank's
                worst = {k: np.max([e[m][k] for e in everyone], axis=0) for k in times[m]}
                step_s = np.max([np.add(e[m]["compute_s"], e[m]["reduce_s"]) for e in everyone], axis=0)
                out[m] = {"step_s": step_s.tolist(), "reduce_s": worst["reduce_s"].tolist(),
                          "compute_s_by_rank": [float(np.median(e[m]["compute_s"])) for e in everyone],
                          "reduce_only_s": worst["reduce_only_s"].tolist(),
                          "bytes_per_reduce": passes[m].reducer.bytes_per_reduce}
            # every rank reads at once: a round lasts as long as its slowest rank's read
            read_all = np.max(reads, axis=0)
            print(json.dumps({"data": data_info(shard), "world_size": comm.size, "modes": out,
                              "read_s": read_all.tolist(), "x_bytes": int(sum(x_bytes)),
                              "blas": blas_summary()}), flush=True)
        return 0

    return C.run_app(body)


def worker_cli(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench reduce _worker")
    add_job_args(p, steps=True)
    p.add_argument("--modes", default="exact,fast")
    return worker(p.parse_args(argv))


def cli(argv) -> int:
    if argv[:1] == ["_worker"]:  # launched by reduce and ranks under mpiexec
        return worker_cli(argv[1:])
    return job_cli("reduce", HELP, bench_reduce, argv,
                   lambda p: p.add_argument("--ranks", type=ranks_type(1), default=2,
                                                help="ranks of both launches (default 2)"), steps=True)
