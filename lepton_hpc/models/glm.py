"""Generalised linear models on local arrays: linear, logistic and softmax.

Numpy only. A kernel sees one chunk (or one chunk's rows of a mini-batch)
and writes an unnormalised partial row

    [∂/∂θ Σ sᵢ ℓᵢ  (n_params),  Σ sᵢ ℓᵢ,  Σ sᵢ]

where sᵢ are sample weights (1 when absent). The trainer reduces the rows
over chunks and ranks and divides by Σ sᵢ. Parameters are one flat vector
θ = [W (n_cols × n_out, row-major), b (n_out, with an intercept)].

Full chunks go through BLAS in cache-sized blocks (one pass over memory).
Mini-batch rows use position-independent numpy reductions, so a row's
contribution does not depend on where it sits in a rank's gathered batch,
which keeps mini-batch runs bitwise identical across rank counts.
"""

from __future__ import annotations

import numpy as np

from . import fused, glm_sparse
from ..errors import UserError

CACHE_BLOCK_BYTES = 1024 * 1024  # fits the last-level cache share of a core; 2nd read is a cache hit


def block_rows(n_cols: int, itemsize: int = 8) -> int:
    """Rows per cache block: X·w then Xᵀ·r reread the block from cache, not memory."""
    return max(16, CACHE_BLOCK_BYTES // (n_cols * itemsize) // 16 * 16)


class GLMKernel:
    """Per-chunk loss/gradient partials for one model kind, with preallocated scratch."""

    kind = "glm"
    n_out = 1

    def __init__(self, n_cols: int, fit_intercept: bool, chunk_rows: int, dtype, n_out: int = 1):
        self.n_cols, self.fit_intercept, self.n_out = n_cols, fit_intercept, n_out
        self.n_params = n_cols * n_out + (n_out if fit_intercept else 0)
        self.width = self.n_params + 2
        self.block = min(chunk_rows, block_rows(n_cols))
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self._convert = np.dtype(dtype) != np.float64
        self._xbuf = np.empty((self.block, n_cols))
        self._g = np.empty((n_cols, n_out)) if n_out > 1 else np.empty(n_cols)
        self._row = np.empty(n_cols + 3)  # the C kernel's output row

    def set_standardization(self, center: np.ndarray | None, scale: np.ndarray | None) -> None:
        """Fit on (X − center) / scale instead of X (computed per block, X is untouched)."""
        self.center, self.scale = center, scale

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
        """Views (W, b) of θ; W is (n_cols,) for one output, else (n_cols, n_out)."""
        d, k = self.n_cols, self.n_out
        W = theta[:d * k] if k == 1 else theta[:d * k].reshape(d, k)
        if not self.fit_intercept:
            return W, 0.0
        return W, (theta[d * k] if k == 1 else theta[d * k:])

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        if not (self._convert or self.scale is not None):
            return X
        out = self._xbuf[:X.shape[0]]
        np.copyto(out, X)
        if self.scale is not None:
            if self.center is not None:
                out -= self.center
            out /= self.scale
        return out

    # -- full chunks -------------------------------------------------------------
    def plan(self, shard):
        """A one-call-per-step plan over an in-memory shard's chunks, or None.

        Applies when the C kernel does: float64 rows, one output, no
        standardisation (the same conditions as :meth:`_fused`).
        """
        if (not fused.supports(self.kind) or self._convert or self.scale is not None
                or not shard.in_memory or getattr(shard, "sparse", False)):
            return None
        return fused.ChunkPlan([v for _, *v in shard.chunks_iter()], shard.sw_all is not None, self.n_cols)

    def partials_all(self, plan, theta: np.ndarray, out: np.ndarray) -> None:
        """Every chunk's partial row through ``plan`` (from :meth:`plan`) in one C call."""
        plan.run(self.kind, theta, self.fit_intercept, out)

    def _fused(self, X, y, sw, theta, out) -> bool:
        """One pass in C when it applies: float64 rows, one output, no standardisation.

        Sparse (CSR) chunks always take :func:`.glm_sparse.partial` here (C or scipy.sparse)."""
        if not isinstance(X, np.ndarray) and glm_sparse.is_sparse(X):
            glm_sparse.partial(self, X, y, sw, theta, out)
            return True
        if (not fused.supports(self.kind) or self._convert or self.scale is not None
                or not X.flags.c_contiguous or X.dtype != np.float64):
            return False
        d = self.n_cols
        b = theta[d] if self.fit_intercept else 0.0
        fused.partial(self.kind, X, y, sw, theta[:d], b, self._row)
        out[:d] = self._row[:d]
        if self.fit_intercept:
            out[d] = self._row[d]
        out[-2:] = self._row[d + 1:]
        return True

    def partial(self, X: np.ndarray, y: np.ndarray, sw: np.ndarray | None, theta: np.ndarray,
                out: np.ndarray) -> None:
        """Write the chunk's partial row into ``out`` (length ``width``)."""
        if self._fused(X, y, sw, theta, out):
            return
        out[:] = 0.0
        W, b = self.split(theta)
        d, k = self.n_cols, self.n_out
        for lo in range(0, X.shape[0], self.block):
            hi = min(lo + self.block, X.shape[0])
            Xb = self._prepare(X[lo:hi])
            swb = None if sw is None else sw[lo:hi]
            dz, loss = self.residual(Xb @ W + b, y[lo:hi], swb)
            np.dot(Xb.T, dz, out=self._g)
            out[:d * k] += self._g.ravel()
            if self.fit_intercept:
                out[d * k:self.n_params] += dz.sum(axis=0)
            out[-2] += loss
            out[-1] += (hi - lo) if swb is None else swb.sum()

    # -- mini-batch rows, grouped by chunk ------------------------------------------
    def batch_partials(self, X: np.ndarray, y: np.ndarray, sw: np.ndarray | None, theta: np.ndarray,
                       starts: np.ndarray, out: np.ndarray) -> None:
        """Partial rows for consecutive segments of gathered rows (one segment per chunk).

        ``starts`` are the first row of each segment; ``out`` has one row per
        segment. Every reduction here runs per row or per segment in a fixed
        order, independent of the row's position in ``X``.
        """
        if glm_sparse.is_sparse(X):
            return glm_sparse.batch_partials(self, X, y, sw, theta, starts, out)
        W, b = self.split(theta)
        d, k = self.n_cols, self.n_out
        Xp = X.astype(np.float64, copy=self._convert or self.scale is not None)
        if self.scale is not None:
            Xp -= self.center
            Xp /= self.scale
        if k == 1:
            Z = (Xp * W).sum(axis=1) + b
        else:
            Z = np.stack([(Xp * W[:, j]).sum(axis=1) for j in range(k)], axis=1) + b
        dz, losses = self.residual(Z, y, sw, per_row=True)
        if k == 1:
            out[:, :d] = np.add.reduceat(Xp * dz[:, None], starts, axis=0)
        else:
            for j in range(k):
                out[:, j:d * k:k] = np.add.reduceat(Xp * dz[:, j:j + 1], starts, axis=0)
        if self.fit_intercept:
            out[:, d * k:self.n_params] = np.add.reduceat(dz.reshape(len(y), k), starts, axis=0)
        out[:, -2] = np.add.reduceat(losses, starts)
        out[:, -1] = np.add.reduceat(np.ones(len(y)) if sw is None else sw, starts)

    # -- prediction --------------------------------------------------------------
    def decision(self, X: np.ndarray, theta: np.ndarray) -> np.ndarray:
        if glm_sparse.is_sparse(X):
            return glm_sparse.decision(self, X, theta)
        W, b = self.split(theta)
        return self._prepare(X) @ W + b

    def residual(self, z, y, sw, per_row=False):  # pragma: no cover - abstract
        raise NotImplementedError


class LinearKernel(GLMKernel):
    """Least squares: ℓ = ½ (z − y)²."""

    kind = "linear"

    def __init__(self, n_cols, fit_intercept, chunk_rows, dtype, n_out=1):
        super().__init__(n_cols, fit_intercept, chunk_rows, dtype, 1)
        self._r = None

    def partial(self, X, y, sw, theta, out):
        """Plain float64 rows: the C one-pass kernel, else two BLAS calls per cache block."""
        if self._fused(X, y, sw, theta, out):
            return
        if self._convert or self.scale is not None or sw is not None:
            return super().partial(X, y, sw, theta, out)
        d = self.n_cols
        w = theta[:d]
        b = theta[d] if self.fit_intercept else 0.0
        if self._r is None or self._r.shape[0] < self.block:
            self._r = np.empty(self.block)
        out[:] = 0.0
        grad = out[:d]
        for lo in range(0, X.shape[0], self.block):
            hi = min(lo + self.block, X.shape[0])
            Xb, r = X[lo:hi], self._r[:hi - lo]
            np.dot(Xb, w, out=r)
            r -= y[lo:hi]
            if self.fit_intercept:
                r += b
                out[d] += r.sum()
            out[-2] += 0.5 * np.dot(r, r)
            np.dot(r, Xb, out=self._g)  # Xbᵀ r while the block is still in cache
            grad += self._g
        out[-1] = X.shape[0]

    def residual(self, z, y, sw, per_row=False):
        r = z - y
        wr = r if sw is None else r * sw
        if per_row:
            return wr, 0.5 * r * wr
        return wr, 0.5 * float(np.dot(r, wr))

    def gram_partial(self, X: np.ndarray, y: np.ndarray, sw: np.ndarray | None, out: np.ndarray) -> None:
        """Write ``[G (p×p, flattened), c (p), Σ s y²]`` for the chunk (Z = [X, 1])."""
        p, d = self.n_params, self.n_cols
        G = out[:p * p].reshape(p, p)
        c = out[p * p:p * p + p]
        X64 = np.asarray(X, dtype=np.float64)
        Xw = X64 if sw is None else X64 * sw[:, None]
        yw = y if sw is None else y * sw
        G[:d, :d] = Xw.T @ X64
        c[:d] = yw @ X64
        if self.fit_intercept:
            col = Xw.sum(axis=0)
            G[:d, d] = col
            G[d, :d] = col
            G[d, d] = X64.shape[0] if sw is None else sw.sum()
            c[d] = yw.sum()
        out[-1] = yw @ y

    @property
    def gram_width(self) -> int:
        return self.n_params * self.n_params + self.n_params + 1


class LogisticKernel(GLMKernel):
    """Binary log-loss: ℓ = log(1 + eᶻ) − y z for y ∈ {0, 1}."""

    kind = "logistic"

    def __init__(self, n_cols, fit_intercept, chunk_rows, dtype, n_out=1):
        super().__init__(n_cols, fit_intercept, chunk_rows, dtype, 1)

    def residual(self, z, y, sw, per_row=False):
        from scipy.special import expit, log_expit  # here: scipy.special costs ~0.2 s per rank to import

        p = expit(z)
        r = p - y
        loss = -log_expit(-z) - y * z  # softplus(z) − y z, stable for large |z|
        if sw is not None:
            r *= sw
            loss *= sw
        return r, (loss if per_row else float(loss.sum()))

    def proba(self, X, theta):
        from scipy.special import expit

        return expit(self.decision(X, theta))


class SoftmaxKernel(GLMKernel):
    """Multinomial log-loss: ℓ = logsumexp(z) − z_y for y ∈ {0, …, K−1}."""

    kind = "softmax"

    def residual(self, z, y, sw, per_row=False):
        zmax = z.max(axis=1, keepdims=True)
        e = np.exp(z - zmax)
        s = e.sum(axis=1, keepdims=True)
        labels = y.astype(np.intp)
        rows = np.arange(len(labels))
        loss = (np.log(s[:, 0]) + zmax[:, 0]) - z[rows, labels]
        p = e / s
        p[rows, labels] -= 1.0
        if sw is not None:
            p *= sw[:, None]
            loss *= sw
        return p, (loss if per_row else float(loss.sum()))

    def proba(self, X, theta):
        z = self.decision(X, theta)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


KERNELS = {"linear": LinearKernel, "logistic": LogisticKernel, "softmax": SoftmaxKernel}


def make_kernel(kind: str, n_cols: int, fit_intercept: bool, chunk_rows: int, dtype,
                n_classes: int = 1) -> GLMKernel:
    if kind not in KERNELS:
        raise UserError(f"model.kind must be one of {', '.join(KERNELS)} for this runner, got {kind!r}")
    return KERNELS[kind](n_cols, fit_intercept, chunk_rows, dtype, n_out=n_classes)


# -- helpers on reduced quantities (d×d work, no data) ------------------------------

def split_gram(total: np.ndarray, n_params: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Unpack a reduced gram vector into (G, c, Σ s y²)."""
    p = n_params
    return total[:p * p].reshape(p, p), total[p * p:p * p + p], float(total[-1])


def gram_grad_loss(G: np.ndarray, c: np.ndarray, yty: float, weight_sum: float, theta: np.ndarray,
                   grad_out: np.ndarray) -> float:
    """Gradient (into ``grad_out``) and loss from the normal-equation terms: d×d work."""
    Gt = G @ theta
    np.subtract(Gt, c, out=grad_out)
    grad_out /= weight_sum
    return 0.5 * (theta @ Gt - 2.0 * (c @ theta) + yty) / weight_sum


def solve_normal(G: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Least-squares θ from the normal equations (Cholesky, lstsq if singular).

    numpy alone: scipy.linalg would cost every rank ~0.15 s of start-up for one d x d solve.
    """
    try:
        L = np.linalg.cholesky(G)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(G, c, rcond=None)[0]
    return np.linalg.solve(L.T, np.linalg.solve(L, c))
