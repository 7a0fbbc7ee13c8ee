"""The one step loop every model family runs on (see :class:`~lepton_hpc.engine.problem.Problem`).

Per step, on every rank: the eta floor → post the stop flag → ``problem.gradient``
(collective) → wait for the flag → the finite check → the convergence test →
``problem.apply_update``. (For the GLM solvers lbfgs/owlqn/newton, ``gradient`` hands back the
objective at θ cached by the last line search and ``apply_update`` is one whole iteration,
line-search passes included: one step is one solver iteration.) The loop owns the stop flag, the eta floor, the finite
check, tol/patience, the metrics window and progress line, checkpoint cadence and
the exit codes. Collective over ``ctx.comm`` from start to end.

Convergence (``train.tol``, ``train.patience``), judged on the loss and on
``problem.stationarity(|grad|)``:

* ``tol``: ``|grad| <= tol * |grad_0|``; or, without patience, a relative loss change
  ``0 <= (prev - loss) <= tol * |loss|`` together with ``|grad|^2 <= tol * |loss|``
  (a vanished step size also stalls the loss; that is not convergence). Problems
  without a gradient norm (ALS) use the loss change alone.
* ``plateau``: ``patience`` steps in a row without a relative improvement > tol.
* mini-batches: the mean loss of each epoch is judged at the epoch's end.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from .. import comm as C
from ..metrics import MetricsWriter, progress_line
from .run import EXIT_INTERRUPT, STOP_INTERRUPT

EXIT_OK, EXIT_ERROR, EXIT_NOT_CONVERGED, EXIT_REQUEUE = 0, 1, 3, 75
# 3: stopped short of train.tol with train.require_convergence; 75: checkpointed on a signal;
# 130: checkpointed on SIGINT (Ctrl-C)
CONVERGED = ("tol", "plateau", "direct")
DIVERGED_GROWTH = 0.01  # a run whose loss grew by more than this share of its first loss diverged
DIVERGED_GROWTH_BATCHES = 1.0  # mini-batch losses are noisy: the loss must have more than doubled


@dataclass
class LoopState:
    """What the loop itself must checkpoint to resume bitwise exactly."""

    step: int = 0
    g0_norm: float = 0.0
    prev_loss: float = math.inf
    best_loss: float = math.inf
    stale: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0


class Loop:
    def __init__(self, ctx, problem):
        self.ctx, self.problem, self.tc = ctx, problem, ctx.cfg.train
        self.s = LoopState()
        self.stop_reason = "steps"
        self.flag = C.StopFlag(ctx.comm)
        self.stop_value = 0.0  # the agreed stop request (run.STOP_REQUEUE or run.STOP_INTERRUPT)
        # the first and the latest step's loss of this process (after a resume: from the resumed step)
        self.first_loss: float | None = None
        self.last_loss: float | None = None

    @property
    def converged(self) -> bool | None:
        """Whether the run met its convergence test (tol, plateau) or was solved directly; None when
        it asked for none (train.tol = 0 and no patience) and ran its step budget."""
        if self.stop_reason in CONVERGED:
            return True
        if self.stop_reason == "steps" and self.tc.tol == 0 and not self.tc.patience:
            return None
        return False

    @property
    def diverged(self) -> bool:
        """The loss grew over the run's steps: by more than 1% of the first step's loss (mini-batches,
        whose batch losses are noisy: more than doubled)."""
        a, b = self.first_loss, self.last_loss
        growth = DIVERGED_GROWTH_BATCHES if self.problem.steps_per_epoch else DIVERGED_GROWTH
        return a is not None and b is not None and bool(b - a > growth * max(abs(a), 1e-300))

    # -- convergence --------------------------------------------------------------------
    def _converged(self, loss: float, grad_norm: float | None) -> str | None:
        tc, s = self.tc, self.s
        if grad_norm is not None:
            grad_norm = self.problem.stationarity(grad_norm)
        per_epoch = self.problem.steps_per_epoch
        if per_epoch:
            s.epoch_loss_sum += loss
            s.epoch_loss_count += 1
            if (s.step + 1) % per_epoch:
                return None
            loss = s.epoch_loss_sum / s.epoch_loss_count
            s.epoch_loss_sum, s.epoch_loss_count = 0.0, 0
        elif tc.tol > 0 and grad_norm is not None and grad_norm <= tc.tol * s.g0_norm:
            return "tol"
        scale = tc.tol * max(abs(loss), 1e-300)
        if s.best_loss - loss > scale:
            s.best_loss, s.stale = loss, 0
        else:
            s.stale += 1
        if tc.patience and s.stale >= tc.patience:
            return "plateau"
        small_grad = per_epoch or grad_norm is None or grad_norm ** 2 <= scale
        if not tc.patience and tc.tol > 0 and small_grad and 0 <= s.prev_loss - loss <= scale:
            return "tol"
        s.prev_loss = loss
        return None

    # -- one step ------------------------------------------------------------------------
    def _step(self) -> tuple[str | None, dict | None]:
        """One step; returns (stop reason or None, the step's figures)."""
        p, ctx, step = self.problem, self.ctx, self.s.step
        eta = p.next_eta()
        if eta is not None and eta < self.tc.eta_floor:
            ctx.log(f"stopping at step {step}: the step size {eta:.3e} fell below train.eta_floor="
                    f"{self.tc.eta_floor:g}; {p.eta_floor_hint()}")
            return "eta_floor", None
        self.flag.start(float(ctx.stop_signal))
        loss, grad_norm = p.gradient(step)
        with ctx.timer.phase("reduce", step):
            stop = self.flag.wait()
        if stop > 0:
            self.stop_value = stop
            return "signal", None
        if not (math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm))):
            where = "" if eta is None else f" (eta={eta:.3e})"
            raise C.JobError(f"the loss became {loss} at step {step + 1}{where}; the run stopped and the last "
                             f"good checkpoint is intact; {p.diverged_hint()}", 0)
        if self.first_loss is None:
            self.first_loss = float(loss)
        self.last_loss = float(loss)
        if step == 0 and self.s.g0_norm == 0.0 and grad_norm is not None:
            self.s.g0_norm = grad_norm
        reason = self._converged(loss, grad_norm)
        if reason and not p.steps_per_epoch:
            ctx.log(f"converged at step {step} ({reason}): loss {loss:.6e}"
                    + (f", |grad| {grad_norm:.3e}" if grad_norm is not None else ""))
            return reason, None
        with ctx.timer.phase("update", step):
            p.apply_update(step, eta)
        self.s.step += 1
        if reason:  # mini-batch: the epoch that converged has been applied
            ctx.log(f"converged at step {self.s.step} ({reason}) after epoch {step // p.steps_per_epoch}")
        return reason, {"loss": loss, "eta": eta, "grad_norm": grad_norm}

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> int:
        """Steps to the end, a stop condition or a signal. Collective. Returns the exit code."""
        ctx, p = self.ctx, self.problem
        if p.direct:
            p.solve()
            self.stop_reason = "direct"
            self._save()
            return EXIT_OK
        metrics = C.agree(ctx.comm, MetricsWriter, ctx.out / "metrics.jsonl" if ctx.rank == 0 else None,
                          self.s.step > 0, ctx.log)
        last_ckpt = self.s.step if ctx.resumed else -1
        window = (time.perf_counter(), 0, ctx.timer.snapshot())
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported once, as a sentence
                while self.s.step < self.tc.steps:
                    reason, fig = self._step()
                    if fig is not None:
                        window = self._record(metrics, window, fig)
                        every = ctx.cfg.checkpoint.every
                        if every and self.s.step % every == 0:
                            self._save()
                            last_ckpt = self.s.step
                    if reason:
                        self.stop_reason = reason
                        break
        finally:
            metrics.close()
        if last_ckpt != self.s.step:
            self._save()
        if self.stop_reason == "signal" and self.stop_value >= STOP_INTERRUPT:
            self.stop_reason = "interrupt"
            ctx.log(f"interrupted (Ctrl-C): every rank stopped at step {self.s.step} and checkpointed it; "
                    f"exiting with {EXIT_INTERRUPT} (continue with --resume auto; a second Ctrl-C aborts at once)")
            return EXIT_INTERRUPT
        if self.stop_reason == "signal":
            ctx.log(f"signal received: checkpointed step {self.s.step}; exiting with {EXIT_REQUEUE} "
                    f"(resume with --resume auto)")
            return EXIT_REQUEUE
        if self.converged is False and self.tc.require_convergence:
            return EXIT_NOT_CONVERGED
        return EXIT_OK

    def _record(self, metrics, window, fig: dict):
        t0, steps, phase0 = window
        steps += 1
        s, tc = self.s.step, self.tc
        if s % tc.log_every and s != tc.steps:
            return t0, steps, phase0
        now, snap = time.perf_counter(), self.ctx.timer.snapshot()
        per = {k: (snap[k] - phase0[k]) / steps for k in ("compute", "reduce", "update")}
        step_s = (now - t0) / steps
        rec = {"step": s, "steps_total": tc.steps, **fig, **self.problem.log_metrics(s),
               "t_compute_s": per["compute"],
               "t_comm_s": per["reduce"], "t_update_s": per["update"], "t_step_s": step_s,
               "comm_share": per["reduce"] / step_s if step_s > 0 else 0.0}
        unit = self.problem.work_unit
        if unit:
            rec[f"{unit}_per_s"] = self.problem.work_per_step() / step_s if step_s > 0 else 0.0
        # the time left if the run takes its whole step budget (it stops earlier once converged)
        rec["eta_s"] = (tc.steps - s) * step_s
        metrics.write(rec)
        self.ctx.log(progress_line(rec, unit))
        return time.perf_counter(), 0, self.ctx.timer.snapshot()

    # -- checkpoints ---------------------------------------------------------------------
    def _save(self) -> None:
        if not self.problem.checkpoints:  # the matmul job
            return
        with self.ctx.timer.phase("checkpoint", self.s.step):
            parts, attrs = self.problem.state()
            self.ctx.save_checkpoint(self.s.step, parts, {**attrs, "loop": self.loop_json()})

    def loop_json(self) -> str:
        return json.dumps(asdict(self.s))

    def restore(self, text: str) -> None:
        self.s = LoopState(**json.loads(text))
