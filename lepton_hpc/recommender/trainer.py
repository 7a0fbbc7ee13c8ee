"""The matrix-factorization runner (``model.kind = "mf"``): R ~ U V^T on observed ratings.

Ownership. Users are cut into logical chunks of ``data.chunk_rows``; each rank
owns a contiguous balanced range of chunks, their ratings and their rows of U
(its U block, never replicated), plus the U block's optimizer state. The item
factors V (and V's optimizer state) are replicated; V's gradient, or in ALS the
per-item normal equations, are per-chunk partials summed by
:class:`~lepton_hpc.recommender.dist.ItemBlockReducer` (exact: the same bits on
any rank count; fast: one Allreduce per item block).

Solvers. ``train.solver = "gd"``: full-batch first-order steps with any
optimizer (one instance for the flattened local U block, one for V; the
schedules agree because both step once per iteration). ``"als"``: alternating
least squares; a step is one sweep (solve every user locally, then every item
from reduced normal equations, each rank solving a share of the items).

Collective from start to end, like :class:`lepton_hpc.trainer.Trainer`: user
errors are agreed across ranks, a signal on any rank checkpoints and exits 75.

Checkpoints (``lepton_hpc.checkpoint`` format): ``/model/U`` (users x k,
gathered to rank 0 for the write: rank 0 needs users x k x 8 bytes per gathered
array, U and each U accumulator), ``/model/V``, ``/optimizer`` (V's optimizer),
``/optimizer_u/<accumulator>`` (users x k) with U's optimizer scalars as the JSON
attribute ``optimizer_u``. A resume may use another rank count: rank 0 validates
the file (its checksum reads it whole), then each rank reads only its own user rows.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

import h5py
import numpy as np

from .. import checkpoint, comm as C
from ..data.ratings import RatingsShard
from ..metrics import MetricsWriter, peak_rss_bytes, provenance, spread
from ..optimizers import make_optimizer
from ..layout import chunk_range
from ..reduce import ChunkReducer
from ..runbase import EXIT_OK, EXIT_REQUEUE, RunBase, optimizer_kwargs
from . import kernels as K
from .dist import ItemBlockReducer, allgather_item_blocks, allreduce_sum, gather_rows, item_share, user_counts
from ..errors import UserError

SOLVERS = ("gd", "als")
_INIT_V_STREAM = 2**32 - 3
_INIT_U_STREAM = 2**32 - 4
INIT_SCALE = 0.3


def init_factors(seed: int, rank: int, n_items: int, chunks, n_users: int, chunk_rows: int):
    """Initial V (n_items x k) and the U rows of ``chunks``: from (seed, stream[, chunk])."""
    V = np.random.default_rng([seed, _INIT_V_STREAM]).standard_normal((n_items, rank)) * INIT_SCALE
    parts = []
    for c in chunks:
        lo, hi = chunk_range(n_users, chunk_rows, c)
        parts.append(np.random.default_rng([seed, _INIT_U_STREAM, c]).standard_normal((hi - lo, rank))
                     * INIT_SCALE)
    U = np.concatenate(parts) if parts else np.zeros((0, rank))
    return np.ascontiguousarray(U), V


class MFTrainer(RunBase):
    """One training run of the matrix-factorization recommender (see the module doc)."""

    # -- setup -------------------------------------------------------------------
    def setup(self) -> None:
        """Read the shard, check it, count, initialise, maybe resume. Collective."""
        cfg, comm = self.cfg, self.comm
        C.agree(comm, self._check_config)
        C.agree(comm, self.check_world)
        C.on_root(comm, self.prepare_out_dir)
        with self.timer.phase("read"):
            self.shard = C.agree(comm, RatingsShard, cfg.data, comm.size, self.rank)
        sh = self.shard
        self.k, self.reg = cfg.model.rank, cfg.model.reg
        C.agree(comm, self._check_rank)
        with self.timer.phase("read"):
            self.index = [K.ChunkIndex(b.train[0], b.train[1]) for b in sh.blocks]
        self._count()
        self.U, self.V = init_factors(cfg.data.seed, self.k, sh.n_items, sh.chunks, sh.n_users, sh.chunk_rows)
        self.solver = cfg.train.solver
        # per-chunk scalars: [sse_train, sse_test or |grad_U|^2, |U_c|^2]
        self.scalars = ChunkReducer(comm, sh.n_chunks, 3, cfg.comm.reduction)
        width = self.k if self.solver == "gd" else K.packed_width(self.k)
        self.items = ItemBlockReducer(comm, sh.n_chunks, sh.n_items, width, cfg.comm.reduction)
        self.opt_U = self.opt_V = None
        if self.solver == "gd":
            self.opt_U = C.agree(comm, make_optimizer, cfg.optimizer.name, **optimizer_kwargs(cfg))
            self.opt_V = C.agree(comm, make_optimizer, cfg.optimizer.name, **optimizer_kwargs(cfg))
            self.grad_U = np.zeros_like(self.U)
            self.grad_V = np.zeros_like(self.V)
            self.e = [np.zeros(b.train[0].shape[0]) for b in sh.blocks]
        else:
            self.V_new = np.zeros_like(self.V)
        self.step = 0
        self.g0_norm = 0.0
        self.best_loss, self.stale = math.inf, 0
        self.stop_flag = C.StopFlag(comm)
        self._maybe_resume()

    def _check_config(self) -> None:
        cfg = self.cfg
        if cfg.train.solver not in SOLVERS:
            raise UserError(f"train.solver={cfg.train.solver} is not available for model.kind=mf; use "
                             f"{' or '.join(SOLVERS)}")
        if cfg.model.rank < 1:
            raise UserError(f"model.rank must be >= 1 for model.kind=mf, got {cfg.model.rank}")
        if cfg.train.batch_size:
            raise UserError(f"train.batch_size={cfg.train.batch_size}: model.kind=mf trains full-batch; "
                             f"set train.batch_size=0")

    def _check_rank(self) -> None:
        sh, k = self.shard, self.k
        if k > min(sh.n_users, sh.n_items):
            raise UserError(f"model.rank={k} exceeds min(users, items) = min({sh.n_users}, {sh.n_items}) = "
                             f"{min(sh.n_users, sh.n_items)}: a rank-{k} factorization of this matrix is not "
                             f"identifiable; lower model.rank")

    def _count(self) -> None:
        """Global rating counts, users/items without ratings, the data fingerprint. Collective."""
        sh, comm = self.shard, self.comm
        red = ChunkReducer(comm, sh.n_chunks, 3, "exact")
        digest = 0
        item_counts = np.zeros(sh.n_items)
        for i, b in enumerate(sh.blocks):
            users, items = b.train[0], b.train[1]
            seen = np.zeros(b.n_users, dtype=bool)
            seen[users] = True
            red.partials[i] = [users.shape[0], b.test[0].shape[0], b.n_users - int(seen.sum())]
            item_counts += np.bincount(items, minlength=sh.n_items)
            digest ^= b.digest()
        n_train, n_test, users_without = (int(x) for x in red.reduce())
        item_counts = allreduce_sum(comm, item_counts)
        self.n_train, self.n_test = n_train, n_test
        self.users_without, self.items_without = users_without, int((item_counts == 0).sum())
        if sh.nnz_total is not None and n_train + n_test != sh.nnz_total:
            raise C.JobError(f"the shards of {sh.cfg.path} hold {n_train + n_test} ratings but the file has "
                             f"{sh.nnz_total}: /rows is not sorted by user; sort the ratings by user row", 0)
        if n_train == 0:
            raise C.JobError(f"no training ratings in {sh.cfg.path or 'the synthetic data'} "
                             f"({n_test} held out by data.test_fraction={sh.cfg.test_fraction:g}); "
                             f"add ratings or lower data.test_fraction", 0)
        fp = C.allreduce_bxor(comm, digest)
        self.fingerprint = (f"{fp:016x}-mf-{sh.n_users}x{sh.n_items}-{n_train}+{n_test}"
                            f"-test{sh.cfg.test_fraction:g}-seed{sh.cfg.seed}")

    # -- resume ------------------------------------------------------------------
    def _maybe_resume(self) -> None:
        if self.resume is None:
            return
        meta = C.on_root(self.comm, self._load_checkpoint)
        if meta is None:
            self.log(f"no checkpoint in {self.out / 'checkpoints'}; starting from step 0")
            return
        C.agree(self.comm, self._read_own_rows, meta)
        self.V[:] = meta["V"]
        if self.solver == "gd":
            C.agree(self.comm, self.opt_V.load_state_dict, meta["opt_V"])
        self.step = meta["step"]
        self.g0_norm = meta["g0_norm"]
        self.log(f"resumed from step {self.step} (written by {meta['world_size']} ranks)")

    def _load_checkpoint(self) -> dict | None:
        """Rank 0: find and validate the checkpoint; the replicated parts for everyone."""
        ckpt_dir = self.out / "checkpoints"
        if self.resume == "auto":
            state = checkpoint.latest_valid(ckpt_dir, warn=self.log)
            if state is None:
                return None
            source, path = ckpt_dir, checkpoint.path_for(ckpt_dir, state.step)
        else:
            path = Path(self.resume)
            state, source = checkpoint.load(path), self.resume
        if state.attrs.get("data_fingerprint") != self.fingerprint:
            raise UserError(f"checkpoint in {source} was written for other data "
                             f"({state.attrs.get('data_fingerprint')}, this job has {self.fingerprint}); "
                             f"resume with the same data or start a fresh --out")
        want = {"model/U": (self.shard.n_users, self.k), "model/V": (self.shard.n_items, self.k)}
        got = {key: np.shape(v) for key, v in state.arrays.items()}
        if got != want:
            raise UserError(f"checkpoint in {source} holds parameters {got}, this job needs {want}; "
                             f"check model.kind and model.rank or start a fresh --out")
        if state.attrs.get("solver") != self.solver:
            raise UserError(f"checkpoint in {source} was written by train.solver={state.attrs.get('solver')}, "
                             f"this job uses {self.solver}; resume with the same solver or start a fresh --out")
        opt_u = json.loads(state.attrs.get("optimizer_u", "null") or "null")
        return {"path": str(path), "step": state.step, "V": state.arrays["model/V"],
                "opt_V": state.optimizer, "opt_U": opt_u, "g0_norm": float(state.attrs.get("g0_norm", 0.0)),
                "world_size": state.attrs.get("world_size")}

    def _read_own_rows(self, meta: dict) -> None:
        """Every rank: its own rows of U (and of U's optimizer accumulators) from the checkpoint."""
        lo, hi = self.shard.user_lo, self.shard.user_hi
        try:
            with h5py.File(meta["path"], "r") as f:
                self.U[:] = f["model/U"][lo:hi]
                if self.solver == "gd":
                    spec = meta["opt_U"]
                    state = dict(spec["scalars"])
                    for key in spec["arrays"]:
                        state[key] = f[f"optimizer_u/{key}"][lo:hi].reshape(-1)
                    self.opt_U.load_state_dict(state)
        except (OSError, KeyError) as exc:
            raise UserError(f"checkpoint {meta['path']} could not be read on rank {self.rank} ({exc}); "
                             f"resume from another checkpoint") from None

    # -- one pass over the data ---------------------------------------------------------
    def _blocks(self):
        """Yield ``(i, block, Uc, index)`` per local chunk."""
        for i, b in enumerate(self.shard.blocks):
            yield i, b, self.U[b.offset:b.offset + b.n_users], self.index[i]

    def _transposed(self):
        """V^T and each local chunk's U rows transposed (contiguous): the kernels' layout."""
        return (np.ascontiguousarray(self.V.T),
                [np.ascontiguousarray(Uc.T) for _, _, Uc, _ in self._blocks()])

    def _evaluate(self) -> tuple[float, float, float]:
        """(objective, train RMSE, test RMSE) at the current factors. Collective."""
        red = self.scalars
        with self.timer.phase("compute", self.step):
            VT, UT = self._transposed()
            for i, b, Uc, _ in self._blocks():
                e_tr = K.residuals(UT[i], VT, *b.train)
                e_te = K.residuals(UT[i], VT, *b.test)
                red.partials[i] = [K.sumsq(e_tr), K.sumsq(e_te), K.sumsq(Uc)]
        with self.timer.phase("reduce", self.step):
            sse, sse_test, uu = red.reduce()
        loss = (0.5 * sse + 0.5 * self.reg * (uu + K.sumsq(self.V))) / self.n_train
        test = math.sqrt(sse_test / self.n_test) if self.n_test else float("nan")
        return float(loss), math.sqrt(sse / self.n_train), test

    def _gd_gradient(self, flag: float) -> tuple[float, float, float]:
        """grad_U (local) and grad_V (reduced) at the current factors. Collective.

        Returns (objective, |grad|, agreed stop flag).
        """
        self.stop_flag.start(flag)
        red, N, reg = self.scalars, self.n_train, self.reg
        with self.timer.phase("compute", self.step):
            VT, UT = self._transposed()
            for i, b, Uc, idx in self._blocks():
                gU = self.grad_U[b.offset:b.offset + b.n_users]
                K.gd_user_pass(UT[i], VT, *b.train, idx, reg, N, self.e[i], gU)
                red.partials[i] = [K.sumsq(self.e[i]), K.sumsq(gU), K.sumsq(Uc)]
        with self.timer.phase("reduce", self.step):
            sse, gu2, uu = red.reduce()
        for j0, j1 in self.items.blocks():
            nb = j1 - j0
            with self.timer.phase("compute", self.step):
                for i, b, Uc, idx in self._blocks():
                    K.item_grad_partial(UT[i], self.e[i], idx, j0, j1, self.items.partial(i, nb))
            with self.timer.phase("reduce", self.step):
                total = self.items.reduce(nb)
            gV = self.grad_V[j0:j1]
            np.add(total, reg * self.V[j0:j1], out=gV)
            gV /= N
        with self.timer.phase("reduce", self.step):
            stop = self.stop_flag.wait()
        loss = (0.5 * sse + 0.5 * reg * (uu + K.sumsq(self.V))) / N
        return float(loss), math.sqrt(gu2 + K.sumsq(self.grad_V)), stop

    def _als_sweep(self) -> None:
        """One ALS sweep: every user's row from V, then every item's row from the new U. Collective."""
        k, reg = self.k, self.reg
        with self.timer.phase("compute", self.step):
            VT = np.ascontiguousarray(self.V.T)
            for i, b, Uc, idx in self._blocks():
                K.als_users(VT, *b.train, idx, reg, Uc)
            _, UT = self._transposed()
        for j0, j1 in self.items.blocks():
            nb = j1 - j0
            with self.timer.phase("compute", self.step):
                for i, b, Uc, idx in self._blocks():
                    K.als_item_partial(UT[i], b.train[2], idx, j0, j1, self.items.partial(i, nb))
            with self.timer.phase("reduce", self.step):
                S = self.items.reduce(nb)
            a, z = item_share(nb, self.comm.size, self.rank)
            with self.timer.phase("update", self.step):
                mine = K.solve_packed(S[a:z], k, reg)
            with self.timer.phase("reduce", self.step):
                allgather_item_blocks(self.comm, mine, self.V_new[j0:j1])
        self.V[:] = self.V_new

    # -- the loop --------------------------------------------------------------------
    def run(self) -> int:
        """Train to the end, a stop condition or a signal. Collective. Returns the exit code."""
        previous = self.install_signals()
        metrics = MetricsWriter(self.out / "metrics.jsonl" if self.rank == 0 else None, append=self.step > 0)
        try:
            # Overflow shows as a non-finite loss, reported once as a sentence: no numpy warnings per rank.
            with np.errstate(over="ignore", invalid="ignore"):
                if self.solver == "gd":
                    reason = self._run_gd(metrics)
                else:
                    reason = self._run_als(metrics)
        finally:
            metrics.close()
            for sig, old in previous.items():
                signal.signal(sig, old)
        self.stop_reason = reason
        if reason == "signal":
            self.log(f"signal received: checkpointed step {self.step}; exiting with {EXIT_REQUEUE} "
                     f"(resume with --resume auto)")
            return EXIT_REQUEUE
        return EXIT_OK

    def _diverged(self, loss: float, what: str) -> C.JobError:
        hint = "lower optimizer.learning_rate" if self.solver == "gd" else "raise model.reg"
        return C.JobError(f"the loss became {loss} at step {self.step + 1}{what}; the run stopped and the last "
                          f"good checkpoint is intact; {hint}", 0)

    def _run_gd(self, metrics) -> str:
        tc, every = self.cfg.train, self.cfg.checkpoint.every
        reason, last_ckpt = "steps", self.step if self.resume else -1
        window = (time.perf_counter(), 0, self.timer.snapshot())
        while self.step < tc.steps:
            eta = self.opt_V.next_eta()
            if eta < tc.eta_floor:
                reason = "eta_floor"
                self.log(f"stopping at step {self.step}: the step size {eta:.3e} fell below "
                         f"train.eta_floor={tc.eta_floor:g}; the schedule has no step left (raise "
                         f"optimizer.learning_rate or lower optimizer.alpha)")
                break
            loss, grad_norm, stop = self._gd_gradient(float(self.stop_signal))
            if stop > 0:
                reason = "signal"
                break
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                raise self._diverged(loss, f" (eta={eta:.3e})")
            if self.step == 0 and self.g0_norm == 0.0:
                self.g0_norm = grad_norm
            if tc.tol > 0 and grad_norm <= tc.tol * self.g0_norm:
                reason = "tol"
                self.log(f"converged at step {self.step}: |grad| {grad_norm:.3e} <= train.tol x |grad_0|")
                break
            if self._plateau(loss):
                reason = "plateau"
                break
            with self.timer.phase("update", self.step):
                self.opt_U.update(self.U.reshape(-1), self.grad_U.reshape(-1), out=self.U.reshape(-1))
                self.opt_V.update(self.V.reshape(-1), self.grad_V.reshape(-1), out=self.V.reshape(-1))
            self.step += 1
            window = self._after_step(metrics, window, eta, grad_norm)
            if every and self.step % every == 0:
                self._save()
                last_ckpt = self.step
        if last_ckpt != self.step:
            self._save()
        return reason

    def _run_als(self, metrics) -> str:
        tc, every = self.cfg.train, self.cfg.checkpoint.every
        reason, last_ckpt = "steps", self.step if self.resume else -1
        window = (time.perf_counter(), 0, self.timer.snapshot())
        prev = None
        while self.step < tc.steps:
            self.stop_flag.start(float(self.stop_signal))
            self._als_sweep()
            with self.timer.phase("reduce", self.step):
                stop = self.stop_flag.wait()
            loss, train_rmse, test_rmse = self._evaluate()
            if not math.isfinite(loss):
                raise self._diverged(loss, "")
            self.step += 1
            window = self._after_step(metrics, window, None, None, evaluated=(loss, train_rmse, test_rmse))
            if every and self.step % every == 0:
                self._save()
                last_ckpt = self.step
            if stop > 0:
                reason = "signal"
                break
            if self._plateau(loss):
                reason = "plateau"
                break
            if not tc.patience and tc.tol > 0 and prev is not None and prev - loss <= tc.tol * abs(prev):
                reason = "tol"
                self.log(f"converged at step {self.step}: the sweep lowered the objective by <= train.tol x itself")
                break
            prev = loss
        if last_ckpt != self.step:
            self._save()
        return reason

    def _plateau(self, loss: float) -> bool:
        """train.patience: this many steps in a row without relative improvement > train.tol."""
        tc = self.cfg.train
        if not tc.patience:
            return False
        if self.best_loss - loss > tc.tol * max(abs(loss), 1e-300):
            self.best_loss, self.stale = loss, 0
        else:
            self.stale += 1
        if self.stale >= tc.patience:
            self.log(f"stopping at step {self.step}: no relative improvement > train.tol={tc.tol:g} in "
                     f"train.patience={tc.patience} steps")
            return True
        return False

    def _after_step(self, metrics, window, eta, grad_norm, evaluated=None):
        t0, steps, phase0 = window
        steps += 1
        tc = self.cfg.train
        if self.step % tc.log_every and self.step != tc.steps:
            return t0, steps, phase0
        loss, train_rmse, test_rmse = evaluated or self._evaluate()
        now = time.perf_counter()
        snap = self.timer.snapshot()
        per = {p: (snap[p] - phase0[p]) / steps for p in ("compute", "reduce", "update")}
        step_s = (now - t0) / steps
        rec = {"step": self.step, "loss": loss, "train_rmse": train_rmse, "test_rmse": test_rmse,
               "eta": eta, "grad_norm": grad_norm, "t_compute_s": per["compute"], "t_comm_s": per["reduce"],
               "t_update_s": per["update"], "t_step_s": step_s,
               "ratings_per_s": self.n_train / step_s if step_s > 0 else 0.0,
               "comm_share": per["reduce"] / step_s if step_s > 0 else 0.0}
        metrics.write(rec)
        gd = f"eta {eta:.3e}  |grad| {grad_norm:.3e}  " if eta is not None else ""
        self.log(f"step {self.step:>7d}  loss {loss:.6e}  rmse train {train_rmse:.4f} test {test_rmse:.4f}  "
                 f"{gd}{rec['ratings_per_s']:.3e} ratings/s  comm {100.0 * rec['comm_share']:.1f}%")
        return time.perf_counter(), 0, self.timer.snapshot()

    # -- checkpoints -------------------------------------------------------------------
    def _save(self) -> None:
        """Gather U (and its optimizer state) to rank 0, which writes atomically. Collective."""
        with self.timer.phase("checkpoint", self.step):
            counts = user_counts(self.shard.n_users, self.shard.chunk_rows, self.comm.size)
            arrays = {"model/U": gather_rows(self.comm, self.U, counts)}
            opt_u = None
            if self.solver == "gd":
                state = self.opt_U.state_dict()
                names = [key for key in self.opt_U.accumulator_names if key in state]
                for key in names:
                    arrays[f"optimizer_u/{key}"] = gather_rows(self.comm, state.pop(key).reshape(-1, self.k),
                                                               counts)
                state["optimizer"] = self.opt_U.name
                opt_u = {"scalars": state, "arrays": names}
            message = None
            if self.rank == 0:
                arrays["model/V"] = self.V.copy()
                st = checkpoint.State(
                    step=self.step, arrays=arrays,
                    optimizer=self.opt_V.state_dict() if self.solver == "gd" else {},
                    attrs={"world_size": self.comm.size, "config": self.cfg.to_toml(), "model_kind": "mf",
                           "solver": self.solver, "data_fingerprint": self.fingerprint,
                           "g0_norm": self.g0_norm, "optimizer_u": json.dumps(opt_u, default=_json_scalar)})
                try:
                    checkpoint.save(self.out / "checkpoints", st, self.cfg.checkpoint.keep)
                except OSError as exc:
                    message = f"could not write a checkpoint to {self.out / 'checkpoints'}: {exc}"
            C.check(self.comm, message)

    # -- summary ---------------------------------------------------------------------------
    def memory(self) -> dict:
        """This rank's bytes by component (not collective); :mod:`.memory` projects the same."""
        opt = 0
        for o in (self.opt_U, self.opt_V):
            if o is not None:
                opt += sum(getattr(o, key).nbytes for key in o.accumulator_names if getattr(o, key) is not None)
        work = (self.grad_U.nbytes + self.grad_V.nbytes + sum(e.nbytes for e in self.e)
                if self.solver == "gd" else self.V_new.nbytes)
        return {"peak_rss_bytes": peak_rss_bytes(), "users": self.shard.n_local_users,
                "U_block_bytes": self.U.nbytes, "V_bytes": self.V.nbytes,
                "ratings_bytes": self.shard.nbytes + sum(ix.nbytes for ix in self.index),
                "optimizer_state_bytes": opt, "work_buffer_bytes": work,
                "reduce_buffer_bytes": self.items.nbytes + self.scalars.partials.nbytes}

    def summary(self, exit_code: int) -> dict | None:
        """Final metrics and per-rank figures; rank 0 returns the summary dict. Collective."""
        loss, train_rmse, test_rmse = self._evaluate()
        wall = time.perf_counter() - self.t_start
        mine = {"phases": self.timer.snapshot(), **self.memory()}
        every = C.allgather(self.comm, mine)
        if self.timer.events is not None:
            self.timer.write_trace(self.out)
        if self.rank != 0:
            return None
        sh, cfg = self.shard, self.cfg


        noise = sh.noise
        if not self.n_test:
            test_rmse = None  # no held-out ratings (data.test_fraction = 0)
        keys = ("peak_rss_bytes", "users", "U_block_bytes", "V_bytes", "ratings_bytes", "optimizer_state_bytes",
                "work_buffer_bytes", "reduce_buffer_bytes")
        memory = {key: {"per_rank": [e[key] for e in every], **spread([e[key] for e in every])} for key in keys}
        memory["U_total_bytes"] = sh.n_users * self.k * 8
        memory["U_replicated"] = False
        ratio = test_rmse / noise if noise and test_rmse is not None else None
        self.log(f"train RMSE {train_rmse:.4f}"
                 + (f", test RMSE {test_rmse:.4f}" if test_rmse is not None else ", no test split")
                 + (f", noise sigma {noise:g}" if noise is not None else "")
                 + (f" (test/sigma {ratio:.3f})" if ratio is not None else "")
                 + f"; U block per rank {memory['U_block_bytes']['max'] / 2**20:.2f} MiB max of "
                   f"{memory['U_total_bytes'] / 2**20:.2f} MiB total, V {self.V.nbytes / 2**20:.2f} MiB, "
                   f"peak RSS {memory['peak_rss_bytes']['max'] / 2**20:.0f} MiB max")
        return {
            "job": cfg.name,
            "model": "mf",
            "exit_code": exit_code,
            "stop_reason": self.stop_reason,
            "steps": self.step,
            "final_loss": loss,
            "train_rmse": train_rmse,
            "test_rmse": test_rmse,
            "noise": noise,
            "test_rmse_over_noise": ratio,
            "rel_error_to_exact": None,  # no exact solution to compare with; see test_rmse_over_noise
            "rank": self.k,
            "reg": self.reg,
            "solver": self.solver,
            "reduction": cfg.comm.reduction,
            "world_size": self.comm.size,
            "optimizer": self.opt_V.hyperparameters() if self.opt_V is not None else None,
            "eta_final": self.opt_V.eta if self.opt_V is not None else None,
            "data": {"source": sh.describe(), "users": sh.n_users, "items": sh.n_items,
                     "ratings_train": self.n_train, "ratings_test": self.n_test,
                     "users_without_ratings": self.users_without, "items_without_ratings": self.items_without,
                     "chunk_rows": sh.chunk_rows, "chunks": sh.n_chunks, "fingerprint": self.fingerprint},
            "item_blocks": self.items.n_blocks,
            "bytes_reduced_per_step": self.items.bytes_per_reduce + self.scalars.bytes_per_reduce,
            "wall_s": wall,
            "phases_s": {p: spread([e["phases"].get(p, 0.0) for e in every]) for p in self.timer.total},
            "memory": memory,
            "peak_rss_bytes": memory["peak_rss_bytes"],
            "provenance": provenance(C.library_version(), self.comm.size),
        }


def _json_scalar(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"cannot store {type(v).__name__} in a checkpoint attribute")
