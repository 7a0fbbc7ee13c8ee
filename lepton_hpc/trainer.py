"""The SPMD training loop: local partials → reduce → the same update on every rank.

Collective over the communicator from start to end: every rank runs every
step, ranks without data included. Errors a user can fix are agreed across
ranks (:func:`lepton_hpc.comm.agree`) and raised on all of them together.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import numpy as np

from . import checkpoint, comm as C
from .config import JobConfig
from .data.shard import Shard
from .metrics import MetricsWriter, PhaseTimer, peak_rss_bytes, progress_line, provenance
from .models.linear import LinearKernel, gram_grad_loss, solve_normal, split_gram
from .optimizers import make_optimizer
from .reduce import ChunkReducer

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REQUEUE = 75  # checkpointed on SIGUSR1/SIGTERM: needs more time (sysexits EX_TEMPFAIL)

SCHEDULE_DRIVEN = ("adaptive", "inverse_time", "constant")


class Trainer:
    """One training run of a linear model.

    Parameters
    ----------
    cfg : JobConfig
    comm : mpi4py communicator (the application's private duplicate)
    out_dir : Path
        The run directory (same path on every rank).
    resume : None, "auto" or a checkpoint path
    """

    def __init__(self, cfg: JobConfig, comm, out_dir: Path, resume: str | None):
        self.cfg, self.comm, self.out = cfg, comm, Path(out_dir)
        self.rank = comm.rank
        self.resume = resume
        self.timer = PhaseTimer(trace=cfg.metrics.trace, rank=self.rank)
        self.stop_signal = 0
        self.t_start = time.perf_counter()

    def log(self, text: str) -> None:
        if self.rank == 0:
            print(text, flush=True)

    # -- setup ---------------------------------------------------------------
    def setup(self) -> None:
        """Open the data, solve the reference, build the optimizer, maybe resume. Collective."""
        cfg, comm = self.cfg, self.comm
        C.agree(comm, self._check_world)
        if self.rank == 0:
            C.agree(comm, self._prepare_out_dir)
        else:
            C.agree(comm, lambda: None)
        with self.timer.phase("read"):
            self.shard = C.agree(comm, Shard, cfg.data, comm.size, self.rank)
        sh = self.shard
        self.n_rows = sh.n_rows
        self.kernel = LinearKernel(sh.n_cols, cfg.model.fit_intercept, sh.chunk_rows, sh.dtype)
        self.n_params = self.kernel.n_params
        self._reference_pass()
        self.opt = C.agree(comm, make_optimizer, cfg.optimizer.name, **_opt_kwargs(cfg))
        self.theta = np.zeros(self.n_params)
        self.grad = np.zeros(self.n_params)
        self.step = 0
        self.g0_norm = 0.0
        self.rng = np.random.default_rng([cfg.data.seed, 1])  # for stochastic solvers; checkpointed
        if cfg.train.solver == "gd":
            # partial row: [grad (p), loss]
            self.reducer = ChunkReducer(comm, sh.n_chunks, self.kernel.width, cfg.comm.reduction)
        self.stop_flag = C.StopFlag(comm)
        self._maybe_resume()
        self._warn_schedule()

    def _check_world(self) -> None:
        if os.environ.get("LEPTON_SKIP_NTASKS_CHECK"):
            return
        if "SLURM_PROCID" not in os.environ:
            return
        want = os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS")
        if want and int(want) != self.comm.size:
            raise ValueError(
                f"Slurm started {want} tasks but MPI sees a world of {self.comm.size} rank(s): the "
                f"launcher and the MPI library disagree (PMI mismatch); launch with `srun --mpi=pmi2` "
                f"or use an MPI built for this cluster")

    def _prepare_out_dir(self) -> None:
        ckpt = self.out / "checkpoints"
        if self.resume is None and checkpoint.list_steps(ckpt):
            raise ValueError(f"run directory {self.out} already holds checkpoints; pass --resume auto "
                             f"to continue it or choose a new --out")
        ckpt.mkdir(parents=True, exist_ok=True)
        (self.out / "config.toml").write_text(self.cfg.to_toml())

    def _reference_pass(self) -> None:
        """One pass: NaN check, fingerprint, normal equations (exact θ*, curvature)."""
        sh, comm, k = self.shard, self.comm, self.kernel
        red = ChunkReducer(comm, sh.n_chunks, k.gram_width, self.cfg.comm.reduction)
        bad, digest = None, 0
        with self.timer.phase("read"):
            for i, X, y in sh.chunks_iter():
                row = sh.first_bad_row(i, X, y)
                if row is not None:
                    bad = row
                    break
                digest ^= sh.chunk_digest(i, X, y)
                k.gram_partial(X, y, red.partials[i])
        first_bad = C.allreduce_min(comm, sh.n_rows if bad is None else bad)
        if first_bad < sh.n_rows:
            raise C.JobError(f"the data has NaN or Inf at row {first_bad} (the first bad row) in "
                             f"{sh.cfg.path or 'synthetic data'}; clean or drop such rows", 0)
        with self.timer.phase("reduce"):
            total = red.reduce().copy()
        self.fingerprint = f"{C.allreduce_bxor(comm, digest):016x}-{sh.n_rows}x{sh.n_cols}-{sh.dtype.name}"
        self.G, self.c, self.yty = split_gram(total, self.n_params)
        self.theta_exact = solve_normal(self.G, self.c)
        eig = np.linalg.eigvalsh(self.G / self.n_rows)
        self.curvature = (float(eig[0]), float(eig[-1]))

    def _maybe_resume(self) -> None:
        if self.resume is None:
            return
        state = None
        if self.rank == 0:
            state = C.agree(self.comm, self._load_checkpoint)
        else:
            C.agree(self.comm, lambda: None)
        state = C.bcast(self.comm, state)
        if state is None:
            self.log(f"no checkpoint in {self.out / 'checkpoints'}; starting from step 0")
            return
        d = self.shard.n_cols
        self.theta[:d] = state.arrays["model/w"]
        if self.cfg.model.fit_intercept:
            self.theta[d] = state.arrays["model/b"][()]
        C.agree(self.comm, self.opt.load_state_dict, state.optimizer)
        self.rng = checkpoint.restore_rng(state.rng)
        self.step = state.step
        self.g0_norm = float(state.attrs["g0_norm"])
        self.log(f"resumed from step {self.step} (written by {state.attrs['world_size']} ranks)")

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
            raise ValueError(f"checkpoint in {source} was written for other data "
                             f"({state.attrs.get('data_fingerprint')}, this job has {self.fingerprint}); "
                             f"resume with the same data or start a fresh --out")
        want = {"model/w": (self.shard.n_cols,)}
        if self.cfg.model.fit_intercept:
            want["model/b"] = ()
        got = {k: np.shape(v) for k, v in state.arrays.items()}
        if got != want:
            raise ValueError(f"checkpoint in {source} holds parameters {got}, this job needs {want}; "
                             f"check model.fit_intercept or start a fresh --out")
        return state

    def _warn_schedule(self) -> None:
        """Warn when a decaying schedule cannot reach train.tol in the steps given."""
        name, tol = self.opt.name, self.cfg.train.tol
        remaining = self.cfg.train.steps - self.step
        if name not in SCHEDULE_DRIVEN or remaining <= 0 or tol <= 0 or self.rank != 0:
            return
        etas = self.opt.schedule(remaining)
        total = float(etas.sum())
        # Gradient descent on a quadratic shrinks the error along curvature λ by Π|1 − ηₜλ|.
        lam_min, lam_max = self.curvature
        shrink = max(float(np.prod(np.abs(1.0 - etas * lam))) for lam in (lam_min, lam_max))
        self.schedule_total = total
        if shrink > tol:
            self.log(f"warning: the {name} schedule's total step is {total:.4g} over {remaining} steps, "
                     f"which shrinks the slowest error mode (curvature {lam_min:.3g}) only to "
                     f"{shrink:.2e} of its start, short of train.tol={tol:g}; raise "
                     f"optimizer.learning_rate (stable up to {2 / lam_max:.3g}), lower optimizer.alpha or "
                     f"add train.steps")

    # -- the loop --------------------------------------------------------------
    def _install_signals(self) -> None:
        def handler(signum, frame):
            self.stop_signal = 1

        for sig in (signal.SIGUSR1, signal.SIGTERM):
            signal.signal(sig, handler)

    def _grad_loss(self, flag: float) -> tuple[float, float]:
        """Global gradient into self.grad; returns (loss, agreed stop flag). Collective."""
        self.stop_flag.start(flag)
        if self.cfg.train.solver == "gram":
            with self.timer.phase("compute", self.step):
                loss = gram_grad_loss(self.G, self.c, self.yty, self.n_rows, self.theta, self.grad)
            with self.timer.phase("reduce", self.step):
                stop = self.stop_flag.wait()
            return loss, stop
        red, k, p = self.reducer, self.kernel, self.n_params
        with self.timer.phase("compute", self.step):
            for i, X, y in self.shard.chunks_iter():
                k.partial(X, y, self.theta, red.partials[i])
        with self.timer.phase("reduce", self.step):
            total = red.reduce()
            stop = self.stop_flag.wait()
        np.divide(total[:p], self.n_rows, out=self.grad)
        return float(total[p]) / self.n_rows, stop

    def run(self) -> int:
        """Train to the end, a stop condition or a signal. Collective. Returns the exit code."""
        cfg, tc = self.cfg, self.cfg.train
        self._install_signals()
        is_root = self.rank == 0
        metrics = MetricsWriter(self.out / "metrics.jsonl" if is_root else None, append=self.step > 0)
        stop_reason, last_ckpt = "steps", self.step if self.resume else -1
        window_t0, window_steps = time.perf_counter(), 0
        window_phase = self.timer.snapshot()
        eta = self.opt.eta
        while self.step < tc.steps:
            eta = self.opt.next_eta()
            if eta < tc.eta_floor:
                stop_reason = "eta_floor"
                self.log(f"stopping at step {self.step}: the step size {eta:.3e} fell below "
                         f"train.eta_floor={tc.eta_floor:g}; the schedule has no step left (raise "
                         f"optimizer.learning_rate or lower optimizer.alpha)")
                break
            # A signal on any rank reaches all of them through the reduction.
            loss, stop = self._grad_loss(float(self.stop_signal))
            if stop > 0:
                stop_reason = "signal"
                break
            grad_norm = float(np.linalg.norm(self.grad))
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                self._finish_metrics(metrics)
                raise C.JobError(f"the loss became {loss} at step {self.step + 1} (eta={eta:.3e}); the run "
                                 f"stopped and the last good checkpoint is intact; lower "
                                 f"optimizer.learning_rate", 0)
            if self.step == 0 and self.g0_norm == 0.0:
                self.g0_norm = grad_norm
            if tc.tol > 0 and grad_norm <= tc.tol * self.g0_norm:
                stop_reason = "tol"
                self.log(f"converged at step {self.step}: |grad| {grad_norm:.3e} <= train.tol x |grad_0|")
                break
            with self.timer.phase("update", self.step):
                self.opt.update(self.theta, self.grad, out=self.theta)
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
        if last_ckpt != self.step:
            self._save()
        self._finish_metrics(metrics)
        self.stop_reason = stop_reason
        if stop_reason == "signal":
            self.log(f"signal received: checkpointed step {self.step}; exiting with {EXIT_REQUEUE} "
                     f"(resume with --resume auto)")
            return EXIT_REQUEUE
        return EXIT_OK

    def _record(self, loss, eta, grad_norm, seconds, steps, phase0) -> dict:
        now = self.timer.snapshot()
        per = {p: (now[p] - phase0[p]) / max(steps, 1) for p in ("compute", "reduce", "update")}
        step_s = seconds / max(steps, 1)
        return {"step": self.step, "loss": loss, "eta": eta, "grad_norm": grad_norm,
                "t_compute_s": per["compute"], "t_comm_s": per["reduce"], "t_update_s": per["update"],
                "t_step_s": step_s, "samples_per_s": self.n_rows / step_s if step_s > 0 else 0.0,
                "comm_share": per["reduce"] / step_s if step_s > 0 else 0.0}

    def _finish_metrics(self, metrics: MetricsWriter) -> None:
        metrics.close()

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
        d = self.shard.n_cols
        arrays = {"model/w": self.theta[:d].copy()}
        if self.cfg.model.fit_intercept:
            arrays["model/b"] = np.float64(self.theta[d])
        return checkpoint.State(
            step=self.step, arrays=arrays, optimizer=self.opt.state_dict(),
            rng=checkpoint.rng_state_json(self.rng),
            attrs={"world_size": self.comm.size, "config": self.cfg.to_toml(),
                   "data_fingerprint": self.fingerprint, "g0_norm": self.g0_norm})

    # -- summary ---------------------------------------------------------------
    def final_loss(self) -> tuple[float, float]:
        """Loss and gradient norm at the final parameters. Collective."""
        loss, _ = self._grad_loss(0.0)
        return loss, float(np.linalg.norm(self.grad))

    def summary(self, exit_code: int) -> dict | None:
        """Gather per-rank figures; rank 0 returns the summary dict. Collective."""
        loss, grad_norm = self.final_loss()
        wall = time.perf_counter() - self.t_start
        mine = {"phases": self.timer.snapshot(), "peak_rss_bytes": peak_rss_bytes(),
                "shard_rows": self.shard.n_local, "shard_bytes": self.shard.nbytes}
        every = self.comm.gather(mine, root=0)
        if self.timer.events is not None:
            self.timer.write_trace(self.out)
        if self.rank != 0:
            return None
        theta_ref = self.theta_exact
        rel_err = float(np.linalg.norm(self.theta - theta_ref) / max(np.linalg.norm(theta_ref), 1e-300))
        d = self.shard.n_cols

        def spread(values):
            v = np.asarray(values, dtype=float)
            return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}

        phases = {p: spread([e["phases"].get(p, 0.0) for e in every]) for p in self.timer.total}
        rss = [e["peak_rss_bytes"] for e in every]
        reduced = self.reducer.bytes_per_reduce if self.cfg.train.solver == "gd" else 0
        return {
            "job": self.cfg.name,
            "exit_code": exit_code,
            "stop_reason": self.stop_reason,
            "steps": self.step,
            "final_loss": loss,
            "final_grad_norm": grad_norm,
            "exact_loss": float(0.5 * (theta_ref @ self.G @ theta_ref - 2 * self.c @ theta_ref + self.yty)
                                / self.n_rows),
            "rel_error_to_exact": rel_err,
            "w": self.theta[:d].tolist(),
            "b": float(self.theta[d]) if self.cfg.model.fit_intercept else None,
            "w_exact": theta_ref[:d].tolist(),
            "solver": self.cfg.train.solver,
            "reduction": self.cfg.comm.reduction,
            "world_size": self.comm.size,
            "optimizer": self.opt.hyperparameters(),
            "eta_final": self.opt.eta,
            "curvature_min_max": list(self.curvature),
            "data": {"source": self.shard.describe(), "rows": self.n_rows, "cols": d,
                     "fingerprint": self.fingerprint, "dtype": self.shard.dtype.name,
                     "in_memory": self.shard.in_memory},
            "bytes_reduced_per_step": reduced,
            "wall_s": wall,
            "phases_s": phases,
            "peak_rss_bytes": {"per_rank": rss, **spread(rss)},
            "shard_bytes": spread([e["shard_bytes"] for e in every]),
            "shard_rows": spread([e["shard_rows"] for e in every]),
            "provenance": provenance(C.library_version(), self.comm.size),
        }

    def close(self) -> None:
        self.shard.close()


def _opt_kwargs(cfg: JobConfig) -> dict:
    o = cfg.optimizer
    return {"learning_rate": o.learning_rate, "alpha": o.alpha, "momentum": o.momentum,
            "beta1": o.beta1, "beta2": o.beta2, "eps": o.eps}


def threads_per_rank(configured: int) -> int:
    """BLAS threads per rank: train.threads, else $SLURM_CPUS_PER_TASK, else 1."""
    if configured > 0:
        return configured
    try:
        return max(1, int(os.environ.get("SLURM_CPUS_PER_TASK", "1")))
    except ValueError:
        return 1
