"""lepton_hpc.estimators against ``python -m lepton_hpc.train`` through real mpiexec: the job
that ``est.job_config(...)`` builds, written to a TOML file, trains on the same data file at
2 or 3 ranks to the bits of the estimator's coef_/intercept_ (its one-process fit)."""

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpirun import run_mpi

pytest.importorskip("sklearn")

from lepton_hpc.estimators import LinearRegression, LogisticRegression, write_h5  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "data"


def _cli_model(tmp_path, n_ranks, cfg, X, y_codes, sw=None):
    """(w, b) of the CLI's final checkpoint for this config on these data."""
    data = tmp_path / "data.h5"
    write_h5(data, X, y_codes, sw, cfg.data.chunk_rows)
    job = tmp_path / "job.toml"
    job.write_text(cfg.to_toml().replace('path = "data.h5"', f'path = "{data}"'))
    out = tmp_path / "run"
    proc = run_mpi(n_ranks, [job, "--out", out])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ckpts = sorted((out / "checkpoints").glob("step-*.h5"))
    with h5py.File(ckpts[-1], "r") as f:
        return f["model/w"][()], f["model/b"][()]


def test_linear_l2_weighted_equals_cli(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = X @ rng.normal(size=5) + 1.0 + 0.1 * rng.normal(size=200)
    sw = np.linspace(0.5, 2.0, 200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LinearRegression(penalty="l2", alpha=0.01, max_iter=40, chunk_rows=32).fit(X, y, sample_weight=sw)
    w, b = _cli_model(tmp_path, 3, est.job_config(X, y, sw), X, y, sw)
    assert est.coef_.tobytes() == w.tobytes() and np.float64(est.intercept_).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize("multinomial", [False, True])
def test_logistic_equals_cli(tmp_path, multinomial):
    with h5py.File(DATA / ("digits.h5" if multinomial else "breast_cancer.h5")) as f:
        X, y = f["X"][:300], f["y"][:300]
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LogisticRegression(max_iter=30, chunk_rows=64).fit(X, y)
    classes, codes = np.unique(y, return_inverse=True)
    k = len(classes)
    cfg = est.job_config(X, codes.astype(float), None, "softmax" if multinomial else "logistic", k)
    w, b = _cli_model(tmp_path, 2, cfg, X, codes.astype(float))
    coef = w.T if w.ndim == 2 else w.reshape(1, -1)
    assert np.ascontiguousarray(coef).tobytes() == est.coef_.tobytes()
    assert np.atleast_1d(b).astype(np.float64).tobytes() == est.intercept_.tobytes()
