"""Writing a CSR data file (the contract in the README's "Sparse data" section) from the ranks'
rows, in rank order, into datasets allocated up front: the bytes do not depend on the rank count.

Layout: group ``/X`` with ``data`` (float64, nnz), ``indices`` (int64, nnz) and ``indptr``
(int64, n_rows + 1), attrs ``format = "csr"`` and ``shape = [n_rows, n_cols]`` (plus whatever the
caller adds, e.g. ``hashing``); dataset ``/y`` (float64, n_rows).
"""

from __future__ import annotations

import h5py
import numpy as np

from .. import comm as C
from .h5_prealloc import create_file, early_dataset
from .ordered_write import write_in_rank_order

#: elements per chunk of data/indices/indptr (4 MiB of float64)
CSR_CHUNK = 1 << 19
Y_CHUNK = 1 << 16


def write_csr(comm, out: str, n_cols: int, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
              y: np.ndarray, x_attrs: dict, y_attrs: dict, root_attrs: dict) -> tuple[int, int]:
    """Write every rank's rows (``indptr`` local, from 0) to ``out``. Collective over ``comm``.

    Returns the global (n_rows, nnz)."""
    counts = C.allgather(comm, (len(indptr) - 1, int(indptr[-1])))
    n_rows, nnz = sum(c[0] for c in counts), sum(c[1] for c in counts)
    row_lo = sum(c[0] for c in counts[:comm.rank])
    nz_lo = sum(c[1] for c in counts[:comm.rank])
    n_local = len(indptr) - 1

    def create(tmp):
        with create_file(tmp) as f:
            g = f.create_group("X")
            early_dataset(g, "data", (nnz,), (CSR_CHUNK,), np.float64)
            early_dataset(g, "indices", (nnz,), (CSR_CHUNK,), np.int64)
            ptr = early_dataset(g, "indptr", (n_rows + 1,), (CSR_CHUNK,), np.int64)
            ptr[0] = 0
            g.attrs["format"] = "csr"
            g.attrs["shape"] = np.array([n_rows, n_cols], dtype=np.int64)
            for key, value in x_attrs.items():
                g.attrs[key] = value
            yd = early_dataset(f, "y", (n_rows,), (Y_CHUNK,), np.float64)
            for key, value in y_attrs.items():
                yd.attrs[key] = value
            for key, value in root_attrs.items():
                if value is not None:
                    f.attrs[key] = value

    def write_own(tmp):
        with h5py.File(tmp, "r+") as f:
            f["X/data"][nz_lo:nz_lo + len(data)] = data
            f["X/indices"][nz_lo:nz_lo + len(indices)] = indices
            f["X/indptr"][row_lo + 1:row_lo + n_local + 1] = indptr[1:] + nz_lo
            f["y"][row_lo:row_lo + n_local] = y

    write_in_rank_order(comm, out, create, write_own if n_local else None, f"writing {out}")
    return n_rows, nnz
