"""lepton_hpc.estimators: scikit-learn's estimator checks, the CLI's bits, scikit-learn's accuracy."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import sklearn.linear_model as sk  # noqa: E402

from lepton_hpc.errors import UserError  # noqa: E402
from lepton_hpc.estimators import EXPECTED_FAILED_CHECKS, LinearRegression, LogisticRegression, write_h5  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "data"


def _data(name):
    with h5py.File(DATA / f"{name}.h5") as f:
        return f["X"][()], f["y"][()]


def _split(name, scale=True, stratify=True):
    X, y = _data(name)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y if stratify else None)
    if scale:
        sc = StandardScaler().fit(Xtr)
        Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
    return Xtr, Xte, ytr, yte


# -- scikit-learn's own checks ------------------------------------------------------------------

@parametrize_with_checks([LinearRegression(max_iter=300), LogisticRegression(max_iter=300)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS[type(est).__name__])
def test_sklearn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on the checks' tiny data sets
        check(estimator)


def test_expected_failures_are_few_and_explained():
    for name in ("LinearRegression", "LogisticRegression"):
        assert len(EXPECTED_FAILED_CHECKS[name]) <= 3
        assert all(isinstance(r, str) and r for r in EXPECTED_FAILED_CHECKS[name].values())


# -- the same engine as the CLI: same bits -------------------------------------------------------

def _run_job_coef(tmp_path, est, X, y_codes, sw=None, kind=None, k=0):
    """Fit through a TOML job file and run_job, as `python -m lepton_hpc.train` does."""
    from mpi4py import MPI

    import lepton_hpc
    from lepton_hpc import config
    from lepton_hpc.engine.job import run_job

    cfg = est.job_config(X, y_codes, sw, kind, k)
    write_h5(tmp_path / "data.h5", X, y_codes, sw, cfg.data.chunk_rows)
    job = tmp_path / "job.toml"
    job.write_text(cfg.to_toml().replace('path = "data.h5"', f'path = "{tmp_path / "data.h5"}"'))
    code, _ = run_job(config.load(str(job)), MPI.COMM_SELF, str(tmp_path / "run"))
    assert code == 0
    return lepton_hpc.load(tmp_path / "run")


def test_linear_same_bits_as_run_job(tmp_path, capsys):
    Xtr, _, ytr, _ = _split("diabetes", scale=False, stratify=False)
    sw = np.linspace(0.5, 2.0, len(ytr))
    est = LinearRegression(penalty="l2", alpha=0.01, chunk_rows=64).fit(Xtr, ytr, sample_weight=sw)
    model = _run_job_coef(tmp_path, est, Xtr, ytr, sw)
    assert np.array_equal(est.coef_, model.coef_) and est.intercept_ == model.intercept_
    assert est.n_iter_ == model.n_iter_


@pytest.mark.parametrize("name", ["breast_cancer", "digits"])
def test_classifier_same_bits_as_run_job(tmp_path, capsys, name):
    Xtr, _, ytr, _ = _split(name)
    Xtr, ytr = Xtr[:300], ytr[:300]
    est = LogisticRegression(max_iter=150).fit(Xtr, ytr)
    classes, codes = np.unique(ytr, return_inverse=True)
    k = len(classes)
    model = _run_job_coef(tmp_path, est, Xtr, codes.astype(float), None, "logistic" if k == 2 else "softmax", k)
    assert np.array_equal(est.coef_, model.coef_) and np.array_equal(est.intercept_, model.intercept_)
    assert est.coef_.shape == (1 if k == 2 else k, Xtr.shape[1])
    assert np.array_equal(est.classes_, classes)


# -- against scikit-learn on the same penalty -------------------------------------------------------

@pytest.mark.parametrize("penalty,kw", [("none", {}), ("l2", {"alpha": 0.05}), ("l1", {"alpha": 0.5}),
                                        ("elasticnet", {"alpha": 0.1, "l1_ratio": 0.5})])
def test_regression_r2_matches_sklearn(penalty, kw):
    Xtr, Xte, ytr, yte = _split("diabetes", stratify=False)
    ours = LinearRegression(penalty=penalty, max_iter=20000, **kw).fit(Xtr, ytr)
    ref = {"none": sk.LinearRegression(), "l2": sk.Ridge(alpha=kw.get("alpha", 0) * len(ytr)),
           "l1": sk.Lasso(alpha=kw.get("alpha")),
           "elasticnet": sk.ElasticNet(alpha=kw.get("alpha", 0), l1_ratio=0.5)}[penalty].fit(Xtr, ytr)
    assert abs(ours.score(Xte, yte) - ref.score(Xte, yte)) < 0.01
    if penalty in ("none", "l2"):
        np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-5, atol=1e-6 * np.abs(ref.coef_).max())


@pytest.mark.parametrize("name", ["breast_cancer", "digits"])
def test_classification_accuracy_matches_sklearn(name):
    Xtr, Xte, ytr, yte = _split(name)
    ours = LogisticRegression(C=1.0).fit(Xtr, ytr)
    ref = sk.LogisticRegression(C=1.0, max_iter=5000, tol=1e-8).fit(Xtr, ytr)  # both converged tightly
    assert abs(ours.score(Xte, yte) - ref.score(Xte, yte)) <= 0.01
    np.testing.assert_allclose(ours.predict_proba(Xte), ref.predict_proba(Xte), atol=1e-3)


def test_l1_logistic_accuracy_matches_sklearn():
    Xtr, Xte, ytr, yte = _split("breast_cancer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = LogisticRegression(penalty="l1", C=0.5, max_iter=3000).fit(Xtr, ytr)
        ref = sk.LogisticRegression(C=0.5, l1_ratio=1.0, solver="saga", max_iter=5000).fit(Xtr, ytr)
    assert abs(ours.score(Xte, yte) - ref.score(Xte, yte)) <= 0.01
    assert (ours.coef_ == 0).sum() > 0


# -- scikit-learn tooling and labels -----------------------------------------------------------------

def test_clone_pipeline_gridsearch():
    X, y = _data("diabetes")
    est = LinearRegression(penalty="l2", alpha=0.1)
    assert clone(est).get_params() == est.get_params()
    pipe = make_pipeline(StandardScaler(), est).fit(X, y)
    assert pipe.score(X, y) > 0.4
    grid = GridSearchCV(make_pipeline(StandardScaler(), LinearRegression(penalty="l2")),
                        {"linearregression__alpha": [0.001, 1.0]}, cv=2).fit(X, y)
    assert grid.best_params_["linearregression__alpha"] == 0.001


def test_string_labels_and_dataframe_names():
    pd = pytest.importorskip("pandas")
    Xtr, Xte, ytr, yte = _split("digits")
    keep = ytr < 3
    names = np.array(["zero", "one", "two"], dtype=object)
    frame = pd.DataFrame(Xtr[keep], columns=[f"p{i}" for i in range(Xtr.shape[1])])
    est = LogisticRegression(max_iter=300).fit(frame, names[ytr[keep].astype(int)])
    assert list(est.classes_) == ["one", "two", "zero"]
    assert list(est.feature_names_in_) == list(frame.columns) and est.n_features_in_ == 64
    assert set(est.predict(frame)) <= set(names) and est.predict_proba(frame).shape == (keep.sum(), 3)
    assert est.score(frame, names[ytr[keep].astype(int)]) > 0.95
    assert est.decision_function(frame).shape == (keep.sum(), 3)


def test_parameter_mapping():
    X, y = _data("breast_cancer")
    cfg = LogisticRegression(C=2.0).job_config(X, y, None, "logistic", 2)
    assert cfg.model.reg == 1.0 / (2.0 * len(y)) and cfg.model.penalty == "l2"
    assert cfg.train.solver == "gd" and cfg.optimizer.name == "momentum"
    cfg = LinearRegression(penalty="elasticnet", alpha=0.3, l1_ratio=0.2, max_iter=7, tol=1e-5, chunk_rows=32,
                           reduction="fast", optimizer="adam", learning_rate=0.05, alpha_decay=0.01,
                           solver="gd", standardize=True).job_config(X, y)
    assert (cfg.model.reg, cfg.model.l1_ratio, cfg.train.steps, cfg.train.tol, cfg.data.chunk_rows) == \
        (0.3, 0.2, 7, 1e-5, 32)
    assert (cfg.comm.reduction, cfg.optimizer.name, cfg.optimizer.learning_rate, cfg.optimizer.alpha,
            cfg.train.solver, cfg.model.standardize) == ("fast", "adam", 0.05, 0.01, "gd", True)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_comm_fit_on_one_rank_is_the_one_process_fit(tmp_path):
    """fit(comm=COMM_SELF): the distributed path at one rank; same bits, temporary directory removed."""
    from mpi4py import MPI

    Xtr, _, ytr, _ = _split("breast_cancer")
    Xtr, ytr = Xtr[:200], ytr[:200]
    ref = LogisticRegression(max_iter=50).fit(Xtr, ytr)
    est = LogisticRegression(max_iter=50).fit(Xtr, ytr, comm=MPI.COMM_SELF, work_dir=tmp_path)
    assert est.coef_.tobytes() == ref.coef_.tobytes() and est.intercept_.tobytes() == ref.intercept_.tobytes()
    assert np.array_equal(est.classes_, ref.classes_) and list(tmp_path.iterdir()) == []
    X, y = _data("diabetes")
    sw = np.linspace(0.5, 2.0, len(y))
    ref = LinearRegression(penalty="l2", alpha=0.01, max_iter=50).fit(X, y, sample_weight=sw)
    est = LinearRegression(penalty="l2", alpha=0.01, max_iter=50).fit(X, y, sw, comm=MPI.COMM_SELF,
                                                                       work_dir=tmp_path)
    assert est.coef_.tobytes() == ref.coef_.tobytes() and est.intercept_ == ref.intercept_


def test_comm_fit_user_errors(tmp_path):
    from mpi4py import MPI

    with pytest.raises(UserError, match="no rows"):
        LinearRegression().fit(np.zeros((0, 3)), np.zeros(0), comm=MPI.COMM_SELF, work_dir=tmp_path)
    with pytest.raises(UserError, match="only one class"):
        LogisticRegression().fit(np.ones((4, 2)), np.ones(4), comm=MPI.COMM_SELF, work_dir=tmp_path)
    with pytest.raises(UserError, match="rank 0"):
        LinearRegression().fit(np.ones((4, 2)), np.ones(3), comm=MPI.COMM_SELF, work_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# -- rank-deficient data: the defaults converge to scikit-learn's answer, a diverged fit is refused --------

def _rank_deficient():
    X = np.random.default_rng(0).normal(size=(60, 3))
    y = X @ np.array([1.0, 2.0, -1.0])
    return {"duplicate column": (np.c_[X, X[:, 0]], y), "constant column": (np.c_[X, np.ones(60)], y),
            "one row": (X[:1], y[:1]), "two rows": (X[:2], y[:2])}


@pytest.mark.parametrize("case", ["duplicate column", "constant column", "one row", "two rows"])
@pytest.mark.parametrize("solver", ["auto", "gd", "gram"])
def test_rank_deficient_defaults_match_sklearn(case, solver):
    X, y = _rank_deficient()[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error", sklearn.exceptions.ConvergenceWarning)
        ours = LinearRegression(solver=solver).fit(X, y)
    ref = sk.LinearRegression().fit(X, y)
    assert np.isfinite(ours.coef_).all()
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), atol=1e-6)
    if case == "duplicate column":  # equal scales: the minimum-norm solution is scikit-learn's
        np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-5)


def test_rank_deficient_logistic_default_is_stable():
    X = np.random.default_rng(0).normal(size=(80, 3))
    y = (X @ np.array([1.0, -1.0, 0.5]) > 0).astype(int)
    X = np.c_[X, X[:, 0], np.ones(80)]
    ours = LogisticRegression().fit(X, y)
    ref = sk.LogisticRegression(max_iter=5000, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-4)


def test_momentum_tuning_stays_inside_the_stability_bound():
    from lepton_hpc.estimators import MAX_MOMENTUM, heavy_ball

    for kappa in (1.0, 10.0, 1e3, 1e6, 1e8, 1e12):
        lr, beta = heavy_ball(1.0 / kappa, 1.0)
        assert 0 <= beta <= MAX_MOMENTUM and 0 < lr < 2 * (1 + beta)  # heavy ball is stable for lr·L < 2(1+β)


def test_a_diverged_fit_is_an_error_not_a_model():
    X, y = _rank_deficient()["duplicate column"]
    with pytest.raises(UserError, match="diverged"):
        LinearRegression(solver="gd", optimizer="constant", learning_rate=10.0, max_iter=50).fit(X, y)


# -- parameters are validated (scikit-learn's InvalidParameterError, a ValueError naming the parameter) -----

@pytest.mark.parametrize("est,name", [
    (LinearRegression(chunk_rows=0), "chunk_rows"), (LinearRegression(chunk_rows=2.5), "chunk_rows"),
    (LinearRegression(fit_intercept="no"), "fit_intercept"), (LinearRegression(learning_rate="fast"), "learning_rate"),
    (LinearRegression(learning_rate=-1.0), "learning_rate"), (LinearRegression(alpha=-0.1), "alpha"),
    (LinearRegression(penalty="l3"), "penalty"), (LinearRegression(solver="als"), "solver"),
    (LinearRegression(max_iter=-1), "max_iter"), (LinearRegression(tol="small"), "tol"),
    (LinearRegression(reduction="quick"), "reduction"), (LinearRegression(standardize="yes"), "standardize"),
    (LinearRegression(l1_ratio=1.5), "l1_ratio"), (LogisticRegression(C=0), "C"), (LogisticRegression(C="a"), "C")])
def test_bad_parameters_are_refused_by_name(est, name):
    from sklearn.utils._param_validation import InvalidParameterError

    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of {type(est).__name__}"):
        est.fit(X, (X[:, 0] > 0).astype(int))


@pytest.mark.parametrize("est", [LinearRegression(), LinearRegression(solver="lbfgs"),
                                 LinearRegression(solver="gd", learning_rate=0.1), LogisticRegression()])
def test_features_whose_squares_overflow_are_a_user_error(est):
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(UserError, match="too large for float64"):
        est.fit(X * 1e200, y)


@pytest.mark.parametrize("classes", [2, 3])
def test_predict_log_proba_is_finite_for_confident_rows(classes):
    X = np.random.default_rng(0).normal(size=(90, 2))
    y = np.argmax(np.c_[X, -X.sum(1)][:, :classes], axis=1)
    est = LogisticRegression(C=1e4).fit(X, y)
    far = np.vstack([X, 1e4 * X[:5]])  # decision values in the thousands: predict_proba rounds to 0 and 1
    assert (est.predict_proba(far) == 0).any()
    logp = est.predict_log_proba(far)
    assert np.isfinite(logp).all() and logp.shape == (len(far), classes)
    np.testing.assert_allclose(np.exp(logp[:90]), est.predict_proba(X), rtol=1e-9, atol=1e-15)
    ref = sk.LogisticRegression().fit(X, y)
    ref.coef_, ref.intercept_ = est.coef_, est.intercept_
    want = ref.predict_log_proba(far)  # np.log(predict_proba): -inf where the probability rounds to 0
    ok = want > -15  # where log(predict_proba) is still accurate; below, 1 - p loses the digits
    assert not np.isfinite(want).all()
    np.testing.assert_allclose(logp[ok], want[ok], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_log_proba", "decision_function", "score"])
def test_nan_inf_or_none_in_X_names_the_first_bad_row(method):
    X = np.random.default_rng(0).normal(size=(8, 3))
    y = (X[:, 0] > 0).astype(int)
    est = (LinearRegression() if method == "score" else LogisticRegression()).fit(X, y)
    bad = X.copy()
    bad[3, 2], bad[5, 0] = np.nan, np.inf
    args = (bad, y) if method == "score" else (bad,)
    with pytest.raises(UserError, match="NaN or Inf at row 3 "):
        getattr(est, method)(*args)
    none = X.astype(object)
    none[6, 1] = None
    with pytest.raises(ValueError, match="row 6 "):
        getattr(est, method)(*((none, y) if method == "score" else (none,)))
