import numpy as np
import pytest
from scipy.special import expit, logsumexp

from lepton_hpc.models.glm import gram_grad_loss, make_kernel, solve_normal, split_gram
from lepton_hpc.models.penalty import Penalty
from lepton_hpc.models.standardize import Standardizer
from lepton_hpc.reduce import pairwise_sum

RNG = np.random.default_rng(0)


def _data(kind, n=3000, d=7, k=3):
    X = RNG.standard_normal((n, d))
    if kind == "linear":
        y = RNG.standard_normal(n)
    elif kind == "logistic":
        y = (RNG.random(n) < 0.4).astype(float)
    else:
        y = RNG.integers(0, k, n).astype(float)
    return X, y


def _reference(kind, X, y, sw, theta, d, k, intercept):
    W = theta[:d * k].reshape(d, k)
    b = theta[d * k:] if intercept else np.zeros(k)
    Z = X @ W + b
    if kind == "linear":
        z = Z[:, 0]
        losses, dz = 0.5 * (z - y) ** 2, (z - y)[:, None]
    elif kind == "logistic":
        z = Z[:, 0]
        losses = np.logaddexp(0, z) - y * z
        dz = (expit(z) - y)[:, None]
    else:
        lse = logsumexp(Z, axis=1)
        losses = lse - Z[np.arange(len(y)), y.astype(int)]
        P = np.exp(Z - lse[:, None])
        P[np.arange(len(y)), y.astype(int)] -= 1
        dz = P
    dz = dz * sw[:, None]
    grad = np.concatenate([(X.T @ dz).ravel(), dz.sum(0) if intercept else []])
    return grad, float(sw @ losses), float(sw.sum())


@pytest.mark.parametrize("kind,k", [("linear", 1), ("logistic", 1), ("softmax", 3)])
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_chunk_and_batch_partials_match_numpy(kind, k, intercept, weighted, dtype):
    X, y = _data(kind, k=k)
    X = X.astype(dtype)
    sw = RNG.random(len(y)) if weighted else None
    ker = make_kernel(kind, 7, intercept, chunk_rows=3000, dtype=dtype, n_classes=k)
    ker.block = 300  # several cache blocks
    theta = 0.3 * RNG.standard_normal(ker.n_params)
    out = np.empty(ker.width)
    ker.partial(X, y, sw, theta, out)
    grad, loss, wsum = _reference(kind, X.astype(float), y, np.ones(len(y)) if sw is None else sw,
                                  theta, 7, k, intercept)
    assert np.allclose(out[:ker.n_params], grad, rtol=1e-10, atol=1e-8)
    assert np.isclose(out[-2], loss, rtol=1e-10) and np.isclose(out[-1], wsum)
    starts = np.array([0, 1000, 1001, 2500])
    seg = np.empty((4, ker.width))
    ker.batch_partials(X, y, sw, theta, starts, seg)
    assert np.allclose(seg.sum(axis=0), out, rtol=1e-9, atol=1e-8)


def test_batch_partials_do_not_depend_on_row_position():
    X, y = _data("softmax")
    ker = make_kernel("softmax", 7, True, 3000, "float64", 3)
    theta = RNG.standard_normal(ker.n_params)
    a = np.empty((1, ker.width))
    b = np.empty((2, ker.width))
    ker.batch_partials(X[100:117], y[100:117], None, theta, np.array([0]), a)
    ker.batch_partials(X[95:117], y[95:117], None, theta, np.array([0, 5]), b)
    assert np.array_equal(a[0], b[1])


def test_gram_route_gives_the_same_gradient_and_solution():
    X = RNG.standard_normal((400, 5))
    y = X @ np.arange(1.0, 6.0) + 2.0 + 0.01 * RNG.standard_normal(400)
    k = make_kernel("linear", 5, True, 400, "float64")
    g = np.empty(k.gram_width)
    k.gram_partial(X, y, None, g)
    G, c, yty = split_gram(g, k.n_params)
    theta = RNG.standard_normal(6)
    grad = np.empty(6)
    loss = gram_grad_loss(G, c, yty, 400.0, theta, grad)
    out = np.empty(k.width)
    k.partial(X, y, None, theta, out)
    assert np.allclose(grad, out[:6] / 400, rtol=1e-10)
    assert np.isclose(loss, out[-2] / 400, rtol=1e-10)
    Z = np.column_stack([X, np.ones(400)])
    assert np.allclose(solve_normal(G, c), np.linalg.lstsq(Z, y, rcond=None)[0], rtol=1e-10)


def test_standardizer_round_trip_and_gram_transform():
    X = 3.0 + 2.0 * RNG.standard_normal((500, 4))
    y = RNG.standard_normal(500)
    std = Standardizer.from_moments(X.sum(0), (X * X).sum(0), 500.0, True, True)
    assert np.allclose(std.center, X.mean(0)) and np.allclose(std.scale, X.std(0))
    theta = RNG.standard_normal(5)
    assert np.allclose(std.from_original(std.to_original(theta)), theta)
    k = make_kernel("linear", 4, True, 500, "float64")
    g = np.empty(k.gram_width)
    k.gram_partial(X, y, None, g)
    G, c, _ = split_gram(g, 5)
    Zs = np.column_stack([(X - X.mean(0)) / X.std(0), np.ones(500)])
    assert np.allclose(std.transform_gram(G), Zs.T @ Zs) and np.allclose(std.transform_c(c), Zs.T @ y)
    # predictions agree in both unit systems
    assert np.allclose(Zs @ theta, np.column_stack([X, np.ones(500)]) @ std.to_original(theta))


def test_penalties():
    theta = np.array([1.0, -2.0, 0.5])
    grad = np.zeros(3)
    p = Penalty("elasticnet", 0.2, 0.25, n_weights=2)
    value = p.add_smooth(theta, grad)
    assert np.allclose(grad, [0.15 * 1.0, 0.15 * -2.0, 0.0])
    assert np.isclose(value, 0.5 * 0.15 * 5.0 + 0.05 * 3.0)
    p.prox(theta, eta=10.0)  # threshold 0.5
    assert np.allclose(theta, [0.5, -1.5, 0.5])
    assert not Penalty("l2", 1.0, 0.5, 2).has_l1 and Penalty("l1", 1.0, 0.5, 2).has_l1


def test_pairwise_sum_is_the_fixed_tree():
    rows = RNG.standard_normal((5, 3))
    expect = ((rows[0] + rows[1]) + (rows[2] + rows[3])) + rows[4]
    assert np.array_equal(pairwise_sum(rows), expect)
