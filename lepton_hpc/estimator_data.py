"""Distributed ``fit`` for :mod:`lepton_hpc.estimators`: every rank passes its own rows.

``est.fit(X_local, y_local, sample_weight_local, comm=comm, work_dir=None)`` is collective
over ``comm``. The global row order is rank 0's rows, then rank 1's, and so on; a rank
may pass no rows (an ``(0, d)`` array). The steps, each collective:

1. every rank validates its rows (scikit-learn's ``validate_data``, zero rows allowed);
   the ranks agree on the column count, the total row count and whether there are
   sample weights, and (classifiers) on the label set: the union of every rank's labels,
   sorted as ``np.unique`` sorts them, so ``classes_`` is the same everywhere;
2. rank 0 makes a temporary directory under ``work_dir`` (default: the current
   directory, because ``/tmp`` is node-local on clusters: ``work_dir`` must be on a
   filesystem that every rank sees) and broadcasts its path;
3. one HDF5 data file (``/X``, ``/y``: the targets or class codes, ``/w`` with weights)
   is written there by every rank in turn at its global row offset
   (:func:`lepton_hpc.data.ordered_write.write_in_rank_order`; rank 0 creates the datasets);
4. with ``learning_rate="auto"``, every rank reads its own chunks of the file (the engine's
   layout) and forms their moments, which one exact chunk reduction sums in the same tree
   as the one-process fit; rank 0 then builds the job config (:meth:`job_config`, reading
   only ``/y``, ``/w`` and the shape of ``/X``) and broadcasts it;
5. :func:`lepton_hpc.engine.job.run_job` runs on ``comm`` (the engine's data layout gives
   each rank its chunks of the file), every rank loads the fitted model from the committed
   checkpoint, and after a barrier rank 0 removes the temporary directory.

Errors a user can fix (different column counts, one class overall, no rows at all, bad
input on one rank) are one agreed :class:`~lepton_hpc.comm.JobError` (a ``UserError``) on
every rank. The weights are the same bits on every rank, at every rank count, and equal
to the one-process fit (``comm=None``) and to ``python -m lepton_hpc.train`` on the same
data file and config.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np

from . import comm as C
from .data.ordered_write import write_in_rank_order
from .errors import UserError

__all__ = ["validate_local", "agree_shape", "agree_classes", "fit_distributed"]


def validate_local(est, comm, X, y, sample_weight, classifier: bool):
    """This rank's rows validated as the one-process fit validates them (zero rows allowed); agreed."""
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import _check_sample_weight, validate_data

    from .estimators import check_scale

    def local():
        try:
            Xv, yv = validate_data(est, X, y, dtype=np.float64, order="C", y_numeric=not classifier,
                                   reset=True, ensure_min_samples=0)
            if classifier and len(yv):
                check_classification_targets(yv)
            check_scale(Xv)
            sw = None
            if sample_weight is not None:
                sw = (_check_sample_weight(sample_weight, Xv, dtype=np.float64) if len(yv)
                      else np.asarray(sample_weight, dtype=np.float64).reshape(0))
        except (ValueError, TypeError) as exc:
            raise UserError(f"rank {comm.rank}: {C.sentence(exc)}") from exc
        return Xv, yv, sw

    return C.agree(comm, local)


def agree_shape(comm, X, sw) -> tuple[int, int, bool]:
    """(this rank's global row offset, the total row count, weighted?); the same UserError everywhere."""
    rows = C.allgather(comm, (int(X.shape[0]), int(X.shape[1]), sw is not None))
    cols = [d for _, d, _ in rows]
    if len(set(cols)) > 1:
        raise UserError(f"the ranks pass different column counts (rank: columns): "
                        f"{', '.join(f'{r}: {d}' for r, d in enumerate(cols))}")
    total = sum(n for n, _, _ in rows)
    if total == 0:
        raise UserError("fit(comm=...) got no rows on any rank")
    weighted = any(w for _, _, w in rows)
    missing = [r for r, (n, _, w) in enumerate(rows) if weighted and n > 0 and not w]
    if missing:
        raise UserError(f"sample_weight is given on some ranks but not on rank(s) "
                        f"{', '.join(map(str, missing))}, which have rows; pass it on every rank or on none")
    return sum(n for n, _, _ in rows[:comm.rank]), total, weighted


def agree_classes(comm, y) -> tuple[np.ndarray, np.ndarray]:
    """(classes_, this rank's codes): the sorted union of every rank's labels (np.unique semantics)."""
    from sklearn.utils.multiclass import check_classification_targets

    parts = [u for u in C.allgather(comm, np.unique(y)) if len(u)]
    if len({"number" if p.dtype.kind in "biuf" else p.dtype.kind for p in parts}) > 1:
        # numbers on one rank, text on another: the labels the one-process fit refuses (as an object
        # array), not a silent cast of the numbers to text; every rank has the same parts, so the same error
        try:
            check_classification_targets(np.concatenate([p.astype(object) for p in parts]))
        except ValueError as exc:
            raise UserError(f"the ranks' labels mix numbers and text ({C.sentence(exc)})") from exc
    classes = np.unique(np.concatenate(parts))
    return classes, np.searchsorted(classes, y).astype(np.float64)


def _make_dir(work_dir) -> str:
    base = os.path.abspath(os.getcwd() if work_dir is None else os.fspath(work_dir))
    return tempfile.mkdtemp(prefix="lepton_fit_", dir=base)


def _write(comm, path: Path, X, y, sw, offset: int, total: int, weighted: bool, chunk_rows: int) -> None:
    """The file :func:`lepton_hpc.estimators.write_h5` writes for all rows, written in rank order."""
    n, d = X.shape
    rows = max(1, min(int(chunk_rows), total))

    def create(tmp):
        with h5py.File(tmp, "w") as f:
            f.create_dataset("X", shape=(total, d), dtype=np.float64, chunks=(rows, max(1, d)))
            f.create_dataset("y", shape=(total,), dtype=np.float64, chunks=(rows,))
            if weighted:
                f.create_dataset("w", shape=(total,), dtype=np.float64, chunks=(rows,))

    def write_own(tmp):
        with h5py.File(tmp, "r+") as f:
            f["X"][offset:offset + n] = X
            f["y"][offset:offset + n] = np.asarray(y, dtype=np.float64)
            if weighted:
                f["w"][offset:offset + n] = sw

    write_in_rank_order(comm, path, create, write_own if n else None, f"writing the fit's data {path}")


def _moments(comm, est, path: Path):
    """The data's moments for the automatic step size, each rank over its own chunks. Collective."""
    from .estimators import chunk_moments
    from .layout import Layout
    from .reduce import ChunkReducer

    def local():
        with h5py.File(path, "r") as f:
            X, w = f["X"], (f["w"] if "w" in f else None)
            layout = Layout(X.shape[0], int(est.chunk_rows), comm.size, comm.rank)
            lo, hi = layout.rows()
            part = chunk_moments(X[lo:hi], None if w is None else w[lo:hi], layout.chunk_rows,
                                 n_chunks=len(layout.chunks()))
            return layout, part, X.shape[1]

    layout, part, d = C.agree(comm, local)
    red = ChunkReducer(comm, layout, 1 + 2 * d + d * d, "exact")
    red.partials[:] = part
    return red.reduce().copy()


def _root_config(est, path: Path, kind, k: int, sums):
    """On rank 0: the job config from the data file's targets, weights and shape (and the moments)."""
    with h5py.File(path, "r") as f:
        y = f["y"][()]
        w = f["w"][()] if "w" in f else None
        cfg = est.job_config(f["X"], y, w, kind, k, sums=sums)  # only X.shape is read
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=str(path)))


def _remove(tmp: str) -> None:
    shutil.rmtree(tmp, ignore_errors=True)


def fit_distributed(est, comm, X, y, sw, offset: int, total: int, weighted: bool, kind=None, k: int = 0,
                    work_dir=None):
    """Write the rows to one shared file, run the job on ``comm``, load the model on every rank.

    ``y``: this rank's targets (class codes for a classifier). Returns the fitted model
    (:func:`lepton_hpc.load`), the same on every rank.
    """
    from .api import load

    tmp = C.on_root(comm, _make_dir, work_dir)
    failed = True
    try:
        path = Path(tmp) / "data.h5"
        _write(comm, path, X, y, sw, offset, total, weighted, est.chunk_rows)
        sums = _moments(comm, est, path) if est._tunes_step(kind or est._kind_default, X.shape[1]) else None
        cfg = C.on_root(comm, _root_config, est, path, kind, k, sums)
        est._execute(cfg, comm, Path(tmp) / "run")
        model = est._finite(C.agree(comm, load, Path(tmp) / "run"))  # the same model on every rank
        failed = False
        return model
    except UserError:  # agreed (JobError) or raised alike on every rank: the barrier below is safe
        failed = False
        raise
    finally:
        if not failed:
            C.barrier(comm)
            if comm.rank == 0:
                _remove(tmp)
