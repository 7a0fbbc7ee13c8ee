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


def supports(kind: str) -> bool:
    return kind in _FUNCS


def partial(kind: str, X: np.ndarray, y: np.ndarray, sw: np.ndarray | None, w: np.ndarray, b: float,
            out: np.ndarray) -> None:
    """``out`` = [Σ s r x, Σ s r, Σ s ℓ, Σ s] in one pass over C-contiguous float64 ``X``."""
    n, d = X.shape
    _FUNCS[kind](X.ctypes.data, y.ctypes.data, None if sw is None else sw.ctypes.data, w.ctypes.data,
                 float(b), n, d, out.ctypes.data)
