"""Benchmarks whose targets are ratios measured within one run.

    python -m lepton_hpc.bench gradpass [--rows 2000000 --cols 32 --repeats 7]
    python -m lepton_hpc.bench reduce   [--rows 2000000 --cols 32 --ranks 2 --steps 20]
    python -m lepton_hpc.bench ranks    [--rows 2000000 --cols 32 --steps 20]
    python -m lepton_hpc.bench matmul   [--n 4000 --k 200]   (lepton_hpc.bench_matmul)
    python -m lepton_hpc.bench allreduce [--ranks 2]          (lepton_hpc.bench_allreduce)
    python -m lepton_hpc.bench models --what steps2v1|epoch   (lepton_hpc.bench_models)

Each prints ONE JSON object on stdout (notes go to stderr): the timings as
min/median/max, ``ratio`` (the ratio of the two medians), ``paired_ratio``
(min/median/max of the ratios of the A and B measurements taken side by
side), ``target``, ``target_is`` (">=" or "<=") and ``pass``. The machine may
be shared and noisy, so the two sides of every ratio are measured in the same
run, interleaved (A B B A …), and repeated. ``--strict`` exits 3 when a target
is missed. The data is the packaged default job's (synthetic, chunk_rows
4096) with ``--rows``/``--cols``; ``--set section.key=value`` overrides keys.

Ranks run single-threaded (OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1). An
OPENBLAS_CORETYPE found in the environment is reported, never changed.
To add a benchmark: write ``fn(args) -> dict`` and register it in BENCHES.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .metrics import spread

RANK_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def verdict(a, b, target: float, target_is: str) -> dict:
    """Ratio of the medians of ``a`` and ``b`` plus the spread of the side-by-side ratios."""
    ratio = float(np.median(a) / np.median(b))
    ok = ratio >= target if target_is == ">=" else ratio <= target
    paired = np.asarray(a, dtype=float) / np.asarray(b, dtype=float)
    return {"ratio": ratio, "paired_ratio": spread(paired), "target": target, "target_is": target_is,
            "pass": bool(ok)}


def blas_summary() -> list[dict]:
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "num_threads", "architecture", "threading_layer", "prefix")
    return [{k: info.get(k) for k in keys} for info in threadpool_info() if info.get("user_api") == "blas"]


def provenance(blas: list[dict]) -> dict:
    import mpi4py

    from . import __version__
    from .metrics import git_sha

    if "mpi4py.MPI" not in sys.modules:
        mpi4py.rc.initialize = mpi4py.rc.finalize = False  # Get_library_version needs no MPI_Init
    from mpi4py import MPI

    return {"lepton_hpc": __version__, "git_sha": git_sha(), "python": sys.version.split()[0],
            "numpy": np.__version__, "mpi4py": mpi4py.__version__,
            "mpi_library": MPI.Get_library_version().splitlines()[0].strip(),
            "cpu_count": os.cpu_count(), "blas": blas,
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                   "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}


def job_overrides(args) -> list[str]:
    return [f"data.rows={args.rows}", f"data.cols={args.cols}", *args.overrides]


def build(args, size: int, rank: int):
    """(config, shard, linear-model kernel) of this rank: the default job's data at --rows x --cols."""
    from .config import load
    from .data.shard import Shard
    from .models.glm import make_kernel

    cfg = load(None, job_overrides(args))
    shard = Shard(cfg.data, size, rank)
    kernel = make_kernel("linear", shard.n_cols, cfg.model.fit_intercept, shard.chunk_rows, shard.dtype)
    return cfg, shard, kernel


def grad_pass(shard, kernel, theta, partials) -> None:
    """The compute of one full-batch gd step, as Trainer._grad_loss composes it."""
    plan = getattr(shard, "_bench_plan", False)
    if plan is False:  # built once per shard, as the trainer does at setup
        plan = shard._bench_plan = kernel.plan(shard)
    if plan is not None:
        kernel.partials_all(plan, theta, partials)
        return
    for i, X, y, sw in shard.chunks_iter():
        kernel.partial(X, y, sw, theta, partials[i])


def data_info(shard) -> dict:
    return {"rows": shard.n_rows, "cols": shard.n_cols, "dtype": shard.dtype.name,
            "chunk_rows": shard.chunk_rows, "n_chunks": shard.n_chunks, "source": shard.describe()}


# -- gradpass: one rank's gradient pass against numpy's one-pass read ----------

def bench_gradpass(args) -> dict:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        t0 = time.perf_counter()
        _, shard, kernel = build(args, 1, 0)
        note(f"gradpass: built {shard.describe()} in {time.perf_counter() - t0:.1f}s")
        views = [(X, y) for _, X, y, _sw in shard.chunks_iter()]
        x_bytes = sum(X.nbytes for X, _ in views)
        theta = np.full(kernel.n_params, 0.01)
        out = np.zeros((len(views), kernel.width))
        w = np.full(shard.n_cols, 0.01)
        r = np.empty(shard.chunk_rows)
        s = np.empty(shard.n_cols, dtype=shard.dtype)
        flat = [X.reshape(-1) for X, _ in views]

        reads = {  # numpy reading every byte of X once, three ways; the fastest is the bound
            "gemv": lambda: [np.dot(X, w, out=r[:X.shape[0]]) for X, _ in views],
            "colsum": lambda: [np.add.reduce(X, axis=0, out=s) for X, _ in views],
            "dot": lambda: [np.dot(f, f) for f in flat],
        }
        fns = {"gradpass": lambda: grad_pass(shard, kernel, theta, out), **reads}
        times = {k: [] for k in fns}
        names = list(fns)
        for fn in fns.values():
            fn()  # warm-up
        for rep in range(args.repeats):
            for k in names[rep % len(names):] + names[:rep % len(names)]:  # rotate the order
                t = time.perf_counter()
                fns[k]()
                times[k].append(time.perf_counter() - t)
        blas = blas_summary()
    bound = np.min([times[k] for k in reads], axis=0)  # the fastest read in each round
    gbs = lambda ts: spread(x_bytes / np.asarray(ts) / 1e9)  # noqa: E731
    fastest = min(reads, key=lambda k: np.median(times[k]))
    note(f"gradpass: {np.median(times['gradpass']) * 1e3:.1f} ms, bound {np.median(bound) * 1e3:.1f} ms "
         f"({fastest} is the fastest read)")
    return {"data": data_info(shard), "block_rows": kernel.block, "repeats": args.repeats,
            "x_bytes": x_bytes, "gradpass_s": spread(times["gradpass"]), "gradpass_gb_s": gbs(times["gradpass"]),
            "bound_s": spread(bound), "bound_gb_s": gbs(bound), "bound_fastest_read": fastest,
            "reads": {k: {"s": spread(times[k]), "gb_s": gbs(times[k])} for k in reads},
            **verdict(bound, times["gradpass"], 0.65, ">="), "_blas": blas}


# -- reduce and ranks: gd steps under mpiexec --------------------------------

def launch(args, n_ranks: int, modes: str) -> dict:
    """Run the _worker under ``mpiexec -n n_ranks``; return rank 0's JSON."""
    mpiexec = args.mpiexec or shutil.which("mpiexec", path=str(Path(sys.executable).parent)) \
        or shutil.which("mpiexec")
    if not mpiexec:
        raise SystemExit("bench: no mpiexec found (install the mpich wheel into this venv or pass --mpiexec)")
    cmd = [mpiexec, "-n", str(n_ranks), sys.executable, "-m", "lepton_hpc.bench", "_worker",
           "--rows", str(args.rows), "--cols", str(args.cols), "--steps", str(args.steps),
           "--block", str(args.block), "--modes", modes, *[f"--set={o}" for o in args.overrides]]
    env = {**os.environ, **RANK_ENV, "MPIEXEC_TIMEOUT": str(args.timeout)}
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, timeout=args.timeout + 30)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"bench: {' '.join(cmd)} ran past {args.timeout + 30}s") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"bench: {' '.join(cmd)} exited {proc.returncode}; stdout tail: {lines[-3:]}")
    note(f"  mpiexec -n {n_ranks} ({modes}): {time.perf_counter() - t:.1f}s")
    return json.loads(lines[-1])


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


def bench_ranks(args) -> dict:
    per = {1: [], 2: []}
    for rnd in range(args.rounds):
        for n in (1, 2) if rnd % 2 == 0 else (2, 1):
            res = launch(args, n, args.reduction)
            per[n].append(float(np.median(res["modes"][args.reduction]["step_s"])))
    return {"data": res["data"], "reduction": args.reduction, "steps": args.steps, "rounds": args.rounds,
            "step_s_n1": spread(per[1]), "step_s_n2": spread(per[2]),
            "step_s_per_launch": {"n1": per[1], "n2": per[2]},
            **verdict(per[1], per[2], 1.6, ">="), "_blas": res["blas"]}


def worker(args) -> None:
    """One rank: time gd steps (compute + reduce) of each mode, in blocks A B B A …."""
    from . import comm as C
    from .reduce import ChunkReducer

    comm = C.world()
    try:
        _, shard, kernel = build(args, comm.size, comm.rank)
        modes = args.modes.split(",")
        reducers = {m: ChunkReducer(comm, shard.n_chunks, kernel.width, m) for m in modes}
        theta = np.full(kernel.n_params, 0.01)
        times = {m: {"compute_s": [], "reduce_s": [], "reduce_only_s": []} for m in modes}

        def step(m: str, record: bool) -> None:
            red = reducers[m]
            t0 = time.perf_counter()
            grad_pass(shard, kernel, theta, red.partials)
            t1 = time.perf_counter()
            red.reduce()
            t2 = time.perf_counter()
            if record:
                times[m]["compute_s"].append(t1 - t0)
                times[m]["reduce_s"].append(t2 - t1)

        for m in modes:
            step(m, False)  # warm-up
        comm.Barrier()
        for blk in range(-(-args.steps // args.block)):
            for m in modes if blk % 2 == 0 else modes[::-1]:
                for _ in range(min(args.block, args.steps - blk * args.block)):
                    step(m, True)
        for _ in range(max(args.steps, 10)):  # the reduction alone, ranks lined up by a barrier
            for m in modes:
                comm.Barrier()
                t = time.perf_counter()
                reducers[m].reduce()
                times[m]["reduce_only_s"].append(time.perf_counter() - t)
        everyone = comm.gather(times, root=0)
        if comm.rank == 0:
            out = {}
            for m in modes:  # a step lasts as long as its slowest rank's
                worst = {k: np.max([e[m][k] for e in everyone], axis=0) for k in times[m]}
                step_s = np.max([np.add(e[m]["compute_s"], e[m]["reduce_s"]) for e in everyone], axis=0)
                out[m] = {"step_s": step_s.tolist(), "reduce_s": worst["reduce_s"].tolist(),
                          "compute_s_by_rank": [float(np.median(e[m]["compute_s"])) for e in everyone],
                          "reduce_only_s": worst["reduce_only_s"].tolist(),
                          "bytes_per_reduce": reducers[m].bytes_per_reduce}
            print(json.dumps({"data": data_info(shard), "world_size": comm.size, "modes": out,
                              "blas": blas_summary()}), flush=True)
    except BaseException as exc:  # noqa: BLE001 - one failing rank must not leave the others waiting
        C.abort_on_error(comm, exc)


def _common(p: argparse.ArgumentParser, steps: bool) -> None:
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--cols", type=int, default=32)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key of the default job (repeatable)")
    if steps:
        p.add_argument("--steps", type=int, default=20, help="timed steps per mode (per launch)")
        p.add_argument("--block", type=int, default=1, help="steps in a row of one mode (A B B A … order)")
        p.add_argument("--timeout", type=int, default=600, help="seconds per mpiexec launch")
        p.add_argument("--mpiexec", help="launcher (default: the venv's mpiexec, else PATH's)")


BENCHES = {  # name: (function, help, extra-arguments setup)
    "gradpass": (bench_gradpass, "gradient pass vs numpy's one-pass read of X (target >= 0.65)",
                 lambda p: p.add_argument("--repeats", type=int, default=7)),
    "reduce": (bench_reduce, "step time exact / fast reduction (target <= 1.10)",
               lambda p: p.add_argument("--ranks", type=int, default=2)),
    "ranks": (bench_ranks, "step time -n 1 / -n 2 (target >= 1.6)",
              lambda p: (p.add_argument("--rounds", type=int, default=3),
                         p.add_argument("--reduction", default="exact", choices=("exact", "fast")))),
}


# Benchmarks that live in their own modules: name -> module with main(argv) -> dict.
EXTERNAL = {"matmul": "lepton_hpc.bench_matmul", "allreduce": "lepton_hpc.bench_allreduce",
            "models": "lepton_hpc.bench_models"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in EXTERNAL:
        import importlib

        module = importlib.import_module(EXTERNAL[argv[0]])
        if hasattr(module, "cli"):
            return module.cli(argv[1:])
        print(json.dumps(module.main(argv[1:])), flush=True)
        return 0
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="bench", required=True, metavar="{" + ",".join([*BENCHES, *EXTERNAL]) + "}")
    for name, (_, text, extra) in BENCHES.items():
        q = sub.add_parser(name, help=text)
        _common(q, steps=name != "gradpass")
        q.add_argument("--strict", action="store_true", help="exit 3 when the target is missed")
        extra(q)
    w = sub.add_parser("_worker")  # launched by reduce/ranks under mpiexec
    _common(w, steps=True)
    w.add_argument("--modes", default="exact,fast")
    args = p.parse_args(argv)
    if args.bench == "_worker":
        worker(args)
        return 0
    from .config import load

    try:
        load(None, job_overrides(args))  # a bad --set fails here, before any launch
    except ValueError as exc:
        p.error(str(exc))
    t, load0 = time.perf_counter(), os.getloadavg()[0]
    result = BENCHES[args.bench][0](args)
    blas = result.pop("_blas")
    result = {"bench": args.bench, **result, "wall_s": time.perf_counter() - t,
              "loadavg_1m": {"start": load0, "end": os.getloadavg()[0]}, "provenance": provenance(blas)}
    print(json.dumps(result), flush=True)
    return 3 if args.strict and not result["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
