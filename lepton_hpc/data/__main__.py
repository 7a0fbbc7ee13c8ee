"""``python -m lepton_hpc.data``: make and describe data files.

    synth linear --rows N --cols D --noise S --seed K --out FILE.h5 [--chunk-rows R]
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
    synth mf --users M --items N --rank R --density P --noise S [--seed K --chunk-rows C] --out FILE.h5
    export apt-descriptions --out apt.jsonl [--lists /var/lib/apt/lists] [--min-section 500]
    info FILE.h5

Synthetic files hold exactly the rows a synthetic job with the same seed and
chunk_rows would generate, written chunk by chunk (memory stays one chunk).
"""

from __future__ import annotations

import argparse
import os
import sys

import h5py
import numpy as np

from ..layout import chunk_range, n_chunks
from .atomic import atomic_path
from .classification import synth_classification
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


def info(path: str) -> str:
    """A description of every dataset and attribute in an HDF5 file."""
    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist")
    lines = [f"{path} ({os.path.getsize(path) / 2**20:.1f} MiB)"]
    def attr_lines(attrs, indent):
        for key, value in attrs.items():
            text = np.array2string(np.asarray(value), threshold=8) if np.ndim(value) else repr(value)
            lines.append(f"{indent}@{key} = {text}")

    with h5py.File(path, "r") as f:
        attr_lines(f.attrs, "  ")

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                extra = f", chunks {obj.chunks}" if obj.chunks else ""
                extra += f", {obj.compression}" if obj.compression else ""
                lines.append(f"  /{name}: {obj.shape} {obj.dtype}{extra}")
                attr_lines(obj.attrs, "    ")

        f.visititems(visit)
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["export"]:  # a text corpus (apt's package descriptions)
        from .apt_export import export_main
        return export_main(argv[1:])
    if argv[:2] == ["synth", "mf"]:  # ratings for model.kind=mf: their own options
        from .ratings import synth_mf_main
        return synth_mf_main(argv[2:], info)
    if argv[:1] == ["synth"] and len(argv) > 1 and argv[1].startswith("sparse-"):
        from .sparse_synth import synth_sparse_main
        try:
            return synth_sparse_main(argv[1:], info)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth", help="write synthetic data")
    s.add_argument("kind", choices=["linear", "logistic", "softmax"])
    s.add_argument("--rows", type=int, required=True)
    s.add_argument("--cols", type=int, required=True)
    s.add_argument("--noise", type=float, default=0.1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--bias", type=float, default=0.0)
    s.add_argument("--features", choices=["normal", "uniform"], default="normal")
    s.add_argument("--classes", type=int, default=None, help="softmax: number of classes K (logistic: 2)")
    s.add_argument("--chunk-rows", type=int, default=4096)
    s.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    s.add_argument("--compression", choices=["none", "gzip", "lzf"], default="none")
    s.add_argument("--out", required=True)
    add_import_parser(sub)
    i = sub.add_parser("info", help="describe a data file")
    i.add_argument("file")
    args = p.parse_args(argv)
    try:
        if args.cmd == "synth" and args.kind in ("logistic", "softmax"):
            synth_classification(args.out, args.kind, args.rows, args.cols, args.classes, args.noise,
                                 args.seed, args.chunk_rows, args.compression, args.dtype, args.features)
            print(info(args.out))
        elif args.cmd == "import":
            return run_import_cli(args, info)
        elif args.cmd == "synth":
            synth_linear(args.out, args.rows, args.cols, args.noise, args.seed, args.chunk_rows,
                         args.compression, args.dtype, args.bias, args.features)
            print(info(args.out))
        else:
            print(info(args.file))
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
