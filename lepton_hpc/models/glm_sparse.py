"""GLM partials on sparse (CSR) chunks: the same partial row as the dense kernels, X never densified.

``model.standardize`` on sparse X scales without centring (scikit-learn's
``StandardScaler(with_mean=False)``): the fit is on X·diag(1/σ), formed as
X·(W/σ) and (Xᵀ dz)/σ, so X stays as read. Linear and logistic chunks with
int32 CSR arrays go through the one-pass C kernel (dot, residual and scatter
per row, :func:`lepton_hpc.models.fused.csr_partial`); otherwise scipy.sparse
products, whose loops run over rows in order, so a chunk's partial has the
same bits wherever it is computed. Mini-batch segments are summed per segment
in row order, independent of where the rows sit in the rank's batch.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import fused


def is_sparse(X) -> bool:
    return not isinstance(X, np.ndarray) and sp.issparse(X)


def as_csr(X) -> sp.csr_matrix:
    """Any scipy.sparse matrix/array as CSR (no copy when it already is CSR)."""
    return X if isinstance(X, sp.csr_matrix) else sp.csr_matrix(X)


def _scaled_w(kernel, W):
    """W/σ (a reused buffer) under standardisation, else W itself."""
    if kernel.scale is None:
        return W
    buf = getattr(kernel, "_ws", None)
    if buf is None or buf.shape != W.shape:
        buf = kernel._ws = np.empty(W.shape)
    return np.divide(W, kernel.scale if W.ndim == 1 else kernel.scale[:, None], out=buf)


def _c_applies(kernel, X) -> bool:
    return (kernel.n_out == 1 and fused.csr_supports(kernel.kind) and X.indices.dtype == np.int32
            and X.indptr.dtype == np.int32 and X.data.dtype == np.float64)


def partial(kernel, X, y: np.ndarray, sw, theta: np.ndarray, out: np.ndarray) -> None:
    """The chunk's partial row ``[∂ Σ s ℓ, Σ s ℓ, Σ s]`` into ``out`` for a CSR chunk ``X``."""
    X = as_csr(X)
    W, b = kernel.split(theta)
    d, k = kernel.n_cols, kernel.n_out
    Ws = _scaled_w(kernel, W)
    if _c_applies(kernel, X):
        row = kernel._row
        fused.csr_partial(kernel.kind, X, y, sw, Ws, float(b) if kernel.fit_intercept else 0.0, row)
        out[:d] = row[:d]
        if kernel.fit_intercept:
            out[d] = row[d]
        out[-2:] = row[d + 1:]
    else:
        dz, loss = kernel.residual(X @ Ws + b, y, sw)
        out[:d * k] = (X.T @ dz).ravel()
        if kernel.fit_intercept:
            out[d * k:kernel.n_params] = dz.sum(axis=0)
        out[-2] = loss
        out[-1] = X.shape[0] if sw is None else sw.sum()
    if kernel.scale is not None:
        _unscale(kernel, out[:d * k])


def _unscale(kernel, g: np.ndarray) -> None:
    """∂/∂W' of the loss on X·diag(1/σ): the raw Xᵀdz divided by σ (per output column)."""
    if kernel.n_out == 1:
        g /= kernel.scale
    else:
        g.reshape(kernel.n_cols, kernel.n_out)[:] /= kernel.scale[:, None]


def batch_partials(kernel, X, y, sw, theta, starts: np.ndarray, out: np.ndarray) -> None:
    """Partial rows for consecutive segments of gathered CSR rows (one per chunk), row order within each."""
    X = as_csr(X)
    W, b = kernel.split(theta)
    d, k = kernel.n_cols, kernel.n_out
    dz, losses = kernel.residual(X @ _scaled_w(kernel, W) + b, y, sw, per_row=True)
    ends = np.r_[starts[1:], X.shape[0]]
    for s, (a, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        out[s, :d * k] = (X[a:e].T @ dz[a:e]).ravel()
        if kernel.scale is not None:
            _unscale(kernel, out[s, :d * k])
    if kernel.fit_intercept:
        out[:, d * k:kernel.n_params] = np.add.reduceat(dz.reshape(len(y), k), starts, axis=0)
    out[:, -2] = np.add.reduceat(losses, starts)
    out[:, -1] = np.add.reduceat(np.ones(len(y)) if sw is None else sw, starts)


def decision(kernel, X, theta: np.ndarray) -> np.ndarray:
    """Scores X·W + b (n_rows, or n_rows × K) for sparse ``X``; dense output."""
    W, b = kernel.split(theta)
    return np.asarray(as_csr(X) @ _scaled_w(kernel, W)) + b


def moments(X, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Σ s x and Σ s x² per column of a CSR chunk (no densification)."""
    X = as_csr(X)
    X2 = sp.csr_matrix((X.data * X.data, X.indices, X.indptr), shape=X.shape)
    return X.T @ s, X2.T @ s
