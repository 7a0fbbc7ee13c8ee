"""``python -m lepton_hpc.bench import``: the parallel CSV import against pyarrow + h5py.

Generates a CSV of ``--rows`` (2e6) rows: ``--cols`` (20) columns, of which one is a category
(8 values) and the others numbers with about 5% missing values, plus a binary target. Then,
interleaved (A B B A ...), times

* A, the baseline, in this process: ``pyarrow.csv.read_csv`` of the whole file (pyarrow's
  threads), the same arrays built with numpy (missing values filled with the column mean,
  the category one-hot) and written to HDF5 with h5py;
* B, ``import csv FILE --target y --categorical cat --missing mean`` at one rank
  (:mod:`lepton_hpc.bench.import_rank`: from a barrier after start-up to the committed file).

``ratio`` = median(A) / median(B), target >= 1.0. Then one import at ``--ranks`` (2) reports
every rank's peak RSS against its share of the output (target: RSS < 2 x share + 200 MiB),
and whether the two outputs are byte-identical.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import sys
import tempfile
import time

import numpy as np

from .common import RANK_ENV, blas_summary, find_mpiexec, last_json, launch_ranks, note, provenance, spread, verdict
from .common import executable, existing_dir, positive_int, ranks_type

CATS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def make_csv(path: str, rows: int, cols: int, seed: int = 0) -> None:
    """The benchmark's CSV: x0..x{cols-2} (5% empty), cat, y."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    n_num = cols - 1
    arrays, names = [], []
    for j in range(n_num):
        v = np.round(rng.standard_normal(rows), 6)
        arrays.append(pa.array(v, mask=rng.random(rows) < 0.05))
        names.append(f"x{j}")
    arrays.append(pa.array(np.asarray(CATS, dtype=object)[rng.integers(0, len(CATS), rows)].tolist()))
    names.append("cat")
    arrays.append(pa.array(rng.integers(0, 2, rows)))
    names.append("y")
    pacsv.write_csv(pa.table(arrays, names=names), path)


def baseline(path: str, out: str) -> float:
    """pyarrow read_csv + numpy + h5py: seconds."""
    import h5py
    import pyarrow.csv as pacsv

    t = time.perf_counter()
    table = pacsv.read_csv(path)
    names = [n for n in table.column_names if n not in ("cat", "y")]
    cat = table.column("cat").to_numpy()
    cats = np.unique(cat)
    X = np.empty((table.num_rows, len(names) + len(cats)))
    j = 0
    for name in table.column_names:
        if name == "y":
            continue
        if name == "cat":
            X[:, j:j + len(cats)] = cat[:, None] == cats[None, :]
            j += len(cats)
            continue
        v = table.column(name).to_numpy(zero_copy_only=False)
        X[:, j] = np.where(np.isnan(v), np.nanmean(v), v)
        j += 1
    y = table.column("y").to_numpy().astype(np.float64)
    with h5py.File(out, "w") as f:
        f.create_dataset("X", data=X, chunks=(min(4096, len(y)), X.shape[1]))
        f.create_dataset("y", data=y, chunks=(min(4096, len(y)),))
    return time.perf_counter() - t


def ours(mpiexec: str, n: int, path: str, out: str, timeout: int) -> dict:
    kwargs = {"fmt": "csv", "paths": [path], "target": "y", "out": out, "categorical": "cat", "missing": "mean"}
    cmd = [mpiexec, "-n", str(n), sys.executable, "-m", "lepton_hpc.bench.import_rank", "table", json.dumps(kwargs)]
    return last_json(launch_ranks(cmd, timeout, "bench import"), "bench import")


def run(args) -> dict:
    mpiexec = args.mpiexec or find_mpiexec()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        path = os.path.join(tmp, "bench.csv")
        note(f"bench import: writing {args.rows} x {args.cols} CSV ...")
        make_csv(path, args.rows, args.cols)
        note(f"  {os.path.getsize(path) / 2**20:.0f} MiB")
        a, b = [], []
        for r in range(args.repeats):
            order = ("A", "B") if r % 2 == 0 else ("B", "A")
            for side in order:
                if side == "A":
                    a.append(baseline(path, os.path.join(tmp, "base.h5")))
                    os.unlink(os.path.join(tmp, "base.h5"))
                else:
                    res = ours(mpiexec, 1, path, os.path.join(tmp, "n1.h5"), args.timeout)
                    b.append(res["wall_s"])
                    one = res
                note(f"  {side}: {(a if side == 'A' else b)[-1]:.2f} s")
        two = ours(mpiexec, args.ranks, path, os.path.join(tmp, f"n{args.ranks}.h5"), args.timeout)
        same = filecmp.cmp(os.path.join(tmp, "n1.h5"), os.path.join(tmp, f"n{args.ranks}.h5"), shallow=False)
        csv_mib = os.path.getsize(path) / 2**20
    rss = {"n1": one["ranks"], f"n{args.ranks}": two["ranks"]}
    rss_ok = all(r["rss_mib"] < 2 * r["share_mib"] + 200 for rs in rss.values() for r in rs)
    result = verdict(a, b, 1.0, ">=")
    return {**result, "baseline": "pyarrow.csv.read_csv + numpy + h5py, one process",
            "baseline_s": spread(a), "ours_n1_s": spread(b), f"ours_n{args.ranks}_s": two["wall_s"],
            "rows": args.rows, "cols": args.cols, "csv_mib": csv_mib, "rss_per_rank": rss,
            "rss_target": "rss < 2 x share + 200 MiB", "rss_pass": rss_ok,
            "byte_identical_n1_vs_n%d" % args.ranks: same}


def cli(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench import", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=positive_int, default=2_000_000, help="rows of the generated CSV")
    p.add_argument("--cols", type=positive_int, default=20, help="numeric columns of the generated CSV")
    p.add_argument("--repeats", type=positive_int, default=2, help="measurements per side (A B B A ...)")
    p.add_argument("--ranks", type=ranks_type(2), default=2, help="ranks of the memory (and identity) run")
    p.add_argument("--workdir", type=existing_dir, default=None,
                   help="folder for the generated CSV (default: the temp folder)")
    p.add_argument("--timeout", type=positive_int, default=900, help="seconds before a launch is killed")
    p.add_argument("--mpiexec", type=executable, help="mpiexec to launch with (default: found on PATH)")
    p.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    args = p.parse_args(argv)
    os.environ.update(RANK_ENV)
    t, load0 = time.perf_counter(), os.getloadavg()[0]
    result = run(args)
    result = {"bench": "import", **result, "wall_s": time.perf_counter() - t,
              "loadavg_1m": {"start": load0, "end": os.getloadavg()[0]},
              "provenance": provenance(blas=blas_summary())}
    print(json.dumps(result), flush=True)
    return 3 if args.strict and not (result["pass"] and result["rss_pass"]) else 0
