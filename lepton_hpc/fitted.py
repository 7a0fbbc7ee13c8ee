"""Fitted linear models read from a run: predict in one process, export to scikit-learn or ONNX.

No MPI and no training code: a model is its weights in the original feature
units (``/model/w``, ``/model/b`` of a checkpoint) plus what scikit-learn needs
to name things (classes, feature names). :func:`lepton_hpc.load` builds one;
``model.save("model.npz")`` writes a portable file that ``load`` reads back.

Predictions go through the training kernels' own decision function
(:meth:`lepton_hpc.models.glm.GLMKernel.decision`), so they are the run's numbers.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from .errors import UserError
from .models.glm import make_kernel

NPZ_FORMAT = "lepton_hpc.model"
NPZ_VERSION = 1


# -- portable files (shared with the recommender) ----------------------------------------

def npz_path(path) -> Path:
    """``path`` with ``.npz`` appended when it has another suffix or none (as ``numpy.savez`` does)."""
    if not isinstance(path, (str, os.PathLike)):
        raise UserError(f"save needs a file name (str or path), got {type(path).__name__}")
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def write_npz(path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """``arrays`` plus a JSON ``metadata`` entry, written atomically (no pickles) to
    :func:`npz_path` of ``path``, which is returned."""
    from . import __version__
    from .data.atomic import write_bytes

    path = npz_path(path)

    meta = {"format": NPZ_FORMAT, "format_version": NPZ_VERSION, "lepton_hpc_version": __version__, **meta}
    buf = io.BytesIO()
    np.savez(buf, metadata=np.array(json.dumps(meta)), **arrays)
    try:
        write_bytes(path, buf.getvalue())
    except OSError as exc:
        raise UserError(f"could not write the model to {path}: {exc.strerror or exc}") from None
    return path


def read_npz(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, arrays) of a file from :func:`write_npz`; UserError for anything else."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("metadata")))
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path} is not a model file written by model.save ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != NPZ_FORMAT:
        raise UserError(f"{path} is not a model file written by model.save (no {NPZ_FORMAT} metadata)")
    return meta, arrays


def _is_sparse(X) -> bool:
    """A scipy.sparse matrix or array (scipy imported only when X looks like one)."""
    if not type(X).__module__.startswith("scipy.sparse"):
        return False
    import scipy.sparse as sp

    return sp.issparse(X)


def as_names(names) -> np.ndarray | None:
    """Feature names as scikit-learn keeps them (object array of str), or None."""
    if names is None:
        return None
    return np.asarray([str(n) for n in names], dtype=object)


def finite_rows(X):
    """X, unless a row holds NaN or Inf (None in an object array reads as NaN): UserError naming the first."""
    from .score_inputs import first_bad_row

    row = first_bad_row(X)
    if row is not None:
        raise UserError(f"X has NaN or Inf at row {row} (the first bad row); clean or drop such rows")
    return X


def check_lengths(X, y, sample_weight=None) -> None:
    """y (and sample_weight) must have one value per row of X, as scikit-learn's estimators require."""
    n = X.shape[0]
    for name, v in (("y", y), ("sample_weight", sample_weight)):
        if v is not None and np.shape(v)[:1] != (n,):
            got = np.shape(v)[0] if np.ndim(v) else "a scalar"
            raise UserError(f"X has {n} rows but {name} has {got}; pass one value per row")


# -- linear models ------------------------------------------------------------------------

class _FittedGLM:
    """Common part of the three GLMs: weights, input checks, npz, scikit-learn and ONNX export."""

    kind = ""

    def __init__(self, w, b=None, *, classes=None, feature_names=None, n_iter: int = 0, source: str = ""):
        w = np.array(w, dtype=np.float64)
        n_out = w.shape[1] if w.ndim == 2 else 1
        self.fit_intercept = b is not None
        self._kernel = make_kernel(self.kind, w.shape[0], self.fit_intercept, 16, np.float64, n_out)
        parts = [w.ravel()] + ([np.ravel(np.asarray(b, dtype=np.float64))] if b is not None else [])
        self._theta = np.concatenate(parts)
        if self._theta.shape[0] != self._kernel.n_params:
            raise UserError(f"the model's intercept has {self._theta.shape[0] - w.size} values, expected {n_out}")
        self._W, self._b = self._kernel.split(self._theta)
        self.n_features_in_ = int(w.shape[0])
        names = as_names(feature_names)
        if names is not None:
            if len(names) != self.n_features_in_:
                raise UserError(f"the model has {self.n_features_in_} features but {len(names)} feature names")
            self.feature_names_in_ = names
        self.n_iter_ = int(n_iter)
        self.source = source
        self._set_classes(classes)

    def _set_classes(self, classes) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_features_in_={self.n_features_in_}, source={self.source!r})"

    # -- input --------------------------------------------------------------------------
    def _check_X(self, X) -> np.ndarray:
        """X as a C-ordered float64 (n, d) array (scipy.sparse input: float64 CSR, not densified);
        UserError naming what is expected."""
        names = getattr(self, "feature_names_in_", None)
        if not isinstance(X, np.ndarray) and _is_sparse(X):
            if X.ndim != 2 or X.shape[1] != self.n_features_in_:
                raise UserError(f"X must be 2-D with {self.n_features_in_} feature columns, got sparse shape {X.shape}")
            import scipy.sparse as sp

            return finite_rows(sp.csr_matrix(X, dtype=np.float64))
        columns = getattr(X, "columns", None)
        if columns is not None and not isinstance(X, np.ndarray):
            got = [str(c) for c in columns]
            if names is not None and got != list(names):
                raise UserError(f"the columns of X are {got}, but the model was trained on {list(names)} "
                                f"(same names, same order)")
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise UserError(f"X must be numeric ({exc})") from None
        d = self.n_features_in_
        if X.ndim != 2 or X.shape[1] != d:
            known = "" if names is None else f" ({', '.join(names)})"
            raise UserError(f"X must be a 2-D array of {d} feature columns{known}, got shape {X.shape}")
        return finite_rows(np.ascontiguousarray(X))

    def _decision(self, X) -> np.ndarray:
        return self._kernel.decision(self._check_X(X), self._theta)

    def outputs_of_checked(self, X) -> np.ndarray:
        """The decision (linear) or the class probabilities (n, K) of rows the caller has checked
        already (2-D, ``n_features_in_`` finite columns): ``lepton-hpc predict``'s per-chunk path,
        which finds a bad row from these outputs instead of scanning every row again."""
        if self.kind == "linear":
            return self._kernel.decision(X, self._theta)
        p = self._kernel.proba(X, self._theta)
        return np.vstack([1 - p, p]).T if p.ndim == 1 else p

    # -- attributes under scikit-learn's names ---------------------------------------------
    @property
    def coef_(self) -> np.ndarray:
        return self._W.T.copy() if self._W.ndim == 2 else self._W.reshape(1, -1).copy()

    @property
    def intercept_(self) -> np.ndarray:
        k = 1 if self._W.ndim == 1 else self._W.shape[1]
        return np.zeros(k) if not self.fit_intercept else np.atleast_1d(np.array(self._b, dtype=np.float64))

    # -- saving and export ---------------------------------------------------------------
    def _meta(self) -> dict:
        names = getattr(self, "feature_names_in_", None)
        classes = getattr(self, "classes_", None)
        return {"kind": self.kind, "fit_intercept": self.fit_intercept, "n_iter": self.n_iter_,
                "classes": None if classes is None else classes.tolist(),
                "feature_names": None if names is None else list(names), "source": self.source}

    def save(self, path) -> Path:
        """Write the model to ``path`` (npz: arrays + JSON metadata; atomic; ``.npz`` is appended when
        the name lacks it, as numpy does) and return the path written; ``lepton_hpc.load`` reads it."""
        arrays = {"w": self._W.copy()}
        if self.fit_intercept:
            arrays["b"] = np.array(self._b, dtype=np.float64)
        return write_npz(path, arrays, self._meta())

    def __eq__(self, other) -> bool:
        return (type(other) is type(self) and self._meta() == other._meta()
                and np.array_equal(self._theta, other._theta))

    __hash__ = None

    def _sklearn_common(self, est):
        est.n_features_in_ = self.n_features_in_
        if hasattr(self, "feature_names_in_"):
            est.feature_names_in_ = self.feature_names_in_.copy()
        return est

    def to_onnx(self, target_opset: int | None = None):
        """The ONNX graph of :meth:`to_sklearn` by ``skl2onnx`` (input ``X``: float64, (n, d)).

        Needs the ``onnx`` extra (``pip install 'lepton_hpc[onnx]'``). Classifiers
        output ``label`` and ``probabilities`` (a tensor, no ZipMap).
        """
        try:
            from skl2onnx import to_onnx
            from skl2onnx.common.data_types import DoubleTensorType
        except ImportError:
            raise UserError("to_onnx needs skl2onnx: pip install 'lepton_hpc[onnx]'") from None
        est = self.to_sklearn()
        options = {id(est): {"zipmap": False}} if hasattr(est, "classes_") else None
        return to_onnx(est, initial_types=[("X", DoubleTensorType([None, self.n_features_in_]))],
                       options=options, target_opset=target_opset)


def _sklearn():
    try:
        import sklearn.linear_model as lm
    except ImportError:
        raise UserError("to_sklearn needs scikit-learn: pip install 'lepton_hpc[sklearn]'") from None
    return lm


class LinearModel(_FittedGLM):
    """Least squares (``model.kind = "linear"``), like ``sklearn.linear_model.LinearRegression``."""

    kind = "linear"

    @property
    def coef_(self) -> np.ndarray:
        return self._W.copy()

    @property
    def intercept_(self) -> float:
        return float(self._b)

    def predict(self, X) -> np.ndarray:
        return self._decision(X)

    def score(self, X, y, sample_weight=None) -> float:
        """R² of the predictions, as ``sklearn.metrics.r2_score``."""
        p = self.predict(X)
        check_lengths(p, y, sample_weight)
        y = np.asarray(y, dtype=np.float64)
        w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        ss_res = float(np.sum(w * (y - p) ** 2))
        ss_tot = float(np.sum(w * (y - np.average(y, weights=w)) ** 2))
        if ss_tot == 0.0:
            return 1.0 if ss_res == 0.0 else 0.0
        return 1.0 - ss_res / ss_tot

    def to_sklearn(self):
        """A fitted ``LinearRegression`` with these coefficients (whatever the run's ``model.penalty``:
        the penalised fit is not re-run, so ``Ridge``/``Lasso`` alphas are not reconstructed)."""
        est = _sklearn().LinearRegression(fit_intercept=self.fit_intercept)
        est.coef_ = self.coef_
        est.intercept_ = np.float64(self.intercept_)  # a numpy scalar, as LinearRegression.fit leaves it
        est.rank_ = self.n_features_in_
        est.singular_ = None
        return self._sklearn_common(est)


class _Classifier(_FittedGLM):
    def _set_classes(self, classes) -> None:
        k = 2 if self._W.ndim == 1 else self._W.shape[1]
        self.classes_ = np.arange(k) if classes is None else np.asarray(classes)
        if self.classes_.ndim != 1 or len(self.classes_) != k:
            raise UserError(f"the model has {k} classes but {self.classes_.size} class labels were given")

    def decision_function(self, X) -> np.ndarray:
        return self._decision(X)

    def predict(self, X) -> np.ndarray:
        z = self._decision(X)
        idx = (z > 0).astype(np.intp) if z.ndim == 1 else z.argmax(axis=1)
        return self.classes_[idx]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy, as ``sklearn.metrics.accuracy_score``; ``y`` holds class labels (``classes_``).

        Numbers against text labels are refused (a data file's ``/y`` holds the codes
        0..K-1 of its ``classes``: ``model.classes_[y.astype(int)]`` are the labels)."""
        y = np.asarray(y)
        pred = self.predict(X)
        check_lengths(pred, y, sample_weight)
        if self.classes_.dtype.kind in "USO" and y.dtype.kind in "biuf":
            raise UserError(f"y holds numbers but the model's classes are labels ({', '.join(repr(str(c)) for c in self.classes_[:3])}"
                            f"{', ...' if len(self.classes_) > 3 else ''}); a data file's /y holds their codes: "
                            f"score with model.classes_[y.astype(int)]")
        hit = (pred == y).astype(np.float64)
        return float(np.average(hit, weights=sample_weight))

    def to_sklearn(self):
        """A fitted ``LogisticRegression`` (multinomial for softmax) with these weights."""
        est = _sklearn().LogisticRegression(fit_intercept=self.fit_intercept)
        est.coef_ = self.coef_
        est.intercept_ = self.intercept_
        est.classes_ = self.classes_.copy()
        est.n_iter_ = np.array([self.n_iter_], dtype=np.int32)
        return self._sklearn_common(est)


class LogisticModel(_Classifier):
    """Binary logistic regression (``model.kind = "logistic"``), like ``LogisticRegression``."""

    kind = "logistic"

    def predict_proba(self, X) -> np.ndarray:
        p = self._kernel.proba(self._check_X(X), self._theta)
        return np.vstack([1 - p, p]).T


class SoftmaxModel(_Classifier):
    """Multinomial logistic regression (``model.kind = "softmax"``), like ``LogisticRegression``."""

    kind = "softmax"

    def predict_proba(self, X) -> np.ndarray:
        return self._kernel.proba(self._check_X(X), self._theta)


GLM_CLASSES = {c.kind: c for c in (LinearModel, LogisticModel, SoftmaxModel)}


def glm_from_npz(meta: dict, arrays: dict, path) -> _FittedGLM:
    cls = GLM_CLASSES[meta["kind"]]
    if "w" not in arrays or (meta.get("fit_intercept") and "b" not in arrays):
        raise UserError(f"{path} lacks the model's weights (w, b); write it again with model.save")
    return cls(arrays["w"], arrays.get("b") if meta.get("fit_intercept") else None, classes=meta.get("classes"),
               feature_names=meta.get("feature_names"), n_iter=meta.get("n_iter", 0),
               source=meta.get("source", ""))
