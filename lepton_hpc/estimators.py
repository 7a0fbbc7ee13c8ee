"""scikit-learn estimators on the lepton_hpc engine: :class:`LinearRegression`, :class:`LogisticRegression`.

``fit`` runs the same job as the CLI (:func:`lepton_hpc.engine.job.run_job` on a config
built from the parameters, :meth:`job_config`) on one process (``MPI.COMM_SELF``): the
data go to a temporary HDF5 file (``/X``, ``/y``, ``/w``; chunked by ``chunk_rows``) in a
temporary run directory, and the fitted weights are read back from the run's checkpoint
with :func:`lepton_hpc.load`; both are removed afterwards.

Penalties use the engine's objective (mean loss, weighted by ``sample_weight``)::

    mean_i(loss_i) + reg * (l1_ratio * |w|_1 + (1 - l1_ratio) / 2 * |w|_2^2)

``LinearRegression(alpha=a)`` sets ``model.reg = a``: the loss is ½ (y − ŷ)², so
``penalty="l1"`` is ``sklearn.linear_model.Lasso(alpha=a)``, ``"elasticnet"`` is
``ElasticNet(alpha=a, l1_ratio=...)`` and ``"l2"`` is ``Ridge(alpha=a * n)`` (n: the
number of rows, or the sum of the sample weights). ``LogisticRegression(C=c)`` sets
``model.reg = 1 / (c * n)`` (same n), which is scikit-learn's ``LogisticRegression(C=c)``
objective divided by ``c * n`` (the same optimum) for l2, l1 and elasticnet.

"auto" parameters are chosen from the data (see :meth:`_Engine._auto`): the step size
from the largest curvature of the problem, heavy-ball momentum from its condition
number, and ``standardize`` is on exactly when there is no penalty (then it changes the
conditioning, not the optimum; with a penalty the engine would penalise the
standardised weights, unlike scikit-learn).

Under ``mpirun``, ``fit(X_local, y_local, sample_weight_local, comm=comm, work_dir=None)``
is collective over ``comm``: each rank passes its own rows (rank 0's first, then rank 1's,
…; zero rows on a rank is fine), the ranks agree on the columns and labels, write one
HDF5 file in a temporary directory under ``work_dir`` (default: the current directory,
which must be on a filesystem every rank sees; ``/tmp`` is node-local on clusters) and run
the job on ``comm``; every rank gets the same fitted arrays, bitwise equal to the
one-process fit of all the rows and to the CLI's (see :mod:`lepton_hpc.estimator_data`).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
from numbers import Integral, Real

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import estimator_data as D
from .errors import UserError

#: check_estimator checks that are expected to fail, with the reason (name → {check: reason}).
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "LinearRegression": {},
    "LogisticRegression": {},
}

STEPPED_SOLVERS = ("gd", "gram", "svd_gd")  # the solvers that step with optimizer.*
MAX_MOMENTUM = 0.999  # heavy ball's β at most this (see heavy_ball)
_CURVATURE = {"linear": 1.0, "logistic": 0.25, "softmax": 0.5}  # Hessian bound per unit of E[z zᵀ]


#: scikit-learn's parameter constraints (checked by fit: InvalidParameterError, a ValueError, naming the parameter)
_CONSTRAINTS = {
    "penalty": [StrOptions({"none", "l2", "l1", "elasticnet"})],
    "l1_ratio": [Interval(Real, 0, 1, closed="both")],
    "fit_intercept": ["boolean"],
    "solver": [StrOptions({"auto", "gd", "lbfgs", "owlqn", "newton", "gram", "svd", "svd_gd"})],
    "optimizer": [str],  # "auto", a registered name or "package.module:Class" (the engine checks it)
    "learning_rate": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
    "alpha_decay": [Interval(Real, 0, None, closed="left")],
    "max_iter": [Interval(Integral, 0, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
    "reduction": [StrOptions({"exact", "fast"})],
    "chunk_rows": [Interval(Integral, 1, None, closed="left")],
    "standardize": ["boolean", StrOptions({"auto"})],
    "verbose": ["verbose"],
}


def check_scale(X) -> None:
    """UserError when a column's sum of squares overflows float64 (the engine's XᵀX would be Inf)."""
    if X.size and not np.isfinite(np.einsum("ij,ij->j", X, X)).all():
        raise UserError(TOO_LARGE)


TOO_LARGE = ("the features are too large for float64: their squares overflow (|x| above ~1e154); "
             "scale them (e.g. StandardScaler)")


def _has_l1(penalty: str, reg: float, l1_ratio: float) -> bool:
    return reg > 0 and (penalty == "l1" or (penalty == "elasticnet" and l1_ratio > 0))


def chunk_moments(X, sw, chunk_rows: int, n_chunks: int | None = None) -> np.ndarray:
    """Per logical chunk of ``chunk_rows`` rows: [Σw, Σw·x, Σw·x², Σw·x xᵀ] (one row per chunk).

    ``X``/``sw`` hold whole chunks from a chunk boundary on (an array or an h5py dataset).
    Summed over chunks along :func:`lepton_hpc.reduce.pairwise_sum`'s tree, these give the
    same bits on one process and, through the exact chunk reduction, on any rank count.
    """
    n, d = X.shape
    count = -(-n // chunk_rows) if n_chunks is None else n_chunks
    out = np.zeros((count, 1 + 2 * d + d * d))
    for c in range(count):
        lo, hi = c * chunk_rows, min((c + 1) * chunk_rows, n)
        Xc = np.asarray(X[lo:hi], dtype=np.float64)
        wc = np.ones(hi - lo) if sw is None else np.asarray(sw[lo:hi], dtype=np.float64)
        out[c, 0] = wc.sum()
        out[c, 1:1 + d] = wc @ Xc
        out[c, 1 + d:1 + 2 * d] = wc @ (Xc * Xc)
        out[c, 1 + 2 * d:] = ((Xc * wc[:, None]).T @ Xc).ravel()
    return out


def curvature_from_sums(sums: np.ndarray, d: int, fit_intercept: bool, standardize: bool, kind: str, l2: float):
    """(smallest, largest) eigenvalue bound of the Hessian of the job's objective, from the moments."""
    total = sums[0]
    if not np.isfinite(sums).all():
        raise UserError(TOO_LARGE)
    s1, s2, G = sums[1:1 + d], sums[1 + d:1 + 2 * d], sums[1 + 2 * d:].reshape(d, d)
    mean = s1 / total if standardize else np.zeros(d)
    std = np.ones(d)
    if standardize:
        std = np.sqrt(np.maximum(s2 / total - mean * mean, 0.0))
        std[std <= 1e-12 * np.maximum(np.abs(mean), 1.0)] = 1.0
    ZZ = (G / total - np.outer(mean, mean)) / np.outer(std, std)
    if fit_intercept:
        z1 = (s1 / total - mean) / std
        ZZ = np.block([[ZZ, z1[:, None]], [z1[None, :], np.ones((1, 1))]])
    M = _CURVATURE[kind] * ZZ
    M[np.arange(d), np.arange(d)] += l2
    eig = np.linalg.eigvalsh(M)
    lam_max = max(float(eig[-1]), 1e-12)
    # the smallest curvature the iterates see: null directions of M (collinear or constant columns)
    # get no gradient from a zero start, so they do not slow the tuning down
    seen = eig[eig > lam_max * 1e-8]
    lam_min = max(float(seen[0]) if len(seen) else 0.0, l2, lam_max * 1e-8)
    return lam_min, lam_max


def heavy_ball(lam_min: float, lam_max: float) -> tuple[float, float]:
    """(learning rate, momentum) of heavy ball for curvatures in [lam_min, lam_max], always stable.

    Tuned (Polyak): lr = 4/(√L+√μ)², β = ((√L-√μ)/(√L+√μ))², inside the stability bound
    lr·L < 2(1+β). Past :data:`MAX_MOMENTUM` (nearly singular data: μ ≈ 0) β is clipped and
    lr = (1+β)/L, half the bound (the top curvature then contracts by √β per step, as tuned);
    keeping lr = 4/L with a clipped β would diverge.
    """
    root_max, root_min = np.sqrt(lam_max), np.sqrt(lam_min)
    beta = float(((root_max - root_min) / (root_max + root_min)) ** 2)
    if beta > MAX_MOMENTUM:
        return float((1.0 + MAX_MOMENTUM) / lam_max), MAX_MOMENTUM
    return float(4.0 / (root_max + root_min) ** 2), beta


def all_moments(X, sw, chunk_rows: int) -> np.ndarray:
    """:func:`chunk_moments` of every chunk, summed along the fixed tree (one process)."""
    from .reduce import pairwise_sum

    return pairwise_sum(chunk_moments(X, sw, chunk_rows)) if X.shape[0] else np.zeros(1 + 2 * X.shape[1] + X.shape[1] ** 2)


class _Engine(BaseEstimator):
    """What both estimators share: the job config, the temporary run, the fitted arrays."""

    _kind_default = "linear"

    # -- the job -----------------------------------------------------------------------
    def _reg(self, n_weight: float) -> float:
        raise NotImplementedError

    def _standardize(self, reg: float) -> bool:
        if self.standardize == "auto":
            return reg == 0 or self.penalty == "none"
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise UserError(f"standardize must be True, False or 'auto', got {self.standardize!r}")
        return bool(self.standardize)

    def _auto(self, X, sw, kind: str, reg: float, standardize: bool, k: int, sums=None) -> dict:
        """The optimizer section: the given knobs, "auto" ones chosen from the Hessian's eigenvalues."""
        l1 = _has_l1(self.penalty, reg, self.l1_ratio)
        name = self.optimizer
        if name == "auto":
            name = "constant" if l1 else "momentum"
        opt = {"name": name, "alpha": float(self.alpha_decay)}
        if self.learning_rate != "auto":
            opt["learning_rate"] = float(self.learning_rate)
            return opt
        if not self._tunes_step(kind, X.shape[1]):  # lbfgs/owlqn/newton/svd choose their own steps
            return opt
        l2 = 0.0 if self.penalty == "none" else reg * {"l2": 1.0, "l1": 0.0}.get(self.penalty, 1 - self.l1_ratio)
        if sums is None:
            sums = all_moments(X, sw, int(self.chunk_rows))
        lam_min, lam_max = curvature_from_sums(sums, X.shape[1], self.fit_intercept, standardize, kind, l2)
        if name == "momentum":
            opt["learning_rate"], opt["momentum"] = heavy_ball(lam_min, lam_max)
        elif name == "adam":
            opt["learning_rate"] = 0.01
        else:
            opt["learning_rate"] = float(1.0 / lam_max)
        return opt

    def _solver(self, kind: str, d: int) -> str:
        """train.solver; "auto": gd for the classifiers; for least squares gram (lbfgs when XᵀX is
        too big to form): from a zero start on rank-deficient X both converge to the minimum-norm
        solution (in standardised units), as scikit-learn's lstsq, where newton's damped solve need not."""
        from .problems.glm_memory import gram_fits

        if self.solver != "auto":
            return self.solver
        if kind != "linear":
            return "gd"
        return "gram" if gram_fits(d) else "lbfgs"

    def _tunes_step(self, kind: str, d: int) -> bool:
        """Whether the job steps with optimizer.* and its step size is chosen here from the curvature."""
        return self.learning_rate == "auto" and self._solver(kind, d) in STEPPED_SOLVERS

    def job_config(self, X, y, sample_weight=None, kind: str | None = None, n_classes: int = 0, sums=None):
        """The :class:`~lepton_hpc.config.JobConfig` that :meth:`fit` runs for these (validated) data.

        ``y`` holds the engine's targets (class codes 0..K-1 for a classifier). ``sums``: the
        data's moments (:func:`all_moments`) when already reduced over the ranks; only
        ``X.shape`` is read then.
        """
        from .config import build

        kind = kind or self._kind_default
        n_weight = float(X.shape[0] if sample_weight is None else np.sum(sample_weight))
        reg = self._reg(n_weight)
        standardize = self._standardize(reg)
        solver = self._solver(kind, X.shape[1])
        raw = {
            "data": {"path": "data.h5", "chunk_rows": int(self.chunk_rows),
                     "w_dataset": "" if sample_weight is None else "w"},
            "model": {"kind": kind, "fit_intercept": bool(self.fit_intercept), "penalty": self.penalty,
                      "reg": reg, "l1_ratio": float(self.l1_ratio), "standardize": standardize,
                      "classes": int(n_classes) if kind == "softmax" else 0},
            "optimizer": self._auto(X, sample_weight, kind, reg, standardize, n_classes, sums),
            "train": {"steps": int(self.max_iter), "solver": solver, "tol": float(self.tol),
                      "log_every": max(int(self.max_iter), 1), "threads": 1},
            "checkpoint": {"every": 0, "keep": 1},
            "comm": {"reduction": self.reduction},
        }
        return build(raw, type(self).__name__)

    def _run(self, cfg, X, y, sample_weight):
        """Write the data, run the job on MPI.COMM_SELF in a temporary directory, load the model."""
        from . import comm as C
        from .api import load

        with tempfile.TemporaryDirectory(prefix="lepton_fit_") as tmp:
            path = Path(tmp) / "data.h5"
            write_h5(path, X, y, sample_weight, cfg.data.chunk_rows)
            cfg = _with_path(cfg, str(path))
            out = Path(tmp) / "run"
            self._execute(cfg, C.self_comm(), out)
            return self._finite(load(out))

    def _execute(self, cfg, comm, out) -> None:
        """run_job on ``comm`` (collective): a UserError if it stops early, a warning if it did not converge."""
        from . import comm as C
        from .engine.job import run_job

        sink = contextlib.nullcontext() if self.verbose else contextlib.redirect_stdout(io.StringIO())
        with sink:
            code, summary = run_job(cfg, comm, out)
        reason, grew = C.bcast(comm, summary and (summary.get("stop_reason"), summary.get("loss_first_last")
                                                  if summary.get("diverged") else None))
        if code != 0:
            raise UserError(f"the fit stopped early (exit code {code}, {reason})")
        if grew:
            raise UserError(f"{type(self).__name__} diverged: the loss grew from {grew[0]:.4g} to {grew[1]:.4g} "
                            f"(solver={cfg.train.solver}, learning_rate={cfg.optimizer.learning_rate}); lower "
                            f"learning_rate or use solver='auto', 'lbfgs' or 'newton'")
        if reason == "steps" and cfg.train.steps > 0:
            warnings.warn(f"{type(self).__name__} did not converge in max_iter={cfg.train.steps} steps "
                          f"(train.tol={cfg.train.tol:g}); raise max_iter or scale the features "
                          f"(StandardScaler)", ConvergenceWarning, stacklevel=4)

    @staticmethod
    def _finite(model):
        """The loaded model, unless its weights are not finite (a diverged fit is never returned)."""
        if not (np.isfinite(model.coef_).all() and np.isfinite(model.intercept_).all()):
            raise UserError("the fit diverged: its weights are not finite; scale the features (StandardScaler), "
                            "lower learning_rate or use solver='auto', 'lbfgs' or 'newton'")
        return model

    def _fit_arrays(self, X, y, sample_weight):
        check_scale(X)
        sw = None if sample_weight is None else _check_sample_weight(sample_weight, X, dtype=np.float64)
        return X, sw

    def _decision(self, X):
        check_is_fitted(self, "coef_")
        from .fitted import finite_rows  # as lepton_hpc.load's models: UserError naming the first bad row

        X = finite_rows(validate_data(self, X, dtype=np.float64, reset=False, ensure_all_finite=False))
        return X @ self.coef_.T + self.intercept_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _with_path(cfg, path: str):
    import dataclasses

    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=path))


def write_h5(path, X, y, sample_weight=None, chunk_rows: int = 4096) -> None:
    """The layout ``data.path`` expects: ``/X`` (n × d), ``/y`` (n), ``/w`` (n, when weights are given)."""
    n = X.shape[0]
    rows = max(1, min(int(chunk_rows), n))
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X, chunks=(rows, max(1, X.shape[1])))
        f.create_dataset("y", data=np.asarray(y, dtype=np.float64), chunks=(rows,))
        if sample_weight is not None:
            f.create_dataset("w", data=np.asarray(sample_weight, dtype=np.float64), chunks=(rows,))


class LinearRegression(RegressorMixin, _Engine):
    """Least squares (optionally l2/l1/elasticnet penalised) fitted by the lepton_hpc engine.

    Parameters (job keys in brackets): ``penalty`` [model.penalty], ``alpha`` [model.reg],
    ``l1_ratio`` [model.l1_ratio], ``fit_intercept`` [model.fit_intercept], ``solver``
    [train.solver; "auto": gram, lbfgs when XᵀX is too big], ``optimizer`` [optimizer.name; "auto": momentum, constant
    with an L1 part], ``learning_rate`` [optimizer.learning_rate; "auto": from the curvature],
    ``alpha_decay`` [optimizer.alpha], ``max_iter`` [train.steps], ``tol`` [train.tol],
    ``reduction`` [comm.reduction], ``chunk_rows`` [data.chunk_rows], ``standardize``
    [model.standardize; "auto": on without a penalty], ``verbose`` (print the run's log).
    """

    _kind_default = "linear"
    _parameter_constraints = {**_CONSTRAINTS, "alpha": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, *, penalty="none", alpha=1.0, l1_ratio=0.5, fit_intercept=True, solver="auto",
                 optimizer="auto", learning_rate="auto", alpha_decay=0.0, max_iter=5000, tol=1e-10,
                 reduction="exact", chunk_rows=4096, standardize="auto", verbose=False):
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.alpha_decay = alpha_decay
        self.max_iter = max_iter
        self.tol = tol
        self.reduction = reduction
        self.chunk_rows = chunk_rows
        self.standardize = standardize
        self.verbose = verbose

    def _reg(self, n_weight: float) -> float:
        return 0.0 if self.penalty == "none" else float(self.alpha)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, comm=None, work_dir=None):
        """Fit on these rows (``comm=None``), or on every rank's rows of ``comm`` (see :mod:`.estimator_data`)."""
        if comm is None:
            X, y = validate_data(self, X, y, dtype=np.float64, order="C", y_numeric=True, reset=True)
            X, sw = self._fit_arrays(X, y, sample_weight)
            model = self._run(self.job_config(X, y, sw), X, y, sw)
        else:
            X, y, sw = D.validate_local(self, comm, X, y, sample_weight, classifier=False)
            layout = D.agree_shape(comm, X, sw)
            model = D.fit_distributed(self, comm, X, y, sw, *layout, work_dir=work_dir)
        self.coef_ = np.asarray(model.coef_, dtype=np.float64)
        self.intercept_ = np.float64(model.intercept_)
        self.n_iter_ = int(model.n_iter_)
        return self

    def predict(self, X):
        return self._decision(X)


class LogisticRegression(ClassifierMixin, _Engine):
    """Logistic regression fitted by the lepton_hpc engine: binary (``model.kind = "logistic"``)
    for two classes, multinomial (``"softmax"``) for more, taken from the labels.

    ``C`` is scikit-learn's inverse strength: ``model.reg = 1 / (C * n)`` (n: rows, or the
    sum of the sample weights). The other parameters are :class:`LinearRegression`'s
    (``solver`` "auto": gd).
    """

    _parameter_constraints = {**_CONSTRAINTS, "C": [Interval(Real, 0, None, closed="neither")]}

    def __init__(self, *, penalty="l2", C=1.0, l1_ratio=0.5, fit_intercept=True, solver="auto",
                 optimizer="auto", learning_rate="auto", alpha_decay=0.0, max_iter=2000, tol=1e-10,
                 reduction="exact", chunk_rows=4096, standardize="auto", verbose=False):
        self.penalty = penalty
        self.C = C
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.alpha_decay = alpha_decay
        self.max_iter = max_iter
        self.tol = tol
        self.reduction = reduction
        self.chunk_rows = chunk_rows
        self.standardize = standardize
        self.verbose = verbose

    def _reg(self, n_weight: float) -> float:
        if self.penalty == "none":
            return 0.0
        if not (isinstance(self.C, (int, float, np.number)) and self.C > 0):
            raise UserError(f"C must be a positive number, got {self.C!r}")
        return 1.0 / (float(self.C) * n_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, comm=None, work_dir=None):
        """Fit on these rows (``comm=None``), or on every rank's rows of ``comm`` (see :mod:`.estimator_data`)."""
        if comm is None:
            X, y = validate_data(self, X, y, dtype=np.float64, order="C", reset=True)
            check_classification_targets(y)
            self.classes_, codes = np.unique(y, return_inverse=True)
            codes = codes.astype(np.float64)
        else:
            X, y, sw = D.validate_local(self, comm, X, y, sample_weight, classifier=True)
            layout = D.agree_shape(comm, X, sw)
            self.classes_, codes = D.agree_classes(comm, y)
        k = len(self.classes_)
        if k < 2:
            raise UserError(f"LogisticRegression needs samples of at least 2 classes in the data, but the "
                            f"data contain only one class: {self.classes_[0]!r}")
        kind = "logistic" if k == 2 else "softmax"
        if comm is None:
            X, sw = self._fit_arrays(X, y, sample_weight)
            model = self._run(self.job_config(X, codes, sw, kind, k), X, codes, sw)
        else:
            model = D.fit_distributed(self, comm, X, codes, sw, *layout, kind, k, work_dir=work_dir)
        self.coef_ = np.asarray(model.coef_, dtype=np.float64)
        self.intercept_ = np.asarray(model.intercept_, dtype=np.float64)
        self.n_iter_ = np.array([model.n_iter_], dtype=np.int32)
        return self

    def decision_function(self, X):
        z = self._decision(X)
        return z.ravel() if z.shape[1] == 1 else z

    def predict_proba(self, X):
        z = self.decision_function(X)
        if z.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-z))
            return np.vstack([1 - p, p]).T
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """log predict_proba, finite for confident rows: a log-sigmoid / log-softmax of the decision."""
        from scipy.special import log_expit, log_softmax

        z = self.decision_function(X)
        if z.ndim == 1:
            return np.vstack([log_expit(-z), log_expit(z)]).T
        return log_softmax(z, axis=1)

    def predict(self, X):
        z = self.decision_function(X)
        idx = (z > 0).astype(np.intp) if z.ndim == 1 else z.argmax(axis=1)
        return self.classes_[idx]
