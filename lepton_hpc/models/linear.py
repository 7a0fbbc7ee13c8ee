"""Linear least squares on local arrays: f(θ) = ½‖Xw + b − y‖² / n.

Numpy only: these kernels see one chunk at a time and return unnormalised
sums; the trainer reduces them over chunks and ranks and divides by n.
The parameter vector is θ = [w, b] (b only with an intercept).
"""

from __future__ import annotations

import numpy as np

CACHE_BLOCK_BYTES = 256 * 1024  # a block of rows that stays in L2 between the two passes


def block_rows(n_cols: int, itemsize: int = 8) -> int:
    """Rows per cache block: X·w then Xᵀ·r reread the block from cache, not memory."""
    return max(16, CACHE_BLOCK_BYTES // (n_cols * itemsize) // 16 * 16)


class LinearKernel:
    """Per-chunk gradient and loss partials with preallocated scratch.

    A partial row is ``[Xᵀr (n_cols), Σr (if intercept), ½Σr²]`` for
    residual r = Xw + b − y over the chunk's rows, summed over cache-sized
    blocks in a fixed order, so a chunk's partial has the same bits on every
    rank.
    """

    def __init__(self, n_cols: int, fit_intercept: bool, chunk_rows: int, dtype):
        self.n_cols = n_cols
        self.fit_intercept = fit_intercept
        self.n_params = n_cols + int(fit_intercept)
        self.width = self.n_params + 1  # + loss
        self.block = min(chunk_rows, block_rows(n_cols))
        self.r = np.empty(self.block)
        self.g = np.empty(n_cols)
        self.convert = np.dtype(dtype) != np.float64
        self.xbuf = np.empty((self.block, n_cols)) if self.convert else None

    def partial(self, X: np.ndarray, y: np.ndarray, theta: np.ndarray, out: np.ndarray) -> None:
        """Write the chunk's partial row into ``out`` (length ``width``)."""
        d = self.n_cols
        w = theta[:d]
        b = theta[d] if self.fit_intercept else 0.0
        out[:] = 0.0
        for lo in range(0, X.shape[0], self.block):
            hi = min(lo + self.block, X.shape[0])
            m = hi - lo
            Xb = X[lo:hi]
            if self.convert:
                Xb = self.xbuf[:m]
                np.copyto(Xb, X[lo:hi])
            r = self.r[:m]
            np.dot(Xb, w, out=r)
            r -= y[lo:hi]
            if self.fit_intercept:
                r += b
                out[d] += r.sum()
            np.dot(r, Xb, out=self.g)
            out[:d] += self.g
            out[-1] += 0.5 * np.dot(r, r)

    def gram_partial(self, X: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
        """Write ``[G (p×p, flattened), c (p), yᵀy]`` for the chunk.

        G = ZᵀZ and c = Zᵀy for Z = [X, 1] (the 1 column only with an
        intercept); they define the normal equations and the gram solver.
        """
        p = self.n_params
        G = out[:p * p].reshape(p, p)
        c = out[p * p:p * p + p]
        X64 = np.asarray(X, dtype=np.float64)
        d = self.n_cols
        G[:d, :d] = X64.T @ X64
        c[:d] = y @ X64
        if self.fit_intercept:
            col = X64.sum(axis=0)
            G[:d, d] = col
            G[d, :d] = col
            G[d, d] = X64.shape[0]
            c[d] = y.sum()
        out[-1] = y @ y

    @property
    def gram_width(self) -> int:
        return self.n_params * self.n_params + self.n_params + 1


def split_gram(total: np.ndarray, n_params: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Unpack a reduced gram vector into (G, c, yᵀy)."""
    p = n_params
    return total[:p * p].reshape(p, p), total[p * p:p * p + p], float(total[-1])


def gram_grad_loss(G: np.ndarray, c: np.ndarray, yty: float, n_rows: int, theta: np.ndarray,
                   grad_out: np.ndarray) -> float:
    """Gradient (into ``grad_out``) and loss from the normal-equation terms: d×d work."""
    Gt = G @ theta
    np.subtract(Gt, c, out=grad_out)
    grad_out /= n_rows
    return 0.5 * (theta @ Gt - 2.0 * (c @ theta) + yty) / n_rows


def solve_normal(G: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Least-squares θ from the normal equations (Cholesky, lstsq if singular)."""
    import scipy.linalg

    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(G), c)
    except np.linalg.LinAlgError:
        return scipy.linalg.lstsq(G, c)[0]
