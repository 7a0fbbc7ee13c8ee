"""``svd``: lepton_hpc's tall-skinny SVD against numpy Householder QR + SVD (target >= 2.5).

    python -m lepton_hpc.bench svd [--sizes 200000x32,2000000x64 --ranks 1,2 --repeats 5 --kappa 1]

For every size and rank count, one ``mpiexec`` launch of :func:`worker` times,
interleaved (A B B A …) after one untimed warm-up of each:

* **lepton**: :func:`lepton_hpc.linalg.svd_tsqr` (``U_local, S, V``; CholeskyQR2
  by default, the path that ran is reported);
* **baseline**: ``numpy.linalg.qr`` of each rank's block, an allgather of the
  ``R`` factors, ``numpy.linalg.qr`` of the stacked ``R``, ``numpy.linalg.svd``
  of the result and ``U_local = Q_local (Q_stack piece · U_R)``: the same
  outputs, the plain Householder way.

A repetition lasts as long as its slowest rank (ranks start together after a
barrier).  The slowest rank's CPU seconds are reported too (``*_cpu_s``,
``ratio_cpu``: blind to time slices lost to other processes on a shared
machine, but they count MPI's busy-waiting).  ``ratio`` is the smallest over the cases of baseline median / lepton
median; every case also reports the orthogonality ``‖UᵀU − I‖₂`` and the
reconstruction error ``‖A − U S Vᵀ‖_F / ‖A‖_F`` of both, and passes only when
lepton's errors are within 10x of the baseline's (or below ``n·eps``).  The
matrix is standard normal (each 65536-row block from its own seed, so the
same at every rank count) with columns scaled to ``logspace(0, -log10(kappa))``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from .common import (blas_summary, find_mpiexec, last_json, launch_ranks, note, provenance, spread,
                     verdict)
from .common import executable, float_in, int_list, non_negative_int, positive_int

HELP = "tall-skinny SVD: numpy QR+SVD time / lepton svd_tsqr time (target >= 2.5)"
TARGET = 2.5
GEN_ROWS = 65536
EPS = float(np.finfo(np.float64).eps)


def make_block(lo: int, hi: int, n: int, kappa: float, seed: int) -> np.ndarray:
    """Rows ``[lo, hi)`` of the benchmark matrix (the same bits at any rank count)."""
    out = np.empty((hi - lo, n))
    scale = np.logspace(0, -np.log10(kappa), n) if kappa > 1 else np.ones(n)
    for g in range(lo // GEN_ROWS, -(-hi // GEN_ROWS)):
        g_lo, g_hi = g * GEN_ROWS, (g + 1) * GEN_ROWS
        rows = np.random.default_rng([seed, g]).standard_normal((GEN_ROWS, n))
        a, b = max(lo, g_lo), min(hi, g_hi)
        out[a - lo:b - lo] = rows[a - g_lo:b - g_lo] * scale
    return out


def baseline_svd(block: np.ndarray, comm):
    """numpy Householder QR per block, QR of the stacked R, SVD of R: ``(U_local, S, V)``."""
    from .. import comm as C

    q_local, r_local = np.linalg.qr(block)
    r_blocks = C.allgather(comm, r_local)
    q_stack, r = np.linalg.qr(np.vstack(r_blocks))
    u_r, s, vt = np.linalg.svd(r)
    start = sum(rb.shape[0] for rb in r_blocks[:comm.rank])
    return q_local @ (q_stack[start:start + r_local.shape[0]] @ u_r), s, vt.T


def accuracy(block: np.ndarray, u, s, v, comm) -> dict:
    from .. import comm as C
    from ..linalg import orthogonality_error

    orth = orthogonality_error(u, comm)
    sq = C.allreduce_sum(comm, np.array([np.sum((block - (u * s) @ v.T) ** 2), np.sum(block ** 2)]))
    return {"orthogonality": orth, "reconstruction": float(np.sqrt(sq[0] / sq[1]))}


def worker(args) -> int:
    """Every rank: time both SVDs of its block; rank 0 prints the JSON.  Collective."""
    from .. import comm as C
    from ..layout import block_range
    from ..linalg import svd_tsqr

    def body(comm) -> int:
        lo, hi = block_range(args.rows, comm.size, comm.rank)
        block = make_block(lo, hi, args.cols, args.kappa, args.seed)
        fns = {"lepton": lambda: svd_tsqr(block, comm), "baseline": lambda: baseline_svd(block, comm)}
        acc, paths, times = {}, None, {name: [] for name in fns}
        cpu = {name: [] for name in fns}  # the slowest rank's CPU seconds: blind to time slices lost to others
        for name, fn in fns.items():  # warm-up, kept for the accuracy check
            res = fn()
            acc[name] = accuracy(block, *res[:3], comm)
            if name == "lepton":
                paths, s_lepton = res.path, res[1]
            else:
                s_diff = float(np.max(np.abs(s_lepton - res[1])) / res[1][0])
            del res
        order = ["lepton", "baseline"]
        for rep in range(args.repeats):
            for name in order if rep % 2 == 0 else order[::-1]:
                C.barrier(comm)
                c, t = time.process_time(), time.perf_counter()
                res = fns[name]()
                t, c = time.perf_counter() - t, time.process_time() - c
                times[name].append(C.allreduce_max(comm, t))
                cpu[name].append(C.allreduce_max(comm, c))
                del res
        if comm.rank == 0:
            print(json.dumps({"times": times, "cpu_times": cpu, "accuracy": acc, "path": paths, "s_rel_diff": s_diff,
                              "world_size": comm.size, "blas": blas_summary()}), flush=True)
        return 0

    return C.run_app(body)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    try:
        sizes = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(len(s) != 2 or s[0] < s[1] or s[1] < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"must be ROWSxCOLS,... with rows >= cols >= 1, got {text!r}")
    return sizes


def launch(args, m: int, n: int, n_ranks: int, repeats: int) -> dict:
    cmd = [find_mpiexec(args.mpiexec), "-n", str(n_ranks), sys.executable, "-m", "lepton_hpc.bench", "svd",
           "_worker", "--rows", str(m), "--cols", str(n), "--repeats", str(repeats),
           "--kappa", str(args.kappa), "--seed", str(args.seed)]
    t = time.perf_counter()
    res = last_json(launch_ranks(cmd, args.timeout, "bench svd", capture_stderr=False), "bench svd")
    note(f"  {m}x{n} -n {n_ranks}: {time.perf_counter() - t:.1f}s, lepton "
         f"{np.median(res['times']['lepton']):.3f}s ({res['path']}), baseline "
         f"{np.median(res['times']['baseline']):.3f}s")
    return res


def case(m: int, n: int, n_ranks: int, res: dict) -> dict:
    lep, base = res["accuracy"]["lepton"], res["accuracy"]["baseline"]
    floor = n * EPS
    equal = all(lep[k] <= 10 * max(base[k], floor) for k in lep)
    v = verdict(res["times"]["baseline"], res["times"]["lepton"], TARGET, ">=")
    return {"rows": m, "cols": n, "ranks": n_ranks, "path": res["path"],
            "lepton_s": spread(res["times"]["lepton"]), "baseline_s": spread(res["times"]["baseline"]),
            "lepton_cpu_s": spread(res["cpu_times"]["lepton"]),
            "baseline_cpu_s": spread(res["cpu_times"]["baseline"]),
            "ratio_cpu": float(np.median(res["cpu_times"]["baseline"]) / np.median(res["cpu_times"]["lepton"])),
            "accuracy": res["accuracy"], "singular_values_rel_diff": res["s_rel_diff"],
            "equal_accuracy": bool(equal), **v, "pass": bool(v["pass"] and equal)}


def run(args) -> dict:
    cases, blas = [], None
    for m, n in args.sizes:
        repeats = args.repeats if m * n <= 10 ** 7 else args.repeats_large
        for n_ranks in args.ranks:
            res = launch(args, m, n, n_ranks, repeats)
            cases.append(case(m, n, n_ranks, res))
            blas = res["blas"]
    worst = min(cases, key=lambda c: c["ratio"])
    return {"kappa": args.kappa, "cases": cases, "worst_case": {k: worst[k] for k in ("rows", "cols", "ranks")},
            "paths": sorted({c["path"] for c in cases}),
            "equal_accuracy": all(c["equal_accuracy"] for c in cases),
            "ratio": worst["ratio"], "paired_ratio": worst["paired_ratio"], "target": TARGET, "target_is": ">=",
            "pass": all(c["pass"] for c in cases), "_blas": blas}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench svd", description=HELP)
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes("200000x32,2000000x64"),
                   help="ROWSxCOLS,... (default 200000x32,2000000x64)")
    p.add_argument("--ranks", type=int_list(1), default="1,2", help="comma-separated rank counts (default 1,2)")
    p.add_argument("--repeats", type=positive_int, default=5,
                   help="timed repetitions per side (matrices up to 1e7 entries)")
    p.add_argument("--repeats-large", type=positive_int, default=3, help="timed repetitions per side, larger matrices")
    p.add_argument("--kappa", type=float_in(1.0), default=1.0, help="column scaling range (1: plain normal matrix)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the generated data")
    p.add_argument("--timeout", type=positive_int, default=1800, help="seconds per mpiexec launch")
    p.add_argument("--mpiexec", type=executable, help="launcher (default: the venv's mpiexec, else PATH's)")
    p.add_argument("--strict", action="store_true", help="exit 3 when the target is missed")
    return p


def cli(argv) -> int:
    argv = list(argv)
    if argv[:1] == ["_worker"]:
        w = argparse.ArgumentParser(prog="python -m lepton_hpc.bench svd _worker")
        for name, typ in (("--rows", int), ("--cols", int), ("--repeats", int), ("--kappa", float),
                          ("--seed", int)):
            w.add_argument(name, type=typ, required=True)
        return worker(w.parse_args(argv[1:]))
    p = parser()
    args = p.parse_args(argv)
    t, load0 = time.perf_counter(), os.getloadavg()[0]
    result = run(args)
    blas = result.pop("_blas")
    result = {"bench": "svd", **result, "wall_s": time.perf_counter() - t,
              "loadavg_1m": {"start": load0, "end": os.getloadavg()[0]}, "provenance": provenance(blas=blas)}
    print(json.dumps(result), flush=True)
    return 3 if args.strict and not result["pass"] else 0
