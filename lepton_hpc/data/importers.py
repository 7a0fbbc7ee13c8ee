"""Bring outside data into the HDF5 layout the trainer reads: /X (rows×cols float64), /y (rows float64).

* :func:`import_sklearn` — scikit-learn's bundled data sets (no download):
  ``diabetes`` (regression), ``breast_cancer`` (binary), ``digits``, ``iris`` and ``wine`` (multiclass).
* CSV and Parquet files: :mod:`lepton_hpc.data.table_import` (parallel, pyarrow).
* :func:`import_npy` — a pair of ``.npy`` files (X 2-D, y 1-D), read memory-mapped.

The contract every importer keeps (what the shard reader, checkpoints and evaluate read):

* ``/X`` attr ``feature_names``: one variable-length UTF-8 string per column (the header,
  scikit-learn's names, or ``x0``, ``x1``, ... where the source has none);
* ``/y`` attr ``classes`` (classification only): the original label of each integer
  code 0..K-1 stored in /y, in code order; strings as variable-length UTF-8, numbers as
  int64 (integer-valued) or float64. scikit-learn sets give their ``target_names``.

For compatibility the root also keeps ``source``, ``task`` (``regression``, ``binary`` or
``multiclass``), ``n_classes`` (0 for regression), ``target_names``, ``feature_names`` and
``classes`` (numeric root ``classes`` are float64, sklearn's are the codes). Files are
written atomically (:mod:`lepton_hpc.data.atomic`), so a failed import leaves no
file behind. Every problem is a ``ValueError`` with one sentence that names the
file and, for a bad row, its line (CSV) or row (npy).
"""

from __future__ import annotations

import os
from contextlib import ExitStack

import h5py
import numpy as np

from .atomic import atomic_path
from .classification import LIBVER  # HDF5 1.8 format: attrs over 64 KiB (many feature names)
from ..errors import UserError

TASKS = ("regression", "binary", "multiclass")
SKLEARN_SETS = ("diabetes", "breast_cancer", "digits", "iris", "wine")
MAX_INFERRED_CLASSES = 20  # integer-valued targets with at most this many values are inferred as classes
UTF8 = h5py.string_dtype("utf-8")  # variable-length UTF-8 strings


# -- writing ------------------------------------------------------------------
class _Writer:
    """Appends row blocks to resizable chunked /X and /y of a temporary file; renames it to ``out`` on success
    (:func:`lepton_hpc.data.atomic.atomic_path`)."""

    def __init__(self, out: str, n_cols: int, chunk_rows: int = 4096, inputs: tuple[str, ...] = (),
                 n_rows: int | None = None):
        if chunk_rows <= 0:
            raise UserError(f"--chunk-rows must be > 0, got {chunk_rows}")
        from .atomic import check_output

        check_output(out, inputs)
        self.out, self.n_rows = out, 0
        if n_rows:  # known in advance: no chunk bigger than the data
            chunk_rows = min(chunk_rows, n_rows)
        # The writer lives across calls (append ... finish), so the atomic file is held open by hand.
        self._atomic = ExitStack()
        self.tmp = self._atomic.enter_context(atomic_path(out))
        self.f = None
        try:
            self.f = h5py.File(self.tmp, "w", libver=LIBVER)
            self.X = self.f.create_dataset("X", (0, n_cols), dtype="float64", maxshape=(None, n_cols),
                                           chunks=(chunk_rows, n_cols))
            self.y = self.f.create_dataset("y", (0,), dtype="float64", maxshape=(None,), chunks=(chunk_rows,))
        except BaseException as exc:
            self.abort(exc)
            raise

    def append(self, X: np.ndarray, y: np.ndarray) -> None:
        lo, hi = self.n_rows, self.n_rows + len(y)
        self.X.resize(hi, axis=0)
        self.y.resize(hi, axis=0)
        self.X[lo:hi], self.y[lo:hi] = X, y
        self.n_rows = hi

    def finish(self, attrs: dict, feature_names: list | None = None, classes: list | None = None) -> None:
        """Write the root ``attrs`` (None and empty values skipped) and the dataset attrs of the contract:
        ``/X`` ``feature_names`` (``x0``, ``x1``, ... when None) and ``/y`` ``classes`` (when not None)."""
        n_cols = self.X.shape[1]
        names = [f"x{j}" for j in range(n_cols)] if not feature_names else _str_list(feature_names)
        if len(names) != n_cols:
            raise UserError(f"{self.out}: {len(names)} feature names for {n_cols} columns")
        self.X.attrs["feature_names"] = np.asarray(names, dtype=UTF8)
        if classes is not None:
            self.y.attrs["classes"] = classes_attr(classes)
        for key, value in attrs.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple, np.ndarray)) and len(value) == 0:
                continue
            self.f.attrs[key] = value
        self.f.close()
        self._atomic.close()  # fsync, rename over ``out``, fsync the folder

    def abort(self, exc: BaseException) -> None:
        """Drop the temporary file (``exc``: the failure that stops the writer)."""
        try:
            if self.f is not None:
                self.f.close()
        finally:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort(exc if exc is not None else exc_type())
        return False


def _str_list(values) -> list[str]:
    return [str(v) for v in values]


def _check_task(task: str | None) -> None:
    if task is not None and task not in TASKS:
        raise UserError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")


def _class_task(n_classes: int, task: str | None, where: str) -> str:
    """``binary``/``multiclass`` for ``n_classes`` labels, checking an explicit ``task``."""
    if n_classes < 2:
        hint = "" if task else " (give --task regression for a numeric target)"
        raise UserError(f"{where} has a single class; a classification target needs at least 2{hint}")
    if task == "binary" and n_classes != 2:
        raise UserError(f"{where} has {n_classes} classes, but --task binary needs exactly 2")
    return task or ("binary" if n_classes == 2 else "multiclass")


def _numeric(labels) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
               for v in labels)


def classes_attr(labels) -> np.ndarray:
    """The ``/y`` attr ``classes``: int64 if every label is an integer-valued number, float64 if
    numeric, else variable-length UTF-8 strings."""
    labels = list(labels)
    if _numeric(labels):
        values = np.asarray(labels, dtype=np.float64)
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)):
            return values.astype(np.int64)
        return values
    return np.asarray(_str_list(labels), dtype=UTF8)


def _label_attr(labels: list) -> np.ndarray:
    """Original class labels as a root attr (kept for compatibility): float64 if all numeric, else strings."""
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in labels):
        return np.asarray(labels, dtype=np.float64)
    return np.asarray(_str_list(labels), dtype=h5py.string_dtype())


# -- scikit-learn -------------------------------------------------------------
def import_sklearn(name: str, out: str, chunk_rows: int = 4096) -> dict:
    """Write scikit-learn's bundled data set ``name`` (one of :data:`SKLEARN_SETS`) to ``out``.

    Returns the attrs written.
    """
    name = name[len("sklearn:"):] if name.startswith("sklearn:") else name
    if name not in SKLEARN_SETS:
        raise UserError(f"unknown scikit-learn data set {name!r}; choose one of "
                         f"{', '.join('sklearn:' + s for s in SKLEARN_SETS)}")
    try:
        from sklearn import datasets
    except ImportError:
        raise UserError("importing sklearn: data sets needs scikit-learn; "
                         "install it with pip install 'lepton_hpc[datasets]'") from None
    bunch = getattr(datasets, f"load_{name}")()
    X = np.asarray(bunch.data, dtype=np.float64)
    y_raw = np.asarray(bunch.target)
    feature_names = getattr(bunch, "feature_names", None)
    feature_names = [] if feature_names is None else feature_names
    if name == "diabetes":
        task, y, n_classes = "regression", y_raw.astype(np.float64), 0
        target_names = ["disease_progression"]
        classes = class_names = None
    else:
        classes, codes = np.unique(y_raw, return_inverse=True)
        y, n_classes = codes.astype(np.float64), len(classes)
        task = "binary" if n_classes == 2 else "multiclass"
        target_names = _str_list(bunch.target_names)
        class_names = [bunch.target_names[int(c)] for c in classes]  # the name of each code 0..K-1
    attrs = {"source": f"sklearn:{name}", "task": task, "n_classes": n_classes,
             "feature_names": _str_list(feature_names),
             "target_names": target_names, "classes": None if classes is None else _label_attr(list(classes))}
    with _Writer(out, X.shape[1], chunk_rows, n_rows=len(y)) as w:
        for lo in range(0, len(y), chunk_rows):
            w.append(X[lo:lo + chunk_rows], y[lo:lo + chunk_rows])
        w.finish(attrs, attrs["feature_names"], class_names)
    return attrs


def _label_text(labels: list) -> list[str]:
    return [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in labels]


# -- npy ----------------------------------------------------------------------
def _load_npy(path: str, what: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise UserError(f"{what} file {path} does not exist")
    from .sniff import wrong_input

    wrong = wrong_input(path, "npy")
    if wrong is not None:
        raise UserError(wrong)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise UserError(f"{path} holds Python objects, not numbers; save a numeric array") from None
        raise UserError(f"{path} is not a readable .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise UserError(f"{path} is not a readable .npy file ({exc})") from None


def import_npy(x_path: str, y_path: str, out: str, task: str | None = None, chunk_rows: int = 4096) -> dict:
    """Write ``X.npy`` (rows×cols numbers) and ``y.npy`` (rows) to ``out``.

    X must be 2-D and numeric; y 1-D (a rows×1 column is accepted), numeric or strings
    (string labels are classes). Every value must be finite; the first bad row is named.
    ``task`` as in :func:`lepton_hpc.data.table_import.import_table`. Returns the attrs written.
    """
    _check_task(task)
    X = _load_npy(x_path, "X")
    y = _load_npy(y_path, "y")
    if X.ndim != 2:
        raise UserError(f"{x_path} must hold a 2-D array (rows x cols), has shape {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise UserError(f"{y_path} must hold a 1-D array (rows,), has shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise UserError(f"{x_path} has {X.shape[0]} rows but {y_path} has {y.shape[0]}; they must match")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise UserError(f"{x_path} is empty (shape {X.shape})")
    if X.dtype.kind not in "fiub":
        raise UserError(f"{x_path} has non-numeric dtype {X.dtype}; X must hold numbers")
    if y.dtype.kind not in "fiubUS":
        raise UserError(f"{y_path} has dtype {y.dtype}; y must hold numbers or string labels")
    n = X.shape[0]
    numeric_y = y.dtype.kind in "fiub"
    if numeric_y:
        yf = np.asarray(y, dtype=np.float64)
        bad = ~np.isfinite(yf)
        if bad.any():
            r = int(np.argmax(bad))
            raise UserError(f"{y_path} row {r} is not finite ({yf[r]})")
        if task == "regression":
            classes = None
        else:
            labels, codes = np.unique(yf, return_inverse=True)
            integer = bool(np.all(labels == np.round(labels)))
            if task is None and (not integer or len(labels) > MAX_INFERRED_CLASSES):
                classes = None
            else:
                classes, yf = [float(v) for v in labels], codes.astype(np.float64).ravel()
    else:
        if task == "regression":
            raise UserError(f"{y_path} holds strings ({y.dtype}), but --task is regression")
        labels, codes = np.unique(np.asarray(y), return_inverse=True)
        if np.dtype(labels.dtype).kind == "S":
            labels = np.char.decode(labels, "utf-8", "replace")
        classes, yf = [str(v) for v in labels], codes.astype(np.float64).ravel()
    if classes is not None:
        task = _class_task(len(classes), task, y_path)
    else:
        task = "regression"
    with _Writer(out, X.shape[1], chunk_rows, inputs=(x_path, y_path), n_rows=n) as w:
        for lo in range(0, n, chunk_rows):
            block = np.asarray(X[lo:lo + chunk_rows], dtype=np.float64)
            ok = np.isfinite(block).all(axis=1)
            if not ok.all():
                r = int(np.argmin(ok))
                col = int(np.argmin(np.isfinite(block[r])))
                raise UserError(f"{x_path} row {lo + r} has a non-finite value "
                                 f"({block[r, col]} in column {col})")
            w.append(block, yf[lo:lo + chunk_rows])
        attrs = {"source": f"npy:{x_path},{y_path}", "task": task,
                 "n_classes": 0 if classes is None else len(classes),
                 "target_names": ["target"] if classes is None else _label_text(classes),
                 "classes": None if classes is None else _label_attr(classes)}
        w.finish(attrs, None, classes)
    return attrs


# -- dispatch -----------------------------------------------------------------
def run_import(source: str, paths: list[str], out: str, target=None, task: str | None = None,
               delimiter: str = ",", chunk_rows: int = 4096) -> dict:
    """``import`` in one process: ``sklearn:NAME``, ``csv|parquet FILE... --target COL`` or ``npy X.npy y.npy``
    (the command line runs csv/parquet/text on every rank: :mod:`lepton_hpc.data.import_cli`)."""
    if source.startswith("sklearn:"):
        if paths:
            raise UserError(f"import {source} takes no file arguments, got {' '.join(paths)}")
        if task is not None or target is not None:
            raise UserError(f"import {source} takes neither --task nor --target (the data set fixes them)")
        return import_sklearn(source, out, chunk_rows)
    if source in ("csv", "parquet"):
        from .table_import import import_csv_serial

        return import_csv_serial(source, paths, target, out, task, delimiter, chunk_rows)
    if source == "npy":
        if len(paths) != 2:
            raise UserError(f"import npy takes two files, X.npy and y.npy, got {len(paths)}")
        if target is not None:
            raise UserError("import npy takes no --target (y.npy is the target)")
        return import_npy(paths[0], paths[1], out, task, chunk_rows)
    raise UserError(f"unknown import source {source!r}; use sklearn:NAME "
                     f"({', '.join(SKLEARN_SETS)}), csv|parquet FILE... --target COLUMN, text FILE... "
                     f"--text-column C --label-column L, or npy X.npy y.npy")
