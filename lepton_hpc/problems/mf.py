"""The matrix-factorization recommender (``model.kind = "mf"``): R ~ U V^T on observed ratings.

Ownership follows the ratings shard's :class:`~lepton_hpc.layout.Layout`: users
are cut into logical chunks of ``data.chunk_rows``; each rank owns a contiguous
balanced range of chunks, their ratings and their rows of U (never replicated),
plus the U block's optimizer state. The item factors V (and V's optimizer state)
are replicated; V's gradient, or in ALS the per-item normal equations, are
per-chunk partials summed by :class:`~lepton_hpc.reduce.ItemBlockReducer`.

Solvers (:mod:`.mf_solvers`): ``gd`` (full-batch steps with any optimizer) and
``als`` (a step is one sweep).

With ``model.shard_items = true`` V is not replicated either: each rank owns a
balanced block of items' rows (and their optimizer state), the plan of
:mod:`.mf_exchange` fetches the factor rows each half-sweep needs, and the
solvers of :mod:`.mf_sharded` (implicit feedback: :mod:`.mf_implicit`) give the
replicated run's factors bit for bit, with each owned item's λ (``reg_v`` holds
the λ of ``V``'s rows in either layout);
``model/V`` is then a row-sharded part written by its owners.

Checkpoints: ``/model/V`` and V's optimizer state are replicated parts;
``model/U`` and U's optimizer accumulators (``optimizer_u/<name>``, users x k) are
row-sharded parts written by their owners, so nothing is gathered to one rank,
and each rank of a resume reads only its own user rows (any rank count).
"""

from __future__ import annotations

import math

import numpy as np

from .. import comm as C
from ..checkpoint import Part, optimizer_parts, optimizer_state
from ..data.ratings import RatingsShard
from ..engine.problem import Problem
from ..errors import UserError
from ..layout import chunk_range
from ..metrics import peak_rss_bytes
from ..models import mf as K
from ..reduce import ChunkReducer, ItemBlockReducer
from . import mf_reg as R
from .mf_solvers import SOLVERS

_INIT_V_STREAM = 2**32 - 3
_INIT_U_STREAM = 2**32 - 4
INIT_SCALE = 0.3


def init_factors(seed: int, rank: int, n_items: int, chunks, n_users: int, chunk_rows: int, item_rows=None):
    """Initial V (n_items x k) and the U rows of ``chunks``: from (seed, stream[, chunk]).

    ``item_rows=(lo, hi)``: only V's rows [lo, hi), the same bits, drawn block by block (bounded memory).
    """
    V = init_item_rows(seed, rank, n_items, *(item_rows or (0, n_items)))
    parts = []
    for c in chunks:
        lo, hi = chunk_range(n_users, chunk_rows, c)
        parts.append(np.random.default_rng([seed, _INIT_U_STREAM, c]).standard_normal((hi - lo, rank))
                     * INIT_SCALE)
    U = np.concatenate(parts) if parts else np.zeros((0, rank))
    return np.ascontiguousarray(U), V


def init_item_rows(seed: int, rank: int, n_items: int, lo: int, hi: int, block: int = 1 << 16) -> np.ndarray:
    """Rows [lo, hi) of the initial V: the one stream drawn in order, kept where it falls in the range."""
    rng = np.random.default_rng([seed, _INIT_V_STREAM])
    if (lo, hi) == (0, n_items):
        return rng.standard_normal((n_items, rank)) * INIT_SCALE
    V = np.zeros((hi - lo, rank))
    for a in range(0, hi, block):
        z = min(a + block, hi)
        rows = rng.standard_normal((z - a, rank))
        s, e = max(a, lo), z
        if s < e:
            V[s - lo:e - lo] = rows[s - a:] * INIT_SCALE
    return V


class MFProblem(Problem):
    """One training run of the matrix-factorization recommender (see the module doc)."""

    work_unit = "ratings"
    config_unused = ("matmul",)

    def __new__(cls, ctx):
        """``model.feedback = "implicit"`` builds the implicit-feedback problem (:mod:`.mf_implicit`)."""
        if cls is MFProblem and ctx.cfg.model.feedback == "implicit":
            from .mf_implicit import ImplicitMFProblem

            cls = ImplicitMFProblem
        return super().__new__(cls)

    def solver_class(self):
        """The step strategy (an entry of :data:`.mf_solvers.SOLVERS`)."""
        return SOLVERS[self.cfg.train.solver]

    def sharded_solver_class(self):
        """The step strategy with item-sharded V (an entry of :data:`.mf_sharded.SHARDED_SOLVERS`)."""
        from .mf_sharded import SHARDED_SOLVERS

        return SHARDED_SOLVERS[self.cfg.train.solver]

    # -- setup -------------------------------------------------------------------------
    def setup(self) -> None:
        """Read the shard, check it, count, initialise. Collective."""
        cfg, comm = self.cfg, self.comm
        C.agree(comm, self._check_config)
        C.agree(comm, self._check_memory, C.node_size(comm))
        with self.timer.phase("read"):
            self.shard = C.agree(comm, RatingsShard, cfg.data, comm.size, comm.rank)
        sh = self.shard
        self.k, self.reg = cfg.model.rank, cfg.model.reg
        C.agree(comm, self._check_rank)
        with self.timer.phase("read"):
            self.index = [None if cfg.model.shard_items else K.ChunkIndex(b.train[0], b.train[1])
                          for b in sh.blocks]  # item-sharded: the plan holds the item side
        self._count()
        m = cfg.model
        self.reg_u = R.user_weights(m.reg, m.reg_scaling, sh.blocks)  # λ per user (list per chunk)
        self.reg_v = R.row_weights(m.reg, m.reg_scaling, self.item_counts)  # λ per row of self.V
        # per-chunk scalars: [sse_train, sse_test or |grad_U|^2, |U_c|^2]
        self.scalars = ChunkReducer(comm, sh.layout, 3, cfg.comm.reduction)
        self.item_side = None
        if cfg.model.shard_items:  # V item-sharded: the in-block/out-block plan of .mf_exchange
            from .mf_sharded import ItemSide

            with self.timer.phase("read"):
                self.item_side = ItemSide(self)
            # λ of the owned item rows only (the plan's exact counts): rows of self.V, as replicated
            self.reg_v = R.row_weights(m.reg, m.reg_scaling, self.item_side.plan.item_counts)
            self.item_counts = None  # the full-length counts were a setup transient
            self.U, self.V = init_factors(cfg.data.seed, self.k, sh.n_items, sh.chunks, sh.n_users,
                                          sh.chunk_rows, self.item_side.rows[:2])
            self.items = None
            self.solver = self.sharded_solver_class()(self)
            return
        self.U, self.V = init_factors(cfg.data.seed, self.k, sh.n_items, sh.chunks, sh.n_users, sh.chunk_rows)
        solver = self.solver_class()
        self.items = ItemBlockReducer(comm, sh.layout, sh.n_items, solver.width_of(self.k), cfg.comm.reduction)
        self.solver = solver(self)

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
        if cfg.model.penalty not in ("none", "l2"):
            raise UserError(f"model.penalty={cfg.model.penalty!r} does not apply to model.kind=mf, whose "
                            f"penalty is L2 on the factors with strength model.reg; leave model.penalty unset")

    def _check_memory(self, node_ranks: int) -> None:
        """Synthetic ratings: the busiest rank's bytes (:mod:`.mf_memory`) before any are generated."""
        from ..data.memory import check_budget
        from .mf_memory import per_rank_bytes

        d, size = self.cfg.data, self.comm.size
        if d.path:
            return
        nnz = d.density * d.rows * d.cols
        need = per_rank_bytes(d.rows, d.cols, self.cfg.model.rank, size, nnz, d.chunk_rows, self.cfg.train.solver,
                              self.cfg.optimizer.name, self.cfg.comm.reduction)["total_bytes"]
        check_budget(need, node_ranks, f"the synthetic ratings ({d.rows} users x {d.cols} items, {nnz:.3g} "
                     f"ratings, rank {self.cfg.model.rank}) at {size} rank(s)",
                     f"run on more ranks (see `python -m lepton_hpc.problems.mf_memory --users {d.rows} "
                     f"--items {d.cols} --rank {self.cfg.model.rank} --density {d.density:g} --ranks N`) or make "
                     f"the data smaller")

    def _check_rank(self) -> None:
        sh, k = self.shard, self.k
        if k > min(sh.n_users, sh.n_items):
            raise UserError(f"model.rank={k} exceeds min(users, items) = min({sh.n_users}, {sh.n_items}) = "
                            f"{min(sh.n_users, sh.n_items)}: a rank-{k} factorization of this matrix is not "
                            f"identifiable; lower model.rank")

    def _count(self) -> None:
        """Global rating counts, users/items without ratings, the data fingerprint. Collective."""
        sh, comm = self.shard, self.comm
        red = ChunkReducer(comm, sh.layout, 3, "exact")
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
        item_counts = C.allreduce_sum(comm, item_counts)  # integer counts: exact in any order
        self.n_train, self.n_test = n_train, n_test
        self.users_without, self.items_without = users_without, int((item_counts == 0).sum())
        self.item_counts = item_counts
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

    # -- passes over the data ------------------------------------------------------------
    def blocks(self):
        """Yield ``(i, block, Uc, index)`` per local chunk."""
        for i, b in enumerate(self.shard.blocks):
            yield i, b, self.U[b.offset:b.offset + b.n_users], self.index[i]

    def transposed(self):
        """V^T and each local chunk's U rows transposed (contiguous): the kernels' layout."""
        return (np.ascontiguousarray(self.V.T), [np.ascontiguousarray(Uc.T) for _, _, Uc, _ in self.blocks()])

    def with_items(self):
        """Yield ``(i, block, Uc, VT, train, test)`` per local chunk; item-sharded, ``VT`` holds the V rows
        the chunk's round fetched and ``train``/``test`` index them (collective: run the loop to its end)."""
        if not self.item_side:
            VT = np.ascontiguousarray(self.V.T)
            for i, b, Uc, _ in self.blocks():
                yield i, b, Uc, VT, b.train, b.test
            return
        plan = self.item_side.plan
        for c0, c1, VT in self.item_side.user_rounds():
            for i in range(c0, c1):
                b = self.shard.blocks[i]
                yield i, b, self.U[b.offset:b.offset + b.n_users], VT, plan.train[i], plan.test[i]

    def penalty_V(self) -> float:
        """Σ_i λ_i |v_i|^2 (item-sharded: an exact reduction over the owned item rows). Collective when
        item-sharded."""
        return self.item_side.sums(R.row_penalties(self.reg_v, self.V))[0] if self.item_side \
            else R.penalty(self.reg_v, self.V)

    def evaluate(self, step: int = 0) -> tuple[float, float, float]:
        """(objective, train RMSE, test RMSE) at the current factors. Collective."""
        red = self.scalars
        with self.timer.phase("compute", step):
            for i, b, Uc, VT, train, test in self.with_items():
                UcT = np.ascontiguousarray(Uc.T)
                e_tr = K.residuals(UcT, VT, *train)
                e_te = K.residuals(UcT, VT, *test)
                red.partials[i] = [K.sumsq(e_tr), K.sumsq(e_te), R.penalty(self.reg_u[i], Uc)]
        with self.timer.phase("reduce", step):
            sse, sse_test, uu = red.reduce()
            vv = self.penalty_V()
        loss = (0.5 * sse + 0.5 * (uu + vv)) / self.n_train
        test = math.sqrt(sse_test / self.n_test) if self.n_test else float("nan")
        return float(loss), math.sqrt(sse / self.n_train), test

    # -- one step (the strategy does the work) ---------------------------------------------
    def next_eta(self):
        return self.solver.next_eta()

    def gradient(self, step: int):
        return self.solver.gradient(step)

    def apply_update(self, step: int, eta) -> None:
        self.solver.apply_update(step)

    def work_per_step(self) -> int:
        return self.n_train

    def log_metrics(self, step: int) -> dict:
        _, train_rmse, test_rmse = self.evaluate(step)
        return {"train_rmse": train_rmse, "test_rmse": test_rmse}

    def diverged_hint(self) -> str:
        return "lower optimizer.learning_rate" if self.cfg.train.solver == "gd" else "raise model.reg"

    # -- state ------------------------------------------------------------------------------
    def _rows(self) -> tuple[int, int, int]:
        return (self.shard.user_lo, self.shard.user_hi, self.shard.n_users)

    def state(self):
        parts = {"model/U": Part(self.U, self._rows()), "model/V": Part(self.V)}
        attrs = {"model_kind": "mf", "solver": self.cfg.train.solver, "feedback": self.cfg.model.feedback}
        s = self.solver
        if s.opt_U is not None:
            pu, au = optimizer_parts("optimizer_u", s.opt_U, self._rows(), self.k)
            pv, av = optimizer_parts("optimizer", s.opt_V)
            parts.update(pu)
            parts.update(pv)
            attrs.update(au)
            attrs.update(av)
        if self.item_side:
            from .mf_sharded import sharded_state

            sharded_state(self, parts, attrs)
        return parts, attrs

    def load_state(self, snap) -> None:
        C.agree(self.comm, self._load, snap)

    def _load(self, snap) -> None:
        want = {"model/U": (self.shard.n_users, self.k), "model/V": (self.shard.n_items, self.k)}
        got = {key: tuple(snap.shape(key) or ()) for key in want}
        if got != want:
            raise UserError(f"checkpoint in {snap.directory} holds parameters {got}, this job needs {want}; "
                            f"check model.kind and model.rank or start a fresh --out")
        solver = snap.attrs.get("solver")
        if solver != self.cfg.train.solver:
            raise UserError(f"checkpoint in {snap.directory} was written by train.solver={solver}, this job uses "
                            f"{self.cfg.train.solver}; resume with the same solver or start a fresh --out")
        feedback = snap.attrs.get("feedback", "explicit")
        if feedback != self.cfg.model.feedback:
            raise UserError(f"checkpoint in {snap.directory} was written with model.feedback={feedback}, this job "
                            f"uses {self.cfg.model.feedback}; resume with the same feedback or start a fresh --out")
        sharded = bool(snap.attrs.get("shard_items", False))
        if solver == "gd" and sharded != self.cfg.model.shard_items:
            raise UserError(f"checkpoint in {snap.directory} was written with model.shard_items="
                            f"{str(sharded).lower()} and train.solver=gd (V's optimizer state is stored "
                            f"{'by item rows' if sharded else 'whole'}); resume with the same model.shard_items "
                            f"or start a fresh --out")
        lo, hi, _ = self._rows()
        self.U[:] = snap.rows("model/U", lo, hi)
        s = self.solver
        if s.opt_U is not None:
            s.opt_U.load_state_dict(optimizer_state(snap, "optimizer_u", s.opt_U, (lo, hi)))
        if self.item_side:
            from .mf_sharded import load_sharded

            return load_sharded(self, snap)
        self.V[:] = snap.rows("model/V", 0, self.shard.n_items)
        if s.opt_V is not None:
            s.opt_V.load_state_dict(optimizer_state(snap, "optimizer", s.opt_V))

    # -- the end ------------------------------------------------------------------------------
    def final(self) -> dict:
        loss, train_rmse, test_rmse = self.evaluate()
        return {"final_loss": loss, "train_rmse": train_rmse, "test_rmse": test_rmse if self.n_test else None}

    def rank_figures(self) -> dict:
        """This rank's bytes by component; :mod:`.mf_memory` projects the same."""
        opt, work = self.solver.nbytes()
        return {"users": self.shard.n_local_users, "U_block_bytes": self.U.nbytes, "V_bytes": self.V.nbytes,
                "ratings_bytes": self.shard.nbytes + sum(ix.nbytes for ix in self.index if ix is not None),
                "optimizer_state_bytes": opt, "work_buffer_bytes": work,
                "reduce_buffer_bytes": (self.items.nbytes if self.items else 0) + self.scalars.partials.nbytes,
                "exchange_bytes": self.item_side.nbytes() if self.item_side else 0,
                "peak_rss_bytes": peak_rss_bytes()}

    def summary(self, final: dict, every: list[dict]) -> dict:
        from .mf_memory import measured

        sh, cfg, test_rmse = self.shard, self.cfg, final["test_rmse"]
        memory = measured(every, sh.n_users * self.k * 8)
        noise = sh.noise
        ratio = test_rmse / noise if noise and test_rmse is not None else None
        opt = self.solver.opt_V
        self.ctx.log(f"train RMSE {final['train_rmse']:.4f}"
                     + (f", test RMSE {test_rmse:.4f}" if test_rmse is not None else ", no test split")
                     + (f", noise sigma {noise:g}" if noise is not None else "")
                     + (f" (test/sigma {ratio:.3f})" if ratio is not None else "")
                     + f"; U block per rank {memory['U_block_bytes']['max'] / 2**20:.2f} MiB max of "
                       f"{memory['U_total_bytes'] / 2**20:.2f} MiB total, V {memory['V_bytes']['max'] / 2**20:.2f} MiB"
                       f"{' (item-sharded) max' if self.item_side else ''}, "
                       f"peak RSS {memory['peak_rss_bytes']['max'] / 2**20:.0f} MiB max")
        return {**final, "noise": noise, "test_rmse_over_noise": ratio,
                "rel_error_to_exact": None,  # no exact solution to compare with; see test_rmse_over_noise
                "rank": self.k, "reg": self.reg, "reg_scaling": cfg.model.reg_scaling, "solver": cfg.train.solver,
                "optimizer": opt.hyperparameters() if opt is not None else None,
                "eta_final": opt.eta if opt is not None else None,
                "data": {"source": sh.describe(), "users": sh.n_users, "items": sh.n_items,
                         "ratings_train": self.n_train, "ratings_test": self.n_test,
                         "users_without_ratings": self.users_without, "items_without_ratings": self.items_without,
                         "chunk_rows": sh.chunk_rows, "chunks": sh.n_chunks, "fingerprint": self.fingerprint},
                "shard_items": self.item_side is not None,
                "exchange_rounds": ([len(self.item_side.plan.v_rounds), len(self.item_side.plan.u_rounds)]
                                    if self.item_side else None),
                "item_blocks": self.items.n_blocks if self.items else None,
                "bytes_reduced_per_step": (self.items.bytes_per_reduce if self.items else 0)
                + self.scalars.bytes_per_reduce,
                "memory": memory}

    def close(self) -> None:
        shard = getattr(self, "shard", None)
        if shard is not None:
            shard.close()
