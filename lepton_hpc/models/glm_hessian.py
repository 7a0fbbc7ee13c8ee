"""Second-order partials of the GLMs per chunk: the gradient and the Hessian in one pass, or H·v.

Written against a :class:`~lepton_hpc.models.glm.GLMKernel` (its ``split``, ``_prepare`` and
``residual``), so standardisation and float32 storage behave as in the gradient kernels.
With ``Xa = [X, 1]`` (the 1 only with an intercept) every parameter is ``θ[j·K + k]`` for
feature row ``j`` of ``Xa`` and class ``k``, the layout of the gradient kernels.

* linear: ``H = Xaᵀ diag(s) Xa``; logistic: ``H = Xaᵀ diag(s p (1 − p)) Xa``;
* softmax: block ``(k, l)`` is ``Xaᵀ diag(s p_k (δ_kl − p_l)) Xa``, a (dK) x (dK) matrix.

A dense partial row is ``[gradient partial (kernel.width), upper triangle of H (row-major)]``;
an H·v partial row is ``[H v (n_params), 0, Σ s]``. Each chunk's row depends only on the
chunk, so the exact chunk reduction keeps the result the same on any rank count.
"""

from __future__ import annotations

import numpy as np


class CurvatureKernel:
    def __init__(self, kernel):
        self.k = kernel
        self.n_params = p = kernel.n_params
        self.rows_a = kernel.n_cols + (1 if kernel.fit_intercept else 0)  # columns of Xa
        self.triu = np.triu_indices(p)
        self.dense_width = kernel.width + len(self.triu[0])
        self._H = np.empty((p, p))

    def _blocks(self, X, y, sw):
        """(Xa, y, sw) per cache block of the chunk, Xa prepared and augmented by the intercept column."""
        k = self.k
        for lo in range(0, X.shape[0], k.block):
            hi = min(lo + k.block, X.shape[0])
            Xb = k._prepare(X[lo:hi])
            if k.fit_intercept:
                Xa = np.empty((hi - lo, self.rows_a))
                Xa[:, :-1] = Xb
                Xa[:, -1] = 1.0
            else:
                Xa = np.asarray(Xb, dtype=np.float64)
            yield Xa, y[lo:hi], None if sw is None else sw[lo:hi]

    def _z(self, Xa, theta):
        K = self.k.n_out
        return Xa @ (theta if K == 1 else theta.reshape(self.rows_a, K))

    def _probs(self, z):
        if self.k.kind == "logistic":
            from scipy.special import expit

            return expit(z)
        if self.k.kind == "softmax":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return None

    def _hess_block(self, Xa, z, sw, H):
        """Add the block's Hessian to ``H`` (p x p)."""
        kind, K = self.k.kind, self.k.n_out
        s = np.ones(len(Xa)) if sw is None else sw
        if kind != "softmax":
            if kind == "linear":
                c = s
            else:
                q = self._probs(z)
                c = s * q * (1.0 - q)
            H += Xa.T @ (Xa * c[:, None])
            return
        P = self._probs(z)
        H4 = H.reshape(self.rows_a, K, self.rows_a, K)
        for a in range(K):
            for b in range(a, K):
                c = s * P[:, a] * ((1.0 if a == b else 0.0) - P[:, b])
                B = Xa.T @ (Xa * c[:, None])
                H4[:, a, :, b] += B
                if b != a:
                    H4[:, b, :, a] += B.T

    def dense_partial(self, X, y, sw, theta, out) -> None:
        """``out`` = [gradient partial, triu(H)] of the chunk, in one pass over its blocks."""
        k, p = self.k, self.n_params
        out[:] = 0.0
        H = self._H
        H[:] = 0.0
        for Xa, yb, swb in self._blocks(X, y, sw):
            z = self._z(Xa, theta)
            dz, loss = k.residual(z, yb, swb)
            out[:p] += (Xa.T @ dz).ravel()
            out[p] += loss
            out[p + 1] += len(yb) if swb is None else swb.sum()
            self._hess_block(Xa, z, swb, H)
        out[k.width:] = H[self.triu]

    def hv_partial(self, X, y, sw, theta, v, out) -> None:
        """``out`` = [H v, 0, Σ s] of the chunk at ``theta``."""
        kind, K, p = self.k.kind, self.k.n_out, self.n_params
        out[:] = 0.0
        for Xa, yb, swb in self._blocks(X, y, sw):
            s = np.ones(len(Xa)) if swb is None else swb
            u = self._z(Xa, v)
            if kind == "softmax":
                P = self._probs(self._z(Xa, theta))
                Pu = P * u
                R = (Pu - P * Pu.sum(axis=1, keepdims=True)) * s[:, None]
            elif kind == "logistic":
                q = self._probs(self._z(Xa, theta))
                R = u * s * q * (1.0 - q)
            else:
                R = u * s
            out[:p] += (Xa.T @ R).ravel()
            out[p + 1] += s.sum()

    def unpack(self, total: np.ndarray) -> np.ndarray:
        """The symmetric p x p Hessian sum from a reduced dense row."""
        p = self.n_params
        H = np.zeros((p, p))
        H[self.triu] = total[self.k.width:]
        H.T[self.triu] = total[self.k.width:]
        return H
