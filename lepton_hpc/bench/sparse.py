"""``sparse``: one rank's full gradient pass on CSR X against scipy.sparse (target >= 1.0).

    python -m lepton_hpc.bench sparse [--rows 1000000 --cols 1048576 --nnz-per-row 50 --repeats 5]

The data is ``synth sparse-linear`` written to a temporary HDF5 file and read
back through the engine's reader (:class:`lepton_hpc.data.sparse_shard.SparseShard`).
Ours is the engine's own full-batch gradient (:class:`lepton_hpc.problems.glm_solvers.FullBatch`:
chunk partials, the exact reduction, the mean); the baseline is scipy.sparse's
``X.T @ (X @ w - y)`` on a csr_matrix sharing the same ``data`` and ``indices``
arrays. The ratio is scipy's median wall time over ours (``cpu`` gives the same
ratio in process CPU seconds, steadier on a shared machine). Memory: the peak RSS of the
process next to the bytes of the CSR arrays held (nothing densifies X).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from .common import RANK_ENV, blas_summary, note, provenance, spread, verdict
from .common import existing_dir, positive_int

HELP = "CSR gradient pass vs scipy.sparse X.T @ (X @ w - y) (target >= 1.0)"


def _data(args, path: str):
    from ..config import load
    from ..data.shard import Shard

    t = time.perf_counter()
    # in a child process, so that this process's peak RSS is the reader's and the passes' alone
    cmd = [sys.executable, "-m", "lepton_hpc.data", "synth", "sparse-linear", "--rows", str(args.rows),
           "--cols", str(args.cols), "--nnz-per-row", str(args.nnz_per_row), "--chunk-rows", "65536", "--out", path]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, **RANK_ENV})
    if proc.returncode != 0:
        raise SystemExit(f"bench sparse: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-1500:]}")
    note(f"sparse: wrote {args.rows} x {args.cols} CSR ({os.path.getsize(path) / 2**20:.0f} MiB) in "
         f"{time.perf_counter() - t:.1f}s")
    cfg = load(None, [f"data.path={path}", f"data.chunk_rows={args.chunk_rows}", "model.fit_intercept=true"])
    return cfg, Shard(cfg.data, 1, 0)


def bench_sparse(args) -> dict:
    from threadpoolctl import threadpool_limits
    import scipy.sparse as sp

    from .. import comm as C
    from ..metrics import PhaseTimer
    from ..models import fused
    from ..models.glm import make_kernel
    from ..problems.glm_solvers import FullBatch

    with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp, threadpool_limits(limits=1):
        cfg, shard = _data(args, os.path.join(tmp, "sparse.h5"))
        kernel = make_kernel("linear", shard.n_cols, True, shard.chunk_rows, shard.dtype)
        one = C.self_comm()
        full = FullBatch(one, shard, kernel, "exact", PhaseTimer())
        L = shard.X_all
        X = sp.csr_matrix((L.data, L.indices, L.indptr.astype(L.indices.dtype)), shape=L.shape, copy=False)
        assert np.shares_memory(X.data, L.data) and np.shares_memory(X.indices, L.indices)
        y = shard.y_all[:shard.n_local]
        theta = np.random.default_rng(1).standard_normal(kernel.n_params) * 0.01
        w, b = theta[:-1], theta[-1]
        grad = np.empty(kernel.n_params)
        fns = {"ours": lambda: full.gradient(theta, grad, 0), "scipy": lambda: X.T @ (X @ w + b - y)}
        for fn in fns.values():
            fn()  # warm-up
        g_ours = grad[:-1] * full.reducer.result[-1]
        g_ref = fns["scipy"]()
        rel = float(np.linalg.norm(g_ours - g_ref) / np.linalg.norm(g_ref))
        times = {k: [] for k in fns}
        cpu = {k: [] for k in fns}
        for rep in range(args.repeats):
            for k in (["ours", "scipy"] if rep % 2 == 0 else ["scipy", "ours"]):
                t, c = time.perf_counter(), time.process_time()
                fns[k]()
                times[k].append(time.perf_counter() - t)
                cpu[k].append(time.process_time() - c)
        blas = blas_summary()
        csr_bytes = L.data.nbytes + L.indices.nbytes + L.indptr.nbytes
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        lazy = full.lazy
        info = {"rows": shard.n_rows, "cols": shard.n_cols, "nnz": int(shard.nnz),
                "chunk_rows": shard.chunk_rows, "n_chunks": shard.n_chunks, "source": shard.describe()}
        red = full.reducer  # the partials table is never touched on the on-demand (lazy) path
        reducer_bytes = (red.nbytes - (red.partials.nbytes if full.lazy else 0)
                         + sum(b.nbytes for b in getattr(red, "_bufs", [])))
        shard.close()
        C.free(one)
    note(f"sparse: ours {np.median(times['ours']) * 1e3:.1f} ms, scipy {np.median(times['scipy']) * 1e3:.1f} ms, "
         f"peak RSS {peak / 2**20:.0f} MiB for {csr_bytes / 2**20:.0f} MiB of CSR")
    return {"data": info, "c_kernel": fused.csr_supports("linear"), "partials_on_demand": lazy,
            "repeats": args.repeats,
            "ours_s": spread(times["ours"]), "scipy_s": spread(times["scipy"]),
            "gradient_rel_diff_vs_scipy": rel,
            # this process's CPU seconds: the same comparison, less sensitive to a shared machine
            "cpu": {"ours_s": spread(cpu["ours"]), "scipy_s": spread(cpu["scipy"]),
                    "ratio": float(np.median(cpu["scipy"]) / np.median(cpu["ours"]))},
            "memory": {"csr_bytes": csr_bytes, "peak_rss_bytes": peak, "reducer_bytes": reducer_bytes,
                       "peak_rss_over_csr": peak / csr_bytes,
                       "dense_x_bytes_avoided": shard.n_rows * shard.n_cols * 8},
            **verdict(times["scipy"], times["ours"], 1.0, ">="), "_blas": blas}


def cli(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench sparse", description=HELP)
    p.add_argument("--rows", type=positive_int, default=1_000_000, help="rows of the generated CSR matrix")
    p.add_argument("--cols", type=positive_int, default=1 << 20, help="columns (features)")
    p.add_argument("--nnz-per-row", type=positive_int, default=50, help="non-zeros per row")
    p.add_argument("--chunk-rows", type=positive_int, default=65536,
                   help="data.chunk_rows: each chunk's partial is a dense row of cols + 2 floats")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed passes per side (medians are reported)")
    p.add_argument("--tmpdir", type=existing_dir, default=None,
                   help="where the temporary CSR file goes (default: the system's)")
    p.add_argument("--strict", action="store_true", help="exit 3 when the target is missed")
    args = p.parse_args(argv)
    if args.nnz_per_row > args.cols:
        p.error(f"argument --nnz-per-row: must be <= --cols ({args.cols}): a row has at most that many "
                f"non-zeros, got {args.nnz_per_row}")
    t, load0 = time.perf_counter(), os.getloadavg()[0]
    result = bench_sparse(args)
    blas = result.pop("_blas")
    result = {"bench": "sparse", **result, "wall_s": time.perf_counter() - t,
              "loadavg_1m": {"start": load0, "end": os.getloadavg()[0]}, "provenance": provenance(blas=blas)}
    print(json.dumps(result), flush=True)
    return 3 if args.strict and not result["pass"] else 0
