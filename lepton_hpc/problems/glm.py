"""Linear, logistic and softmax models on the engine loop (``model.kind`` linear/logistic/softmax).

Every step: local chunk partials → one reduction → the same update on every
rank (:mod:`.glm_solvers` picks how the gradient is formed). The weights are
replicated; a checkpoint holds ``/model/w`` (d or d x K) and ``/model/b`` in the
original feature units, plus the exact coordinates the optimizer steps in when
those differ (standardised θ, whitened φ), so a resume continues bit for bit.
When the data file names them (:attr:`Shard.feature_names`, :attr:`Shard.classes`), the
checkpoint attrs ``feature_names`` and ``classes`` hold them as JSON lists, and summary.json's
``data`` section lists them (null when unknown).
"""

from __future__ import annotations

import json
import time

import numpy as np

from .. import comm as C
from ..checkpoint import Part, optimizer_parts, optimizer_state
from ..data.shard import Shard
from ..engine.problem import Problem
from ..errors import UserError
from .glm_metrics import evaluate
from ..optimizers import make_optimizer, optimizer_kwargs
from ..sampling import BlockBatches, MiniBatches
from .glm_reference import reference_pass
from .glm_solvers import METHODS, choose_solver, l1_in_config, make_method, make_strategy
from .glm_hints import rate_tip, steps_tip
from .glm_step import DECAYING, SCALE_FREE, auto_alpha, auto_learning_rate

SCHEDULE_DRIVEN = ("adaptive", "inverse_time", "constant")
TRAIN_AUC_MAX_ROWS = 200_000  # summary.json's train ROC AUC gathers every score to rank 0
SUMMARY_MAX_WEIGHTS = 100_000  # summary.json lists w up to this many weights (the checkpoint has all)


class GLMProblem(Problem):
    """One generalised linear model (see the module doc)."""

    config_unused = ("matmul",)

    # -- setup -----------------------------------------------------------------------
    def setup(self) -> None:
        """Open the data, make the reference pass, build the solver and optimizer. Collective."""
        cfg, comm = self.cfg, self.comm
        C.agree(comm, self._check_job)
        with self.timer.phase("read"):
            self.shard = C.agree(comm, Shard, cfg.data, comm.size, comm.rank, self._generator(),
                                 node_ranks=C.node_size(comm))
        C.agree(comm, self._check_sparse)
        self._debug_layout()
        t0 = time.perf_counter()
        self.ref = ref = reference_pass(comm, cfg, self.shard, self.timer)
        self.ctx.debug(f"reference pass: {time.perf_counter() - t0:.3f} s"
                       + (", XᵀX not formed (d x d over the limit of glm_memory)"
                          if cfg.model.kind == "linear" and ref.G is None and not self.shard.sparse else ""))
        self.fingerprint, self.n_classes, self.kernel = ref.fingerprint, ref.n_classes, ref.kernel
        self.std, self.penalty = ref.std, ref.penalty
        self.classes = C.agree(comm, self._check_classes)
        self.fac = self._factor() if cfg.train.solver in ("svd", "svd_gd") else None
        self.direct = cfg.train.solver == "svd"
        # lbfgs/owlqn/newton (auto picks one for a full-batch GLM): one iteration per loop step
        self.solver_name, why = choose_solver(cfg, self.shard.n_cols, self.n_classes, self.shard.sparse)
        if cfg.train.solver == "auto":
            self.ctx.log(f"solver auto -> {self.solver_name} ({why})")
        else:
            self.ctx.debug(f"solver {self.solver_name} (set by train.solver)")
        self.opt = C.agree(comm, self._make_optimizer)
        C.agree(comm, self._check_prox)
        self.batches = self._batches()
        self.steps_per_epoch = self.batches.steps_per_epoch if self.batches else None
        self.solver = make_strategy(self)
        if cfg.train.solver in ("gram", "svd_gd"):
            self.work_unit = None  # a step is d x d work: samples/s would mean nothing
        self.method = make_method(self, self.solver_name)
        # svd_gd steps in whitened coordinates φ (θ = V S⁻¹ φ); every other solver steps in θ.
        self.theta = np.zeros(self.solver.n_coords)
        self.grad = np.zeros(self.solver.n_coords)

    def _debug_layout(self) -> None:
        """-v: how the chunks fall on the ranks."""
        lay = self.shard.layout
        per = [len(lay.chunks(q)) for q in range(lay.size)]
        shown = ", ".join(map(str, per)) if len(per) <= 16 else f"{min(per)} to {max(per)}"
        self.ctx.debug(f"layout: {lay.n_rows:,} rows in {lay.n_chunks} chunks of {lay.chunk_rows} rows; "
                       f"chunks per rank: {shown}")

    def _make_optimizer(self):
        """The optimizer, with "auto" learning_rate/alpha resolved from the curvature (:mod:`.glm_step`)."""
        o, tc = self.cfg.optimizer, self.cfg.train
        kw = optimizer_kwargs(o)
        mu, lam_max = self.ref.curvature or (None, None)
        said = []
        if o.learning_rate == "auto":
            kw["learning_rate"] = auto_learning_rate(o.name, lam_max)
            said.append(f"learning_rate auto = {kw['learning_rate']:.4g}"
                        + (f" (1/L, L = {lam_max:.4g})" if o.name not in SCALE_FREE and lam_max else ""))
        if o.alpha == "auto":
            kw["alpha"] = auto_alpha(lambda a: make_optimizer(o.name, **{**kw, "alpha": a}), o.name, mu,
                                     tc.steps, tc.tol)
            if o.name in DECAYING:
                said.append(f"alpha auto = {kw['alpha']:.4g}" + (
                    f" (its steps reach train.tol={tc.tol:g} on curvature {mu:.4g} in train.steps={tc.steps})"
                    if kw["alpha"] > 0 else " (a constant step: no decay reaches train.tol in train.steps)"
                    if mu else f" (a constant step: the slowest curvature at the optimum of model.kind="
                               f"{self.cfg.model.kind} is not known before training)"))
        if said and not self.direct and self.solver_name not in METHODS and self.comm.rank == 0:
            self.ctx.log(f"optimizer {o.name}: " + "; ".join(said))
        return make_optimizer(o.name, **kw)

    def _batches(self):
        tc, sh = self.cfg.train, self.shard
        if tc.batch_size and tc.batch_block_rows:
            return C.agree(self.comm, BlockBatches, sh, tc.batch_size, self.cfg.data.seed, tc.batch_block_rows)
        if tc.batch_size:
            return MiniBatches(sh, tc.batch_size, self.cfg.data.seed)
        return None

    def _generator(self):
        """Synthetic data for the model kind (data.path empty); None means linear."""
        kind, d = self.cfg.model.kind, self.cfg.data
        if d.path or kind == "linear":
            return None
        from ..data.synthetic import chunk_generator

        return chunk_generator(kind, d, self.cfg.model.classes)

    def _check_job(self) -> None:
        cfg = self.cfg
        kind, solver = cfg.model.kind, cfg.train.solver
        if solver in ("gram", "svd", "svd_gd") and kind != "linear":
            raise UserError(f"train.solver={solver} solves least squares; use solver gd for model.kind={kind}")
        if solver == "als":
            raise UserError("train.solver=als is for model.kind=mf")
        if cfg.train.batch_size and solver != "gd":
            raise UserError(f"train.batch_size needs train.solver=gd, not {solver}")
        if cfg.model.standardize and not cfg.model.fit_intercept:
            raise UserError("model.standardize centres the features and needs model.fit_intercept=true")
        if solver in ("svd", "svd_gd") and (cfg.model.standardize or cfg.model.penalty != "none"):
            raise UserError(f"train.solver={solver} factors X itself: set model.standardize=false and "
                            f"model.penalty=none (or use solver gd/gram)")
        if solver in ("lbfgs", "newton") and l1_in_config(cfg.model):
            raise UserError(f"train.solver={solver} needs a smooth objective; model.penalty={cfg.model.penalty} "
                            f"has an L1 part: use train.solver=owlqn (or auto)")
        if cfg.train.batch_size and not cfg.data.in_memory:
            raise UserError("mini-batches (train.batch_size) need data.in_memory=true")

    def _check_sparse(self) -> None:
        solver = self.cfg.train.solver
        if self.shard.sparse and solver in ("gram", "svd", "svd_gd", "newton"):
            raise UserError(f"train.solver={solver} forms dense d x d (or rows x d) factors, which sparse X "
                            f"({self.shard.n_cols} columns, CSR in {self.cfg.data.path}) does not get; "
                            f"use train.solver=lbfgs (what auto picks for sparse X) or gd")

    def _check_classes(self) -> list | None:
        """The data's class labels for a logistic/softmax model (None: unknown, or linear);
        a UserError when the data names another number of classes than the model has."""
        kind, classes = self.cfg.model.kind, self.shard.classes
        if kind == "linear" or classes is None:
            return None
        k = 2 if kind == "logistic" else self.n_classes
        if len(classes) != k:
            shown = ", ".join(map(repr, classes[:6])) + (", ..." if len(classes) > 6 else "")
            if kind == "softmax" and self.ref.max_label >= len(classes):
                raise UserError(f"{self.cfg.data.path} names {len(classes)} classes ({shown}) in the attr classes "
                                f"of /{self.cfg.data.y_dataset}, but its labels go up to {self.ref.max_label} "
                                f"({self.ref.max_label + 1} classes): the file's classes attr and its labels "
                                f"disagree; re-import the data")
            hint = ("use model.kind=softmax" if kind == "logistic" else
                    f"set model.classes={len(classes)} or 0 (the data's count)" if len(classes) > 1 else
                    "a classifier needs at least 2 classes")
            raise UserError(f"{self.cfg.data.path} names {len(classes)} classes ({shown}) in the attr classes "
                            f"of /{self.cfg.data.y_dataset}, but model.kind={kind} has {k}; {hint}")
        return list(classes)

    def label_attrs(self) -> dict:
        """The checkpoint attrs ``feature_names`` and ``classes`` as JSON lists, where known."""
        named = {"feature_names": self.shard.feature_names, "classes": self.classes}
        return {k: json.dumps(v) for k, v in named.items() if v is not None}

    def _check_prox(self) -> None:
        """The L1 part is a proximal step after the update: exact for plain gradient steps only."""
        if self.cfg.train.solver in METHODS + ("auto",):  # owlqn handles the L1 part itself
            return
        if self.penalty.has_l1 and self.opt.accumulator_names:
            raise UserError(f"model.penalty={self.cfg.model.penalty} takes its L1 part as a proximal step, "
                            f"which converges to the L1 optimum only after plain gradient steps; "
                            f"optimizer.name={self.cfg.optimizer.name} keeps per-coordinate state "
                            f"({', '.join(self.opt.accumulator_names)}) that shifts the fixed point; use "
                            f"optimizer.name constant, inverse_time or adaptive")

    def _factor(self):
        """Z = U S Vᵀ by TSQR over the ranks; the SVD solution becomes the exact reference."""
        from ..linalg.lstsq import design_block, factor

        with self.timer.phase("compute"):
            Z, y = design_block(self.shard, self.cfg.model.fit_intercept)
            fac = factor(Z, y, self.comm, self.cfg.train.rcond)
        del Z, y
        self.normal_eq_theta = self.ref.theta_exact
        self.ref.theta_exact = fac.solution()
        if self.cfg.train.solver == "svd_gd":
            self.ref.curvature = (1.0, 1.0)  # the whitened problem's Hessian is the identity
        return fac

    def ready(self, step: int) -> None:
        """Warn when a decaying schedule cannot reach train.tol in the steps left (and, sparse X,
        when each chunk's dense partial row outweighs the chunk's non-zeros)."""
        sh = self.shard
        if sh.sparse and self.comm.rank == 0 and sh.n_chunks:
            partial_bytes, nnz_bytes = 8 * self.kernel.width, 12 * sh.nnz / max(len(sh.chunks), 1)
            if partial_bytes > 4 * nnz_bytes:
                kib = lambda b: f"{b / 1024:.1f} KiB"  # noqa: E731
                self.ctx.log(f"warning: each chunk's partial gradient is a dense row of {kib(partial_bytes)}, "
                             f"more than 4x the chunk's {kib(nnz_bytes)} of non-zeros; raise "
                             f"data.chunk_rows (now {sh.chunk_rows}) for less work and memory per step")
        name, tol, curv = self.opt.name, self.cfg.train.tol, self.ref.curvature
        remaining = self.cfg.train.steps - step
        if (name not in SCHEDULE_DRIVEN or remaining <= 0 or tol <= 0 or self.comm.rank != 0
                or curv is None or curv[0] is None or self.direct or self.method is not None):
            return
        etas = self.opt.schedule(remaining)
        # Gradient descent on a quadratic shrinks the error along curvature λ by Π|1 − ηₜλ|.
        lam_min, lam_max = curv
        # sparse X: only λ_max is estimated (power iteration), λ_min is None
        shrink = max(float(np.prod(np.abs(1.0 - etas * lam))) for lam in (lam_min, lam_max) if lam is not None)
        lam_min = lam_max if lam_min is None else lam_min
        if shrink > 1.0:  # a step past 2/L grows the stiffest mode: the loss will grow
            self.ctx.log(f"warning: the {name} schedule grows the error along the largest curvature "
                         f"({lam_max:.3g}) over {remaining} steps: the run will diverge; "
                         f"{self.diverged_hint()}")
            return
        # train.tol bounds the relative loss change, and the loss gap shrinks as the error squared.
        if shrink ** 2 > tol:
            self.ctx.log(f"warning: the {name} schedule's total step is {float(etas.sum()):.4g} over {remaining} "
                         f"steps, which shrinks the slowest error mode (curvature {lam_min:.3g}) only to "
                         f"{shrink:.2e} of its start (the loss gap to {shrink ** 2:.2e}), short of "
                         f"train.tol={tol:g}; {self._schedule_hint(lam_max)}")

    def _schedule_hint(self, lam_max: float) -> str:
        """What would reach train.tol: the knobs the user set by hand, more steps, another solver."""
        o = self.cfg.optimizer
        tips = [] if o.learning_rate == "auto" else [rate_tip(self.opt, lam_max, diverged=False)]
        if o.alpha != "auto" and self.opt.name in ("adaptive", "inverse_time"):
            tips.append("lower optimizer.alpha or set it to \"auto\"")
        train_rows = round(self.shard.n_rows * (1.0 - self.cfg.data.test_fraction))
        steps = steps_tip(self.opt, self.ref.curvature, self.cfg.train.tol, train_rows, self.shard.n_cols)
        return ", ".join(tips + [steps]) + self._solver_tip()

    def diverged_hint(self) -> str:
        """The loss grew: a smaller step (below the curvature bound where one applies)."""
        if self.method is not None:
            return super().diverged_hint()
        return rate_tip(self.opt, (self.ref.curvature or (None, None))[1], diverged=True)

    def _solver_tip(self) -> str:
        if self.batches is not None or self.cfg.train.solver != "gd":
            return ""
        return ", or let train.solver = \"auto\" pick a solver that needs a few passes (newton, lbfgs)"

    def not_converged_hint(self, stop_reason: str) -> str:
        if self.method is not None:  # lbfgs/owlqn/newton: no step size to tune
            return f"raise train.steps (each {self.solver_name} iteration is about one pass), or loosen train.tol"
        if stop_reason == "eta_floor" or self.ref.curvature is None:
            return super().not_converged_hint(stop_reason)
        return self._schedule_hint(self.ref.curvature[1])

    def solve(self) -> None:
        self.theta[:] = self.ref.theta_exact

    # -- one step ----------------------------------------------------------------------
    def next_eta(self) -> float:
        """The optimizer's step size; for lbfgs/owlqn/newton the last accepted line-search step (0: failed)."""
        return self.method.eta if self.method is not None else self.opt.next_eta()

    def eta_floor_hint(self) -> str:
        if self.method is not None:
            return ("the line search found no point with a lower objective: it is flat to float64 precision "
                    "here (loosen train.tol to stop earlier)")
        return super().eta_floor_hint()

    def gradient(self, step: int) -> tuple[float, float]:
        if self.method is not None:
            loss = self.method.current(self.theta, self.grad)
            return loss, float(np.linalg.norm(self.grad))
        loss = self.solver.gradient(self.theta, self.grad, step)
        loss += self.penalty.add_smooth(self.theta, self.grad)
        return loss, float(np.linalg.norm(self.grad))

    def apply_update(self, step: int, eta: float) -> None:
        if self.method is not None:
            self.method.step(self.theta)
            return
        self.opt.update(self.theta, self.grad, out=self.theta)
        self.penalty.prox(self.theta, self.opt.eta)

    def stationarity(self, grad_norm: float) -> float:
        # the smooth gradient stays nonzero at an L1 optimum: judge the smallest subgradient
        return self.penalty.stationarity(self.theta, self.grad) if self.penalty.has_l1 else grad_norm

    def work_per_step(self) -> int:
        return self.cfg.train.batch_size or self.shard.n_rows

    # -- parameters --------------------------------------------------------------------
    def model_theta(self) -> np.ndarray:
        """θ on the (possibly standardised) features, whatever coordinates the solver steps in."""
        return self.fac.theta(self.theta) if self.cfg.train.solver == "svd_gd" else self.theta

    def param_arrays(self) -> dict:
        """θ in the original feature units, as /model/w (d or d×K) and /model/b."""
        theta = self.std.to_original(self.model_theta())
        d, k = self.shard.n_cols, self.n_classes
        arrays = {"model/w": theta[:d * k].reshape(d, k) if k > 1 else theta[:d].copy()}
        if self.cfg.model.fit_intercept:
            arrays["model/b"] = theta[d * k:].copy() if k > 1 else np.float64(theta[d])
        if self.cfg.train.solver == "svd_gd":
            arrays["model/phi"] = self.theta.copy()  # exact resume in whitened coordinates
        elif self.std.active:
            arrays["model/theta_std"] = self.theta.copy()  # exact resume: w·σ/σ is not w to the bit
        return arrays

    def state(self):
        parts = {k: Part(np.asarray(v)) for k, v in self.param_arrays().items()}
        opt_parts, opt_attrs = optimizer_parts("optimizer", self.opt)
        if self.method is not None:
            m_parts, m_attrs = self.method.state()
            opt_parts, opt_attrs = {**opt_parts, **m_parts}, {**opt_attrs, **m_attrs}
        return {**parts, **opt_parts}, {**opt_attrs, "model_kind": self.cfg.model.kind,
                                        "standardized": self.std.active, **self.label_attrs()}

    def load_state(self, snap) -> None:
        C.agree(self.comm, self._load, snap)

    def _load(self, snap) -> None:
        arrays = snap.replicated("model/")
        want = {k: np.shape(v) for k, v in self.param_arrays().items()}
        got = {k: np.shape(v) for k, v in arrays.items()}
        if got != want:
            raise UserError(f"checkpoint in {snap.directory} holds parameters {got}, this job needs {want}; "
                            f"check model.fit_intercept or start a fresh --out")
        if "model/phi" in arrays:
            self.theta[:] = arrays["model/phi"]
        elif "model/theta_std" in arrays:  # θ on standardised features: no round trip through /model/w
            self.theta[:] = arrays["model/theta_std"]
        else:
            theta = np.empty(self.kernel.n_params)
            nw = self.shard.n_cols * self.n_classes
            theta[:nw] = np.asarray(arrays["model/w"]).ravel()
            if self.cfg.model.fit_intercept:
                theta[nw:] = np.asarray(arrays["model/b"]).ravel()
            self.theta[:] = self.std.from_original(theta)
        self.opt.load_state_dict(optimizer_state(snap, "optimizer", self.opt))
        written_by = snap.group_attrs("solver").get("name")
        why = None
        if self.method is not None:
            why = self.method.load(snap)
        elif written_by is not None:
            why = (f"checkpoint in {snap.directory} was written by train.solver={written_by}, this job uses "
                   f"{self.solver_name}; resume with the same solver or start a fresh --out")
        if why:
            raise UserError(why)

    # -- the end -----------------------------------------------------------------------
    def final(self) -> dict:
        """Final loss and gradient norm (full batch) and the train/test metrics. Collective."""
        strategy = self.solver if self.batches is None else make_full(self)
        loss = strategy.gradient(self.theta, self.grad, 0) + self.penalty.add_smooth(self.theta, self.grad)
        theta = self.model_theta()
        args = (self.comm, self.kernel, self.shard, theta, self.n_classes)
        # the training split's ROC AUC only up to TRAIN_AUC_MAX_ROWS rows (the test split's always)
        metrics = {"train": evaluate(*args, "train", self.classes, auc_max_rows=TRAIN_AUC_MAX_ROWS)}
        if self.cfg.data.test_fraction > 0:
            metrics["test"] = evaluate(*args, "test", self.classes)
        return {"final_loss": loss, "final_grad_norm": float(np.linalg.norm(self.grad)), "metrics": metrics}

    def rank_figures(self) -> dict:
        return {"shard_rows": self.shard.n_local, "shard_bytes": self.shard.nbytes}

    def summary(self, final: dict, every: list[dict]) -> dict:
        from ..metrics import spread

        out = _summary(self, final)
        out["shard_bytes"] = spread([e["shard_bytes"] for e in every])
        out["shard_rows"] = spread([e["shard_rows"] for e in every])
        return out

    def close(self) -> None:
        shard = getattr(self, "shard", None)
        if shard is not None:
            shard.close()


def _summary(pb: GLMProblem, final: dict) -> dict:
    """The GLM's figures in summary.json (rank 0)."""
    cfg, sh, fac, ref = pb.cfg, pb.shard, pb.fac, pb.ref
    theta = pb.std.to_original(pb.model_theta())
    d, k = sh.n_cols, pb.n_classes
    exact = ref.theta_exact
    rel_err = None if exact is None else float(np.linalg.norm(theta - exact) / max(np.linalg.norm(exact), 1e-300))
    arrays = pb.param_arrays()
    normal_eq = getattr(pb, "normal_eq_theta", None)
    return {
        **final,
        "rel_error_to_exact": rel_err,
        # a wide model (sparse X: up to 2^20 x K weights) stays in the checkpoint's /model/w only
        "w": np.asarray(arrays["model/w"]).tolist() if d * k <= SUMMARY_MAX_WEIGHTS else None,
        "b": np.asarray(arrays["model/b"]).tolist() if "model/b" in arrays else None,
        "w_exact": None if exact is None or d * k > SUMMARY_MAX_WEIGHTS else exact[:d * k].tolist(),
        "solver": pb.solver_name,
        "solver_requested": cfg.train.solver,
        "solver_stats": None if pb.method is None else pb.method.summary(),
        "batch_size": cfg.train.batch_size,
        "optimizer": None if pb.method is not None else pb.opt.hyperparameters(),
        "eta_final": pb.method.eta if pb.method is not None else pb.opt.eta,  # methods: the last line-search step
        "curvature_min_max": None if ref.curvature is None else list(ref.curvature),
        "condition_number": None if fac is None else fac.kappa,
        "singular_values_cut": None if fac is None else fac.n_cut,
        "qr_path": None if fac is None else fac.qr_path,
        "normal_equations_rel_error": None if fac is None or normal_eq is None else float(
            np.linalg.norm(normal_eq - exact) / np.linalg.norm(exact)),
        "data": {"source": sh.describe(), "rows": sh.n_rows, "cols": d,
                 "n_classes": {"softmax": k, "logistic": 2}.get(cfg.model.kind),
                 "classes": pb.classes, "feature_names": sh.feature_names,
                 "fingerprint": pb.fingerprint, "dtype": sh.dtype.name,
                 "in_memory": sh.in_memory, "test_fraction": cfg.data.test_fraction},
        "bytes_reduced_per_step": (
            pb.solver.bytes_reduced_per_step if pb.solver_name == "gd" else
            pb.method.red.bytes_per_reduce if getattr(pb.method, "red", None) is not None else
            pb.solver.bytes_reduced_per_step if pb.method is not None else 0),
    }


def make_full(problem):
    from .glm_solvers import FullBatch

    return FullBatch(problem.comm, problem.shard, problem.kernel, problem.cfg.comm.reduction, problem.timer)
