"""This rank's shard of the data: whole logical chunks, in memory or streamed.

A rank reads only its own hyperslab ``[row_lo, row_hi)`` of the HDF5
datasets (or generates its own synthetic chunks). Nothing here talks to MPI;
opening errors are raised as ``ValueError`` with a sentence the user can act
on, and the caller agrees on them across ranks.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterator

import h5py
import numpy as np

from ..config import DataConfig
from ..layout import Layout, chunk_range
from .memory import check_fits
from .split import held_out
from .synthetic import linear_chunk, true_weights
from ..errors import UserError

ALIGN_BYTES = 64


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array whose data starts on a 64-byte boundary.

    Chunks then start at the same alignment on every rank, so BLAS takes the
    same code path for the same chunk whatever rank holds it.
    """
    dtype = np.dtype(dtype)
    n_bytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(n_bytes + ALIGN_BYTES, dtype=np.uint8)
    offset = (-raw.ctypes.data) % ALIGN_BYTES
    return raw[offset:offset + n_bytes].view(dtype).reshape(shape)


def _attr_list(value) -> list:
    """An HDF5 attr as a list of plain values: str (bytes decoded as UTF-8), int or float."""
    out = []
    for v in np.atleast_1d(np.asarray(value)).ravel().tolist():
        out.append(v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
    return out


def _stride_rows(chunk_rows: int, row_bytes: int) -> int:
    """Rows per chunk slot: at least chunk_rows, and a whole number of 64-byte lines."""
    q = np.lcm(ALIGN_BYTES // np.gcd(ALIGN_BYTES, row_bytes), ALIGN_BYTES // 8)
    return int(-(-chunk_rows // q) * q)


def chunk_digest(chunk: int, X: np.ndarray, y: np.ndarray) -> int:
    """64-bit digest of global chunk ``chunk``'s id, X (storage dtype; a CSR chunk: its indptr from
    0 and indices as int64, then its values) and y (float64) bytes."""
    h = hashlib.blake2b(digest_size=8)
    h.update(int(chunk).to_bytes(8, "little"))
    if hasattr(X, "indptr"):
        h.update(np.ascontiguousarray(X.indptr, dtype=np.int64).data)
        h.update(np.ascontiguousarray(X.indices, dtype=np.int64).data)
        h.update(np.ascontiguousarray(X.data).data)
    else:
        h.update(np.ascontiguousarray(X).data)
    h.update(np.ascontiguousarray(y, dtype=np.float64).data)
    return int.from_bytes(h.digest(), "little")


def first_bad_row(X, y=None) -> int | None:
    """Index in the chunk of the first row with NaN or Inf in ``X`` (dense or CSR) or ``y``, else None."""
    ok = np.ones(X.shape[0], dtype=bool) if y is None else np.isfinite(y)
    if hasattr(X, "indptr"):
        bad = ~np.isfinite(X.data)
        if bad.any():
            ok[np.searchsorted(X.indptr, np.flatnonzero(bad), side="right") - 1] = False
    else:
        ok &= np.isfinite(X).all(axis=1)
    return None if ok.all() else int(np.argmin(ok))


def missing_file_hint(path: str) -> str:
    """The sentence for a data file that is not there: the exact command for a bundled job's data
    (``data/diabetes.h5``, ``data/apt_text.h5``...), else how to make one."""
    from .bundled import make_command

    where = os.path.abspath(path)
    command = make_command(where, "python -m lepton_hpc.data")
    if command:
        return f"data file {where} does not exist; make it with `{command}`"
    return (f"data file {where} does not exist (a relative data.path is read from the job file's folder, "
            f"one given with --set from the current directory); "
            f"set data.path to an HDF5 file (make one with `python -m lepton_hpc.data synth linear` or "
            f"`python -m lepton_hpc.data import`) or leave it empty for synthetic data")


def open_hdf5(path: str, what: str = "data file", missing: str | None = None) -> h5py.File:
    """``path`` opened read-only: the one place a data file is opened for reading.

    A UserError naming what is wrong when it is a directory, missing (``missing`` is then the
    sentence, else :func:`missing_file_hint`), not HDF5 (:mod:`.sniff` names what it is), cut short
    or otherwise unreadable; h5py's own text never reaches the user.
    """
    from .sniff import describe_non_hdf5

    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserError(f"{what} {path} is a directory, not a file; give the path of an HDF5 file "
                        f"(e.g. {os.path.join(path, 'data.h5')})")
    if not os.path.isfile(path):
        raise UserError(missing or missing_file_hint(path))
    sniffed = describe_non_hdf5(path)
    if sniffed is not None:
        raise UserError(sniffed)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise UserError(f"{what} {path} is truncated or corrupt (an HDF5 file cut short: it has "
                            f"{os.path.getsize(path)} bytes); re-create it, e.g. copy it again or re-run the "
                            f"import or synth command that made it") from None
        raise UserError(f"{what} {path} is not a readable HDF5 file (corrupt or written by an unfinished "
                        f"program); re-create it") from None


def _is_csr_file(path: str, key: str) -> bool:
    """Does the HDF5 file at ``path`` hold X as a CSR group? (UserError when it cannot be read.)"""
    from .sparse_shard import is_csr

    with open_hdf5(path) as f:
        return is_csr(f, key)


class Shard:
    """The chunks ``chunks`` of a data set with ``n_rows`` rows and ``n_cols`` columns.

    Iterate with :meth:`chunks_iter`, which yields ``(i, X, y, sw)`` per local
    chunk: ``i`` counts local chunks from 0, ``X`` is in the storage dtype,
    ``y`` is float64 and ``sw`` the training sample weights (None when every
    row weighs 1). Rows of the held-out test split (``data.test_fraction``)
    have training weight 0; :meth:`test_weights` gives their weights instead.
    In memory the arrays are views of one buffer in which every chunk starts
    on a 64-byte boundary; streamed, they are views of one reused chunk buffer.

    Parameters
    ----------
    cfg : DataConfig
    size, rank : int
        The world size and this rank (no communication happens here).
    generator : callable, optional
        ``generator(chunk, n_rows) -> (X, y)`` for synthetic data (data.path
        empty); defaults to the linear-regression generator.

    ``feature_names`` (list of str) and ``classes`` (the original label of each class code
    0..K-1: str, int or float) come from the attrs ``feature_names`` of the X dataset and
    ``classes`` of the y dataset (:mod:`lepton_hpc.data.importers`); None when the file has
    none, and always None for synthetic data. Every rank reads the same attrs.
    """

    sparse = False

    def __new__(cls, cfg: DataConfig, *args, **kwargs):
        """A :class:`~.sparse_shard.SparseShard` when data.path's X is a CSR group."""
        if cls is Shard and cfg.path and _is_csr_file(cfg.path, cfg.x_dataset):
            from .sparse_shard import SparseShard

            cls = SparseShard
        return super().__new__(cls)

    def __init__(self, cfg: DataConfig, size: int, rank: int, generator=None, node_ranks: int = 1):
        self.cfg = cfg
        self.dtype = np.dtype(cfg.dtype)
        self._file = None
        self._W = None
        self.feature_names: list[str] | None = None
        self.classes: list | None = None
        if cfg.path:
            self._open_file(cfg)
            self._generate = None
        else:
            self.n_rows, self.n_cols = cfg.rows, cfg.cols
            self.w_true = true_weights(cfg.seed, cfg.cols, cfg.true_weights)
            self.b_true = cfg.true_bias
            self._generate = generator or (lambda chunk, m: linear_chunk(
                cfg.seed, chunk, m, self.w_true, self.b_true, cfg.noise, cfg.features))
        self.chunk_rows = cfg.chunk_rows
        #: who owns which chunks and rows: built here, once, and passed to every consumer
        self.layout = Layout(self.n_rows, self.chunk_rows, size, rank)
        self.n_chunks = self.layout.n_chunks
        self.chunks = self.layout.chunks()
        self.row_lo, self.row_hi = self.layout.rows()
        self.n_local = self.row_hi - self.row_lo
        self.weighted = bool(cfg.w_dataset) or cfg.test_fraction > 0
        self.in_memory = cfg.in_memory
        slots = len(self.chunks) if self.in_memory else min(1, len(self.chunks))
        self.stride = _stride_rows(self.chunk_rows, self.n_cols * self.dtype.itemsize)
        check_fits(self.n_rows, self.n_cols, self.dtype.itemsize, self.weighted,
                   self.layout.max_local_chunks * self.stride, self.stride, size, node_ranks, self.in_memory)
        if not self.in_memory:
            self.stride = min(self.stride, max(self.n_local, 1) + 8)
        # One buffer each; chunk slot i holds rows [i*stride, i*stride + m_i).
        self.X_all = aligned_empty((max(slots, 1) * self.stride, self.n_cols), self.dtype)
        self.y_all = aligned_empty((max(slots, 1) * self.stride,), np.float64)
        self.sw_all = aligned_empty((max(slots, 1) * self.stride,), np.float64) if self.weighted else None
        self.test_all = aligned_empty((max(slots, 1) * self.stride,), np.float64) if self.weighted else None
        if self.in_memory:
            for i, chunk in enumerate(self.chunks):
                self._fill(i, chunk, slot=i)

    def _slot(self, i: int, slot: int):
        lo, hi = chunk_range(self.n_rows, self.chunk_rows, self.chunks[i])
        a, b = slot * self.stride, slot * self.stride + hi - lo
        sw = None if self.sw_all is None else self.sw_all[a:b]
        return self.X_all[a:b], self.y_all[a:b], sw

    def _fill(self, i: int, chunk: int, slot: int) -> None:
        X, y, sw = self._slot(i, slot)
        self._read_chunk(chunk, X, y)
        if self.weighted:
            a = slot * self.stride
            test = self.test_all[a:a + X.shape[0]]
            self._read_weights(chunk, sw)
            mask = self.test_mask(chunk, X.shape[0])
            np.multiply(sw, mask, out=test)
            sw[mask] = 0.0

    def test_mask(self, chunk: int, n_rows: int) -> np.ndarray:
        """Rows of ``chunk`` in the held-out split: drawn per row from (seed, global row), so neither
        data.chunk_rows nor the rank count changes it (:mod:`lepton_hpc.data.split`)."""
        lo = chunk_range(self.n_rows, self.chunk_rows, chunk)[0]
        return held_out(self.cfg.seed, self.cfg.test_fraction, lo, lo + n_rows)

    def test_weights(self, i: int) -> np.ndarray | None:
        """Weights of local chunk ``i``'s held-out rows (0 for training rows); streamed: the current chunk."""
        if self.test_all is None:
            return None
        lo, hi = chunk_range(self.n_rows, self.chunk_rows, self.chunks[i])
        a = (i if self.in_memory else 0) * self.stride
        return self.test_all[a:a + hi - lo]

    def chunk_start(self, i: int) -> int:
        """Global index of the first row of local chunk ``i``."""
        return chunk_range(self.n_rows, self.chunk_rows, self.chunks[i])[0]

    def padded_index(self, rows: np.ndarray) -> np.ndarray:
        """Positions in X_all/y_all of sorted global ``rows`` owned by this rank (in memory)."""
        chunk = rows // self.chunk_rows
        return (chunk - self.chunks.start) * self.stride + (rows - chunk * self.chunk_rows)

    @property
    def nbytes(self) -> int:
        """Bytes of data held in memory by this rank."""
        extra = 0 if self.sw_all is None else self.sw_all.nbytes + self.test_all.nbytes
        return self.X_all.nbytes + self.y_all.nbytes + extra

    # -- opening -----------------------------------------------------------
    def _open_file(self, cfg: DataConfig) -> None:
        f = open_hdf5(cfg.path)
        self._file = f
        for key in (cfg.x_dataset, cfg.y_dataset):
            if key not in f or not isinstance(f[key], h5py.Dataset):
                from .sparse_shard import not_csr_group

                group = not_csr_group(f.get(key), key, cfg.path)
                if group is not None:
                    raise UserError(group)
                have = ", ".join(sorted(k for k in f.keys() if isinstance(f[k], h5py.Dataset))) or "none"
                raise UserError(f"dataset /{key} not found in {cfg.path} (datasets there: {have}); "
                                 f"set data.x_dataset/data.y_dataset")
        X, y = f[cfg.x_dataset], f[cfg.y_dataset]
        if X.ndim != 2:
            raise UserError(f"/{cfg.x_dataset} in {cfg.path} must be 2-D (rows x cols), has shape {X.shape}")
        if y.ndim != 1:
            raise UserError(f"/{cfg.y_dataset} in {cfg.path} must be 1-D, has shape {y.shape}")
        if X.shape[0] != y.shape[0]:
            raise UserError(f"/{cfg.x_dataset} has {X.shape[0]} rows but /{cfg.y_dataset} has "
                             f"{y.shape[0]} in {cfg.path}; they must match")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise UserError(f"/{cfg.x_dataset} in {cfg.path} is empty (shape {X.shape})")
        for d in (X, y):
            if d.dtype.kind not in "fiu":
                raise UserError(f"/{d.name.lstrip('/')} in {cfg.path} has non-numeric dtype {d.dtype}")
        self._X, self._y = X, y
        if cfg.w_dataset:
            if cfg.w_dataset not in f or not isinstance(f[cfg.w_dataset], h5py.Dataset):
                raise UserError(f"sample-weight dataset /{cfg.w_dataset} not found in {cfg.path}; "
                                 f"set data.w_dataset to an existing dataset or leave it empty")
            self._W = f[cfg.w_dataset]
            if self._W.shape != (X.shape[0],):
                raise UserError(f"/{cfg.w_dataset} in {cfg.path} has shape {self._W.shape}, expected "
                                 f"({X.shape[0]},): one weight per row")
        self.n_rows, self.n_cols = X.shape
        self._read_labels(cfg, X, y)
        w = X.attrs.get("true_weights", f.attrs.get("true_weights"))
        self.w_true = None if w is None else np.asarray(w, dtype=np.float64)
        self.b_true = None  # only synthetic data is generated from the truth

    def _read_labels(self, cfg: DataConfig, X, y) -> None:
        """``feature_names`` from X's attr, ``classes`` from y's (None where absent)."""
        names = X.attrs.get("feature_names")
        if names is not None:
            self.feature_names = [str(v) for v in _attr_list(names)]
            if len(self.feature_names) != self.n_cols:
                raise UserError(f"/{cfg.x_dataset} in {cfg.path} has {len(self.feature_names)} feature_names "
                                 f"for {self.n_cols} columns; re-import the file")
        classes = y.attrs.get("classes")
        if classes is not None:
            self.classes = _attr_list(classes)
            if len(set(map(repr, self.classes))) != len(self.classes):
                raise UserError(f"/{cfg.y_dataset} in {cfg.path} has repeated classes {self.classes}; "
                                 f"re-import the file")

    # -- reading -----------------------------------------------------------
    def _read_chunk(self, chunk: int, X_out: np.ndarray, y_out: np.ndarray) -> None:
        lo, hi = chunk_range(self.n_rows, self.chunk_rows, chunk)
        if self._file is not None:
            self._X.read_direct(X_out, np.s_[lo:hi], np.s_[0:hi - lo])
            self._y.read_direct(y_out, np.s_[lo:hi], np.s_[0:hi - lo])
        else:
            X, y = self._generate(chunk, hi - lo)
            X_out[:] = X
            y_out[:] = y

    def _read_weights(self, chunk: int, sw_out: np.ndarray) -> None:
        lo, hi = chunk_range(self.n_rows, self.chunk_rows, chunk)
        if self._W is None:
            sw_out[:] = 1.0
            return
        self._W.read_direct(sw_out, np.s_[lo:hi], np.s_[0:hi - lo])
        bad = ~(np.isfinite(sw_out) & (sw_out >= 0))
        if bad.any():
            raise UserError(f"sample weight /{self.cfg.w_dataset} at row {lo + int(np.argmax(bad))} is "
                             f"{sw_out[np.argmax(bad)]}; weights must be finite and >= 0")

    def chunks_iter(self) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]]:
        """Yield ``(local chunk index, X, y, sw)`` for every local chunk, in order."""
        for i, chunk in enumerate(self.chunks):
            if self.in_memory:
                yield (i, *self._slot(i, i))
            else:
                self._fill(i, chunk, slot=0)
                yield (i, *self._slot(i, 0))

    # -- checks ------------------------------------------------------------
    def first_bad_row(self, i: int, X, y: np.ndarray) -> int | None:
        """Global index of the first row of local chunk ``i`` with NaN/Inf, else None."""
        bad = first_bad_row(X, y)
        return None if bad is None else self.chunk_start(i) + bad

    def chunk_digest(self, i: int, X: np.ndarray, y: np.ndarray) -> int:
        """64-bit digest of local chunk ``i``'s bytes and id; XOR over chunks is the fingerprint."""
        return chunk_digest(int(self.chunks[i]), X, y)

    def describe(self) -> str:
        src = self.cfg.path or f"synthetic(seed={self.cfg.seed})"
        return f"{src}: {self.n_rows} x {self.n_cols} {self.dtype.name}, {self.n_chunks} chunks of {self.chunk_rows}"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
