"""Implicit feedback (``model.feedback = "implicit"``): confidence-weighted ALS of Hu, Koren, Volinsky (2008).

The ratings are interaction counts r_ui >= 0; every user-item pair enters the
objective, the pairs without interactions with preference 0 and confidence 1:

    ( 1/2 Σ_{all u, i} c_ui (p_ui - u_u·v_i)² + 1/2 (Σ_u λ_u |u_u|² + Σ_i λ_i |v_i|²) ) / N

with c_ui = 1 + α r_ui (``model.alpha``), p_ui = [r_ui > 0], N the training
interactions and λ per row from ``model.reg_scaling`` (:mod:`.mf_reg`; ``none``
is the ``implicit`` library's convention). A sweep solves every user from V,
then every item from U (the library's order), each row through the Gram trick
of :mod:`lepton_hpc.models.mf_implicit`: V^T V is summed once per half-sweep
along one fixed tree over item rows (:class:`ItemGram`); U^T U is reduced
exactly over user chunks (:class:`~lepton_hpc.reduce.ChunkReducer`), the items'
packed sums over their interactions exactly per item block
(:class:`~lepton_hpc.reduce.ItemBlockReducer`).
``model.inner_solver = "cg"`` takes ``model.cg_steps`` conjugate-gradient steps
per row from its previous factors instead of an exact solve (the library's
``use_cg``): matrix-free for users, on the reduced systems for items.

With ``model.shard_items = true`` (:class:`ShardedImplicitALS`) each rank owns a
block of V's rows: the users are solved from the V rows the exchange plan
fetches (:mod:`.mf_exchange`), each item on its owner from its in-block
interactions (the same per-chunk sums and chunk tree as the replicated
reduction), V^T V from the owned rows along the same item tree: the replicated
run's factors and ranking metrics bit for bit, at any rank count.

The state is U (row-sharded) and V (replicated, or row-sharded), the explicit problem's
checkpoint parts: the Gram matrices are recomputed from them, so a resume on
any rank count continues with the same bits. Held-out interactions are scored
by :mod:`.mf_ranking` (precision@k, recall@k, nDCG@k, AUC), each rank its own
users against one item block at a time (item-sharded: every owner's block in
turn), only per-chunk metric sums reduced.
"""

from __future__ import annotations

import numpy as np

from .. import comm as C
from ..errors import UserError
from ..layout import Layout, block_range
from ..models import mf as K
from ..models import mf_implicit as KI
from ..reduce import ChunkReducer
from . import mf_ranking, mf_reg as R
from .mf import MFProblem
from .mf_exchange import owner_item_sums


class ItemGram:
    """V^T V as a sum over item rows along one fixed tree, one leaf per item
    (:class:`~lepton_hpc.reduce.ChunkReducer` over items): each rank adds the rows of its balanced
    item block, from the replicated V or from the item-sharded V's own rows, so both give the same
    bits at any rank count. Collective."""

    def __init__(self, pb):
        comm, n = pb.comm, pb.shard.n_items
        self.k, self.sharded = pb.k, pb.item_side is not None
        self.red = ChunkReducer(comm, Layout(n, 1, comm.size, comm.rank), pb.k * (pb.k + 1) // 2,
                                pb.cfg.comm.reduction)
        self.lo, self.hi = block_range(n, comm.size, comm.rank)
        if self.sharded:
            assert (self.lo, self.hi) == pb.item_side.rows[:2]

    def __call__(self, V: np.ndarray) -> np.ndarray:
        KI.row_grams(V if self.sharded else V[self.lo:self.hi], self.red.partials)
        return KI.unpack(self.red.reduce(), self.k)

    @property
    def nbytes(self) -> int:
        return self.red.nbytes


class ImplicitALS:
    """A step is one sweep: users from V, then items from U. Collective where marked."""

    width_of = staticmethod(K.packed_width)
    opt_U = opt_V = None

    def __init__(self, pb):
        self.pb = pb
        m = pb.cfg.model
        self.alpha = m.alpha
        self.cg = m.cg_steps if m.inner_solver == "cg" else 0
        self.V_new = np.zeros_like(pb.V) if pb.item_side is None else None
        self.grams = ChunkReducer(pb.comm, pb.shard.layout, pb.k * (pb.k + 1) // 2, pb.cfg.comm.reduction)
        self.v_gram = ItemGram(pb)

    def next_eta(self) -> None:
        return None

    def gradient(self, step: int) -> tuple[float, None]:
        return self.pb.evaluate(step)[0], None

    def apply_update(self, step: int) -> None:
        self.solve_users(step)
        self.solve_items(step)

    def item_gram(self) -> np.ndarray:
        """V^T V (:class:`ItemGram`). Collective."""
        return self.v_gram(self.pb.V)

    def user_gram(self, UT, step: int) -> np.ndarray:
        """U^T U, reduced exactly over user chunks. Collective."""
        pb = self.pb
        with pb.timer.phase("compute", step):
            for i in range(len(UT)):
                self.grams.partials[i] = KI.gram_packed(UT[i])
        with pb.timer.phase("reduce", step):
            return KI.unpack(self.grams.reduce(), pb.k)

    def solve_users(self, step: int) -> None:
        pb = self.pb
        with pb.timer.phase("reduce", step):
            gram = self.item_gram()
        with pb.timer.phase("compute", step):
            VT = np.ascontiguousarray(pb.V.T)
            for i, b, Uc, idx in pb.blocks():
                KI.implicit_users(VT, gram, *b.train, idx, pb.reg_u[i], self.alpha, Uc, self.cg)

    def solve_items(self, step: int) -> None:
        """Collective: each rank solves its share of every item block, then all gather."""
        pb = self.pb
        comm, timer = pb.comm, pb.timer
        with timer.phase("compute", step):
            _, UT = pb.transposed()
        gram = self.user_gram(UT, step)
        for j0, j1 in pb.items.blocks():
            nb = j1 - j0
            with timer.phase("compute", step):
                for i, b, Uc, idx in pb.blocks():
                    KI.implicit_item_partial(UT[i], b.train[2], idx, j0, j1, self.alpha, pb.items.partial(i, nb))
            with timer.phase("reduce", step):
                S = pb.items.reduce(nb)
            a, z = block_range(nb, comm.size, comm.rank)
            with timer.phase("update", step):
                reg = R.vector(pb.reg_v, j0 + a, j0 + z)
                mine = self.solve(S[a:z], gram, reg, pb.V[j0 + a:j0 + z])
            with timer.phase("reduce", step):
                counts = [block_range(nb, comm.size, q)[1] - block_range(nb, comm.size, q)[0]
                          for q in range(comm.size)]
                C.allgatherv_rows(comm, mine, self.V_new[j0:j1], counts)
        pb.V[:] = self.V_new

    def solve(self, S: np.ndarray, gram: np.ndarray, reg, x0: np.ndarray) -> np.ndarray:
        """Item rows from their packed systems: exact, or CG steps from their previous rows ``x0``."""
        return KI.cg_explicit(S, gram, reg, x0, self.cg) if self.cg else KI.solve_rows(S, gram, reg)

    def nbytes(self) -> tuple[int, int]:
        return 0, (self.V_new.nbytes if self.V_new is not None else 0) + self.grams.nbytes + self.v_gram.nbytes


class ShardedImplicitALS(ImplicitALS):
    """:class:`ImplicitALS` with item-sharded V (``model.shard_items = true``): the users from the fetched
    V rows, each owned item from its owner's in-block (:func:`~.mf_exchange.owner_item_sums`); the
    replicated run's factors bit for bit. Collective where marked."""

    def solve_users(self, step: int) -> None:
        """Collective: V^T V, then one fetch of the V rows each round of user chunks touches."""
        pb, side = self.pb, self.pb.item_side
        with pb.timer.phase("reduce", step):
            gram = self.item_gram()
        with pb.timer.phase("compute", step):
            for c0, c1, VT in side.user_rounds():
                for i in range(c0, c1):
                    b = pb.shard.blocks[i]
                    KI.implicit_users(VT, gram, *side.plan.train[i], side.plan.user_index[i], pb.reg_u[i],
                                      self.alpha, pb.U[b.offset:b.offset + b.n_users], self.cg)

    def solve_items(self, step: int) -> None:
        """Collective: U^T U over user chunks, then one fetch of the U rows each round of items needs."""
        pb, side = self.pb, self.pb.item_side
        UT = [np.ascontiguousarray(pb.U[b.offset:b.offset + b.n_users].T) for b in pb.shard.blocks]
        gram = self.user_gram(UT, step)
        with pb.timer.phase("compute", step):
            V_new = np.empty_like(pb.V)
            rated = np.zeros(pb.V.shape[0], dtype=bool)
            for g0, g1, UTn in side.item_rounds():
                for g in range(g0, g1):
                    items, S = owner_item_sums(side.plan, g, UTn, side.plan.vals, True, alpha=self.alpha)
                    V_new[items] = self.solve(S, gram, R.at(pb.reg_v, items), pb.V[items])
                    rated[items] = True
            rest = np.flatnonzero(~rated)  # zero sums, solved as the replicated path solves them
            V_new[rest] = self.solve(np.zeros((rest.shape[0], K.packed_width(pb.k))), gram, R.at(pb.reg_v, rest),
                                     pb.V[rest])
        pb.V[:] = V_new


class ImplicitMFProblem(MFProblem):
    """The recommender on interaction counts (see the module doc); built by :class:`MFProblem`."""

    work_unit = "interactions"

    def solver_class(self):
        return ImplicitALS

    def sharded_solver_class(self):
        return ShardedImplicitALS

    def _check_config(self) -> None:
        super()._check_config()
        if self.cfg.train.solver != "als":
            raise UserError(f"train.solver={self.cfg.train.solver} is not available for model.feedback=implicit; "
                            f"use als")

    def setup(self) -> None:
        super().setup()
        self.ranking = ChunkReducer(self.comm, self.shard.layout, 5, self.cfg.comm.reduction)
        C.agree(self.comm, self._check_counts)

    def _check_counts(self) -> None:
        for b in self.shard.blocks:
            for part in (b.train, b.test):
                if part[2].size and part[2].min() < 0:
                    raise UserError(f"model.feedback=implicit needs interaction counts >= 0, found "
                                    f"{part[2].min():g} in {self.shard.describe()}; use model.feedback=explicit "
                                    f"for ratings")

    def evaluate(self, step: int = 0) -> tuple[float, float, float]:
        """(objective, nan, nan): the full weighted objective without a dense score matrix. Collective."""
        red = self.scalars
        alpha = self.cfg.model.alpha
        with self.timer.phase("reduce", step):
            gram = self.solver.item_gram()
        with self.timer.phase("compute", step):
            for i, b, Uc, VT, train, _ in self.with_items():
                red.partials[i] = [KI.objective_terms(np.ascontiguousarray(Uc.T), VT, gram, *train, alpha),
                                   R.penalty(self.reg_u[i], Uc), 0.0]
        with self.timer.phase("reduce", step):
            obj, uu, _ = red.reduce()
            vv = self.penalty_V()
        loss = (0.5 * obj + 0.5 * (uu + vv)) / self.n_train
        return float(loss), float("nan"), float("nan")

    def log_metrics(self, step: int) -> dict:
        return {}

    def ranking_metrics(self) -> dict:
        """precision@k, recall@k, nDCG@k, AUC over users with held-out interactions: each rank scores its
        own users against V one item block at a time (item-sharded: each owner's block in turn), only
        per-chunk sums reduced. Collective."""
        k, n_items = self.cfg.model.top_k, self.shard.n_items
        states = [mf_ranking.ChunkRanking(b.train[:2], b.test[:2], n_items, k) for b in self.shard.blocks]
        for i, b, Uc, VT, _, test in self.with_items():
            if states[i].ids.shape[0]:
                states[i].set_test_scores(Uc, VT.T[test[1]])
        blocks = self.item_side.all_rows() if self.item_side else [(0, self.V)]
        for j0, Vq in blocks:
            for i0, Vb in mf_ranking.item_blocks(Vq, j0):
                for i, b, Uc, _ in self.blocks():
                    if states[i].ids.shape[0]:
                        states[i].add_block(Uc, i0, Vb)
        for i, st in enumerate(states):
            self.ranking.partials[i] = st.sums()
        return mf_ranking.means(self.ranking.reduce(), k)

    def diverged_hint(self) -> str:
        return "raise model.reg or lower model.alpha"

    def final(self) -> dict:
        loss = self.evaluate()[0]
        return {"final_loss": loss, **(self.ranking_metrics() if self.n_test else {})}

    def summary(self, final: dict, every: list[dict]) -> dict:
        from .mf_memory import measured

        sh, m = self.shard, self.cfg.model
        memory = measured(every, sh.n_users * self.k * 8)
        k = m.top_k
        if self.n_test:
            self.ctx.log(f"held-out interactions: precision@{k} {final[f'precision_at_{k}']:.4f}, recall@{k} "
                         f"{final[f'recall_at_{k}']:.4f}, nDCG@{k} {final[f'ndcg_at_{k}']:.4f}, AUC "
                         f"{final['auc']:.4f} over {final['users_evaluated']} users")
        return {**final, "feedback": "implicit", "rank": self.k, "reg": self.reg, "reg_scaling": m.reg_scaling,
                "alpha": m.alpha, "inner_solver": m.inner_solver, "cg_steps": m.cg_steps if self.solver.cg else None,
                "top_k": k, "solver": self.cfg.train.solver, "rel_error_to_exact": None,
                "data": {"source": sh.describe(), "users": sh.n_users, "items": sh.n_items,
                         "interactions_train": self.n_train, "interactions_test": self.n_test,
                         "users_without_interactions": self.users_without,
                         "items_without_interactions": self.items_without,
                         "chunk_rows": sh.chunk_rows, "chunks": sh.n_chunks, "fingerprint": self.fingerprint},
                "shard_items": self.item_side is not None,
                "exchange_rounds": ([len(self.item_side.plan.v_rounds), len(self.item_side.plan.u_rounds)]
                                    if self.item_side else None),
                "item_blocks": self.items.n_blocks if self.items else None,
                "bytes_reduced_per_step": ((self.items.bytes_per_reduce if self.items else 0)
                                           + self.scalars.bytes_per_reduce + self.solver.grams.bytes_per_reduce
                                           + 2 * self.solver.v_gram.red.bytes_per_reduce),
                "memory": memory}
