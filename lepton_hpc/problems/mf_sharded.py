"""How the recommender steps with item-sharded factors (``model.shard_items = true``).

``pb.V`` holds only this rank's item block (rows ``[item_lo, item_hi)`` of V); the
:class:`~.mf_exchange.ItemPlan` fetches the rows each half-sweep needs. The user
half-sweep runs the replicated path's kernels on the fetched V rows (same terms,
same order); the item half-sweep sums each owned item's terms on its owner
(:func:`~.mf_exchange.owner_item_sums`). Both solvers give the replicated run's
factors bit for bit, at any rank count. Collective where marked.
"""

from __future__ import annotations

import math

import numpy as np

from ..checkpoint import Part, optimizer_parts, optimizer_state
from ..layout import Layout
from ..models import mf as K
from ..reduce import ChunkReducer
from . import mf_reg as R
from .mf_exchange import ItemPlan, RowExchange, owner_item_sums
from .mf_solvers import GradientDescent


class ItemSide:
    """The item half of an item-sharded problem: plan, fetch buffers, per-item-row scalar sums."""

    def __init__(self, pb):
        self.pb = pb
        gd = pb.cfg.train.solver == "gd"
        self.plan = plan = ItemPlan(pb.comm, pb.shard, pb.k, pb.k if gd else K.packed_width(pb.k), keep_order=gd)
        k = pb.k
        (nv, sv), (nu, su) = plan.max_rows("v"), plan.max_rows("u")
        self.V_need, self.v_send = np.zeros((nv, k)), np.zeros((sv, k))
        self.U_need, self.u_send = np.zeros((nu, k)), np.zeros((su, k))
        # sums over item rows (|V|^2, |grad_V|^2): a fixed tree over items, one item per leaf
        self.scalars = ChunkReducer(pb.comm, Layout(plan.n_items, 1, pb.comm.size, pb.comm.rank), 2, "exact")

    @property
    def rows(self) -> tuple[int, int, int]:
        return (self.plan.item_lo, self.plan.item_hi, self.plan.n_items)

    @staticmethod
    def _fetch(ex, own, need, send) -> np.ndarray:
        n, m = ex.need.shape[0], ex.send_rows.shape[0]
        return ex.fetch(own, need[:n], send[:m])

    def user_rounds(self):
        """Yield ``(c0, c1, VT)``: local chunks [c0, c1) and the V rows they touch, transposed. Collective:
        every rank runs the loop to its end (a round is one fetch)."""
        for c0, c1, ex in self.plan.v_rounds:
            yield c0, c1, np.ascontiguousarray(self._fetch(ex, self.pb.V, self.V_need, self.v_send).T)

    def item_rounds(self):
        """Yield ``(g0, g1, UT)``: item groups [g0, g1) of the in-block (whole owned items) and the U rows
        of their users, transposed. Collective, as :meth:`user_rounds`."""
        for g0, g1, ex in self.plan.u_rounds:
            yield g0, g1, np.ascontiguousarray(self._fetch(ex, self.pb.U, self.U_need, self.u_send).T)

    def all_rows(self):
        """Yield ``(first item, rows)``: every owner's block of V in turn, fetched one block at a time
        (rank r gets block r, then r+1, ...; built as it goes: for final metrics). Collective."""
        plan, comm = self.plan, self.pb.comm
        for r in range(comm.size):
            q = (comm.rank + r) % comm.size
            lo, hi = plan.item_offsets[q], plan.item_offsets[q + 1]
            ex = RowExchange(comm, np.arange(lo, hi, dtype=np.int64), plan.item_offsets)
            out = np.empty((hi - lo, self.pb.k))
            yield lo, ex.fetch(self.pb.V, out, np.empty((ex.send_rows.shape[0], self.pb.k)))

    def sums(self, *columns) -> list[float]:
        """Exact sums of per-owned-item-row values (one column each), the same bits on any rank count."""
        p = self.scalars.partials
        p[:] = 0.0
        for j, col in enumerate(columns):
            p[:, j] = col
        return [float(x) for x in self.scalars.reduce()[:len(columns)]]

    def sumsq(self, *arrays) -> list[float]:
        """Exact sums of squares of item-sharded arrays (V, grad_V), the same bits on any rank count."""
        return self.sums(*(np.einsum("ij,ij->i", a, a) for a in arrays))

    def nbytes(self) -> int:
        return (self.plan.nbytes + self.V_need.nbytes + self.v_send.nbytes + self.U_need.nbytes
                + self.u_send.nbytes + self.scalars.nbytes)


class ShardedGradientDescent(GradientDescent):
    """Full-batch gradient descent with item-sharded V: grad_V is summed on each item's owner.

    The optimizers, the gradients and the update are :class:`~.mf_solvers.GradientDescent`'s;
    the residuals are views of one flat buffer that the exchange sends to the item owners."""

    def __init__(self, pb):
        super().__init__(pb)
        plan = pb.item_side.plan
        n = int(plan.send_counts.sum())
        self.e_flat = np.zeros(n)
        self.e_send = np.zeros(n)
        self.e_recv = np.zeros(plan.n_in)
        cuts = np.cumsum([0] + [b.train[0].shape[0] for b in pb.shard.blocks])
        self.e = [self.e_flat[a:z] for a, z in zip(cuts[:-1], cuts[1:])]

    def gradient(self, step: int) -> tuple[float, float]:
        """grad_U (local) and grad_V (this rank's items); (objective, |grad|). Collective."""
        pb, side = self.pb, self.pb.item_side
        red, N, timer = pb.scalars, pb.n_train, pb.timer
        with timer.phase("compute", step):
            for c0, c1, VT in side.user_rounds():
                for i in range(c0, c1):
                    b = pb.shard.blocks[i]
                    Uc, gU = pb.U[b.offset:b.offset + b.n_users], self.grad_U[b.offset:b.offset + b.n_users]
                    K.gd_user_pass(np.ascontiguousarray(Uc.T), VT, *side.plan.train[i], side.plan.user_index[i],
                                   pb.reg_u[i], N, self.e[i], gU)
                    red.partials[i] = [K.sumsq(self.e[i]), K.sumsq(gU), R.penalty(pb.reg_u[i], Uc)]
        with timer.phase("reduce", step):
            sse, gu2, uu = red.reduce()
            e_own = side.plan.to_owners(self.e_flat, self.e_send, self.e_recv)
        with timer.phase("compute", step):
            total = np.zeros_like(pb.V)
            for g0, g1, UT in side.item_rounds():
                for g in range(g0, g1):
                    items, sums = owner_item_sums(side.plan, g, UT, e_own, normal=False)
                    total[items] = sums
            np.add(total, pb.reg_v * pb.V, out=self.grad_V)  # λ of the owned rows, as the replicated rows
            self.grad_V /= N
        with timer.phase("reduce", step):
            vv, gv2 = side.sums(R.row_penalties(pb.reg_v, pb.V), np.einsum("ij,ij->i", self.grad_V, self.grad_V))
        loss = (0.5 * sse + 0.5 * (uu + vv)) / N
        return float(loss), math.sqrt(gu2 + gv2)

    def nbytes(self) -> tuple[int, int]:
        opt, work = super().nbytes()  # work: grad_U, grad_V and the residual views of e_flat
        return opt, work + self.e_send.nbytes + self.e_recv.nbytes


class ShardedALS:
    """A sweep: each owned item from its owner's normal equations, then users from the fetched V rows."""

    opt_U = opt_V = None

    def __init__(self, pb):
        self.pb = pb

    def next_eta(self) -> None:
        return None

    def gradient(self, step: int) -> tuple[float, None]:
        return self.pb.evaluate(step)[0], None

    def apply_update(self, step: int) -> None:
        """One sweep, items first as the replicated :class:`~.mf_solvers.ALS`. Collective: two fetches of
        factor rows (U for the items, then the new V for the users), no reduction of normal equations."""
        pb, side = self.pb, self.pb.item_side
        with pb.timer.phase("compute", step):
            V_new = np.zeros_like(pb.V)  # items without ratings: 0, as the replicated solve of zero sums
            for g0, g1, UT in side.item_rounds():
                for g in range(g0, g1):
                    items, S = owner_item_sums(side.plan, g, UT, side.plan.vals, normal=True)
                    V_new[items] = K.solve_packed(S, pb.k, R.at(pb.reg_v, items))
            pb.V[:] = V_new
            for c0, c1, VT in side.user_rounds():
                for i in range(c0, c1):
                    b = pb.shard.blocks[i]
                    K.als_users(VT, *side.plan.train[i], side.plan.user_index[i], pb.reg_u[i],
                                pb.U[b.offset:b.offset + b.n_users])

    def nbytes(self) -> tuple[int, int]:
        return 0, 0


SHARDED_SOLVERS = {"gd": ShardedGradientDescent, "als": ShardedALS}


def sharded_state(pb, parts: dict, attrs: dict) -> None:
    """V (and V's optimizer state) as row-sharded parts written by their owners: nothing gathered."""
    rows = pb.item_side.rows
    parts["model/V"] = Part(pb.V, rows)
    attrs["shard_items"] = True
    s = pb.solver
    if s.opt_V is not None:
        for name in [n for n in parts if n.startswith("optimizer/")]:
            del parts[name]
        pv, av = optimizer_parts("optimizer", s.opt_V, rows, pb.k)
        parts.update(pv)
        attrs.update(av)


def load_sharded(pb, snap) -> None:
    """This rank's V rows (and V's optimizer state) from a checkpoint of any rank count."""
    lo, hi, _ = pb.item_side.rows
    s = pb.solver
    pb.V[:] = snap.rows("model/V", lo, hi)
    if s.opt_V is not None:
        s.opt_V.load_state_dict(optimizer_state(snap, "optimizer", s.opt_V, (lo, hi)))
