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
    _lib.lepton_implicit_sums.argtypes = [_L, _P, _P, _P, _P, _P, _L, _D, _P]
    _lib.lepton_implicit_sums.restype = None
    _lib.lepton_implicit_cg.argtypes = [_L, _P, _P, _P, _P, _P, _L, _D, _P, _P, _L, _D, _P]
    _lib.lepton_implicit_cg.restype = ctypes.c_int
    _lib.lepton_implicit_observed.argtypes = [_L, _P, _P, _P, _P, _P, _L, _D]
    _lib.lepton_implicit_observed.restype = ctypes.c_double


def _c(a: np.ndarray, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def sums(bounds: np.ndarray, idx: np.ndarray, order, vals: np.ndarray, F: np.ndarray, alpha: float) -> np.ndarray:
    """Packed [triu(Σ w f fᵀ), Σ c f] per segment ``[bounds[s], bounds[s+1])`` of interactions,
    f = F[idx[t]], r = vals[order[t]] (``order`` None: t)."""
    k = F.shape[1]
    n_seg = bounds.shape[0] - 1
    out = np.empty((n_seg, k * (k + 1) // 2 + k))
    keep = (_c(bounds, np.int64), _c(idx, np.int32), None if order is None else _c(order, np.int64),
            _c(vals, np.float64), _c(F, np.float64))
    _lib.lepton_implicit_sums(n_seg, keep[0].ctypes.data, keep[1].ctypes.data,
                              None if keep[2] is None else keep[2].ctypes.data, keep[3].ctypes.data,
                              keep[4].ctypes.data, k, float(alpha), out.ctypes.data)
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
