"""How a GLM's gradient is computed each step: one strategy per solver, chosen once at setup.

``full`` (every row: chunk partials, one C call over the chunk table when it applies,
then one exact reduction), ``minibatch`` (the batch's rows or blocks, same reduction),
``gram`` (d x d work from the normal equations of the reference pass), ``svd_gd``
(whitened coordinates of the TSQR factors: the Hessian is the identity) and ``svd``
(the direct solve; no steps). Each offers ``gradient(theta, grad, step) -> loss``
(collective; the penalty is added by the problem) and ``n_coords``.
"""

from __future__ import annotations

import numpy as np

from .. import comm as C
from ..models.glm import gram_grad_loss
from ..reduce import WIDE_PARTIAL, ChunkReducer
from . import glm_memory
from .glm_memory import GRAM_MAX_BYTES, gram_fits


class FullBatch:
    """Every local row, every step."""

    def __init__(self, comm, shard, kernel, reduction: str, timer):
        self.shard, self.kernel, self.timer = shard, kernel, timer
        self.reducer = ChunkReducer(comm, shard.layout, kernel.width, reduction)
        self.plan = kernel.plan(shard)  # one C call per full-batch step, when it applies
        self.n_coords = kernel.n_params
        # sparse X with wide partials (one float per feature): chunk partials made on demand inside
        # the reduction tree, so the n_chunks x width table is never held (the same bits)
        self.lazy = (getattr(shard, "sparse", False) and shard.in_memory
                     and kernel.width >= WIDE_PARTIAL and type(self) is FullBatch)
        self._views = [v for _, *v in shard.chunks_iter()] if self.lazy else None

    @property
    def bytes_reduced_per_step(self) -> int:
        return self.reducer.bytes_per_reduce

    def partials(self, theta: np.ndarray, step: int) -> None:
        k, out = self.kernel, self.reducer.partials
        if self.plan is not None:
            k.partials_all(self.plan, theta, out)
        else:
            for i, X, y, sw in self.shard.chunks_iter():
                k.partial(X, y, sw, theta, out[i])

    def gradient(self, theta: np.ndarray, grad: np.ndarray, step: int) -> float:
        """Mean loss at ``theta``; the mean gradient into ``grad``. Collective."""
        if self.lazy:
            k, views = self.kernel, self._views
            with self.timer.phase("compute", step):
                self.reducer.local_lazy(lambda i, dst: k.partial(*views[i], theta, dst))
            with self.timer.phase("reduce", step):
                total = self.reducer.exchange()
        else:
            with self.timer.phase("compute", step):
                self.partials(theta, step)
            with self.timer.phase("reduce", step):
                total = self.reducer.reduce()
        p = self.kernel.n_params
        weight = total[-1]
        np.divide(total[:p], weight if weight > 0 else 1.0, out=grad)
        return float(total[p]) / weight if weight > 0 else 0.0


class MiniBatch(FullBatch):
    """The rows (or contiguous blocks) of batch ``step``, drawn from (seed, epoch): the same on any rank count."""

    def __init__(self, comm, shard, kernel, reduction: str, timer, batches):
        super().__init__(comm, shard, kernel, reduction, timer)
        self.batches = batches

    def partials(self, theta: np.ndarray, step: int) -> None:
        self.batches.partials(step, self.kernel, theta, self.reducer.partials)


class Gram:
    """Least squares from the reduced normal equations: each step is d x d work, no data pass."""

    bytes_reduced_per_step = 0

    def __init__(self, ref, timer):
        self.ref, self.timer = ref, timer
        self.n_coords = ref.G.shape[0]

    def gradient(self, theta: np.ndarray, grad: np.ndarray, step: int) -> float:
        r = self.ref
        with self.timer.phase("compute", step):
            return gram_grad_loss(r.G, r.c, r.yty, r.weight_sum, theta, grad)


class Whitened:
    """Gradient descent in the whitened coordinates phi of Z = U S V^T (theta = V S^-1 phi)."""

    bytes_reduced_per_step = 0

    def __init__(self, fac, yty: float, weight_sum: float, timer):
        self.fac, self.yty, self.weight_sum, self.timer = fac, yty, weight_sum, timer
        self.n_coords = fac.S.shape[0]

    def gradient(self, phi: np.ndarray, grad: np.ndarray, step: int) -> float:
        f = self.fac
        with self.timer.phase("compute", step):
            np.subtract(phi, f.uty, out=grad)
            return 0.5 * (phi @ phi - 2.0 * (phi @ f.uty) + self.yty) / self.weight_sum


def make_strategy(problem):
    """The strategy for ``train.solver`` (and mini-batches); the svd solve uses the full pass for its loss."""
    cfg, sh, k, t = problem.cfg, problem.shard, problem.kernel, problem.timer
    solver = cfg.train.solver
    if solver == "gram":
        return Gram(problem.ref, t)
    if solver == "svd_gd":
        return Whitened(problem.fac, problem.ref.yty, problem.ref.weight_sum, t)
    if problem.batches is not None:
        return MiniBatch(problem.comm, sh, k, cfg.comm.reduction, t, problem.batches)
    return FullBatch(problem.comm, sh, k, cfg.comm.reduction, t)


#: the solvers that run as a :class:`~lepton_hpc.problems.glm_qn.Method` (one iteration per loop step)
METHODS = ("lbfgs", "owlqn", "newton")
#: auto takes newton for logistic/softmax up to this d·K (a dense Hessian pass costs ~ d·K/8 gradient passes)
AUTO_NEWTON_MAX_PARAMS = 8


def l1_in_config(model) -> bool:
    """The job's penalty has an L1 part (l1, or elasticnet with l1_ratio > 0, at reg > 0)."""
    return model.reg > 0 and (model.penalty == "l1" or (model.penalty == "elasticnet" and model.l1_ratio > 0))


def choose_solver(cfg, n_cols: int, n_classes: int, sparse: bool = False) -> tuple[str, str]:
    """``(solver, why)``: ``train.solver`` with ``auto`` made concrete, and the reason in a few words.

    auto: mini-batches (train.batch_size) keep gd; an L1 part takes owlqn; sparse X lbfgs; least squares takes
    newton when d <= train.newton_max_params and X^T X fits :data:`~.glm_memory.GRAM_MAX_BYTES` (its
    Hessian is the reference pass's X^T X: an iteration reads no data); logistic/softmax take newton only
    when d·K <= AUTO_NEWTON_MAX_PARAMS, else lbfgs. Measured at 10^6 x 64 (logistic, -n 2): a dense-Hessian
    pass costs about 9 gradient passes while L-BFGS needs under 2x Newton's iterations, so past a few
    parameters lbfgs is faster.
    """
    solver = cfg.train.solver
    if solver != "auto":
        return solver, "train.solver"
    if cfg.train.batch_size:
        return "gd", "mini-batches (train.batch_size)"
    if l1_in_config(cfg.model):
        return "owlqn", f"model.penalty={cfg.model.penalty} has an L1 part"
    if sparse:  # the Hessian kernels read dense rows: quasi-Newton on CSR X
        return "lbfgs", "sparse X"
    if cfg.model.kind == "linear":  # newton's constant Hessian is the reference pass's XᵀX, when formed
        if n_cols > cfg.train.newton_max_params:
            return "lbfgs", f"least squares, d={n_cols} > train.newton_max_params={cfg.train.newton_max_params}"
        if not gram_fits(n_cols):
            return "lbfgs", f"least squares, d={n_cols}: XᵀX is not formed (over {GRAM_MAX_BYTES >> 20} MiB)"
        return "newton", f"least squares, d={n_cols}: the Hessian is XᵀX"
    k = n_cols * n_classes
    if k <= AUTO_NEWTON_MAX_PARAMS:
        return "newton", f"model.kind={cfg.model.kind}, d·K={k} <= {AUTO_NEWTON_MAX_PARAMS}"
    return "lbfgs", f"model.kind={cfg.model.kind}, d·K={k} > {AUTO_NEWTON_MAX_PARAMS}"


def make_method(problem, solver: str):
    """The quasi-Newton/Newton solver object for ``solver`` (None for the first-order solvers)."""
    if solver not in METHODS:
        return None
    from .glm_newton import Newton, dense_fits
    from .glm_qn import LBFGS, OWLQN

    tc = problem.cfg.train
    if solver == "newton":
        dense = dense_fits(problem.kernel, problem.shard.n_chunks, tc.newton_max_params)
        if dense:  # the Hessian pass: per-chunk rows and p x p matrices
            C.agree(problem.comm, check_newton, problem, C.node_size(problem.comm))
        return Newton(problem, dense)
    return (OWLQN if solver == "owlqn" else LBFGS)(problem, tc.lbfgs_memory)


def check_newton(problem, node_ranks: int) -> None:
    """Dense Newton's Hessian rows and matrices fit this rank's memory (:mod:`.glm_memory`)."""
    sh, p = problem.shard, problem.kernel.n_params
    width = problem.kernel.width + p * (p + 1) // 2  # CurvatureKernel.dense_width
    glm_memory.check(sh, glm_memory.newton_bytes(sh.layout.max_local_chunks, width, p),
                     f"dense Newton's {p} x {p} Hessian", "lower train.newton_max_params below "
                     f"{problem.shard.n_cols * problem.kernel.n_out} (Newton-CG) or use train.solver=lbfgs",
                     node_ranks)
