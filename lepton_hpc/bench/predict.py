"""``predict``: distributed prediction against plain numpy + h5py, and its -n 2 speedup.

    python -m lepton_hpc.bench predict [--rows 2000000 --cols 32 --reps 3 --rounds 2]

One ``mpiexec -n 1`` launch writes the data (``--rows`` × ``--cols`` float64 in one
HDF5 file) and a linear run with one checkpoint into a temporary folder. Then every
round launches the worker at 1 and at 2 ranks (order alternating by round). Each launch
times :func:`lepton_hpc.predict.predict_glm` end to end (checkpoint, read X, X·w + b,
the one output file written in rank order and committed atomically) and the time its
ranks take to read their rows of X once, all at the same time; the -n 1 launch also
times the baseline, one process doing the same work with plain numpy + h5py (read all
of X, X·w + b, write /pred), interleaved with it (A B B A …).

Two targets, both in the JSON:

* ``one_rank_vs_numpy``: baseline time / predict time at -n 1, target >= 1.0;
* ``two_rank_speedup_share``: the -n 2 speedup over the read-bandwidth ratio
  bw(-n 2) / bw(-n 1) of the same launches (as :mod:`.ranks`), target >= 0.85.

``ratio`` is the smaller of the two ratios, each over its target (target 1.0;
``paired_ratio``: the same per round); ``pass`` is true only if both pass.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import blas_summary, find_mpiexec, last_json, launch_ranks, note, provenance, spread, verdict
from .common import executable, existing_dir, positive_int

HELP = "predict at -n 1 vs plain numpy+h5py (>= 1.0) and its -n 2 speedup share of read bandwidth (>= 0.85)"
TARGET_ONE, TARGET_TWO = 1.0, 0.85
CHUNK_ROWS = 4096


def _setup(args) -> int:
    """-n 1: the data file and a linear run with one checkpoint under ``args.dir``."""
    import h5py

    from .. import checkpoint, comm as C
    from ..checkpoint import Part
    from ..config import load

    def body(comm) -> int:
        d = Path(args.dir)
        rng = np.random.default_rng(0)
        w, b = rng.normal(size=args.cols), np.float64(0.5)
        with h5py.File(d / "x.h5", "w") as f:
            X = f.create_dataset("X", (args.rows, args.cols), dtype=np.float64)
            for lo in range(0, args.rows, 1 << 16):
                hi = min(lo + (1 << 16), args.rows)
                X[lo:hi] = rng.normal(size=(hi - lo, args.cols))
        cfg = load(None, ["model.kind=linear", f"data.chunk_rows={CHUNK_ROWS}"])
        checkpoint.save(comm, d / "run" / "checkpoints", 1, {"model/w": Part(w), "model/b": Part(b)},
                        {"config": cfg.to_toml()}, 1)
        return 0

    return C.run_app(body)


def _baseline(d: Path, w: np.ndarray, b: float) -> float:
    """One process, plain numpy + h5py: read X, X·w + b, write /pred."""
    import h5py

    t = time.perf_counter()
    with h5py.File(d / "x.h5", "r") as f:
        X = f["X"][()]
    pred = X @ w + b
    with h5py.File(d / "base.h5", "w") as f:
        f.create_dataset("pred", data=pred)
    return time.perf_counter() - t


def _read_once(comm, d: Path, layout) -> float:
    """Seconds this rank takes to read its rows of X (chunk by chunk), all ranks together."""
    import h5py

    from .. import comm as C
    from ..data.shard import aligned_empty

    buf = aligned_empty((CHUNK_ROWS, layout_cols(d)), np.float64)
    C.barrier(comm)
    t = time.perf_counter()
    with h5py.File(d / "x.h5", "r") as f:
        X = f["X"]
        for c in layout.chunks():
            a, b = layout.chunk_rows_range(c)
            X.read_direct(buf, np.s_[a:b], np.s_[0:b - a])
    return time.perf_counter() - t


def layout_cols(d: Path) -> int:
    import h5py

    with h5py.File(d / "x.h5", "r") as f:
        return f["X"].shape[1]


def _worker(args) -> int:
    from .. import checkpoint, comm as C
    from ..layout import Layout
    from ..predict import _config, predict_glm

    def body(comm) -> int:
        d = Path(args.dir)
        snap = checkpoint.latest(comm, d / "run" / "checkpoints")
        cfg = C.agree(comm, _config, snap, d / "run")
        w, b = snap.replicated("model/")["model/w"], float(snap.replicated("model/")["model/b"])
        layout = Layout(args.rows, CHUNK_ROWS, comm.size, comm.rank)
        times = {"predict": [], "baseline": [], "read": []}

        def one_predict() -> float:
            C.barrier(comm)
            t = time.perf_counter()
            predict_glm(comm, snap, cfg, str(d / "x.h5"), str(d / f"pred{comm.size}.h5"))
            return C.allreduce_max(comm, time.perf_counter() - t)

        one_predict()  # warm-up: the page cache and the imports
        for rep in range(args.reps):
            order = ("predict", "baseline") if rep % 2 == 0 else ("baseline", "predict")
            for what in order:
                if what == "predict":
                    times["predict"].append(one_predict())
                elif comm.size == 1:
                    times["baseline"].append(_baseline(d, w, b))
            times["read"].append(C.allreduce_max(comm, _read_once(comm, d, layout)))
        if comm.rank == 0:
            print(json.dumps({**times, "x_bytes": args.rows * layout_cols(d) * 8, "blas": blas_summary()}),
                  flush=True)
        return 0

    return C.run_app(body)


def _launch(args, n: int, mode: str) -> dict:
    cmd = [find_mpiexec(args.mpiexec), "-n", str(n), sys.executable, "-m", "lepton_hpc.bench", "predict", mode,
           "--dir", args.dir, "--rows", str(args.rows), "--cols", str(args.cols), "--reps", str(args.reps)]
    t = time.perf_counter()
    res = last_json(launch_ranks(cmd, args.timeout, "bench predict"), "bench predict") if mode == "_worker" \
        else launch_ranks(cmd, args.timeout, "bench predict", capture_stderr=False)
    note(f"  mpiexec -n {n} ({mode}): {time.perf_counter() - t:.1f}s")
    return res


def bench_predict(args) -> dict:
    t_pred, t_base, t_pred1_reps, bw = {1: [], 2: []}, [], [], {1: [], 2: []}
    base_round = []
    res = None
    with tempfile.TemporaryDirectory(prefix="lepton-bench-predict-", dir=args.tmp) as tmp:
        args.dir = tmp
        proc = _launch(args, 1, "_setup")
        if proc.returncode != 0:
            raise SystemExit(f"bench predict: the setup launch exited {proc.returncode}")
        for rnd in range(args.rounds):
            for n in (1, 2) if rnd % 2 == 0 else (2, 1):
                res = _launch(args, n, "_worker")
                t_pred[n].append(float(np.median(res["predict"])))
                bw[n].append(res["x_bytes"] / float(np.median(res["read"])))
                if n == 1:  # side by side in the same launch: paired rep by rep
                    t_base.extend(res["baseline"])
                    t_pred1_reps.extend(res["predict"])
                    base_round.append(float(np.median(res["baseline"])))
    one = verdict(t_base, t_pred1_reps, TARGET_ONE, ">=")
    speedup = float(np.median(t_pred[1]) / np.median(t_pred[2]))
    bw_ratio = float(np.median(bw[2]) / np.median(bw[1]))
    share = speedup / bw_ratio
    paired = (np.asarray(t_pred[1]) / np.asarray(t_pred[2])) / (np.asarray(bw[2]) / np.asarray(bw[1]))
    two = {"ratio": share, "paired_ratio": spread(paired), "target": TARGET_TWO, "target_is": ">=",
           "pass": bool(share >= TARGET_TWO), "speedup": speedup, "read_bandwidth_ratio": bw_ratio}
    margin = min(one["ratio"] / TARGET_ONE, share / TARGET_TWO)
    per_round = np.minimum(np.asarray(base_round) / np.asarray(t_pred[1]) / TARGET_ONE, paired / TARGET_TWO)
    return {"data": {"rows": args.rows, "cols": args.cols, "dtype": "float64", "chunk_rows": CHUNK_ROWS},
            "reps": args.reps, "rounds": args.rounds,
            "baseline_s": spread(t_base), "predict_s_n1": spread(t_pred[1]), "predict_s_n2": spread(t_pred[2]),
            "read_gb_s": {"n1": spread(np.asarray(bw[1]) / 1e9), "n2": spread(np.asarray(bw[2]) / 1e9)},
            "one_rank_vs_numpy": one, "two_rank_speedup_share": two,
            "ratio": margin, "paired_ratio": spread(per_round), "target": 1.0, "target_is": ">=", "pass": bool(one["pass"] and two["pass"]),
            "_blas": res["blas"]}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench predict", description=HELP)
    p.add_argument("--rows", type=positive_int, default=2_000_000, help="rows of the data to predict (default 2000000)")
    p.add_argument("--cols", type=positive_int, default=32, help="feature columns (default 32)")
    p.add_argument("--reps", type=positive_int, default=3, help="timed predictions per launch")
    p.add_argument("--rounds", type=positive_int, default=2, help="pairs of -n 1 / -n 2 launches")
    p.add_argument("--timeout", type=positive_int, default=600, help="seconds per mpiexec launch")
    p.add_argument("--mpiexec", type=executable, help="launcher (default: the venv's mpiexec, else PATH's)")
    p.add_argument("--tmp", type=existing_dir, help="folder for the data (default: the system's temporary folder)")
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    return p


def cli(argv) -> int:
    mode = argv[0] if argv[:1] in (["_setup"], ["_worker"]) else None
    args = _parser().parse_args(argv[1:] if mode else argv)
    if mode == "_setup":
        return _setup(args)
    if mode == "_worker":
        return _worker(args)
    t, load0 = time.perf_counter(), os.getloadavg()[0]
    result = bench_predict(args)
    blas = result.pop("_blas")
    result = {"bench": "predict", **result, "wall_s": time.perf_counter() - t,
              "loadavg_1m": {"start": load0, "end": os.getloadavg()[0]}, "provenance": provenance(blas=blas)}
    print(json.dumps(result), flush=True)
    return 3 if args.strict and not result["pass"] else 0
