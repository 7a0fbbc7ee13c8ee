"""This rank's shard of a CSR data file (``/X`` a group with ``format = "csr"``).

The file layout is the CSR contract (README, "Sparse data"): ``/X/data``
(float64), ``/X/indices`` (int64, sorted within a row), ``/X/indptr`` (int64,
n_rows + 1) and attrs ``format = "csr"``, ``shape = [n_rows, n_cols]``. A rank
reads ``indptr[row_lo:row_hi + 1]`` and then only the matching slice of
``data`` and ``indices``, all in memory; X is never densified. Each logical
chunk is a :class:`scipy.sparse.csr_matrix` whose arrays are views of the
rank's buffers (int32 indices and a chunk-relative int32 ``indptr``), so a
chunk holds the same arrays, hence the same partial bits, on any rank.
"""

from __future__ import annotations


import h5py
import numpy as np
import scipy.sparse as sp

from ..config import DataConfig
from ..errors import UserError
from ..layout import Layout, chunk_range
from .shard import Shard, chunk_digest, open_hdf5

INT32_MAX = np.iinfo(np.int32).max


def is_csr(f: h5py.File, key: str) -> bool:
    """Is ``/key`` of the open file a CSR group?"""
    node = f.get(key)
    return isinstance(node, h5py.Group) and str(_attr(node, "format", "")).lower() == "csr"


def _attr(node, name, default=None):
    v = node.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def not_csr_group(node, key: str, path: str) -> str | None:
    """The sentence for ``/key`` being a group that is not a CSR matrix (None when it is not a group)."""
    if not isinstance(node, h5py.Group):
        return None
    fmt = _attr(node, "format")
    if fmt is not None:
        return (f"/{key} in {path} is a sparse group with format = {str(fmt)!r}; only format = 'csr' is read: "
                f"convert it (scipy: X.tocsr()) and write /{key}/data, /{key}/indices, /{key}/indptr")
    return (f"/{key} in {path} is a group without the attr format = 'csr'; store X as a 2-D dataset or a "
            f"CSR group (README, \"Sparse data\")")


def check_csr_group(g: h5py.Group, path: str) -> tuple[int, int]:
    """``(n_rows, n_cols)`` of a group marked csr; a UserError naming what is malformed."""
    name = g.name
    missing = [k for k in ("data", "indices", "indptr") if not isinstance(g.get(k), h5py.Dataset)]
    if missing:
        raise UserError(f"{name} in {path} is marked csr but lacks {', '.join(missing)}; re-import the file")
    shape = _attr(g, "shape")
    if shape is None:
        raise UserError(f"{name} in {path} is marked csr but lacks the attr shape = [n_rows, n_cols]; "
                        f"re-import the file")
    arr = np.asarray(shape)
    if arr.shape != (2,) or arr.dtype.kind not in "iuf" or not np.all((arr >= 0) & (arr == np.floor(arr))):
        raise UserError(f"the attr shape of {name} in {path} must be [n_rows, n_cols] (two non-negative "
                        f"integers), is {arr.tolist()}; re-import the file")
    for key in ("indptr", "indices"):
        if g[key].dtype.kind not in "iu":
            raise UserError(f"{name}/{key} in {path} has dtype {g[key].dtype}; CSR {key} must be integers "
                            f"(int64 or int32); re-import the file")
    if g["data"].dtype.kind not in "fiu":
        raise UserError(f"{name}/data in {path} has non-numeric dtype {g['data'].dtype}; re-import the file")
    return int(shape[0]), int(shape[1])


class CSRRows:
    """Rows of a CSR group in a file, read on demand: ``shape``, ``attrs`` and :meth:`read_rows`."""

    def __init__(self, group: h5py.Group, path: str):
        self.g, self.attrs = group, group.attrs
        self.shape = check_csr_group(group, path)

    def read_rows(self, a: int, b: int) -> sp.csr_matrix:
        """Rows ``[a, b)`` as a CSR matrix: reads indptr[a:b+1] and those rows' data and indices only."""
        indptr = np.asarray(self.g["indptr"][a:b + 1], dtype=np.int64)
        p, q = int(indptr[0]), int(indptr[-1])
        data = np.asarray(self.g["data"][p:q], dtype=np.float64)
        indices = np.asarray(self.g["indices"][p:q])
        if len(indices) and (indices.min() < 0 or indices.max() >= self.shape[1]):
            raise UserError(f"{self.g.name}/indices has a column outside [0, {self.shape[1]}) in rows {a}..{b}; "
                            f"re-import the file")
        return _csr(data, indices.astype(np.int32), indptr - p, self.shape[1])


class LocalRows:
    """The rank's rows as one CSR view: ``rows[a:b]`` and ``rows[index_array]`` give csr_matrix.

    Used by the mini-batch samplers (``shard.X_all``); positions are local rows.
    """

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n_cols: int):
        self.data, self.indices, self.indptr, self.n_cols = data, indices, indptr, n_cols
        self.shape = (len(indptr) - 1, n_cols)

    def __getitem__(self, key) -> sp.csr_matrix:
        if isinstance(key, slice):
            a, b, _ = key.indices(self.shape[0])
            return self.rows(a, b)
        idx = np.asarray(key, dtype=np.int64)
        lo, hi = self.indptr[idx], self.indptr[idx + 1]
        lengths = hi - lo
        indptr = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # positions of every selected entry: lo of its row + its offset inside the row
        pos = np.repeat(lo - indptr[:-1], lengths) + np.arange(indptr[-1], dtype=np.int64)
        return _csr(self.data[pos], self.indices[pos], indptr, self.n_cols)

    def rows(self, a: int, b: int) -> sp.csr_matrix:
        p, q = int(self.indptr[a]), int(self.indptr[b])
        return _csr(self.data[p:q], self.indices[p:q], self.indptr[a:b + 1] - p, self.n_cols)


def _csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """A csr_matrix on these arrays without copies (int32 index arrays when they fit)."""
    if indptr[-1] <= INT32_MAX and indices.dtype == np.int32:
        indptr = indptr.astype(np.int32)
    else:
        indices = indices.astype(np.int64)
    # scipy's constructor copies a view of a much larger array (its prune step), which would
    # double a shard held as per-chunk views: build an empty matrix and hand it the arrays
    X = sp.csr_matrix((len(indptr) - 1, n_cols), dtype=data.dtype)
    X.data, X.indices, X.indptr = data, indices, indptr
    X.has_sorted_indices = True  # the contract: sorted within a row (checked on read)
    return X


CHECK_BLOCK = 1 << 22  # entries compared per step of the sortedness check (a few MiB of temporaries)


def _first_unsorted(indices: np.ndarray, indptr: np.ndarray) -> int | None:
    """Position of the first entry not above its predecessor in the same row, else None.

    Block by block, so the check costs a few MiB whatever the shard's size."""
    starts = indptr[1:-1]
    for a in range(0, max(len(indices) - 1, 0), CHECK_BLOCK):
        b = min(a + CHECK_BLOCK, len(indices) - 1)
        down = indices[a + 1:b + 1] <= indices[a:b]  # entry j + 1 against entry j
        s = starts[(starts > a) & (starts <= b)]
        down[s - 1 - a] = False  # a new row may start lower
        if down.any():
            return a + 1 + int(np.argmax(down))
    return None


class SparseShard(Shard):
    """A :class:`Shard` of CSR data: the same interface, chunks are csr_matrix (see the module doc).

    ``sparse`` is True; ``nnz`` counts this rank's stored values; ``X_all`` is a
    :class:`LocalRows` of the local rows (stride = chunk_rows: no padding).
    """

    sparse = True

    def __init__(self, cfg: DataConfig, size: int, rank: int, generator=None, node_ranks: int = 1):
        self.cfg, self._node_ranks = cfg, node_ranks
        self.dtype = np.dtype(np.float64)
        self._file, self._W = None, None
        self.feature_names, self.classes = None, None
        if not cfg.in_memory:
            raise UserError(f"{cfg.path} holds sparse (CSR) X, which is read into memory: its rows' "
                            f"non-zeros only; set data.in_memory=true")
        if cfg.dtype != "float64":
            raise UserError(f"{cfg.path} holds sparse (CSR) X, kept as float64; set data.dtype=float64")
        f = self._open_csr(cfg)
        self.chunk_rows = cfg.chunk_rows
        self.layout = Layout(self.n_rows, self.chunk_rows, size, rank)
        self.n_chunks = self.layout.n_chunks
        self.chunks = self.layout.chunks()
        self.row_lo, self.row_hi = self.layout.rows()
        self.n_local = self.row_hi - self.row_lo
        self.weighted = bool(cfg.w_dataset) or cfg.test_fraction > 0
        self.in_memory = True
        self.stride = self.chunk_rows
        self._read_local(f)
        n = max(self.n_local, 1)
        self.y_all = np.empty(n)
        self._y.read_direct(self.y_all, np.s_[self.row_lo:self.row_hi], np.s_[0:self.n_local])
        self.sw_all = np.empty(n) if self.weighted else None
        self.test_all = np.empty(n) if self.weighted else None
        self._X_chunks = []
        for i, chunk in enumerate(self.chunks):
            lo, hi = chunk_range(self.n_rows, self.chunk_rows, chunk)
            self._X_chunks.append(self.X_all.rows(lo - self.row_lo, hi - self.row_lo))
            if self.weighted:
                a, b = lo - self.row_lo, hi - self.row_lo
                sw = self.sw_all[a:b]
                self._read_weights(chunk, sw)
                mask = self.test_mask(chunk, b - a)
                np.multiply(sw, mask, out=self.test_all[a:b])
                sw[mask] = 0.0

    # -- opening -----------------------------------------------------------
    def _open_csr(self, cfg: DataConfig) -> h5py.File:
        self._file = f = open_hdf5(cfg.path)
        g, name = f[cfg.x_dataset], cfg.x_dataset
        self.n_rows, self.n_cols = check_csr_group(g, cfg.path)
        if self.n_cols > INT32_MAX:
            raise UserError(f"/{name} in {cfg.path} has {self.n_cols} columns; at most {INT32_MAX} are supported")
        if g["indptr"].shape != (self.n_rows + 1,) or g["data"].shape != g["indices"].shape:
            raise UserError(f"/{name} in {cfg.path}: indptr has {g['indptr'].shape[0]} entries for "
                            f"{self.n_rows} rows (needs n_rows + 1) or data and indices differ in length; "
                            f"re-import the file")
        if cfg.y_dataset not in f or not isinstance(f[cfg.y_dataset], h5py.Dataset):
            raise UserError(f"dataset /{cfg.y_dataset} not found in {cfg.path}; set data.y_dataset")
        y = self._y = f[cfg.y_dataset]
        if y.shape != (self.n_rows,):
            raise UserError(f"/{name} has {self.n_rows} rows but /{cfg.y_dataset} has shape {y.shape} "
                            f"in {cfg.path}; they must match")
        if self.n_rows == 0 or self.n_cols == 0:
            raise UserError(f"/{name} in {cfg.path} is empty (shape {self.n_rows} x {self.n_cols})")
        if cfg.w_dataset:
            if not isinstance(f.get(cfg.w_dataset), h5py.Dataset):
                raise UserError(f"sample-weight dataset /{cfg.w_dataset} not found in {cfg.path}; "
                                f"set data.w_dataset to an existing dataset or leave it empty")
            self._W = f[cfg.w_dataset]
            if self._W.shape != (self.n_rows,):
                raise UserError(f"/{cfg.w_dataset} in {cfg.path} has shape {self._W.shape}, expected "
                                f"({self.n_rows},): one weight per row")
        self._read_labels(cfg, g, y)
        w = f["true_weights"][()] if isinstance(f.get("true_weights"), h5py.Dataset) else None
        self.w_true = None if w is None else np.asarray(w, dtype=np.float64)  # synth sparse-*: a dataset
        self.b_true = None
        return f

    def _read_local(self, f: h5py.File) -> None:
        """indptr[row_lo:row_hi+1], then only those rows' data and indices; checked."""
        g, path = f[self.cfg.x_dataset], self.cfg.path
        indptr = np.asarray(g["indptr"][self.row_lo:self.row_hi + 1], dtype=np.int64)
        p, q = int(indptr[0]), int(indptr[-1])
        if np.any(np.diff(indptr) < 0) or p < 0 or q > g["data"].shape[0]:
            raise UserError(f"/{self.cfg.x_dataset}/indptr in {path} is not non-decreasing within "
                            f"[0, nnz] between rows {self.row_lo} and {self.row_hi}; re-import the file")
        from .memory import check_budget

        # before allocating: values (8 B) and int32 columns (4 B) per non-zero, y/weights per row
        check_budget((q - p) * 12 + self.n_local * 32, self._node_ranks,
                     f"the sparse shard of {path} ({q - p:,} non-zeros on the busiest rank)",
                     "run on more ranks (each holds only its rows' non-zeros)")
        data = np.empty(q - p)
        if q > p:
            g["data"].read_direct(data, np.s_[p:q], np.s_[0:q - p])
        indices = np.empty(q - p, dtype=np.int32)  # HDF5 converts int64 -> int32 on read (saturating)
        if q > p:
            g["indices"].read_direct(indices, np.s_[p:q], np.s_[0:q - p])
        if len(indices) and (indices.min() < 0 or indices.max() >= self.n_cols):
            bad = int(np.argmax((indices < 0) | (indices >= self.n_cols)))
            row = self.row_lo + int(np.searchsorted(indptr, p + bad, side="right")) - 1
            raise UserError(f"/{self.cfg.x_dataset}/indices in {path} has column {int(indices[bad])} at row "
                            f"{row}, outside [0, {self.n_cols}); re-import the file")
        local = indptr - p
        bad = _first_unsorted(indices, local)
        if bad is not None:
            row = self.row_lo + int(np.searchsorted(local, bad, side="right")) - 1
            raise UserError(f"/{self.cfg.x_dataset}/indices in {path} are not strictly increasing within "
                            f"row {row} (sorted, no duplicates, as CSR needs); re-import the file")
        self.nnz = q - p
        self.X_all = LocalRows(data, indices, local, self.n_cols)

    # -- the Shard interface ---------------------------------------------------
    def _slot(self, i: int, slot: int):
        lo, hi = chunk_range(self.n_rows, self.chunk_rows, self.chunks[i])
        a, b = lo - self.row_lo, hi - self.row_lo
        return self._X_chunks[i], self.y_all[a:b], None if self.sw_all is None else self.sw_all[a:b]

    def chunks_iter(self):
        for i in range(len(self.chunks)):
            yield (i, *self._slot(i, i))

    @property
    def nbytes(self) -> int:
        X = self.X_all
        extra = 0 if self.sw_all is None else self.sw_all.nbytes + self.test_all.nbytes
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes + self.y_all.nbytes + extra

    def chunk_digest(self, i: int, X, y: np.ndarray) -> int:
        return chunk_digest(int(self.chunks[i]), X, y)

    def describe(self) -> str:
        return (f"{self.cfg.path}: {self.n_rows} x {self.n_cols} sparse CSR float64, "
                f"{self.n_chunks} chunks of {self.chunk_rows}")
