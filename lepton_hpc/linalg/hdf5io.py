"""HDF5 file format for factored matrices (serial I/O, no MPI).

Layout of one file::

    /factors/U            float64 (m, k)   rows in global order
    /factors/S            float64 (k,)
    /factors/V            float64 (n, k)
    /factors/S_discarded  float64 (t,)     singular values dropped by truncation
    /factors attrs: shape=(m, n), rank=k, tail_complete (bool), format_version

Writers: :func:`write_factors_atomic` writes a whole file from one process;
:meth:`lepton_hpc.linalg.FactoredMatrix.save` has one rank :func:`create_factors_file`
(everything but the rows of ``U``) under a temporary name, every rank
:func:`write_u_rows` its own rows in turn, and the first rank commit the name.
The collective logic (taking turns, agreeing on errors) lives in
:mod:`lepton_hpc.linalg.factored`; this module only reads and writes files.
"""

from __future__ import annotations

from typing import Optional

import h5py
import numpy as np

from ..data.atomic import atomic_path
from ..errors import UserError

__all__ = ["FORMAT_VERSION", "write_factors_atomic", "create_factors_file", "write_u_rows",
           "read_header", "read_factors"]

FORMAT_VERSION = 1
_GROUP = "factors"


def create_factors_file(
    path: str,
    s: np.ndarray,
    v: np.ndarray,
    *,
    shape: tuple,
    s_discarded: Optional[np.ndarray] = None,
    tail_complete: bool = False,
    u_full: Optional[np.ndarray] = None,
) -> None:
    """Create the factor file ``path`` (not atomic: pass a temporary name).

    ``/factors/U`` is ``u_full`` if given, else an unwritten ``m × k`` float64 dataset
    whose rows :func:`write_u_rows` fills in later.

    Parameters
    ----------
    path : str
    s : ndarray, shape (k,)
    v : ndarray, shape (n, k)
    shape : (int, int)
        Global ``(m, n)``.
    s_discarded : ndarray, optional
        Singular values discarded by truncation (for tail estimates).
    tail_complete : bool
        Whether ``s_discarded`` holds *all* remaining singular values.
    u_full : ndarray, shape (m, k), optional
    """
    discarded = np.zeros(0) if s_discarded is None else np.asarray(s_discarded, np.float64)
    with h5py.File(path, "w") as f:
        group = f.create_group(_GROUP)
        if u_full is None:
            group.create_dataset("U", shape=(int(shape[0]), len(s)), dtype=np.float64)
        else:
            group.create_dataset("U", data=np.asarray(u_full, np.float64))
        group.create_dataset("S", data=np.asarray(s, np.float64))
        group.create_dataset("V", data=np.asarray(v, np.float64))
        group.create_dataset("S_discarded", data=discarded)
        group.attrs["shape"] = np.asarray(shape, dtype=np.int64)
        group.attrs["rank"] = np.int64(len(s))
        group.attrs["tail_complete"] = bool(tail_complete)
        group.attrs["format_version"] = np.int64(FORMAT_VERSION)


def write_u_rows(path: str, start: int, u_local: np.ndarray) -> None:
    """Write ``u_local`` as rows ``[start, start + len(u_local))`` of ``/factors/U`` of ``path``.

    Opens the file ``'r+'``, writes the hyperslab and closes it; one process at a time.
    """
    u_local = np.asarray(u_local, np.float64)
    with h5py.File(path, "r+") as f:
        f[_GROUP]["U"][start:start + u_local.shape[0], :] = u_local


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
    error nothing appears under ``path``.  The arguments are those of
    :func:`create_factors_file`, with ``u_full`` (``m × k``) all of ``U``.
    """
    with atomic_path(path) as tmp_path:
        create_factors_file(tmp_path, s, v, shape=shape, s_discarded=s_discarded,
                            tail_complete=tail_complete, u_full=u_full)


def _factors_group(f: h5py.File, path: str) -> h5py.Group:
    """The ``/factors`` group, or a ``UserError`` naming what a factor file lacks."""
    group = f.get(_GROUP)
    if not isinstance(group, h5py.Group):
        raise UserError(f"{path} is not a factor file: it has no /{_GROUP} group")
    missing = [name for name in ("U", "S", "V") if name not in group]
    missing += [f"attribute {a}" for a in ("shape", "rank") if a not in group.attrs]
    if missing:
        raise UserError(f"{path} is not a complete factor file: /{_GROUP} lacks {', '.join(missing)}")
    return group


def read_header(path: str) -> dict:
    """Read ``shape`` (m, n) and ``rank`` k from a factor file."""
    with h5py.File(path, "r") as f:
        group = _factors_group(f, path)
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
    UserError
        If the row range is outside ``[0, m]`` or the file is not a consistent factor file.
    OSError
        If the file cannot be opened (missing, not HDF5).
    """
    with h5py.File(path, "r") as f:
        group = _factors_group(f, path)
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
