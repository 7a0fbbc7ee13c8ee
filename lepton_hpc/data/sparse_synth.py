"""``python -m lepton_hpc.data synth sparse-linear|sparse-logistic|sparse-softmax``: CSR data to HDF5.

The rows come from :mod:`lepton_hpc.data.synthetic.sparse` chunk by chunk
(memory stays one chunk) and are appended to ``/X/data``, ``/X/indices``,
``/X/indptr`` in the CSR contract the engine reads (:mod:`.sparse_shard`),
atomically. The generating weights are the dataset ``/true_weights`` (cols, or
cols × K) and the root attr ``true_bias`` (float, or K floats): a 2²⁰-column
weight vector does not fit an HDF5 attribute.
"""

from __future__ import annotations

import argparse

import h5py
import numpy as np

from ..errors import UserError
from ..layout import chunk_range, n_chunks
from .atomic import atomic_path
from .synthetic.sparse import DEFAULT_SCALE, KINDS, sparse_chunk, sparse_truth

LIBVER = ("v108", "v108")
NNZ_CHUNK = 1 << 18  # HDF5 chunk of data/indices: 2 MiB
ROW_CHUNK = 1 << 16


class CSRAppender:
    """Appends CSR row blocks to an open HDF5 file as ``/X`` (format csr) in the contract's layout."""

    def __init__(self, f: h5py.File, n_rows: int, n_cols: int, compression: str | None = None):
        opts = {} if compression in (None, "none") else {"compression": compression}
        self.g = g = f.create_group("X", track_order=True)
        self.data = g.create_dataset("data", (0,), maxshape=(None,), dtype="float64", chunks=(NNZ_CHUNK,),
                                     track_times=False, **opts)
        self.indices = g.create_dataset("indices", (0,), maxshape=(None,), dtype="int64", chunks=(NNZ_CHUNK,),
                                        track_times=False, **opts)
        self.indptr = g.create_dataset("indptr", (n_rows + 1,), dtype="int64",
                                       chunks=(min(ROW_CHUNK, n_rows + 1),), track_times=False, **opts)
        self.indptr[0] = 0
        g.attrs["format"] = "csr"
        g.attrs["shape"] = np.array([n_rows, n_cols], dtype=np.int64)
        self.row, self.nnz = 0, 0

    def append(self, X) -> None:
        """Append the rows of CSR ``X`` (sorted indices within each row)."""
        m, k = X.shape[0], X.nnz
        self.data.resize((self.nnz + k,))
        self.indices.resize((self.nnz + k,))
        self.data[self.nnz:] = X.data
        self.indices[self.nnz:] = X.indices.astype(np.int64)
        self.indptr[self.row + 1:self.row + m + 1] = self.nnz + np.asarray(X.indptr[1:], dtype=np.int64)
        self.row, self.nnz = self.row + m, self.nnz + k


def synth_sparse(out: str, kind: str, rows: int, cols: int, nnz_per_row: int, noise: float = 0.1,
                 seed: int = 0, classes: int | None = None, chunk_rows: int = 4096, bias: float | None = None,
                 compression: str | None = None) -> None:
    """Write CSR ``/X`` and ``/y`` (class codes as float64 for the classifiers), atomically."""
    for name, value in (("rows", rows), ("cols", cols), ("nnz-per-row", nnz_per_row), ("chunk-rows", chunk_rows)):
        if value <= 0:
            raise UserError(f"--{name} must be > 0, got {value}")
    if nnz_per_row > cols:
        raise UserError(f"--nnz-per-row {nnz_per_row} is more than --cols {cols}: a row has at most {cols} "
                        f"non-zeros; pass --nnz-per-row <= {cols}")
    if not np.isfinite(noise) or noise < 0:
        raise UserError(f"--noise must be finite and >= 0, got {noise}")
    if kind not in KINDS:
        raise UserError(f"synth kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "sparse-softmax" and (classes is None or classes < 2):
        raise UserError(f"synth sparse-softmax needs --classes K with K >= 2, got {classes}")
    if kind != "sparse-softmax" and classes not in (None, 2 if kind == "sparse-logistic" else None):
        raise UserError(f"--classes is for sparse-softmax (sparse-logistic has 2), got --classes {classes}")
    n_classes = classes if kind == "sparse-softmax" else 2
    w, b = sparse_truth(kind, seed, cols, nnz_per_row, n_classes)
    if bias is not None and kind == "sparse-linear":
        b = float(bias)
    with atomic_path(out) as tmp, h5py.File(tmp, "w", libver=LIBVER, track_order=True) as f:
        csr = CSRAppender(f, rows, cols, compression)
        y = f.create_dataset("y", (rows,), dtype="float64", chunks=(min(chunk_rows, rows),), track_times=False)
        for c in range(n_chunks(rows, chunk_rows)):
            lo, hi = chunk_range(rows, chunk_rows, c)
            X, y[lo:hi] = sparse_chunk(kind, seed, c, hi - lo, cols, nnz_per_row, w, b, noise)
            csr.append(X)
        f.create_dataset("true_weights", data=w, track_times=False)
        task = {"sparse-linear": "regression", "sparse-logistic": "binary"}.get(kind, "multiclass")
        if task != "regression":
            y.attrs["classes"] = np.arange(n_classes, dtype=np.int64)
            f.attrs["n_classes"] = n_classes
        f.attrs.update({"kind": kind, "source": f"synth:{kind}", "task": task, "true_bias": b,
                        "noise": noise, "seed": seed, "chunk_rows": chunk_rows, "nnz_per_row": nnz_per_row,
                        "weight_scale": DEFAULT_SCALE})


def synth_sparse_main(argv: list[str], info) -> int:
    """``synth sparse-*`` on the command line; prints the file's description."""
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.data synth sparse-linear|sparse-logistic|sparse-softmax",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=list(KINDS))
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--cols", type=int, required=True)
    p.add_argument("--nnz-per-row", type=int, required=True, help="non-zeros drawn per row (duplicates dropped)")
    p.add_argument("--classes", type=int, default=None, help="sparse-softmax: number of classes K")
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--bias", type=float, default=None, help="sparse-linear: the intercept (default: drawn)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-rows", type=int, default=4096, help="rows per generated chunk (the rows are drawn per chunk from the seed)")
    p.add_argument("--compression", choices=["none", "gzip", "lzf"], default="none")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    synth_sparse(args.out, args.kind, args.rows, args.cols, args.nnz_per_row, args.noise, args.seed,
                 args.classes, args.chunk_rows, args.bias, args.compression)
    print(info(args.out))
    return 0
