"""lepton_hpc.estimators fit(X_local, y_local, comm=world) at the suite's rank count: every rank
passes its own rows (split unevenly, one rank with none at 3+ ranks) and gets the bits of the
one-process fit of all rows (comm=None, done on every rank); agreed user errors."""

import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

pytest.importorskip("sklearn")

from lepton_hpc.comm import JobError  # noqa: E402
from lepton_hpc.errors import UserError  # noqa: E402
from lepton_hpc.estimators import LinearRegression, LogisticRegression  # noqa: E402

from passert import parallel_assert, parallel_raises, run_on_root  # noqa: E402

WORLD = MPI.COMM_WORLD
DATA = Path(__file__).resolve().parents[2] / "data"


def shared_dir() -> Path:
    return Path(run_on_root(WORLD, lambda: tempfile.mkdtemp(prefix="est-")))


def bounds(n: int, size: int) -> list[int]:
    """Uneven cuts of n rows over size ranks: rank 1 gets none at 3+ ranks, the last rank the most."""
    weights = [3, 0, 1] + [2] * (size - 3) if size >= 3 else [1, 2][:size]
    cuts = np.cumsum([0] + weights) * n // sum(weights)
    cuts[-1] = n
    return [int(c) for c in cuts]


def local(*arrays):
    cuts = bounds(len(arrays[0]), WORLD.size)
    lo, hi = cuts[WORLD.rank], cuts[WORLD.rank + 1]
    return [None if a is None else a[lo:hi] for a in arrays]


def breast_cancer(rows=240):
    with h5py.File(DATA / "breast_cancer.h5") as f:
        X, y = f["X"][:rows], f["y"][:rows]
    return (X - X.mean(0)) / X.std(0), y


def same_fit(make, X, y, sw=None):
    work = shared_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: few steps on purpose
        ref = make().fit(X, y, sample_weight=sw)
        Xl, yl, swl = local(X, y, sw)
        est = make().fit(Xl, yl, swl, comm=WORLD, work_dir=work)
    got = est.coef_.tobytes() + np.asarray(est.intercept_).tobytes()
    want = ref.coef_.tobytes() + np.asarray(ref.intercept_).tobytes()
    parallel_assert(WORLD, got == want, lambda: f"coef differs: {est.coef_.ravel()[:3]} vs {ref.coef_.ravel()[:3]}")
    everywhere = WORLD.allgather(got)
    parallel_assert(WORLD, all(g == got for g in everywhere), "ranks differ")
    parallel_assert(WORLD, not any(work.iterdir()), "temporary directory left behind")
    return est, ref


def test_linear_l2_weighted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 + 0.1 * rng.normal(size=150)
    sw = np.linspace(0.5, 2.0, 150)
    same_fit(lambda: LinearRegression(penalty="l2", alpha=0.01, max_iter=40, chunk_rows=32), X, y, sw)


def test_linear_gd_explicit_learning_rate():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 3))
    y = X.sum(1)
    same_fit(lambda: LinearRegression(solver="gd", learning_rate=0.1, max_iter=30, chunk_rows=16), X, y)


def test_logistic_binary():
    X, y = breast_cancer()
    est, ref = same_fit(lambda: LogisticRegression(max_iter=40, chunk_rows=50), X, y)
    parallel_assert(WORLD, np.array_equal(est.classes_, ref.classes_), "classes_ differ")


def test_logistic_multinomial_string_labels():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 3))
    y = np.array(["b", "a", "c"])[np.argmax(X @ rng.normal(size=(3, 3)), axis=1)]
    est, ref = same_fit(lambda: LogisticRegression(max_iter=30, chunk_rows=25), X, y)
    parallel_assert(WORLD, list(est.classes_) == ["a", "b", "c"] == list(ref.classes_), str(est.classes_))


def test_mismatched_columns_is_one_agreed_error():
    work = shared_dir()
    d = 3 if WORLD.rank == WORLD.size - 1 and WORLD.size > 1 else 2
    with parallel_raises(WORLD, UserError, match="column counts" if WORLD.size > 1 else "only one class"):
        LogisticRegression().fit(np.ones((4, d)), np.ones(4), comm=WORLD, work_dir=work)


def test_single_class_overall_is_one_agreed_error():
    work = shared_dir()
    with parallel_raises(WORLD, UserError, match="only one class"):
        LogisticRegression().fit(np.ones((3, 2)), np.full(3, 7), comm=WORLD, work_dir=work)


def test_bad_rows_on_one_rank_is_one_agreed_error():
    work = shared_dir()
    bad = WORLD.rank == WORLD.size - 1
    X = np.full((4, 2), np.nan) if bad else np.ones((4, 2))
    with parallel_raises(WORLD, JobError, match=f"rank {WORLD.size - 1}"):
        LinearRegression().fit(X, np.ones(4), comm=WORLD, work_dir=work)
    parallel_assert(WORLD, not any(work.iterdir()), "temporary directory left behind")


def test_rank_deficient_default_fit_is_sklearns():
    """A duplicated column: the default fit converges (no ConvergenceWarning) to scikit-learn's answer."""
    from sklearn.linear_model import LinearRegression as SkLinear

    X = np.random.default_rng(0).normal(size=(60, 3))
    y = X @ np.array([1.0, 2.0, -1.0])
    X = np.c_[X, X[:, 0]]
    work = shared_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Xl, yl = local(X, y)
        est = LinearRegression().fit(Xl, yl, comm=WORLD, work_dir=work)
    ref = SkLinear().fit(X, y)
    parallel_assert(WORLD, np.allclose(est.coef_, ref.coef_, atol=1e-5), lambda: f"{est.coef_} vs {ref.coef_}")


def test_number_labels_on_one_rank_text_on_another_is_the_one_process_error():
    """Numbers on rank 0, "x" on the others: the one-process fit of these labels raises scikit-learn's
    'Unknown label type'; so does every rank (no silent classes_ ['0', '1', 'x'])."""
    work = shared_dir()
    rng = np.random.default_rng(WORLD.rank)
    X = rng.normal(size=(6, 2))
    if WORLD.size == 1:
        y = np.array([0, 1, 0, "x", "x", 1], dtype=object)
    else:
        y = np.array([0, 1, 0, 1, 0, 1]) if WORLD.rank == 0 else np.array(["x"] * 6)
    with pytest.raises(ValueError, match="Unknown label type"):
        LogisticRegression().fit(np.ones((6, 2)), np.array([0, 1, 0, "x", "x", 1], dtype=object))
    with parallel_raises(WORLD, ValueError, match="Unknown label type"):
        LogisticRegression().fit(X, y, comm=WORLD, work_dir=work)
    parallel_assert(WORLD, not any(work.iterdir()), "temporary directory left behind")


def test_overflowing_features_on_one_rank_is_one_agreed_error():
    work = shared_dir()
    X = np.random.default_rng(WORLD.rank).normal(size=(5, 2)) * (1e200 if WORLD.rank == WORLD.size - 1 else 1.0)
    with parallel_raises(WORLD, UserError, match=f"rank {WORLD.size - 1}: the features are too large"):
        LinearRegression().fit(X, X[:, 0], comm=WORLD, work_dir=work)
    parallel_assert(WORLD, not any(work.iterdir()), "temporary directory left behind")
