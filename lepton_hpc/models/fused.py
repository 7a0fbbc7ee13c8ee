"""ctypes binding of the one-pass C gradient kernels (lepton_hpc/_ext/fused.c).

``available`` is False when the library was not built (no C compiler at
install time); callers then use the numpy/BLAS path. ``LEPTON_NO_C_KERNEL=1``
forces the numpy path (for comparisons).
"""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path

import numpy as np

_lib = None
if not os.environ.get("LEPTON_NO_C_KERNEL"):
    for candidate in glob.glob(str(Path(__file__).resolve().parent.parent / "_ext" / "fused*.so")):
        try:
            _lib = ctypes.CDLL(candidate)
            break
        except OSError:
            continue

available = _lib is not None
_dp = ctypes.POINTER(ctypes.c_double)
_FUNCS = {}
if available:
    for kind in ("linear", "logistic"):
        fn = getattr(_lib, f"lepton_{kind}_partial")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_double,
                       ctypes.c_long, ctypes.c_long, ctypes.c_void_p]
        fn.restype = None
        _FUNCS[kind] = fn
    _many = _lib.lepton_partials
    _many.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 4 + [ctypes.c_long, ctypes.c_void_p, ctypes.c_double,
                                                               ctypes.c_long, ctypes.c_int, ctypes.c_long,
                                                               ctypes.c_void_p, ctypes.c_void_p]
    _many.restype = None
    _csr = getattr(_lib, "lepton_csr_partial", None)  # None: a library built before the CSR kernel
    if _csr is not None:
        _csr.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 6 + [ctypes.c_double, ctypes.c_long, ctypes.c_long,
                                                                  ctypes.c_void_p]
        _csr.restype = None
_KIND_CODE = {"linear": 0, "logistic": 1}


def supports(kind: str) -> bool:
    return kind in _FUNCS


def csr_supports(kind: str) -> bool:
    """Is there a one-pass C kernel for CSR chunks of ``kind`` (linear, logistic)?"""
    return available and _csr is not None and kind in _KIND_CODE


def csr_partial(kind: str, X, y: np.ndarray, sw: np.ndarray | None, w: np.ndarray, b: float,
                out: np.ndarray) -> None:
    """``out`` = [Σ s r x, Σ s r, Σ s ℓ, Σ s] in one pass over a CSR chunk (float64 data, int32 indices/indptr)."""
    n, d = X.shape
    _csr(_KIND_CODE[kind], X.data.ctypes.data, X.indices.ctypes.data, X.indptr.ctypes.data, y.ctypes.data,
         None if sw is None else sw.ctypes.data, w.ctypes.data, float(b), n, d, out.ctypes.data)


def partial(kind: str, X: np.ndarray, y: np.ndarray, sw: np.ndarray | None, w: np.ndarray, b: float,
            out: np.ndarray) -> None:
    """``out`` = [Σ s r x, Σ s r, Σ s ℓ, Σ s] in one pass over C-contiguous float64 ``X``."""
    n, d = X.shape
    _FUNCS[kind](X.ctypes.data, y.ctypes.data, None if sw is None else sw.ctypes.data, w.ctypes.data,
                 float(b), n, d, out.ctypes.data)


class ChunkPlan:
    """The fixed addresses of a shard's in-memory chunks, for one C call per step.

    Built once per run: the shard's buffers never move, so every step passes
    the same pointer tables and only the parameters change. The per-chunk
    results are the same bits as :func:`partial` on each chunk.
    """

    def __init__(self, views, weighted: bool, n_cols: int):
        self.n_chunks = len(views)
        self.d = n_cols
        self._keep = views  # the arrays must outlive the pointer tables
        ptr = lambda a: a.ctypes.data  # noqa: E731
        self.X = np.array([ptr(X) for X, _, _ in views] or [0], dtype=np.uintp)
        self.y = np.array([ptr(y) for _, y, _ in views] or [0], dtype=np.uintp)
        self.sw = np.array([ptr(sw) for _, _, sw in views] or [0], dtype=np.uintp) if weighted else None
        self.n = np.array([X.shape[0] for X, _, _ in views] or [0], dtype=np.int64)
        self.scratch = np.empty(n_cols + 3)
        self._args = (self.X.ctypes.data, self.y.ctypes.data,
                      None if self.sw is None else self.sw.ctypes.data, self.n.ctypes.data,
                      self.n_chunks)

    def run(self, kind: str, theta: np.ndarray, intercept: bool, out: np.ndarray) -> None:
        """Partial rows of every chunk into ``out`` (n_chunks × width, C-contiguous)."""
        d = self.d
        b = float(theta[d]) if intercept else 0.0
        _many(_KIND_CODE[kind], *self._args, theta.ctypes.data, b, d, int(intercept), out.shape[1],
              out.ctypes.data, self.scratch.ctypes.data)
