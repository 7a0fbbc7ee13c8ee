"""Damped Newton for the GLMs (``train.solver = "newton"``), one loop step per Newton iteration.

Dense (``d·K <= train.newton_max_params`` and the per-chunk Hessian rows fit in
:data:`DENSE_BUDGET_BYTES`): each evaluation is one pass that forms the gradient and the
p x p Hessian ``XaᵀDXa`` together, per chunk (:mod:`lepton_hpc.models.glm_hessian`), reduced
with the exact chunk reduction. The step solves ``(H + τI) d = −g`` by Cholesky
(``scipy.linalg.cho_factor``) with ``τ = 1e-10 · mean(diag H)``; when H + τI is not positive
definite τ grows by 100x (up to 8 times), then the step falls back to −g. The softmax
Hessian is singular along the shift of every class's intercept; the small τ makes that
direction harmless.

Newton-CG (larger models): the direction comes from conjugate gradients on ``H d = −g``,
each H·v product one pass with an exact reduction, stopped at a residual of
``min(0.5, sqrt|g|)·|g|``, at negative curvature or after 100 products.

Least squares (model.kind=linear) takes the normal equations of the reference pass instead:
the Hessian is ``XaᵀXa / Σs`` exactly and the gradient ``(Gθ − c) / Σs`` is d x d work, so its
iterations read no data (``passes`` 0).

Both take Armijo backtracking from the full step ``a = 1`` (``F(θ + a d) <= F + 1e-4 a gᵀd``);
the accepted dense trial's pass already holds the next Hessian, so an iteration whose
full step is accepted costs one pass. The checkpoint adds the Hessian at θ (dense) to the
quasi-Newton state of :class:`~lepton_hpc.problems.glm_qn.Method`.
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import Part
from ..models.glm import gram_grad_loss
from ..models.glm_hessian import CurvatureKernel
from ..reduce import ChunkReducer
from .glm_linesearch import backtracking
from .glm_qn import Method

DENSE_BUDGET_BYTES = 1 << 30  # all chunks' Hessian rows (the 1-rank worst case): else Newton-CG
CG_MAX = 100


def dense_fits(kernel, n_chunks: int, max_params: int) -> bool:
    """The dense Hessian path applies: the same answer on any rank count (global sizes only)."""
    curv_width = kernel.width + kernel.n_params * (kernel.n_params + 1) // 2
    return kernel.n_cols * kernel.n_out <= max_params and n_chunks * curv_width * 8 <= DENSE_BUDGET_BYTES


class Newton(Method):
    name = "newton"

    def __init__(self, problem, dense: bool):
        super().__init__(problem)
        self.dense, self.shard = dense, problem.shard
        self.curv = CurvatureKernel(problem.kernel)
        width = self.curv.dense_width if dense else problem.kernel.width
        self.red = ChunkReducer(problem.comm, problem.shard.layout, width, problem.cfg.comm.reduction)
        self.l2 = np.zeros(self.n)
        self.l2[:self.penalty.n_weights] = self.penalty.l2
        self.H = np.zeros((self.n, self.n)) if dense else None
        self.damping = 0.0
        # least squares: the reference pass's normal equations are the exact constant Hessian and give
        # the gradient with d x d work, so an iteration reads no data
        ref = problem.ref
        self.gram = ref if problem.kernel.kind == "linear" and ref.G is not None and dense else None

    def _reduce(self):
        with self.pb.timer.phase("reduce", self.stats["iterations"]):
            total = self.red.reduce()
        p = self.n
        weight = total[p + 1] if total[p + 1] > 0 else 1.0
        return total, weight

    # -- passes (collective) ---------------------------------------------------------------
    def evaluate(self, theta):
        if not self.dense:
            return super().evaluate(theta)
        if self.gram is not None:
            return self._evaluate_gram(theta)
        with self.pb.timer.phase("compute", self.stats["iterations"]):
            for i, X, y, sw in self.shard.chunks_iter():
                self.curv.dense_partial(X, y, sw, theta, self.red.partials[i])
        total, weight = self._reduce()
        g = total[:self.n] / weight
        loss = float(total[self.n]) / weight + self.penalty.add_smooth(theta, g)
        H = self.curv.unpack(total) / weight
        H[np.diag_indices(self.n)] += self.l2
        self.trial_H = H
        self.stats["function_evals"] += 1
        self.stats["hessian_evals"] += 1
        return loss, g

    def _evaluate_gram(self, theta):
        r, g = self.gram, np.empty(self.n)
        loss = gram_grad_loss(r.G, r.c, r.yty, r.weight_sum, theta, g) + self.penalty.add_smooth(theta, g)
        H = r.G / r.weight_sum
        H[np.diag_indices(self.n)] += self.l2
        self.trial_H = H
        self.stats["function_evals"] += 1
        self.stats["hessian_evals"] += 1
        return loss, g

    @property
    def passes(self) -> int:
        return 0 if self.gram is not None else super().passes

    def hv(self, theta, v):
        with self.pb.timer.phase("compute", self.stats["iterations"]):
            for i, X, y, sw in self.shard.chunks_iter():
                self.curv.hv_partial(X, y, sw, theta, v, self.red.partials[i])
        total, weight = self._reduce()
        self.stats["hv_evals"] += 1
        return total[:self.n] / weight + self.l2 * v

    def current(self, theta, grad_out):
        if self.loss is None:
            self.loss, self.g = self.evaluate(theta)
            if self.dense:
                self.H = self.trial_H
        grad_out[:] = self.g
        return self.loss

    # -- directions ------------------------------------------------------------------------
    def _cholesky_step(self, g):
        from scipy.linalg import LinAlgError, cho_factor, cho_solve

        H = self.H
        tau = 1e-10 * max(float(np.mean(np.diag(H))), 1e-300)
        for _ in range(9):
            try:
                factor = cho_factor(H + tau * np.eye(self.n), lower=False, check_finite=True)
                self.damping = tau
                return -cho_solve(factor, g)
            except (LinAlgError, ValueError):
                tau *= 100.0
        self.damping = -1.0  # no positive definite H + τI: a gradient step
        return -g

    def _cg_step(self, theta, g):
        gn = float(np.linalg.norm(g))
        tol = min(0.5, np.sqrt(gn)) * gn
        x = np.zeros(self.n)
        r = -g.copy()
        p = r.copy()
        rr = float(r @ r)
        for it in range(min(CG_MAX, self.n)):
            Hp = self.hv(theta, p)
            pHp = float(p @ Hp)
            if not pHp > 0:  # negative curvature: what CG has so far, or steepest descent
                return -g if it == 0 else x
            alpha = rr / pHp
            x += alpha * p
            r -= alpha * Hp
            rr_new = float(r @ r)
            if np.sqrt(rr_new) <= tol:
                break
            p = r + (rr_new / rr) * p
            rr = rr_new
        return x

    def step(self, theta):
        """One damped Newton iteration. Collective."""
        f0, g0 = self.loss, self.g
        d = self._cholesky_step(g0) if self.dense else self._cg_step(theta, g0)
        slope = float(g0 @ d)
        if not (np.isfinite(slope) and slope < 0):
            d = -g0
            slope = float(g0 @ d)

        def evaluate(a):
            x = theta + a * d
            f, g = self.evaluate(x)
            return f, (x, g, self.trial_H if self.dense else None)

        a, f, pay, _ = backtracking(evaluate, lambda a, f, _: f <= f0 + 1e-4 * a * slope, 1.0)
        if a is None:
            self.accept(theta, None, None, None)
            return
        x, g, H = pay
        self.new_theta = x
        if self.dense:
            self.H = H
        self.accept(theta, a, f, g)

    # -- state -------------------------------------------------------------------------------
    def summary(self):
        return {**super().summary(), "hessian": "dense" if self.dense else "cg", "damping": self.damping}

    def state(self):
        parts, attrs = super().state()
        if self.dense:
            parts["solver/H"] = Part(self.H.copy())
        attrs["solver/damping"] = self.damping
        return parts, attrs

    def load(self, snap):
        why = super().load(snap)
        if why is None:
            self.damping = float(snap.group_attrs("solver").get("damping", 0.0))
            if self.dense:
                H = snap.replicated("solver/").get("solver/H")
                if H is None or np.shape(H) != (self.n, self.n):
                    return (f"checkpoint in {snap.directory} holds no {self.n} x {self.n} Hessian for "
                            f"train.solver=newton; resume with the same model or start a fresh --out")
                self.H = np.array(H, dtype=np.float64)
        return why
