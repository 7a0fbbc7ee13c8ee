"""Quasi-Newton GLM solvers on the engine loop: ``lbfgs`` and ``owlqn`` (``train.solver``).

One loop step is one solver iteration. :meth:`Method.current` hands the loop the objective
and gradient at the current θ (cached from the last line search: no pass), and
:meth:`Method.step` takes the iteration: the direction from the L-BFGS two-loop recursion
over the last ``train.lbfgs_memory`` pairs (s, y), then a line search whose every
evaluation is one pass over the data with one exact chunk reduction. Everything after
the reduction is replicated arithmetic on identical numbers, so every rank takes the same
steps and the parameters are the same bits on any rank count.

* ``lbfgs``: strong-Wolfe line search (:func:`.glm_linesearch.strong_wolfe`); the first
  iteration tries ``a = 1/|g|``, later ones ``a = 1`` with the Barzilai-Borwein scaling
  ``γ = sᵀy / yᵀy`` of the initial inverse Hessian. A pair with ``sᵀy <= 1e-10 |s||y|`` is
  not stored.
* ``owlqn``: Andrew & Gao's orthant-wise L-BFGS for an L1 part (as Spark MLlib's OWLQN):
  the pseudo-gradient of the whole objective steers; the direction is projected onto the
  orthant of −pseudo-gradient, trial points are projected onto the current orthant, and the
  backtracking test is ``F(x') <= F(x) + 1e-4 · ◇F(x)ᵀ(x' − x)``; (s, y) come from the
  smooth part's gradients. Intercepts are never penalised.

A line search that finds no decrease sets the step length (``next_eta``) to 0, which the
loop's eta floor turns into a stop: at that point the objective is flat to float64.
The checkpoint holds θ (the problem's parts) and here: the gradient and objective at θ,
the (s, y) history, the step length and the counters, so a resume on any rank count
continues with the same bits.
"""

from __future__ import annotations

import json

import numpy as np

from ..checkpoint import Part
from .glm_linesearch import backtracking, strong_wolfe


class Method:
    """Base of the second-order and quasi-Newton solvers: the cached point, counters and state."""

    name = ""
    COUNTERS = ("iterations", "function_evals", "hessian_evals", "hv_evals", "line_search_failures")

    def __init__(self, problem):
        self.pb, self.full, self.penalty = problem, problem.solver, problem.penalty
        self.n = problem.solver.n_coords
        self.loss: float | None = None
        self.g = np.zeros(self.n)
        self.eta = 1.0
        self.stats = {k: 0 for k in self.COUNTERS}

    # -- evaluations (collective) -------------------------------------------------------
    def evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Objective (L1 included) and smooth gradient (L2 included) at ``theta``: one pass."""
        g = np.empty(self.n)
        loss = self.full.gradient(theta, g, self.stats["iterations"])
        loss += self.penalty.add_smooth(theta, g)
        self.stats["function_evals"] += 1
        return loss, g

    def current(self, theta: np.ndarray, grad_out: np.ndarray) -> float:
        """The objective at ``theta`` with its gradient into ``grad_out`` (a pass only the first time)."""
        if self.loss is None:
            self.loss, self.g = self.evaluate(theta)
        grad_out[:] = self.g
        return self.loss

    def accept(self, theta, a, loss, g) -> None:
        """Move to the accepted point (``theta`` in place), or record a failed line search."""
        self.stats["iterations"] += 1
        if a is None:
            self.stats["line_search_failures"] += 1
            self.eta = 0.0
            return
        theta[:] = self.new_theta
        self.loss, self.g, self.eta = loss, g, a

    @property
    def passes(self) -> int:
        """Passes over the data so far: every evaluation and every H·v product reads the shard once."""
        return self.stats["function_evals"] + self.stats["hv_evals"]

    def summary(self) -> dict:
        return {"method": self.name, **self.stats, "passes": self.passes}

    # -- state ----------------------------------------------------------------------
    def state(self) -> tuple[dict, dict]:
        parts = {"solver/grad": Part(self.g.copy())}
        attrs = {"solver/name": self.name, "solver/loss": -1.0 if self.loss is None else self.loss,
                 "solver/have_point": self.loss is not None, "solver/eta": self.eta,
                 "solver/stats": json.dumps(self.stats)}
        return parts, attrs

    def load(self, snap) -> str | None:
        """Restore; a sentence when the checkpoint was written by another solver."""
        attrs = snap.group_attrs("solver")
        if attrs.get("name") != self.name:
            return (f"checkpoint in {snap.directory} was written by train.solver={attrs.get('name', 'gd')}, "
                    f"this job uses {self.name}; resume with the same solver or start a fresh --out")
        arrays = snap.replicated("solver/")
        self.g = np.array(arrays["solver/grad"], dtype=np.float64)
        self.loss = float(attrs["loss"]) if bool(attrs["have_point"]) else None
        self.eta = float(attrs["eta"])
        self.stats.update(json.loads(attrs["stats"]))
        return None


class LBFGS(Method):
    name = "lbfgs"

    def __init__(self, problem, memory: int):
        super().__init__(problem)
        self.m = memory
        self.S = np.zeros((0, self.n))
        self.Y = np.zeros((0, self.n))

    def direction(self, g: np.ndarray) -> np.ndarray:
        """−H_k g by the two-loop recursion over the stored pairs (oldest first)."""
        q = g.copy()
        rho = [1.0 / float(s @ y) for s, y in zip(self.S, self.Y)]
        alpha = [0.0] * len(rho)
        for i in range(len(rho) - 1, -1, -1):
            alpha[i] = rho[i] * float(self.S[i] @ q)
            q -= alpha[i] * self.Y[i]
        if len(rho):
            s, y = self.S[-1], self.Y[-1]
            q *= float(s @ y) / float(y @ y)
        for i in range(len(rho)):
            b = rho[i] * float(self.Y[i] @ q)
            q += (alpha[i] - b) * self.S[i]
        return -q

    def remember(self, s: np.ndarray, y: np.ndarray) -> None:
        sy = float(s @ y)
        if not (sy > 1e-10 * float(np.linalg.norm(s)) * float(np.linalg.norm(y))):
            return
        self.S = np.vstack([self.S, s])[-self.m:]
        self.Y = np.vstack([self.Y, y])[-self.m:]

    def first_step(self, d: np.ndarray) -> float:
        return 1.0 if len(self.S) else min(1.0, 1.0 / max(float(np.linalg.norm(d)), 1e-300))

    def step(self, theta: np.ndarray) -> None:
        """One L-BFGS iteration with the strong-Wolfe line search. Collective."""
        f0, g0 = self.loss, self.g
        d = self.direction(g0)
        slope = float(g0 @ d)
        if not slope < 0:  # not a descent direction (a stale history): restart from steepest descent
            self.S, self.Y = self.S[:0], self.Y[:0]
            d = -g0
            slope = float(g0 @ d)

        def phi(a):
            x = theta + a * d
            f, g = self.evaluate(x)
            return f, float(g @ d), (x, g)

        a, f, pay, _ = strong_wolfe(phi, f0, slope, self.first_step(d))
        if a is not None:
            x, g = pay
            self.new_theta = x
            self.remember(x - theta, g - g0)
            self.accept(theta, a, f, g)
        else:
            self.accept(theta, None, None, None)

    def state(self):
        parts, attrs = super().state()
        parts["solver/S"], parts["solver/Y"] = Part(self.S.copy()), Part(self.Y.copy())
        return parts, attrs

    def load(self, snap):
        why = super().load(snap)
        if why is None:
            arrays = snap.replicated("solver/")
            self.S = np.array(arrays["solver/S"], dtype=np.float64).reshape(-1, self.n)[-self.m:]
            self.Y = np.array(arrays["solver/Y"], dtype=np.float64).reshape(-1, self.n)[-self.m:]
        return why


class OWLQN(LBFGS):
    name = "owlqn"

    def pseudo_gradient(self, theta: np.ndarray, g: np.ndarray) -> np.ndarray:
        """The minimum-norm subgradient of the whole objective (weights only carry the L1 part)."""
        l1, nw = self.penalty.l1, self.penalty.n_weights
        pg = g.copy()
        if l1:
            w, gw = theta[:nw], g[:nw]
            right, left = gw + l1, gw - l1
            at0 = np.where(right < 0, right, np.where(left > 0, left, 0.0))
            pg[:nw] = np.where(w != 0, gw + l1 * np.sign(w), at0)
        return pg

    def step(self, theta: np.ndarray) -> None:
        """One OWL-QN iteration with the projected backtracking line search. Collective."""
        f0, g0, nw = self.loss, self.g, self.penalty.n_weights
        pg = self.pseudo_gradient(theta, g0)
        d = self.direction(pg)
        d[:nw] = np.where(d[:nw] * pg[:nw] < 0, d[:nw], 0.0)  # keep the orthant of −pg
        if not float(pg @ d) < 0:
            self.S, self.Y = self.S[:0], self.Y[:0]
            d = -pg
        xi = np.where(theta[:nw] != 0, np.sign(theta[:nw]), -np.sign(pg[:nw]))

        def evaluate(a):
            x = theta + a * d
            x[:nw] = np.where(np.sign(x[:nw]) == xi, x[:nw], 0.0)
            f, g = self.evaluate(x)
            return f, (x, g)

        def sufficient(a, f, pay):
            return f <= f0 + 1e-4 * float(pg @ (pay[0] - theta))

        a, f, pay, _ = backtracking(evaluate, sufficient, self.first_step(d))
        if a is not None:
            x, g = pay
            self.new_theta = x
            self.remember(x - theta, g - g0)
            self.accept(theta, a, f, g)
        else:
            self.accept(theta, None, None, None)
