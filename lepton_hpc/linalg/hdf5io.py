"""HDF5 file format for factored matrices (serial I/O, no MPI).

Layout of one file::

    /factors/U            float64 (m, k)   rows in global order
    /factors/S            float64 (k,)
    /factors/V            float64 (n, k)
    /factors/S_discarded  float64 (t,)     singular values dropped by truncation
    /factors attrs: shape=(m, n), rank=k, tail_complete (bool), format_version

The collective logic (gathering ``U`` onto rank 0, agreeing on errors) lives in
:mod:`lepton_hpc.linalg.factored`; this module only reads and writes files.
"""

from __future__ import annotations

from typing import Optional

import h5py
import numpy as np

from ..data.atomic import atomic_path
from ..errors import UserError

__all__ = ["FORMAT_VERSION", "write_factors_atomic", "read_header", "read_factors"]

FORMAT_VERSION = 1
_GROUP = "factors"


def write_factors_atomic(
    path: str,
    u_full: np.ndarray,
    s: np.ndarray,
    v: np.ndarray,
    *,
    shape: tuple,
    s_discarded: Optional[np.ndarray] = None,
    tail_complete: bool = False,
) -> None:
    """Write the factors to ``path`` atomically (:func:`lepton_hpc.data.atomic.atomic_path`).

    A crash leaves either the old file or the new one, never a torn file; on
    error nothing appears under ``path``.

    Parameters
    ----------
    path : str
    u_full : ndarray, shape (m, k)
    s : ndarray, shape (k,)
    v : ndarray, shape (n, k)
    shape : (int, int)
        Global ``(m, n)``.
    s_discarded : ndarray, optional
        Singular values discarded by truncation (for tail estimates).
    tail_complete : bool
        Whether ``s_discarded`` holds *all* remaining singular values.
    """
    discarded = np.zeros(0) if s_discarded is None else np.asarray(s_discarded, np.float64)
    with atomic_path(path) as tmp_path:
        with h5py.File(tmp_path, "w") as f:
            group = f.create_group(_GROUP)
            group.create_dataset("U", data=np.asarray(u_full, np.float64))
            group.create_dataset("S", data=np.asarray(s, np.float64))
            group.create_dataset("V", data=np.asarray(v, np.float64))
            group.create_dataset("S_discarded", data=discarded)
            group.attrs["shape"] = np.asarray(shape, dtype=np.int64)
            group.attrs["rank"] = np.int64(len(s))
            group.attrs["tail_complete"] = bool(tail_complete)
            group.attrs["format_version"] = np.int64(FORMAT_VERSION)


def read_header(path: str) -> dict:
    """Read ``shape`` (m, n) and ``rank`` k from a factor file."""
    with h5py.File(path, "r") as f:
        group = f[_GROUP]
        m, n = (int(x) for x in group.attrs["shape"])
        return {"shape": (m, n), "rank": int(group.attrs["rank"])}


def read_factors(path: str, row_range: Optional[tuple] = None) -> dict:
    """Read ``S``, ``V`` and only rows ``[start, stop)`` of ``U`` (a hyperslab).

    Parameters
    ----------
    path : str
    row_range : (int, int), optional
        Rows of ``U`` to read; default all rows.

    Returns
    -------
    dict
        Keys ``U_local``, ``S``, ``V``, ``S_discarded``, ``tail_complete``,
        ``shape`` (m, n), ``rank`` (k), ``row_range``.

    Raises
    ------
    ValueError
        If the row range is outside ``[0, m]`` or the file is inconsistent.
    """
    with h5py.File(path, "r") as f:
        group = f[_GROUP]
        m, n = (int(x) for x in group.attrs["shape"])
        k = int(group.attrs["rank"])
        start, stop = (0, m) if row_range is None else (int(row_range[0]), int(row_range[1]))
        if not 0 <= start <= stop <= m:
            raise UserError(f"row range ({start}, {stop}) is outside [0, m={m}]")
        u_dset = group["U"]
        if u_dset.shape != (m, k) or group["V"].shape != (n, k) or group["S"].shape != (k,):
            raise UserError(
                f"inconsistent factor shapes in {path}: U {u_dset.shape}, "
                f"S {group['S'].shape}, V {group['V'].shape} for shape ({m}, {n}), rank {k}"
            )
        u_local = u_dset[start:stop, :] if stop > start else np.zeros((0, k))
        discarded = group["S_discarded"][()] if "S_discarded" in group else np.zeros(0)
        return {
            "U_local": np.asarray(u_local, dtype=np.float64),
            "S": np.asarray(group["S"][()], dtype=np.float64),
            "V": np.asarray(group["V"][()], dtype=np.float64),
            "S_discarded": np.asarray(discarded, dtype=np.float64),
            "tail_complete": bool(group.attrs.get("tail_complete", False)),
            "shape": (m, n),
            "rank": k,
            "row_range": (start, stop),
        }
