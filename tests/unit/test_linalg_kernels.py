"""Pure-numpy unit tests (no MPI) for lepton_hpc.linalg.kernels."""

import ast
import pathlib

import numpy as np
import pytest
import scipy.linalg

from lepton_hpc.linalg import kernels

EPS = np.finfo(np.float64).eps


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("shape", [(30, 8), (8, 8), (3, 8), (1, 8), (0, 8), (5, 0)])
def test_local_qr_shapes_and_signs(shape):
    a = rand(shape)
    q, r = kernels.local_qr(a)
    n_diag = min(shape)
    assert q.shape == (shape[0], n_diag) and r.shape == (n_diag, shape[1])
    assert np.all(np.diagonal(r) >= 0)
    assert np.allclose(np.tril(r, -1), 0)
    assert np.allclose(q @ r, a, atol=1e-13)
    assert np.allclose(q.T @ q, np.eye(n_diag), atol=1e-13)


def test_canonicalize_qr_signs_preserves_product():
    q, r = np.linalg.qr(rand((10, 4)))
    q2, r2 = kernels.canonicalize_qr_signs(q, r)
    assert np.all(np.diagonal(r2) >= 0)
    assert np.allclose(q2 @ r2, q @ r)
    # zero diagonal entries keep their sign (treated as +)
    r0 = np.array([[0.0, 1.0], [0.0, -2.0]])
    _, r0c = kernels.canonicalize_qr_signs(np.eye(2), r0)
    assert np.array_equal(r0c, np.array([[0.0, 1.0], [0.0, 2.0]]))


def test_qr_of_stacked_is_qr_of_the_stack():
    n = 6
    blocks = [kernels.local_qr(rand((m, n), seed=m))[1] for m in (0, 3, 20, 9)]
    q_s, r = kernels.qr_of_stacked(blocks, n)
    stacked = np.vstack(blocks)
    assert q_s.shape == (stacked.shape[0], n) and r.shape == (n, n)
    assert np.allclose(q_s @ r, stacked, atol=1e-13)
    _, r_ref = scipy.linalg.qr(stacked, mode="economic")
    assert np.allclose(r, np.sign(np.diagonal(r_ref))[:, None] * r_ref, atol=1e-13)


def test_qr_of_stacked_all_empty():
    q_s, r = kernels.qr_of_stacked([np.zeros((0, 4)), np.zeros((0, 4))], 4)
    assert q_s.shape == (0, 0) and r.shape == (0, 4)


def test_tsqr_by_hand_equals_direct_qr():
    """Local QRs + QR of stacked Rs + Q_i Q_s[piece] reproduce the QR of A."""
    n, sizes = 7, [0, 4, 30, 2, 15]
    a = rand((sum(sizes), n), seed=3)
    blocks = np.split(a, np.cumsum(sizes)[:-1])
    local = [kernels.local_qr(b) for b in blocks]
    q_s, r = kernels.qr_of_stacked([r_i for _, r_i in local], n)
    offsets = np.concatenate([[0], np.cumsum([r_i.shape[0] for _, r_i in local])])
    q = np.vstack([q_i @ q_s[offsets[i] : offsets[i + 1]] for i, (q_i, _) in enumerate(local)])
    q_ref, r_ref = kernels.local_qr(a)
    assert np.allclose(r, r_ref, atol=1e-12) and np.allclose(q, q_ref, atol=1e-12)


def test_orthonormalize():
    q = kernels.orthonormalize(rand((12, 5)))
    assert np.allclose(q.T @ q, np.eye(5), atol=1e-14)
    q0 = kernels.orthonormalize(np.zeros((4, 2)))  # degenerate input still gives a basis
    assert np.allclose(q0.T @ q0, np.eye(2))


@pytest.mark.parametrize("shape", [(9, 5), (5, 9), (6, 6), (0, 3)])
def test_small_svd_matches_scipy_with_canonical_signs(shape):
    a = rand(shape, seed=4)
    u, s, vt = kernels.small_svd(a)
    n_diag = min(shape)
    assert u.shape == (shape[0], n_diag) and s.shape == (n_diag,) and vt.shape == (n_diag, shape[1])
    if n_diag:
        s_ref = scipy.linalg.svd(a, compute_uv=False)
        assert np.max(np.abs(s - s_ref)) <= 10 * max(shape) * EPS * s_ref[0]
        assert np.allclose((u * s) @ vt, a, atol=1e-13)
        pivots = np.argmax(np.abs(vt), axis=1)
        assert np.all(vt[np.arange(n_diag), pivots] > 0)
        # canonical: flipping an input pair gives the same output
        u2, _, vt2 = kernels.small_svd(-a)
        assert np.allclose(vt2, vt, atol=1e-12) and np.allclose(u2, -u, atol=1e-12)


def test_gaussian_sketch_is_reproducible():
    a = kernels.gaussian_sketch(10, 4, seed=123)
    b = kernels.gaussian_sketch(10, 4, seed=123)
    c = kernels.gaussian_sketch(10, 4, seed=124)
    assert a.shape == (10, 4) and np.array_equal(a, b) and not np.array_equal(a, c)


def test_factored_products_and_residuals():
    m, n, k = 11, 7, 3
    u, s, v = rand((m, k), 1), np.abs(rand(k, 2)), rand((n, k), 3)
    a = rand((m, n), 4)
    b, y = rand((n, 2), 5), rand((m, 2), 6)
    dense = (u * s) @ v.T
    assert np.allclose(kernels.reconstruct_block(u, s, v), dense)
    assert np.allclose(kernels.factored_matmul(u, s, v, b), dense @ b)
    assert np.allclose(kernels.factored_matmul(u, s, v, b[:, 0]), dense @ b[:, 0])
    assert np.allclose(kernels.residual_matmul(a, u, s, v, b), (a - dense) @ b)
    assert np.allclose(kernels.residual_tmatmul_local(a, u, s, v, y), (a - dense).T @ y)


@pytest.mark.parametrize("n_rows,n_parts", [(10, 3), (2, 4), (0, 2), (9, 1)])
def test_split_offsets_matches_array_split(n_rows, n_parts):
    offsets = kernels.split_offsets(n_rows, n_parts)
    sizes = [len(p) for p in np.array_split(np.arange(n_rows), n_parts)]
    assert list(np.diff(offsets)) == sizes and offsets[0] == 0 and offsets[-1] == n_rows


def test_linalg_package_never_imports_mpi():
    package = pathlib.Path(kernels.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [alias.name for alias in node.names]
            else:
                continue
            assert not any("mpi" in name.lower() for name in names), (source.name, names)
