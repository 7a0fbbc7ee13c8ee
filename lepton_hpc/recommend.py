"""Top-K recommendations of a matrix-factorization run, each rank for its own users.

Used by ``python -m lepton_hpc.predict RUN_DIR --top-k K --out REC.h5`` (see
:mod:`lepton_hpc.predict`). A rank reads its rows of the sharded ``model/U`` and the
replicated ``model/V`` from the checkpoint, and its users' training ratings
(:class:`lepton_hpc.data.ratings.RatingsShard`, the run's own ``[data]``), scores
``U_u · Vᵀ`` one block of users at a time (blocks fixed relative to each logical chunk,
so the bits do not depend on the rank count), masks the rated items and keeps the K
best, ties to the lower item index. The output is ONE file written in rank order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .errors import UserError

SCORE_BLOCK_ELEMS = 1 << 21  # users per scoring block × items: 16 MiB of scores


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(items, scores) of each row's ``k`` largest finite scores, ties to the lower index.

    ``-inf`` marks an excluded item; a row with fewer than ``k`` candidates is padded
    with item −1 and score −inf. Used by the CLI and by
    :meth:`lepton_hpc.fitted_mf.RecommenderModel.recommend` alike.
    """
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    items = order.astype(np.int64)
    items[np.isneginf(best)] = -1
    return items, best


def _check_shapes(snap, shard, k: int) -> int:
    rank = snap.shape("model/V")
    want = {"model/U": (shard.n_users,), "model/V": (shard.n_items,)}
    got = {name: tuple(snap.shape(name) or ())[:1] for name in want}
    if got != want or rank is None:
        raise UserError(f"checkpoint {snap.path} holds factors {got} but the ratings have {shard.n_users} users "
                        f"and {shard.n_items} items; pass the run's own ratings (or omit --data)")
    if not 0 < k <= shard.n_items:
        raise UserError(f"--top-k must be in [1, {shard.n_items}] (the number of items), got {k}")
    return rank[1]


def recommend_rows(snap, shard, k: int) -> tuple[np.ndarray, np.ndarray]:
    """This rank's users' (items, scores), each (n_local_users × k). Not collective."""
    _check_shapes(snap, shard, k)
    V = np.ascontiguousarray(snap.rows("model/V", 0, snap.shape("model/V")[0]), dtype=np.float64)
    U = snap.rows("model/U", shard.user_lo, shard.user_hi)
    n_local = shard.user_hi - shard.user_lo
    items, scores = np.empty((n_local, k), dtype=np.int64), np.empty((n_local, k), dtype=np.float64)
    step = max(1, SCORE_BLOCK_ELEMS // max(shard.n_items, 1))
    for blk in shard.blocks:
        users, rated, _ = blk.train
        for a in range(0, blk.n_users, step):
            b = min(a + step, blk.n_users)
            rows = slice(blk.offset + a, blk.offset + b)
            S = np.ascontiguousarray(U[rows]) @ V.T
            sel = (users >= a) & (users < b)
            S[users[sel] - a, rated[sel]] = -np.inf
            items[rows], scores[rows] = top_k(S, k)
    return items, scores


def predict_top_k(comm, snap, cfg, k: int | None, data_path: str | None, out_path: str) -> dict:
    """Write each user's top ``k`` unrated items to ``out_path``. Collective over ``comm``."""
    from . import comm as C
    from .data.ratings import RatingsShard
    from .predict import write_output

    if k is None:
        raise C.JobError("--top-k K is required for a recommender (model.kind=mf) run")
    data = cfg.data if not data_path else dataclasses.replace(cfg.data, path=data_path)
    shard = C.agree(comm, RatingsShard, data, comm.size, comm.rank)
    check = _check_ratings(comm, snap, shard, data_path)
    items, scores = C.agree(comm, recommend_rows, snap, shard, k)
    n = shard.n_users
    specs = {"items": ((n, k), np.int64), "scores": ((n, k), np.float64)}
    attrs = {"model_kind": "mf", "checkpoint": str(snap.path), "step": snap.step, "top_k": k, "users": n}
    write_output(comm, out_path, shard.user_lo, {"items": items, "scores": scores}, specs, attrs)
    return {"users": n, "top_k": k, "data_check": check}


def _check_ratings(comm, snap, shard, data_path: str | None) -> dict:
    """The ratings' digest against the training run's fingerprint: the run's own data (no --data)
    must be unchanged; other ratings only when --data names them. Collective over ``comm``."""
    from . import comm as C

    digest = 0
    for b in shard.blocks:
        digest ^= b.digest()
    got = f"{C.allreduce_bxor(comm, digest):016x}"
    want = snap.attrs.get("data_fingerprint") or ""
    same = None if not want else want.split("-", 1)[0] == got
    if data_path is None and same is False:
        raise C.JobError(f"the ratings at {shard.cfg.path or 'the synthetic source'} are not what {snap.path} "
                         f"was trained on (fingerprint {got}, the checkpoint's {want}): they changed since "
                         f"training; pass --data {shard.cfg.path or 'FILE.h5'} to use them anyway", 0)
    return {"path": shard.cfg.path or None, "explicit": data_path is not None, "fingerprint": got,
            "training_fingerprint": want, "same_as_training": same}
