import numpy as np
import pytest

from lepton_hpc.models.linear import LinearKernel, gram_grad_loss, solve_normal, split_gram
from lepton_hpc.reduce import pairwise_sum


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_partial_matches_numpy(fit_intercept, dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 7)).astype(dtype)
    y = rng.standard_normal(5000)
    k = LinearKernel(7, fit_intercept, chunk_rows=5000, dtype=dtype)
    k.block = 300  # several cache blocks, one short
    theta = rng.standard_normal(k.n_params)
    out = np.empty(k.width)
    k.partial(X, y, theta, out)
    X64 = X.astype(np.float64)
    r = X64 @ theta[:7] + (theta[7] if fit_intercept else 0.0) - y
    assert np.allclose(out[:7], X64.T @ r, rtol=1e-12, atol=1e-9)
    if fit_intercept:
        assert np.isclose(out[7], r.sum())
    assert np.isclose(out[-1], 0.5 * r @ r, rtol=1e-12)


def test_gram_route_gives_the_same_gradient_and_solution():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 5))
    y = X @ np.arange(1.0, 6.0) + 2.0 + 0.01 * rng.standard_normal(400)
    k = LinearKernel(5, True, 400, "float64")
    g = np.empty(k.gram_width)
    k.gram_partial(X, y, g)
    G, c, yty = split_gram(g, k.n_params)
    theta = rng.standard_normal(6)
    grad = np.empty(6)
    loss = gram_grad_loss(G, c, yty, 400, theta, grad)
    out = np.empty(k.width)
    k.partial(X, y, theta, out)
    assert np.allclose(grad, out[:6] / 400, rtol=1e-10)
    assert np.isclose(loss, out[-1] / 400, rtol=1e-10)
    Z = np.column_stack([X, np.ones(400)])
    assert np.allclose(solve_normal(G, c), np.linalg.lstsq(Z, y, rcond=None)[0], rtol=1e-10)


def test_pairwise_sum_is_the_fixed_tree():
    rows = np.random.default_rng(2).standard_normal((5, 3))
    expect = ((rows[0] + rows[1]) + (rows[2] + rows[3])) + rows[4]
    assert np.array_equal(pairwise_sum(rows), expect)
