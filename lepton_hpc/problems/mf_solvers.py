"""How the recommender steps: full-batch gradient descent with any optimizer, or ALS sweeps.

Both work on the problem's factors: ``pb.U`` (this rank's users, never replicated)
and ``pb.V`` (replicated). Per-item sums over user chunks go through the
problem's :class:`~lepton_hpc.reduce.ItemBlockReducer` (exact: the same bits on
any rank count). Collective where marked.
"""

from __future__ import annotations

import math

import numpy as np

from .. import comm as C
from ..layout import block_range
from ..models import mf as K
from ..optimizers import make_optimizer, optimizer_kwargs
from . import mf_reg as R


class GradientDescent:
    """One optimizer for the flattened local U block, one for V; both step once per iteration."""

    width_of = staticmethod(lambda k: k)

    def __init__(self, pb):
        self.pb = pb
        kw = optimizer_kwargs(pb.cfg.optimizer)
        self.opt_U = C.agree(pb.comm, make_optimizer, pb.cfg.optimizer.name, **kw)
        self.opt_V = C.agree(pb.comm, make_optimizer, pb.cfg.optimizer.name, **kw)
        self.grad_U = np.zeros_like(pb.U)
        self.grad_V = np.zeros_like(pb.V)
        self.e = [np.zeros(b.train[0].shape[0]) for b in pb.shard.blocks]

    def next_eta(self) -> float:
        return self.opt_V.next_eta()

    def gradient(self, step: int) -> tuple[float, float]:
        """grad_U (local) and grad_V (reduced) at the current factors; (objective, |grad|). Collective."""
        pb = self.pb
        red, N, timer = pb.scalars, pb.n_train, pb.timer
        with timer.phase("compute", step):
            VT, UT = pb.transposed()
            for i, b, Uc, idx in pb.blocks():
                gU = self.grad_U[b.offset:b.offset + b.n_users]
                K.gd_user_pass(UT[i], VT, *b.train, idx, pb.reg_u[i], N, self.e[i], gU)
                red.partials[i] = [K.sumsq(self.e[i]), K.sumsq(gU), R.penalty(pb.reg_u[i], Uc)]
        with timer.phase("reduce", step):
            sse, gu2, uu = red.reduce()
        for j0, j1 in pb.items.blocks():
            nb = j1 - j0
            with timer.phase("compute", step):
                for i, b, Uc, idx in pb.blocks():
                    K.item_grad_partial(UT[i], self.e[i], idx, j0, j1, pb.items.partial(i, nb))
            with timer.phase("reduce", step):
                total = pb.items.reduce(nb)
            gV = self.grad_V[j0:j1]
            np.add(total, R.rows(pb.reg_v, j0, j1) * pb.V[j0:j1], out=gV)
            gV /= N
        loss = (0.5 * sse + 0.5 * (uu + R.penalty(pb.reg_v, pb.V))) / N
        return float(loss), math.sqrt(gu2 + K.sumsq(self.grad_V))

    def apply_update(self, step: int) -> None:
        pb = self.pb
        self.opt_U.update(pb.U.reshape(-1), self.grad_U.reshape(-1), out=pb.U.reshape(-1))
        self.opt_V.update(pb.V.reshape(-1), self.grad_V.reshape(-1), out=pb.V.reshape(-1))

    def nbytes(self) -> tuple[int, int]:
        """(optimizer state, work buffers) bytes on this rank."""
        opt = sum(getattr(o, key).nbytes for o in (self.opt_U, self.opt_V) for key in o.accumulator_names
                  if getattr(o, key) is not None)
        return opt, self.grad_U.nbytes + self.grad_V.nbytes + sum(e.nbytes for e in self.e)


class ALS:
    """A step is one sweep, items first as in Spark MLlib: every item's row from the reduced normal
    equations given U, then every user's row given the new V."""

    width_of = staticmethod(K.packed_width)
    opt_U = opt_V = None

    def __init__(self, pb):
        self.pb = pb
        self.V_new = np.zeros_like(pb.V)

    def next_eta(self) -> None:
        return None

    def gradient(self, step: int) -> tuple[float, None]:
        """The objective at the current factors (ALS has no step size or gradient to judge). Collective."""
        return self.pb.evaluate(step)[0], None

    def apply_update(self, step: int) -> None:
        """One sweep. Collective: V from U (the first sweep starts from the random U), then U from V.

        Items first: the first half-sweep averages over the many users each item has, not over
        the few items of each user, and 10 sweeps reach Spark's test RMSE (README, ALS-WR)."""
        self.solve_items(step)
        self.solve_users(step)

    def solve_users(self, step: int) -> None:
        """Every local user's row from V (no communication)."""
        pb = self.pb
        with pb.timer.phase("compute", step):
            VT = np.ascontiguousarray(pb.V.T)
            for i, b, Uc, idx in pb.blocks():
                K.als_users(VT, *b.train, idx, pb.reg_u[i], Uc)

    def solve_items(self, step: int) -> None:
        """Every item's row from U. Collective: each rank solves its share of every item block, then all gather."""
        pb = self.pb
        k, timer, comm = pb.k, pb.timer, pb.comm
        with timer.phase("compute", step):
            _, UT = pb.transposed()
        for j0, j1 in pb.items.blocks():
            nb = j1 - j0
            with timer.phase("compute", step):
                for i, b, Uc, idx in pb.blocks():
                    K.als_item_partial(UT[i], b.train[2], idx, j0, j1, pb.items.partial(i, nb))
            with timer.phase("reduce", step):
                S = pb.items.reduce(nb)
            a, z = block_range(nb, comm.size, comm.rank)
            with timer.phase("update", step):
                mine = K.solve_packed(S[a:z], k, R.vector(pb.reg_v, j0 + a, j0 + z))
            with timer.phase("reduce", step):
                counts = [block_range(nb, comm.size, q)[1] - block_range(nb, comm.size, q)[0]
                          for q in range(comm.size)]
                C.allgatherv_rows(comm, mine, self.V_new[j0:j1], counts)
        pb.V[:] = self.V_new

    def nbytes(self) -> tuple[int, int]:
        return 0, self.V_new.nbytes


SOLVERS = {"gd": GradientDescent, "als": ALS}
