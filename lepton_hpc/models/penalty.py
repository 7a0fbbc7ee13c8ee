"""Regularisation on the weights (never the intercept): l2, l1 and elastic net.

The smooth part (½·reg·(1−l1_ratio)·‖w‖², or all of reg for l2) goes into
the gradient; the L1 part (reg·l1_ratio·‖w‖₁) is applied as a proximal step
(soft thresholding by η·reg·l1_ratio) after each update.
"""

from __future__ import annotations

import numpy as np


class Penalty:
    def __init__(self, kind: str, reg: float, l1_ratio: float, n_weights: int):
        self.n_weights = n_weights
        share_l1 = {"none": 0.0, "l2": 0.0, "l1": 1.0, "elasticnet": l1_ratio}[kind]
        strength = 0.0 if kind == "none" else reg
        self.l2 = strength * (1.0 - share_l1)
        self.l1 = strength * share_l1

    @property
    def has_l1(self) -> bool:
        return self.l1 > 0

    def add_smooth(self, theta: np.ndarray, grad: np.ndarray) -> float:
        """Add the L2 gradient in place; return the whole penalty value (L1 included)."""
        w = theta[:self.n_weights]
        value = 0.0
        if self.l2:
            grad[:self.n_weights] += self.l2 * w
            value += 0.5 * self.l2 * float(w @ w)
        if self.l1:
            value += self.l1 * float(np.abs(w).sum())
        return value

    def prox(self, theta: np.ndarray, eta: float) -> None:
        """Soft-threshold the weights by η·l1 (the proximal step of the L1 term)."""
        if self.l1:
            w = theta[:self.n_weights]
            np.copyto(w, np.sign(w) * np.maximum(np.abs(w) - eta * self.l1, 0.0))

    def stationarity(self, theta: np.ndarray, grad: np.ndarray) -> float:
        """Norm of the smallest subgradient of the whole loss at ``theta``: 0 exactly at the optimum.

        ``grad`` holds the smooth part's gradient (L2 included). Without L1 this
        is ``|grad|``; with L1 the smooth gradient stays nonzero at the optimum,
        so each weight adds ``l1·sign(w)`` (w ≠ 0) or shrinks ``|g|`` by ``l1`` (w = 0).
        """
        if not self.l1:
            return float(np.linalg.norm(grad))
        w, g = theta[:self.n_weights], grad[:self.n_weights]
        sub = np.where(w != 0, g + self.l1 * np.sign(w), np.sign(g) * np.maximum(np.abs(g) - self.l1, 0.0))
        rest = grad[self.n_weights:]
        return float(np.sqrt(sub @ sub + rest @ rest))

    def l2_hessian(self, n_params: int) -> np.ndarray:
        """The L2 term's Hessian (diagonal over weights, 0 for intercepts)."""
        d = np.zeros(n_params)
        d[:self.n_weights] = self.l2
        return np.diag(d)
