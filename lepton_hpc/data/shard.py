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
from ..partition import chunk_range, chunks_of_rank, n_chunks
from .synthetic import linear_chunk, true_weights

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


class Shard:
    """The chunks ``chunks`` of a data set with ``n_rows`` rows and ``n_cols`` columns.

    Iterate with :meth:`chunks_iter`, which yields ``(i, X, y)`` per local
    chunk: ``i`` counts local chunks from 0, ``X`` is in the storage dtype and
    ``y`` is float64. In memory the arrays are views; streamed, they are views
    of buffers reused for every chunk.
    """

    def __init__(self, cfg: DataConfig, size: int, rank: int):
        self.cfg = cfg
        self.dtype = np.dtype(cfg.dtype)
        self._file = None
        if cfg.path:
            self._open_file(cfg)
        else:
            self.n_rows, self.n_cols = cfg.rows, cfg.cols
            self.w_true = true_weights(cfg.seed, cfg.cols, cfg.true_weights)
            self.b_true = cfg.true_bias
        self.chunk_rows = cfg.chunk_rows
        self.n_chunks = n_chunks(self.n_rows, self.chunk_rows)
        self.chunks = chunks_of_rank(self.n_chunks, size, rank)
        if len(self.chunks):
            self.row_lo = self.chunks.start * self.chunk_rows
            self.row_hi = min(self.chunks.stop * self.chunk_rows, self.n_rows)
        else:
            self.row_lo = self.row_hi = self.n_rows
        self.n_local = self.row_hi - self.row_lo
        self.in_memory = cfg.in_memory
        if self.in_memory:
            self._views = self._chunk_views()
            for i, chunk in enumerate(self.chunks):
                self._read_chunk(chunk, *self._views[i])
        else:
            rows = min(self.chunk_rows, max(self.n_local, 1))
            self._xbuf = aligned_empty((rows, self.n_cols), self.dtype)
            self._ybuf = aligned_empty((rows,), np.float64)

    def _chunk_views(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """One buffer for the shard, each chunk starting on a 64-byte boundary."""
        x_stride = -(-self.chunk_rows * self.n_cols * self.dtype.itemsize // ALIGN_BYTES) * ALIGN_BYTES
        y_stride = -(-self.chunk_rows * 8 // ALIGN_BYTES) * ALIGN_BYTES
        self._xraw = aligned_empty((len(self.chunks) * x_stride,), np.uint8)
        self._yraw = aligned_empty((len(self.chunks) * y_stride,), np.uint8)
        views = []
        for i, chunk in enumerate(self.chunks):
            lo, hi = chunk_range(self.n_rows, self.chunk_rows, chunk)
            m = hi - lo
            X = self._xraw[i * x_stride:i * x_stride + m * self.n_cols * self.dtype.itemsize]
            y = self._yraw[i * y_stride:i * y_stride + m * 8]
            views.append((X.view(self.dtype).reshape(m, self.n_cols), y.view(np.float64)))
        return views

    @property
    def nbytes(self) -> int:
        """Bytes of data held in memory by this rank."""
        if self.in_memory:
            return self._xraw.nbytes + self._yraw.nbytes
        return self._xbuf.nbytes + self._ybuf.nbytes

    # -- opening -----------------------------------------------------------
    def _open_file(self, cfg: DataConfig) -> None:
        if not os.path.isfile(cfg.path):
            raise ValueError(f"data file {cfg.path} does not exist; set data.path to an HDF5 file "
                             f"(make one with `python -m lepton_hpc.data synth linear`) or leave it empty")
        try:
            f = h5py.File(cfg.path, "r")
        except OSError as exc:
            raise ValueError(f"data file {cfg.path} is not a readable HDF5 file ({exc})") from None
        self._file = f
        for key in (cfg.x_dataset, cfg.y_dataset):
            if key not in f or not isinstance(f[key], h5py.Dataset):
                have = ", ".join(sorted(k for k in f.keys() if isinstance(f[k], h5py.Dataset))) or "none"
                raise ValueError(f"dataset /{key} not found in {cfg.path} (datasets there: {have}); "
                                 f"set data.x_dataset/data.y_dataset")
        X, y = f[cfg.x_dataset], f[cfg.y_dataset]
        if X.ndim != 2:
            raise ValueError(f"/{cfg.x_dataset} in {cfg.path} must be 2-D (rows x cols), has shape {X.shape}")
        if y.ndim != 1:
            raise ValueError(f"/{cfg.y_dataset} in {cfg.path} must be 1-D, has shape {y.shape}")
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"/{cfg.x_dataset} has {X.shape[0]} rows but /{cfg.y_dataset} has "
                             f"{y.shape[0]} in {cfg.path}; they must match")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"/{cfg.x_dataset} in {cfg.path} is empty (shape {X.shape})")
        for d in (X, y):
            if d.dtype.kind not in "fiu":
                raise ValueError(f"/{d.name.lstrip('/')} in {cfg.path} has non-numeric dtype {d.dtype}")
        self._X, self._y = X, y
        self.n_rows, self.n_cols = X.shape
        w = X.attrs.get("true_weights", f.attrs.get("true_weights"))
        self.w_true = None if w is None else np.asarray(w, dtype=np.float64)
        self.b_true = float(f.attrs.get("true_bias", 0.0))

    # -- reading -----------------------------------------------------------
    def _read_chunk(self, chunk: int, X_out: np.ndarray, y_out: np.ndarray) -> None:
        lo, hi = chunk_range(self.n_rows, self.chunk_rows, chunk)
        if self._file is not None:
            self._X.read_direct(X_out, np.s_[lo:hi], np.s_[0:hi - lo])
            self._y.read_direct(y_out, np.s_[lo:hi], np.s_[0:hi - lo])
        else:
            X, y = linear_chunk(self.cfg.seed, chunk, hi - lo, self.w_true, self.b_true,
                                self.cfg.noise, self.cfg.features)
            X_out[:hi - lo] = X
            y_out[:hi - lo] = y

    def chunks_iter(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(local chunk index, X, y)`` for every local chunk, in order."""
        if self.in_memory:
            for i, (X, y) in enumerate(self._views):
                yield i, X, y
            return
        for i, chunk in enumerate(self.chunks):
            lo, hi = chunk_range(self.n_rows, self.chunk_rows, chunk)
            X, y = self._xbuf[:hi - lo], self._ybuf[:hi - lo]
            self._read_chunk(chunk, X, y)
            yield i, X, y

    # -- checks ------------------------------------------------------------
    def first_bad_row(self, i: int, X: np.ndarray, y: np.ndarray) -> int | None:
        """Global index of the first row of local chunk ``i`` with NaN/Inf, else None."""
        ok = np.isfinite(X).all(axis=1) & np.isfinite(y)
        if ok.all():
            return None
        lo, _ = chunk_range(self.n_rows, self.chunk_rows, self.chunks[i])
        return lo + int(np.argmin(ok))

    def chunk_digest(self, i: int, X: np.ndarray, y: np.ndarray) -> int:
        """64-bit digest of one chunk's bytes and id; XOR over chunks is the fingerprint."""
        h = hashlib.blake2b(digest_size=8)
        h.update(int(self.chunks[i]).to_bytes(8, "little"))
        h.update(np.ascontiguousarray(X).data)
        h.update(np.ascontiguousarray(y).data)
        return int.from_bytes(h.digest(), "little")

    def describe(self) -> str:
        src = self.cfg.path or f"synthetic(seed={self.cfg.seed})"
        return f"{src}: {self.n_rows} x {self.n_cols} {self.dtype.name}, {self.n_chunks} chunks of {self.chunk_rows}"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
