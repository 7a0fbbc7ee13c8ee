"""The second-order kernels against the gradient kernels: the dense Hessian is the Jacobian of the
gradient (central differences), H·v is that Hessian times v, and the dense pass's gradient and loss
are the gradient kernel's."""

import numpy as np
import pytest

from lepton_hpc.models.glm import make_kernel
from lepton_hpc.models.glm_hessian import CurvatureKernel

N, D = 300, 3


def data(kind, k, weighted):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N, D))
    y = {"linear": rng.standard_normal(N), "logistic": (rng.random(N) < 0.4).astype(float),
         "softmax": rng.integers(0, k, N).astype(float)}[kind]
    sw = rng.uniform(0.5, 2.0, N) if weighted else None
    return X, y, sw


@pytest.mark.parametrize("kind,k", [("linear", 1), ("logistic", 1), ("softmax", 3)])
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_hessian_is_the_jacobian_of_the_gradient(kind, k, intercept, weighted):
    X, y, sw = data(kind, k, weighted)
    kern = make_kernel(kind, D, intercept, 128, np.float64, k)  # 128-row blocks: several per chunk
    curv = CurvatureKernel(kern)
    p = kern.n_params
    theta = np.random.default_rng(1).standard_normal(p) * 0.3

    def grad(t):
        out = np.zeros(kern.width)
        kern.partial(X, y, sw, t, out)
        return out

    row = np.zeros(curv.dense_width)
    curv.dense_partial(X, y, sw, theta, row)
    np.testing.assert_allclose(row[:kern.width], grad(theta), rtol=1e-12, atol=1e-10)
    H = curv.unpack(row)
    assert np.array_equal(H, H.T)
    eps = 1e-6
    J = np.stack([(grad(theta + eps * e)[:p] - grad(theta - eps * e)[:p]) / (2 * eps) for e in np.eye(p)])
    np.testing.assert_allclose(H, J, rtol=1e-6, atol=1e-6 * np.abs(H).max())
    v = np.random.default_rng(2).standard_normal(p)
    hv = np.zeros(kern.width)
    curv.hv_partial(X, y, sw, theta, v, hv)
    np.testing.assert_allclose(hv[:p], H @ v, rtol=1e-10, atol=1e-10 * np.abs(H @ v).max())
    assert hv[-1] == (N if sw is None else pytest.approx(sw.sum()))
