"""ctypes binding of the implicit-feedback ALS kernels (lepton_hpc/_ext/implicit.c).

``available`` is False when the library was not built (no C compiler at install
time) or ``LEPTON_NO_C_KERNEL=1``; :mod:`.mf_implicit` then uses its numpy path
(the same sums, other bits: a build either has the kernel on every rank or not).
"""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path

import numpy as np

_lib = None
if not os.environ.get("LEPTON_NO_C_KERNEL"):
    for candidate in glob.glob(str(Path(__file__).resolve().parent.parent / "_ext" / "implicit*.so")):
        try:
            _lib = ctypes.CDLL(candidate)
            break
        except OSError:
            continue

available = _lib is not None
_P, _L, _D = ctypes.c_void_p, ctypes.c_long, ctypes.c_double
if available:
    _lib.lepton_implicit_sums.argtypes = [_L, _P, _P, _P, _P, _P, _L, _D, _P, _P]
    _lib.lepton_implicit_sums.restype = ctypes.c_int
    _lib.lepton_implicit_cg.argtypes = [_L, _P, _P, _P, _P, _P, _L, _D, _P, _P, _L, _D, _P]
    _lib.lepton_implicit_cg.restype = ctypes.c_int
    _lib.lepton_implicit_observed.argtypes = [_L, _P, _P, _P, _P, _P, _L, _D]
    _lib.lepton_implicit_observed.restype = ctypes.c_double


def _c(a: np.ndarray, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def sums(bounds: np.ndarray, idx: np.ndarray, order, vals: np.ndarray, F: np.ndarray, alpha: float,
         out: np.ndarray | None = None, dest: np.ndarray | None = None) -> np.ndarray:
    """Packed [triu(Σ w f fᵀ), Σ c f] per segment ``[bounds[s], bounds[s+1])`` of interactions,
    f = F[idx[t]], r = vals[order[t]] (``order`` None: t); into ``out[dest[s]]`` when given
    (``out`` C-contiguous float64), else a new (segments, width) array."""
    k = F.shape[1]
    n_seg = bounds.shape[0] - 1
    if out is None:
        out = np.empty((n_seg, k * (k + 1) // 2 + k))
    assert out.flags.c_contiguous and out.dtype == np.float64 and out.shape[1] == k * (k + 1) // 2 + k
    keep = (_c(bounds, np.int64), _c(idx, np.int32), None if order is None else _c(order, np.int64),
            _c(vals, np.float64), _c(F, np.float64), None if dest is None else _c(dest, np.int64))
    ptr = [None if a is None else a.ctypes.data for a in keep]
    if _lib.lepton_implicit_sums(n_seg, *ptr[:5], k, float(alpha), ptr[5], out.ctypes.data) != 0:
        raise MemoryError("the implicit ALS kernel could not allocate its k x k buffer")
    return out


def cg(bounds: np.ndarray, rows: np.ndarray, idx: np.ndarray, vals: np.ndarray, F: np.ndarray, alpha: float,
       G: np.ndarray, reg: np.ndarray, steps: int, eps: float, X: np.ndarray) -> None:
    """``steps`` matrix-free CG steps in place on ``X[rows[s]]`` for every segment s (X C-contiguous)."""
    k = F.shape[1]
    keep = (_c(bounds, np.int64), _c(rows, np.int64), _c(idx, np.int32), _c(vals, np.float64), _c(F, np.float64),
            _c(G, np.float64), _c(np.broadcast_to(reg, rows.shape), np.float64))
    assert X.flags.c_contiguous and X.dtype == np.float64
    rc = _lib.lepton_implicit_cg(rows.shape[0], *(a.ctypes.data for a in keep[:5]), k, float(alpha),
                                 keep[5].ctypes.data, keep[6].ctypes.data, int(steps), float(eps), X.ctypes.data)
    if rc != 0:
        raise ValueError(f"model.rank={k} is above the implicit CG kernel's limit of 512")


def observed(users: np.ndarray, items: np.ndarray, vals: np.ndarray, U: np.ndarray, V: np.ndarray,
             alpha: float) -> float:
    """Σ over the interactions of c (1 − s)² − s², s = U[u]·V[i], in interaction order."""
    keep = (_c(users, np.int32), _c(items, np.int32), _c(vals, np.float64), _c(U, np.float64), _c(V, np.float64))
    return float(_lib.lepton_implicit_observed(users.shape[0], *(a.ctypes.data for a in keep), U.shape[1],
                                               float(alpha)))
