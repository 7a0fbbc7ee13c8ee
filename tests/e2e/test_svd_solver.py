"""Least squares through TSQR factors on data with condition number 1e8.

Exact resume of svd_gd and the refusal of model.standardize: tests/mpi/test_glm_loop.py (in-process).
"""

import h5py
import numpy as np
import pytest

from mpirun import run_mpi, summary


@pytest.fixture(scope="module")
def ill_conditioned(tmp_path_factory):
    rng = np.random.default_rng(5)
    n, d = 3001, 8
    U, _ = np.linalg.qr(rng.standard_normal((n, d)))
    V, _ = np.linalg.qr(rng.standard_normal((d, d)))
    X = (U * np.logspace(0, -8, d)) @ V.T * 100.0  # κ(X) = 1e8, not aligned with the axes
    y = X @ rng.standard_normal(d) + 3.0 + 1e-3 * rng.standard_normal(n)
    path = tmp_path_factory.mktemp("ill") / "ill.h5"
    with h5py.File(path, "w") as f:
        f["X"], f["y"] = X, y
    Z = np.column_stack([X, np.ones(n)])
    return path, np.linalg.lstsq(Z, y, rcond=None)[0], np.linalg.cond(Z)


def _theta(run):
    s = summary(run)
    return np.r_[s["w"], s["b"]], s


def test_svd_solver_is_accurate_where_normal_equations_are_not(tmp_path, ill_conditioned, n_ranks=3):
    # one rank against the world, bitwise, at the default condition: tests/mpi/test_glm_loop.py
    path, ref, kappa = ill_conditioned
    run = tmp_path / "svd"
    args = ["--out", run, "--set", f"data.path={path}", "--set", "data.chunk_rows=97", "--set", "train.solver=svd"]
    proc = run_mpi(n_ranks, args)
    assert proc.returncode == 0, proc.stderr
    theta, s = _theta(run)
    assert np.linalg.norm(theta - ref) / np.linalg.norm(ref) <= 1e-6
    assert s["condition_number"] == pytest.approx(kappa, rel=1e-3)
    assert s["stop_reason"] == "direct" and s["steps"] == 0
    assert s["qr_path"] == "shifted_cholesky_qr3"  # κ = 1e8 is too much for CholeskyQR2
    one = tmp_path / "svd1"
    assert run_mpi(1, ["--out", one, *args[2:]]).returncode == 0
    theta1, s1 = _theta(one)
    assert np.array_equal(theta1, theta) and s1["qr_path"] == s["qr_path"]  # the same bits at 1 and 3 ranks
    assert s["normal_equations_rel_error"] > 1e-6  # the normal-equation route does not get there
    with h5py.File(run / "checkpoints" / "step-00000000.h5", "r") as f:
        assert np.allclose(np.r_[f["model/w"][()], f["model/b"][()]], theta)


def test_whitened_gradient_descent_converges_in_few_steps(tmp_path, ill_conditioned):
    path, ref, _ = ill_conditioned
    args = ["--set", f"data.path={path}", "--set", "data.chunk_rows=97", "--set", "train.solver=svd_gd",
            "--set", "optimizer.learning_rate=1.0", "--set", "optimizer.alpha=0.001", "--set", "train.steps=50"]
    run = tmp_path / "svdgd"
    proc = run_mpi(2, ["--out", run, *args])
    assert proc.returncode == 0, proc.stderr
    theta, s = _theta(run)
    assert s["stop_reason"] == "tol" and s["steps"] <= 10
    assert np.linalg.norm(theta - ref) / np.linalg.norm(ref) <= 1e-6
    # plain gradient descent on the same data and budget gets nowhere
    plain = tmp_path / "gd"
    assert run_mpi(2, ["--out", plain, *args, "--set", "train.solver=gd", "--set", "optimizer.learning_rate=0.1"]
                   ).returncode == 0
    theta_gd, _ = _theta(plain)
    assert np.linalg.norm(theta_gd - ref) / np.linalg.norm(ref) > 1e-2
