"""Implicit feedback (``model.feedback = "implicit"``): confidence-weighted ALS of Hu, Koren, Volinsky (2008).

The ratings are interaction counts r_ui >= 0; every user-item pair enters the
objective, the pairs without interactions with preference 0 and confidence 1:

    ( 1/2 Σ_{all u, i} c_ui (p_ui - u_u·v_i)² + 1/2 (Σ_u λ_u |u_u|² + Σ_i λ_i |v_i|²) ) / N

with c_ui = 1 + α r_ui (``model.alpha``), p_ui = [r_ui > 0], N the training
interactions and λ per row from ``model.reg_scaling`` (:mod:`.mf_reg`; ``none``
is the ``implicit`` library's convention). A sweep solves every user from V,
then every item from U (the library's order), each row through the Gram trick
of :mod:`lepton_hpc.models.mf_implicit`: V^T V is formed once per half-sweep
from the replicated V; U^T U is reduced exactly over user chunks
(:class:`~lepton_hpc.reduce.ChunkReducer`), the items' packed sums over their
interactions exactly per item block (:class:`~lepton_hpc.reduce.ItemBlockReducer`).
``model.inner_solver = "cg"`` takes ``model.cg_steps`` conjugate-gradient steps
per row from its previous factors instead of an exact solve (the library's
``use_cg``): matrix-free for users, on the reduced systems for items.

The state is U (row-sharded) and V (replicated), the explicit problem's
checkpoint parts: the Gram matrices are recomputed from them, so a resume on
any rank count continues with the same bits. Held-out interactions are scored
by :mod:`.mf_ranking` (precision@k, recall@k, nDCG@k, AUC), each rank its own
users, only per-chunk metric sums reduced.
"""

from __future__ import annotations

import numpy as np

from .. import comm as C
from ..errors import UserError
from ..layout import block_range
from ..models import mf as K
from ..models import mf_implicit as KI
from ..reduce import ChunkReducer
from . import mf_ranking, mf_reg as R
from .mf import MFProblem


class ImplicitALS:
    """A step is one sweep: users from V, then items from U. Collective where marked."""

    width_of = staticmethod(K.packed_width)
    opt_U = opt_V = None

    def __init__(self, pb):
        self.pb = pb
        m = pb.cfg.model
        self.alpha = m.alpha
        self.cg = m.cg_steps if m.inner_solver == "cg" else 0
        self.V_new = np.zeros_like(pb.V)
        self.grams = ChunkReducer(pb.comm, pb.shard.layout, pb.k * (pb.k + 1) // 2, pb.cfg.comm.reduction)

    def next_eta(self) -> None:
        return None

    def gradient(self, step: int) -> tuple[float, None]:
        return self.pb.evaluate(step)[0], None

    def apply_update(self, step: int) -> None:
        self.solve_users(step)
        self.solve_items(step)

    def item_gram(self) -> np.ndarray:
        """V^T V from the replicated V (the same bits on every rank)."""
        return KI.unpack(KI.gram_packed(np.ascontiguousarray(self.pb.V.T)), self.pb.k)

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
        with pb.timer.phase("compute", step):
            VT = np.ascontiguousarray(pb.V.T)
            gram = self.item_gram()
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
                mine = (KI.cg_explicit(S[a:z], gram, reg, pb.V[j0 + a:j0 + z], self.cg) if self.cg
                        else KI.solve_rows(S[a:z], gram, reg))
            with timer.phase("reduce", step):
                counts = [block_range(nb, comm.size, q)[1] - block_range(nb, comm.size, q)[0]
                          for q in range(comm.size)]
                C.allgatherv_rows(comm, mine, self.V_new[j0:j1], counts)
        pb.V[:] = self.V_new

    def nbytes(self) -> tuple[int, int]:
        return 0, self.V_new.nbytes + self.grams.partials.nbytes


class ImplicitMFProblem(MFProblem):
    """The recommender on interaction counts (see the module doc); built by :class:`MFProblem`."""

    work_unit = "interactions"

    def solver_class(self):
        return ImplicitALS

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
        with self.timer.phase("compute", step):
            VT, UT = self.transposed()
            gram = self.solver.item_gram()
            for i, b, Uc, _ in self.blocks():
                red.partials[i] = [KI.objective_terms(UT[i], VT, gram, *b.train, alpha),
                                   R.penalty(self.reg_u[i], Uc), 0.0]
        with self.timer.phase("reduce", step):
            obj, uu, _ = red.reduce()
        loss = (0.5 * obj + 0.5 * (uu + R.penalty(self.reg_v, self.V))) / self.n_train
        return float(loss), float("nan"), float("nan")

    def log_metrics(self, step: int) -> dict:
        return {}

    def ranking_metrics(self) -> dict:
        """precision@k, recall@k, nDCG@k, AUC over users with held-out interactions. Collective."""
        k = self.cfg.model.top_k
        for i, b, Uc, _ in self.blocks():
            self.ranking.partials[i] = mf_ranking.chunk_sums(Uc, self.V, b.train[:2], b.test[:2], k)
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
                "item_blocks": self.items.n_blocks,
                "bytes_reduced_per_step": (self.items.bytes_per_reduce + self.scalars.bytes_per_reduce
                                           + self.solver.grams.bytes_per_reduce),
                "memory": memory}
