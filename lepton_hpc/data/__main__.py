"""``python -m lepton_hpc.data``: make and describe data files.

    synth linear --rows N --cols D --noise S [--bias B] --seed K --out FILE.h5 [--chunk-rows R]
                 [--compression gzip|lzf|none] [--dtype float64|float32]
    synth logistic|softmax --rows N --cols D [--classes K] [--noise S] --seed K --out FILE.h5
    import sklearn:diabetes|breast_cancer|digits|iris|wine --out FILE.h5
    import csv|parquet FILE... --target COLUMN [--task regression|binary|multiclass] [--columns|--drop C,..]
                 [--categorical C,..] [--hashed C,.. --hash-width W] [--missing error|mean|median|zero
                 [--missing-indicator]] [--delimiter D] [--header yes|no] --out FILE.h5   (mpirun -n N: parallel)
    import text FILE... --text-column C --label-column L [--ngrams 1,2] [--hash-bits K] [--tfidf] --out FILE.h5
    import npy X.npy y.npy [--task regression|binary|multiclass] --out FILE.h5
    synth sparse-linear|sparse-logistic|sparse-softmax --rows N --cols D --nnz-per-row K
                 [--classes C] [--noise S] [--seed K] --out FILE.h5      (CSR /X)
    synth mf --users M --items N --rank R --density P (--noise S | --implicit) [--seed K --chunk-rows C] --out FILE.h5
    export apt-descriptions --out apt.jsonl [--lists /var/lib/apt/lists] [--min-section 500]
    info FILE.h5

Synthetic files hold exactly the rows a synthetic job with the same seed and
chunk_rows would generate, written chunk by chunk (memory stays one chunk).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import h5py
import numpy as np

from ..layout import chunk_range, n_chunks
from .atomic import atomic_path, check_target
from .classification import synth_classification
from .memory import human
from .import_cli import add_import_parser, run_import_cli
from .synthetic.linear import linear_chunk, true_weights
from ..errors import UserError


def synth_linear(out: str, rows: int, cols: int, noise: float, seed: int, chunk_rows: int = 4096,
                 compression: str | None = None, dtype: str = "float64", bias: float = 0.0,
                 features: str = "normal") -> None:
    """Write /X (rows×cols) and /y (rows) as chunked HDF5, atomically."""
    for name, value in (("rows", rows), ("cols", cols), ("chunk-rows", chunk_rows)):
        if value <= 0:
            raise UserError(f"--{name} must be > 0, got {value}")
    if not np.isfinite(noise) or noise < 0:
        raise UserError(f"--noise must be finite and >= 0, got {noise}")
    w = true_weights(seed, cols)
    opts = {} if compression in (None, "none") else {"compression": compression}
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        X = f.create_dataset("X", (rows, cols), dtype=dtype, chunks=(min(chunk_rows, rows), cols), **opts)
        y = f.create_dataset("y", (rows,), dtype="float64", chunks=(min(chunk_rows, rows),), **opts)
        for c in range(n_chunks(rows, chunk_rows)):
            lo, hi = chunk_range(rows, chunk_rows, c)
            X[lo:hi], y[lo:hi] = linear_chunk(seed, c, hi - lo, w, bias, noise, features)
        f.attrs.update({"kind": "linear", "true_weights": w, "true_bias": bias, "noise": noise,
                        "seed": seed, "chunk_rows": chunk_rows})


def check_out(out: str, n_bytes: float = 0) -> None:
    """``--out`` must name a file in an existing folder with room for about ``n_bytes`` (uncompressed):
    one sentence otherwise, before any work (HDF5 itself reports a full disk badly)."""
    check_target(out)  # empty, a folder, a missing folder: the same sentence as every writer's
    folder = os.path.dirname(os.path.abspath(out))
    free = shutil.disk_usage(folder).free
    if n_bytes > free:
        raise UserError(f"cannot write {out}: it needs about {human(n_bytes)} but {folder} has {human(free)} "
                        f"free; free space there or write elsewhere")


def synth_bytes(args) -> float:
    """About how many bytes ``synth`` writes (uncompressed): X, y (dense) or the COO triples (mf)."""
    if args.cmd != "synth":
        return 0
    if args.kind == "mf":  # int32 row, int32 col, float64 value per rating
        return args.users * args.items * args.density * 16 + 4096
    if args.kind.startswith("sparse-"):  # float64 value + int64 column per non-zero, int64 indptr, y
        return args.rows * (args.nnz_per_row * 16 + 16) + 4096
    itemsize = 4 if args.dtype == "float32" else 8
    return args.rows * (args.cols * itemsize + 8) + 4096


def info(path: str) -> str:
    """A description of every dataset and attribute in an HDF5 file."""
    from .shard import open_hdf5

    f = open_hdf5(path, "file", missing=f"{path} does not exist")
    lines = [f"{path} ({os.path.getsize(path) / 2**20:.1f} MiB)"]
    def attr_lines(attrs, indent):
        for key, value in attrs.items():
            text = np.array2string(np.asarray(value), threshold=8) if np.ndim(value) else repr(value)
            lines.append(f"{indent}@{key} = {text}")

    with f:
        attr_lines(f.attrs, "  ")

        def visit(name, obj):
            if isinstance(obj, h5py.Group):  # e.g. a CSR /X: its format and shape
                lines.append(f"  /{name}: group")
                attr_lines(obj.attrs, "    ")
            if isinstance(obj, h5py.Dataset):
                extra = f", chunks {obj.chunks}" if obj.chunks else ""
                extra += f", {obj.compression}" if obj.compression else ""
                lines.append(f"  /{name}: {obj.shape} {obj.dtype}{extra}")
                attr_lines(obj.attrs, "    ")

        f.visititems(visit)
    return "\n".join(lines)


COMPRESSION_HELP = "HDF5 filter of every dataset: none (fastest to read), gzip (smallest) or lzf"


def _synth_common(q: argparse.ArgumentParser, seed_help: str) -> None:
    q.add_argument("--seed", type=int, default=0, help=seed_help)
    q.add_argument("--chunk-rows", type=int, default=4096,
                   help="rows per HDF5 chunk and per generation chunk; the same as the job's data.chunk_rows "
                        "gives the job's bits (default 4096)")
    q.add_argument("--compression", choices=["none", "gzip", "lzf"], default="none", help=COMPRESSION_HELP)
    q.add_argument("--out", required=True, help="output HDF5 file (written atomically: a failed run leaves none)")


def _synth_parsers(sub) -> None:
    s = sub.add_parser("synth", help="write synthetic data from known weights (or factors)",
                       description="Write synthetic data: the same rows (ratings) a job with data.path empty, the "
                                   "same data.seed and data.chunk_rows generates in-process.")
    kinds = s.add_subparsers(dest="kind", required=True,
                             metavar="{linear,logistic,softmax,mf,sparse-linear,sparse-logistic,sparse-softmax}")
    for kind, text in (("linear", "y = X w + b + noise (least squares)"),
                       ("logistic", "binary labels from a logistic model"),
                       ("softmax", "K-class labels from a multinomial model")):
        q = kinds.add_parser(kind, help=text, description=f"Synthetic {kind} data: {text}.")
        q.add_argument("--rows", type=int, required=True, help="number of rows")
        q.add_argument("--cols", type=int, required=True, help="number of feature columns")
        q.add_argument("--noise", type=float, default=0.1,
                       help="linear: standard deviation of the target noise; logistic/softmax: of the noise "
                            "added to the logits (default 0.1)")
        if kind == "linear":
            q.add_argument("--bias", type=float, default=0.0, help="true intercept b (default 0)")
        q.add_argument("--features", choices=["normal", "uniform"], default="normal",
                       help="features standard normal or uniform on [0, 1) (default normal)")
        if kind != "linear":
            q.add_argument("--classes", type=int, default=None,
                           help="softmax: number of classes K (required); logistic: 2 or omitted")
        q.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                       help="storage dtype of /X (default float64)")
        _synth_common(q, "seed of the weights and of every chunk (chunk c is drawn from (seed, c))")
    m = kinds.add_parser("mf", help="ratings (COO /rows, /cols, /vals) for model.kind=mf",
                         description="Write synthetic ratings (COO /rows, /cols, /vals sorted by user, attribute "
                                     "shape) for model.kind=mf: rank-R ground truth u*.v* plus noise sigma, each "
                                     "user-item entry observed with probability --density. A job with data.path "
                                     "empty, the same data.seed and data.chunk_rows generates exactly these "
                                     "ratings in-process.")
    m.add_argument("--users", type=int, required=True, help="number of users (rows)")
    m.add_argument("--items", type=int, required=True, help="number of items (columns)")
    m.add_argument("--rank", type=int, required=True, help="rank of the ground-truth factors")
    m.add_argument("--density", type=float, required=True, help="share of observed user-item entries, in (0, 1]")
    m.add_argument("--noise", type=float, default=None,
                   help="standard deviation sigma of the rating noise (required unless --implicit)")
    m.add_argument("--implicit", action="store_true",
                   help="interaction counts instead of ratings: each user makes Poisson(density x items) draws "
                        "of items from softmax(2 u*.v*), a known rank-R model (data.implicit = true)")
    _synth_common(m, "seed of the factors and of every user chunk")
    for kind, text in (("sparse-linear", "CSR X with y = X w + b + noise"),
                       ("sparse-logistic", "CSR X with binary labels from a logistic model"),
                       ("sparse-softmax", "CSR X with K-class labels from a multinomial model")):
        q = kinds.add_parser(kind, help=text, description=f"Synthetic sparse data ({text}): the CSR /X group "
                                                         f"(data, indices, indptr, attr shape) the trainer reads.")
        q.add_argument("--rows", type=int, required=True, help="number of rows")
        q.add_argument("--cols", type=int, required=True, help="number of feature columns")
        q.add_argument("--nnz-per-row", type=int, required=True, help="non-zeros drawn per row (duplicates dropped)")
        q.add_argument("--classes", type=int, default=None, help="sparse-softmax: number of classes K")
        q.add_argument("--noise", type=float, default=0.1, help="noise of the target (linear) or of the logits")
        q.add_argument("--bias", type=float, default=None, help="sparse-linear: the intercept (default: drawn)")
        _synth_common(q, "seed of the weights and of every chunk (chunk c is drawn from (seed, c))")


def parser() -> argparse.ArgumentParser:
    from ..cli import prog

    p = argparse.ArgumentParser(prog=prog("data"), description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{synth,import,export,info}")
    _synth_parsers(sub)
    add_import_parser(sub)
    e = sub.add_parser("export", help="write a text corpus no one here wrote (apt's package descriptions) as "
                                      "JSON Lines", description="Export apt's package descriptions, labelled by "
                                                                "Section, for `data import text`.")
    e.add_argument("what", choices=["apt-descriptions"], help="the corpus")
    e.add_argument("--out", required=True, help="output JSON Lines file (written atomically)")
    e.add_argument("--lists", default=None, help="apt's lists folder (default /var/lib/apt/lists)")
    e.add_argument("--min-section", type=int, default=None, help="keep sections with at least this many "
                                                                 "packages (default 500)")
    i = sub.add_parser("info", help="describe a data file", description="Every dataset and attribute of a file.")
    i.add_argument("file", help="an HDF5 file")
    return p


def _run(args) -> None:
    if args.cmd == "synth" and args.kind.startswith("sparse-"):
        from .sparse_synth import synth_sparse

        synth_sparse(args.out, args.kind, args.rows, args.cols, args.nnz_per_row, args.noise, args.seed,
                     args.classes, args.chunk_rows, args.bias, args.compression)
    elif args.cmd == "synth" and args.kind == "mf":
        from .ratings import synth_mf

        synth_mf(args.out, args.users, args.items, args.rank, args.density,
                 0.0 if args.noise is None else args.noise, args.seed, args.chunk_rows, args.compression,
                 args.implicit)
    elif args.cmd == "synth" and args.kind in ("logistic", "softmax"):
        synth_classification(args.out, args.kind, args.rows, args.cols, getattr(args, "classes", None),
                             args.noise, args.seed, args.chunk_rows, args.compression, args.dtype, args.features)
    elif args.cmd == "synth":
        synth_linear(args.out, args.rows, args.cols, args.noise, args.seed, args.chunk_rows,
                     args.compression, args.dtype, args.bias, args.features)
    print(info(args.file if args.cmd == "info" else args.out))


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.cmd == "synth" and args.kind == "mf" and args.noise is None and not args.implicit:
        p.error("synth mf: --noise is required for ratings (or pass --implicit for interaction counts)")
    if args.cmd == "import":  # every rank parses its own part (under mpirun)
        return run_import_cli(args, info)
    if args.cmd == "export":
        from .apt_export import export_main

        return export_main([args.what, "--out", args.out]
                           + (["--lists", args.lists] if args.lists is not None else [])
                           + (["--min-section", str(args.min_section)] if args.min_section is not None else []))
    try:
        if args.cmd == "synth" and args.seed < 0:
            raise UserError(f"--seed must be a non-negative integer, got {args.seed}")
        if args.cmd == "synth":
            check_out(args.out, synth_bytes(args))
        _run(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0  # (a write that still fails midway leaves no file: the atomic writer drops its .tmp)


if __name__ == "__main__":
    sys.exit(main())
