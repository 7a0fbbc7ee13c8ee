"""``gradpass``: one rank's gradient pass against numpy's one-pass read of X (target >= 0.65).

    python -m lepton_hpc.bench gradpass [--rows 2000000 --cols 32 --repeats 7]

The bound is the fastest of three ways numpy reads every byte of X once
(gemv, column sums, a flat dot), taken per round; the ratio is the bound's
median time over the gradient pass's.
"""

from __future__ import annotations

import time

import numpy as np

from .common import blas_summary, build, data_info, job_cli, note, spread, verdict
from .common import positive_int

HELP = "gradient pass vs numpy's one-pass read of X (target >= 0.65)"


def bench_gradpass(args) -> dict:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        t0 = time.perf_counter()
        _, shard, kernel = build(args, 1, 0)
        note(f"gradpass: built {shard.describe()} in {time.perf_counter() - t0:.1f}s")
        from .. import comm as C
        from ..metrics import PhaseTimer
        from ..problems.glm_solvers import FullBatch

        one = C.self_comm()
        full = FullBatch(one, shard, kernel, "exact", PhaseTimer())  # the engine's own gradient pass
        views = [(X, y) for _, X, y, _sw in shard.chunks_iter()]
        x_bytes = sum(X.nbytes for X, _ in views)
        theta = np.full(kernel.n_params, 0.01)
        w = np.full(shard.n_cols, 0.01)
        r = np.empty(shard.chunk_rows)
        s = np.empty(shard.n_cols, dtype=shard.dtype)
        flat = [X.reshape(-1) for X, _ in views]

        reads = {  # numpy reading every byte of X once, three ways; the fastest is the bound
            "gemv": lambda: [np.dot(X, w, out=r[:X.shape[0]]) for X, _ in views],
            "colsum": lambda: [np.add.reduce(X, axis=0, out=s) for X, _ in views],
            "dot": lambda: [np.dot(f, f) for f in flat],
        }
        fns = {"gradpass": lambda: full.partials(theta, 0), **reads}
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
        C.free(one)
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


def cli(argv) -> int:
    return job_cli("gradpass", HELP, bench_gradpass, argv,
                   lambda p: p.add_argument("--repeats", type=positive_int, default=7,
                                                help="timed passes of each side (default 7)"), steps=False)
