"""The "auto" step size and decay (lepton_hpc.problems.glm_step) against brute force."""

import numpy as np
import pytest

from lepton_hpc.optimizers import make_optimizer
from lepton_hpc.problems.glm_step import auto_alpha, auto_learning_rate, curvature, shrink


def _make(lr):
    return lambda a: make_optimizer("adaptive", learning_rate=lr, alpha=a)


@pytest.mark.parametrize("mu,steps,tol", [(0.9, 300, 1e-12), (0.2, 200, 1e-9), (0.05, 500, 1e-6)])
def test_auto_alpha_is_the_largest_decay_that_reaches_tol(mu, steps, tol):
    alpha = auto_alpha(_make(1.0), "adaptive", mu, steps, tol)
    assert 0 < alpha < 1
    assert shrink(_make(1.0)(alpha).schedule(steps), mu) <= tol
    assert shrink(_make(1.0)(alpha * 1.001 + 1e-9).schedule(steps), mu) > tol


def test_auto_alpha_is_zero_when_no_decay_reaches_tol():
    # a constant step 1/L on curvature mu = L/1000 shrinks by (1 - 1e-3)^200 ~ 0.82 only
    assert auto_alpha(_make(1.0), "adaptive", 1e-3, 200, 1e-9) == 0.0
    assert auto_alpha(_make(1.0), "adaptive", None, 200, 1e-9) == 0.0   # no curvature measured
    assert auto_alpha(_make(1.0), "momentum", 0.9, 200, 1e-9) == 0.0    # not a decaying rule


def test_auto_learning_rate():
    assert auto_learning_rate("adaptive", 4.0) == 0.25
    assert auto_learning_rate("adam", 4.0) == 0.01
    assert auto_learning_rate("adaptive", None) == 0.1


def test_curvature_bounds_the_logistic_hessian():
    rng = np.random.default_rng(0)
    Z = np.c_[rng.normal(size=(5000, 4)) @ np.diag([1, 2, 0.5, 1]), np.ones(5000)]
    ZZ = Z.T @ Z / len(Z)
    P = np.diag([1e-3] * 4 + [0.0])
    mu, lam_max = curvature("logistic", ZZ, P)
    for w in (np.zeros(5), rng.normal(size=5)):
        p = 1 / (1 + np.exp(-Z @ w))
        H = (Z * (p * (1 - p))[:, None]).T @ Z / len(Z) + P
        assert np.linalg.eigvalsh(H)[-1] <= lam_max * (1 + 1e-12)
    # at w = 0 every p(1-p) is 1/4: the bound is tight
    assert lam_max == pytest.approx(np.linalg.eigvalsh(0.25 * ZZ + P)[-1])
    assert mu is None  # unknown at the optimum: the decay is then 0
    mu_lin, lam_lin = curvature("linear", ZZ, P)
    eig = np.linalg.eigvalsh(ZZ + P)
    assert (mu_lin, lam_lin) == (pytest.approx(eig[0]), pytest.approx(eig[-1]))
