"""Feature standardisation from distributed moments, and back to original units.

With μ, σ the weighted mean and standard deviation of each column, the model
is fitted on x' = (x − μ)/σ. For θ' = [W', b'] on standardised features the
same predictions in original units are W = W'/σ and b = b' − μᵀW. In matrix
form θ = T θ' with T = [[diag(1/σ), 0], [−(μ/σ)ᵀ, 1]] (per output column),
which also maps normal equations: G' = Tᵀ G T and c' = Tᵀ c.
"""

from __future__ import annotations

import numpy as np


class Standardizer:
    def __init__(self, center: np.ndarray | None, scale: np.ndarray | None, fit_intercept: bool):
        self.center, self.scale, self.fit_intercept = center, scale, fit_intercept
        self.active = scale is not None

    @classmethod
    def from_moments(cls, sum_x: np.ndarray, sum_x2: np.ndarray, weight: float, enabled: bool,
                     fit_intercept: bool, center: bool = True) -> "Standardizer":
        """``center=False`` (sparse X): scale by σ without centring, as scikit-learn's
        ``StandardScaler(with_mean=False)``; ``center`` is then None and X stays sparse."""
        if not enabled:
            return cls(None, None, fit_intercept)
        mean = sum_x / weight
        var = np.maximum(sum_x2 / weight - mean * mean, 0.0)
        std = np.sqrt(var)
        std[std <= 1e-12 * np.maximum(np.abs(mean), 1.0)] = 1.0  # constant columns: leave unscaled
        return cls(mean if center else None, std, fit_intercept)

    def kernel_args(self):
        return self.center, self.scale

    def _T(self, n_params: int) -> np.ndarray:
        d = self.scale.shape[0]
        T = np.eye(n_params)
        T[:d, :d] = np.diag(1.0 / self.scale)
        T[d, :d] = -self.center / self.scale
        return T

    def transform_gram(self, G: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
        """G' = Tᵀ G T (single-output normal equations)."""
        if not self.active:
            return G
        T = self._T(G.shape[0])
        return T.T @ G @ T

    def transform_c(self, c: np.ndarray) -> np.ndarray:
        if not self.active:
            return c
        return self._T(c.shape[0]).T @ c

    def to_original(self, theta: np.ndarray) -> np.ndarray:
        """θ on standardised features → θ in original units (a new array)."""
        if not self.active:
            return theta.copy()
        d = self.scale.shape[0]
        k = theta.shape[0] // (d + int(self.fit_intercept))
        W = theta[:d * k].reshape(d, k) / self.scale[:, None]
        b = theta[d * k:] - self.center @ W if self.center is not None else theta[d * k:].copy()
        return np.concatenate([W.ravel(), b])

    def from_original(self, theta: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_original`."""
        if not self.active:
            return theta.copy()
        d = self.scale.shape[0]
        k = theta.shape[0] // (d + int(self.fit_intercept))
        W = theta[:d * k].reshape(d, k)
        b = theta[d * k:] + self.center @ W if self.center is not None else theta[d * k:].copy()
        return np.concatenate([(W * self.scale[:, None]).ravel(), b])
