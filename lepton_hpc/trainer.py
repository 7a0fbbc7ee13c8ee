"""The SPMD training loop for linear, logistic and softmax models.

Every step: local chunk partials → one reduction → the same update on every
rank. Collective over the communicator from start to end; ranks without data
join every collective. Errors a user can fix are agreed across ranks
(:func:`lepton_hpc.comm.agree`) and raised on all of them together.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from . import checkpoint, comm as C
from .data.shard import Shard
from .evaluation import evaluate
from .metrics import MetricsWriter, peak_rss_bytes, progress_line, provenance, spread
from .models.glm import gram_grad_loss, make_kernel, solve_normal, split_gram
from .models.penalty import Penalty
from .models.standardize import Standardizer
from .optimizers import make_optimizer
from .reduce import ChunkReducer
from .runbase import EXIT_OK, EXIT_REQUEUE, RunBase, optimizer_kwargs
from .sampling import BlockBatches, MiniBatches
from .errors import UserError


SCHEDULE_DRIVEN = ("adaptive", "inverse_time", "constant")


class Trainer(RunBase):
    """One training run of a generalised linear model.

    Parameters
    ----------
    cfg : JobConfig
    comm : mpi4py communicator (the application's private duplicate)
    out_dir : Path
        The run directory (same path on every rank).
    resume : None, "auto" or a checkpoint path
    """

    # -- setup ---------------------------------------------------------------
    def setup(self) -> None:
        """Open the data, make the reference pass, build the optimizer, maybe resume. Collective."""
        cfg, comm = self.cfg, self.comm
        C.agree(comm, self._check_job)
        C.agree(comm, self.check_world)
        C.on_root(comm, self.prepare_out_dir)
        with self.timer.phase("read"):
            self.shard = C.agree(comm, Shard, cfg.data, comm.size, self.rank, self._generator())
        self._reference_pass()
        self.fac = self._factor() if cfg.train.solver in ("svd", "svd_gd") else None
        self.opt = C.agree(comm, make_optimizer, cfg.optimizer.name, **optimizer_kwargs(cfg))
        C.agree(comm, self._check_prox)
        # svd_gd steps in whitened coordinates φ (θ = V S⁻¹ φ); every other solver steps in θ.
        n_coords = self.fac.S.shape[0] if cfg.train.solver == "svd_gd" else self.n_params
        self.theta = np.zeros(n_coords)
        self.grad = np.zeros(n_coords)
        self.step = 0
        self.g0_norm = 0.0
        self.prev_loss = math.inf
        self.best_loss = math.inf
        self.stale = 0
        self.batches = None
        if cfg.train.batch_size and cfg.train.batch_block_rows:
            self.batches = C.agree(comm, BlockBatches, self.shard, cfg.train.batch_size, cfg.data.seed,
                                   cfg.train.batch_block_rows)
        elif cfg.train.batch_size:
            self.batches = MiniBatches(self.shard, cfg.train.batch_size, cfg.data.seed)
        if cfg.train.solver in ("gd", "svd"):  # svd: for the final loss pass
            self.reducer = ChunkReducer(comm, self.shard.n_chunks, self.kernel.width, cfg.comm.reduction)
        self.plan = self.kernel.plan(self.shard)  # one C call per full-batch step, when it applies
        self.stop_flag = C.StopFlag(comm)
        self._maybe_resume()
        self._warn_schedule()

    def _generator(self):
        """Synthetic data for the model kind (data.path empty); None means linear."""
        kind, d = self.cfg.model.kind, self.cfg.data
        if d.path or kind == "linear":
            return None
        from .data.generators import chunk_generator

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
        if cfg.train.batch_size and not cfg.data.in_memory:
            raise UserError("mini-batches (train.batch_size) need data.in_memory=true")

    def _check_prox(self) -> None:
        """The L1 part is a proximal step after the update: exact for plain gradient steps only."""
        if self.penalty.has_l1 and self.opt.accumulator_names:
            raise UserError(f"model.penalty={self.cfg.model.penalty} takes its L1 part as a proximal step, "
                             f"which converges to the L1 optimum only after plain gradient steps; "
                             f"optimizer.name={self.cfg.optimizer.name} keeps per-coordinate state "
                             f"({', '.join(self.opt.accumulator_names)}) that shifts the fixed point; use "
                             f"optimizer.name constant, inverse_time or adaptive")

    def _scan(self, kind: str, n_cols: int):
        """This rank's part of the reference pass; ValueError on bad rows (caller agrees)."""
        sh = self.shard
        stats_w = 2 + 2 * n_cols
        gram = make_kernel("linear", n_cols, self.cfg.model.fit_intercept, sh.chunk_rows, sh.dtype) \
            if kind == "linear" else None
        width = stats_w + (gram.gram_width if gram else 0)
        red = ChunkReducer(self.comm, sh.n_chunks, width, self.cfg.comm.reduction)
        bad_row, bad_label, max_label, digest = sh.n_rows, sh.n_rows, -1, 0
        for i, X, y, sw in sh.chunks_iter():
            row = sh.first_bad_row(i, X, y)
            if row is not None:
                bad_row = row
                break
            if kind != "linear":
                label_ok = (y >= 0) & (y == np.round(y)) & ((y <= 1) if kind == "logistic" else True)
                if not label_ok.all():
                    bad_label = sh.chunk_start(i) + int(np.argmin(label_ok))
                    break
                max_label = max(max_label, int(y.max()) if len(y) else -1)
            digest ^= sh.chunk_digest(i, X, y)
            p = red.partials[i]
            s = np.ones(len(y)) if sw is None else sw
            X64 = np.asarray(X, dtype=np.float64)
            p[0] = s.sum()
            p[1:1 + n_cols] = s @ X64
            p[1 + n_cols:1 + 2 * n_cols] = s @ (X64 * X64)
            p[stats_w - 1] = s @ y
            if gram:
                gram.gram_partial(X, y, sw, p[stats_w:])
        return red, (bad_row, bad_label, max_label, digest), gram

    def _reference_pass(self) -> None:
        """One pass: NaN/label checks, fingerprint, feature moments, normal equations."""
        sh, comm, cfg = self.shard, self.comm, self.cfg
        kind, d = cfg.model.kind, sh.n_cols
        with self.timer.phase("read"):
            red, (bad_row, bad_label, max_label, digest), gram = C.agree(comm, self._scan, kind, d)
        # one collective for every check: first bad row, first bad label, largest label
        bad_row, bad_label, neg_max = C.allreduce_min_ints(comm, [bad_row, bad_label, -max_label])
        max_label = -neg_max
        if bad_row < sh.n_rows:
            raise C.JobError(f"the data has NaN or Inf at row {bad_row} (the first bad row) in "
                             f"{sh.cfg.path or 'synthetic data'}; clean or drop such rows", 0)
        if bad_label < sh.n_rows:
            want = "0 or 1" if kind == "logistic" else "an integer class 0, 1, ..., K-1"
            raise C.JobError(f"the target at row {bad_label} is not {want} as model.kind={kind} needs", 0)
        n_classes = 1
        if kind == "softmax":
            n_classes = cfg.model.classes or max_label + 1
            if max_label >= n_classes:
                raise C.JobError(f"the data has class labels up to {max_label} but "
                                 f"model.classes={cfg.model.classes}", 0)
            if n_classes < 2:
                raise C.JobError("softmax needs at least 2 classes; the data has only one", 0)
        self.n_classes = n_classes
        with self.timer.phase("reduce"):
            total = red.reduce().copy()
        self.fingerprint = f"{C.allreduce_bxor(comm, digest):016x}-{sh.n_rows}x{d}-{sh.dtype.name}"
        self.weight_sum = float(total[0])
        if self.weight_sum <= 0:
            raise C.JobError("the training rows have zero total weight; check data.w_dataset and "
                             "data.test_fraction", 0)
        self.std = Standardizer.from_moments(total[1:1 + d], total[1 + d:1 + 2 * d], self.weight_sum,
                                             cfg.model.standardize, cfg.model.fit_intercept)
        self.kernel = make_kernel(kind, d, cfg.model.fit_intercept, sh.chunk_rows, sh.dtype, n_classes)
        self.kernel.set_standardization(*self.std.kernel_args())
        self.n_params = self.kernel.n_params
        self.penalty = Penalty(cfg.model.penalty, cfg.model.reg, cfg.model.l1_ratio, d * n_classes)
        self.theta_exact = None
        self.curvature = None
        if gram:
            G, c, yty = split_gram(total[2 + 2 * d:], self.n_params)
            self.G, self.c, self.yty = self.std.transform_gram(G, c), self.std.transform_c(c), yty
            H = self.G / self.weight_sum + self.penalty.l2_hessian(self.n_params)
            if not self.penalty.has_l1:
                self.theta_exact = self.std.to_original(solve_normal(H, self.c / self.weight_sum))
            eig = np.linalg.eigvalsh(H)
            self.curvature = (float(eig[0]), float(eig[-1]))

    def _factor(self):
        """Z = U S Vᵀ by TSQR over the ranks; the SVD solution becomes the exact reference."""
        from .linalg.lstsq import design_block, factor

        with self.timer.phase("compute"):
            Z, y = design_block(self.shard, self.cfg.model.fit_intercept)
            fac = factor(Z, y, self.comm, self.cfg.train.rcond)
        del Z, y
        self.normal_eq_theta = self.theta_exact
        self.theta_exact = fac.solution()
        if self.cfg.train.solver == "svd_gd":
            self.curvature = (1.0, 1.0)  # the whitened problem's Hessian is the identity
        return fac

    def model_theta(self) -> np.ndarray:
        """θ on the (possibly standardised) features, whatever coordinates the solver steps in."""
        if self.cfg.train.solver == "svd_gd":
            return self.fac.theta(self.theta)
        return self.theta

    def _maybe_resume(self) -> None:
        if self.resume is None:
            return
        state = C.on_root(self.comm, self._load_checkpoint)
        if state is None:
            self.log(f"no checkpoint in {self.out / 'checkpoints'}; starting from step 0")
            return
        if "model/phi" in state.arrays:
            self.theta[:] = state.arrays["model/phi"]
        elif "model/theta_std" in state.arrays:  # θ on standardised features: no round trip through /model/w
            self.theta[:] = state.arrays["model/theta_std"]
        else:
            self.theta[:] = self.std.from_original(self._theta_from(state.arrays))
        C.agree(self.comm, self.opt.load_state_dict, state.optimizer)
        self.step = state.step
        for key in ("g0_norm", "prev_loss", "best_loss", "stale"):
            setattr(self, key, type(getattr(self, key))(state.attrs[key]))
        if self.batches is not None:
            self.batches.loss_sum = float(state.attrs["epoch_loss_sum"])
            self.batches.loss_count = int(state.attrs["epoch_loss_count"])
        self.log(f"resumed from step {self.step} (written by {state.attrs['world_size']} ranks)")

    def _theta_from(self, arrays: dict) -> np.ndarray:
        theta = np.empty(self.n_params)
        nw = self.shard.n_cols * self.n_classes
        theta[:nw] = np.asarray(arrays["model/w"]).ravel()
        if self.cfg.model.fit_intercept:
            theta[nw:] = np.asarray(arrays["model/b"]).ravel()
        return theta

    def _param_arrays(self) -> dict:
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

    def _load_checkpoint(self):
        ckpt_dir = self.out / "checkpoints"
        if self.resume == "auto":
            state = checkpoint.latest_valid(ckpt_dir, warn=self.log)
            if state is None:
                return None
            source = ckpt_dir
        else:
            state, source = checkpoint.load(Path(self.resume)), self.resume
        if state.attrs.get("data_fingerprint") != self.fingerprint:
            raise UserError(f"checkpoint in {source} was written for other data "
                             f"({state.attrs.get('data_fingerprint')}, this job has {self.fingerprint}); "
                             f"resume with the same data or start a fresh --out")
        want = {k: np.shape(v) for k, v in self._param_arrays().items()}
        got = {k: np.shape(v) for k, v in state.arrays.items()}
        if got != want:
            raise UserError(f"checkpoint in {source} holds parameters {got}, this job needs {want}; "
                             f"check model.fit_intercept or start a fresh --out")
        return state

    def _warn_schedule(self) -> None:
        """Warn when a decaying schedule cannot reach train.tol in the steps given."""
        name, tol = self.opt.name, self.cfg.train.tol
        remaining = self.cfg.train.steps - self.step
        if (name not in SCHEDULE_DRIVEN or remaining <= 0 or tol <= 0 or self.rank != 0
                or self.curvature is None or self.cfg.train.solver == "svd"):
            return
        etas = self.opt.schedule(remaining)
        total = float(etas.sum())
        # Gradient descent on a quadratic shrinks the error along curvature λ by Π|1 − ηₜλ|.
        lam_min, lam_max = self.curvature
        shrink = max(float(np.prod(np.abs(1.0 - etas * lam))) for lam in (lam_min, lam_max))
        # train.tol bounds the relative loss change, and the loss gap shrinks as the error squared.
        if shrink ** 2 > tol:
            self.log(f"warning: the {name} schedule's total step is {total:.4g} over {remaining} steps, "
                     f"which shrinks the slowest error mode (curvature {lam_min:.3g}) only to "
                     f"{shrink:.2e} of its start (the loss gap to {shrink ** 2:.2e}), short of "
                     f"train.tol={tol:g}; raise "
                     f"optimizer.learning_rate (stable up to {2 / lam_max:.3g}), lower optimizer.alpha or "
                     f"add train.steps")

    # -- one step --------------------------------------------------------------
    def _grad_loss(self, flag: float) -> tuple[float, float]:
        """Global gradient (penalty included) into self.grad; returns (loss, agreed stop flag).

        Collective. A signal seen by any rank reaches all of them through a
        non-blocking flag reduction that overlaps the compute.
        """
        self.stop_flag.start(flag)
        p = self.n_params
        if self.cfg.train.solver == "svd_gd":
            with self.timer.phase("compute", self.step):
                f = self.fac
                np.subtract(self.theta, f.uty, out=self.grad)
                loss = 0.5 * (self.theta @ self.theta - 2.0 * (self.theta @ f.uty) + self.yty) / self.weight_sum
            with self.timer.phase("reduce", self.step):
                stop = self.stop_flag.wait()
            return loss, stop
        if self.cfg.train.solver == "gram":
            with self.timer.phase("compute", self.step):
                loss = gram_grad_loss(self.G, self.c, self.yty, self.weight_sum, self.theta, self.grad)
            weight = self.weight_sum
            with self.timer.phase("reduce", self.step):
                stop = self.stop_flag.wait()
        else:
            red, k = self.reducer, self.kernel
            with self.timer.phase("compute", self.step):
                if self.batches is None and self.plan is not None:
                    k.partials_all(self.plan, self.theta, red.partials)
                elif self.batches is None:
                    for i, X, y, sw in self.shard.chunks_iter():
                        k.partial(X, y, sw, self.theta, red.partials[i])
                else:
                    self.batches.partials(self.step, k, self.theta, red.partials)
            with self.timer.phase("reduce", self.step):
                total = red.reduce()
                stop = self.stop_flag.wait()
            weight = total[-1]
            loss = float(total[p]) / weight if weight > 0 else 0.0
            np.divide(total[:p], weight if weight > 0 else 1.0, out=self.grad)
        loss += self.penalty.add_smooth(self.theta, self.grad)
        return loss, stop

    def _converged(self, loss: float, grad_norm: float) -> str | None:
        """Stop reason from train.tol / train.patience, or None to go on."""
        tc = self.cfg.train
        if self.penalty.has_l1:  # the smooth gradient stays nonzero at an L1 optimum: judge the smallest subgradient
            grad_norm = self.penalty.stationarity(self.theta, self.grad)
        if self.batches is not None:
            # Per-batch losses are noisy: judge whole epochs only.
            if not self.batches.epoch_end(self.step):
                self.batches.add_loss(loss)
                return None
            self.batches.add_loss(loss)
            loss = self.batches.pop_epoch_loss()
        elif tc.tol > 0 and grad_norm <= tc.tol * self.g0_norm:
            return "tol"
        improved = self.best_loss - loss > tc.tol * max(abs(loss), 1e-300)
        if improved:
            self.best_loss, self.stale = loss, 0
        else:
            self.stale += 1
        if tc.patience and self.stale >= tc.patience:
            return "plateau"
        # A loss that barely moves only counts when the gradient is small too: a vanished
        # step size (the Lepton schedule's finite total step) also stalls the loss.
        small_grad = self.batches is not None or grad_norm ** 2 <= tc.tol * max(abs(loss), 1e-300)
        if (not tc.patience and tc.tol > 0 and small_grad
                and 0 <= self.prev_loss - loss <= tc.tol * max(abs(loss), 1e-300)):
            return "tol"
        self.prev_loss = loss
        return None

    # -- the loop --------------------------------------------------------------
    def run(self) -> int:
        """Train to the end, a stop condition or a signal. Collective. Returns the exit code."""
        cfg, tc = self.cfg, self.cfg.train
        metrics = MetricsWriter(self.out / "metrics.jsonl" if self.rank == 0 else None, append=self.step > 0)
        last_ckpt = self.step if self.resume else -1
        if tc.solver == "svd":  # a direct solve: no steps
            self.theta[:] = self.theta_exact
            self.stop_reason = "direct"
            tc = dataclasses.replace(tc, steps=self.step)
        window_t0, window_steps = time.perf_counter(), 0
        window_phase = self.timer.snapshot()
        try:
            while self.step < tc.steps:
                eta = self.opt.next_eta()
                if eta < tc.eta_floor:
                    self.stop_reason = "eta_floor"
                    self.log(f"stopping at step {self.step}: the step size {eta:.3e} fell below "
                             f"train.eta_floor={tc.eta_floor:g}; the schedule has no step left (raise "
                             f"optimizer.learning_rate or lower optimizer.alpha)")
                    break
                loss, stop = self._grad_loss(float(self.stop_signal))
                if stop > 0:
                    self.stop_reason = "signal"
                    break
                grad_norm = float(np.linalg.norm(self.grad))
                if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                    raise C.JobError(f"the loss became {loss} at step {self.step + 1} (eta={eta:.3e}); the run "
                                     f"stopped and the last good checkpoint is intact; lower "
                                     f"optimizer.learning_rate", 0)
                if self.step == 0 and self.g0_norm == 0.0:
                    self.g0_norm = grad_norm
                reason = self._converged(loss, grad_norm)
                if reason and self.batches is None:
                    self.stop_reason = reason
                    self.log(f"converged at step {self.step} ({reason}): loss {loss:.6e}, |grad| {grad_norm:.3e}")
                    break
                with self.timer.phase("update", self.step):
                    self.opt.update(self.theta, self.grad, out=self.theta)
                    self.penalty.prox(self.theta, self.opt.eta)
                self.step += 1
                window_steps += 1
                if self.step % tc.log_every == 0 or self.step == tc.steps:
                    now = time.perf_counter()
                    rec = self._record(loss, eta, grad_norm, now - window_t0, window_steps, window_phase)
                    metrics.write(rec)
                    self.log(progress_line(rec))
                    window_t0, window_steps, window_phase = now, 0, self.timer.snapshot()
                if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0:
                    self._save()
                    last_ckpt = self.step
                if reason:  # mini-batch: the epoch that converged has been applied
                    self.stop_reason = reason
                    self.log(f"converged at step {self.step} ({reason}) after epoch {self.batches.epoch(self.step)}")
                    break
        finally:
            metrics.close()
        if last_ckpt != self.step:
            self._save()
        if self.stop_reason == "signal":
            self.log(f"signal received: checkpointed step {self.step}; exiting with {EXIT_REQUEUE} "
                     f"(resume with --resume auto)")
            return EXIT_REQUEUE
        return EXIT_OK

    def _record(self, loss, eta, grad_norm, seconds, steps, phase0) -> dict:
        now = self.timer.snapshot()
        per = {p: (now[p] - phase0[p]) / max(steps, 1) for p in ("compute", "reduce", "update")}
        step_s = seconds / max(steps, 1)
        rows = self.cfg.train.batch_size or self.shard.n_rows
        return {"step": self.step, "loss": loss, "eta": eta, "grad_norm": grad_norm,
                "t_compute_s": per["compute"], "t_comm_s": per["reduce"], "t_update_s": per["update"],
                "t_step_s": step_s, "samples_per_s": rows / step_s if step_s > 0 else 0.0,
                "comm_share": per["reduce"] / step_s if step_s > 0 else 0.0}

    def _save(self) -> None:
        """Rank 0 writes the replicated state; everyone waits so timers stay honest."""
        with self.timer.phase("checkpoint", self.step):
            message = None
            if self.rank == 0:
                try:
                    checkpoint.save(self.out / "checkpoints", self._state(), self.cfg.checkpoint.keep)
                except OSError as exc:
                    message = f"could not write a checkpoint to {self.out / 'checkpoints'}: {exc}"
            C.check(self.comm, message)

    def _state(self) -> checkpoint.State:
        return checkpoint.State(
            step=self.step, arrays=self._param_arrays(), optimizer=self.opt.state_dict(),
            rng=checkpoint.rng_state_json(np.random.default_rng([self.cfg.data.seed, 4, self.step])),
            attrs={"world_size": self.comm.size, "config": self.cfg.to_toml(),
                   "data_fingerprint": self.fingerprint, "g0_norm": self.g0_norm,
                   "prev_loss": self.prev_loss, "best_loss": self.best_loss, "stale": self.stale,
                   "standardized": self.std.active,
                   "epoch_loss_sum": self.batches.loss_sum if self.batches else 0.0,
                   "epoch_loss_count": self.batches.loss_count if self.batches else 0})

    # -- summary ---------------------------------------------------------------
    def summary(self, exit_code: int) -> dict | None:
        """Final losses and metrics, per-rank figures gathered; the dict on rank 0. Collective."""
        saved, self.batches = self.batches, None
        loss, _ = self._grad_loss(0.0)
        self.batches = saved
        grad_norm = float(np.linalg.norm(self.grad))
        theta = self.model_theta()
        metrics = {"train": evaluate(self.comm, self.kernel, self.shard, theta, self.n_classes, "train")}
        if self.cfg.data.test_fraction > 0:
            metrics["test"] = evaluate(self.comm, self.kernel, self.shard, theta, self.n_classes, "test")
        wall = time.perf_counter() - self.t_start
        mine = {"phases": self.timer.snapshot(), "peak_rss_bytes": peak_rss_bytes(),
                "shard_rows": self.shard.n_local, "shard_bytes": self.shard.nbytes}
        every = self.comm.gather(mine, root=0)
        if self.timer.events is not None:
            self.timer.write_trace(self.out)
        if self.rank != 0:
            return None
        theta = self.std.to_original(theta)
        d, k = self.shard.n_cols, self.n_classes
        rel_err = None
        if self.theta_exact is not None:
            ref = self.theta_exact
            rel_err = float(np.linalg.norm(theta - ref) / max(np.linalg.norm(ref), 1e-300))


        arrays = self._param_arrays()
        return {
            "job": self.cfg.name,
            "exit_code": exit_code,
            "stop_reason": self.stop_reason,
            "steps": self.step,
            "model": self.cfg.model.kind,
            "final_loss": loss,
            "final_grad_norm": grad_norm,
            "rel_error_to_exact": rel_err,
            "w": np.asarray(arrays["model/w"]).tolist(),
            "b": np.asarray(arrays["model/b"]).tolist() if "model/b" in arrays else None,
            "w_exact": None if self.theta_exact is None else self.theta_exact[:d * k].tolist(),
            "metrics": metrics,
            "solver": self.cfg.train.solver,
            "batch_size": self.cfg.train.batch_size,
            "reduction": self.cfg.comm.reduction,
            "world_size": self.comm.size,
            "optimizer": self.opt.hyperparameters(),
            "eta_final": self.opt.eta,
            "curvature_min_max": None if self.curvature is None else list(self.curvature),
            "condition_number": None if self.fac is None else self.fac.kappa,
            "singular_values_cut": None if self.fac is None else self.fac.n_cut,
            "normal_equations_rel_error": None if self.fac is None or self.normal_eq_theta is None else float(
                np.linalg.norm(self.normal_eq_theta - self.theta_exact) / np.linalg.norm(self.theta_exact)),
            "data": {"source": self.shard.describe(), "rows": self.shard.n_rows, "cols": d,
                     "classes": k if self.cfg.model.kind == "softmax" else None,
                     "fingerprint": self.fingerprint, "dtype": self.shard.dtype.name,
                     "in_memory": self.shard.in_memory, "test_fraction": self.cfg.data.test_fraction},
            "bytes_reduced_per_step": self.reducer.bytes_per_reduce if self.cfg.train.solver == "gd" else 0,
            "wall_s": wall,
            "phases_s": {p: spread([e["phases"].get(p, 0.0) for e in every]) for p in self.timer.total},
            "peak_rss_bytes": {"per_rank": [e["peak_rss_bytes"] for e in every],
                               **spread([e["peak_rss_bytes"] for e in every])},
            "shard_bytes": spread([e["shard_bytes"] for e in every]),
            "shard_rows": spread([e["shard_rows"] for e in every]),
            "provenance": provenance(C.library_version(), self.comm.size),
        }
