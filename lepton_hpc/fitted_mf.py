"""A fitted matrix-factorization recommender (``model.kind = "mf"``) in one process, without MPI.

Scores are ``U[u] · V[i]``. :meth:`RecommenderModel.recommend` leaves out the
items a user rated in the run's *training* data (held-out test ratings stay
recommendable): loaded from a run, those are read per user chunk on demand
through :class:`~lepton_hpc.data.ratings.RatingsShard` with a layout of one
chunk per "rank" (file data: only that chunk's slice; synthetic data: the chunk
is regenerated from the seed); a saved ``.npz`` carries them as a CSR matrix.
"""

from __future__ import annotations

import numpy as np

from .errors import UserError
from .fitted import write_npz

SCORE_BLOCK = 1 << 22  # scores computed at once in recommend (user rows x items)


class RunRatings:
    """The training items of each user of a run, read one user chunk at a time (a few chunks cached)."""

    CACHE = 8

    def __init__(self, data_cfg, n_users: int, n_items: int):
        from .layout import n_chunks

        self.cfg, self.n_users, self.n_items = data_cfg, n_users, n_items
        self.n_chunks = n_chunks(n_users, data_cfg.chunk_rows)
        self._cache: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}

    def _chunk(self, c: int):
        if c not in self._cache:
            from .data.ratings import RatingsShard

            try:
                shard = RatingsShard(self.cfg, self.n_chunks, c)
            except (UserError, OSError) as exc:
                raise UserError(f"recommend(exclude_seen=True) reads the run's training ratings, which failed: "
                                f"{exc}; run from the run's working directory or pass exclude_seen=False") from None
            if (shard.n_users, shard.n_items) != (self.n_users, self.n_items):
                raise UserError(f"the run's ratings ({self.cfg.path or 'synthetic'}) are now {shard.n_users} x "
                                f"{shard.n_items}, the model is {self.n_users} x {self.n_items}; pass "
                                f"exclude_seen=False")
            block = shard.blocks[0]
            users, items = block.train[0], block.train[1]
            order = np.lexsort((items, users))
            users, items = users[order], items[order].astype(np.int64)
            indptr = np.searchsorted(users, np.arange(block.n_users + 1))
            if len(self._cache) >= self.CACHE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[c] = (block.user_lo, indptr, items)
        return self._cache[c]

    def items_of(self, user: int) -> np.ndarray:
        lo, indptr, items = self._chunk(user // self.cfg.chunk_rows)
        return items[indptr[user - lo]:indptr[user - lo + 1]]

    def csr(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, indices) of every user's training items."""
        rows = [self.items_of(u) for u in range(self.n_users)]
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        return indptr, (np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64))


class CSRRatings:
    """Training items per user from a CSR matrix (a saved model)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray):
        self.indptr, self.indices = np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64)

    def items_of(self, user: int) -> np.ndarray:
        return self.indices[self.indptr[user]:self.indptr[user + 1]]

    def csr(self):
        return self.indptr, self.indices


class RecommenderModel:
    """User factors ``U`` (n_users x k) and item factors ``V`` (n_items x k) of a run."""

    kind = "mf"

    def __init__(self, U, V, seen=None, *, n_iter: int = 0, source: str = ""):
        self.U = np.ascontiguousarray(U, dtype=np.float64)
        self.V = np.ascontiguousarray(V, dtype=np.float64)
        if self.U.ndim != 2 or self.V.ndim != 2 or self.U.shape[1] != self.V.shape[1]:
            raise UserError(f"U and V must be (users x k) and (items x k), got {self.U.shape} and {self.V.shape}")
        self.n_users, self.rank = self.U.shape
        self.n_items = self.V.shape[0]
        self.seen, self.n_iter_, self.source = seen, int(n_iter), source

    def __repr__(self) -> str:
        return (f"RecommenderModel(users={self.n_users}, items={self.n_items}, rank={self.rank}, "
                f"source={self.source!r})")

    def _index(self, values, n: int, what: str) -> np.ndarray:
        a = np.asarray(values)
        if a.dtype.kind not in "iu" and a.size:
            raise UserError(f"{what} indices must be integers, got dtype {a.dtype}")
        a = a.astype(np.int64)
        bad = (a < 0) | (a >= n)
        if bad.any():
            raise UserError(f"{what} index {int(a[bad].flat[0])} is outside [0, {n}): the model has {n} {what}s")
        return a

    def predict(self, users, items) -> np.ndarray:
        """Scores ``U[users[j]] · V[items[j]]`` elementwise (broadcast like numpy)."""
        u = self._index(users, self.n_users, "user")
        i = self._index(items, self.n_items, "item")
        try:
            u, i = np.broadcast_arrays(u, i)
        except ValueError:
            raise UserError(f"users and items must have the same shape, got {u.shape} and {i.shape}") from None
        return (self.U[u] * self.V[i]).sum(axis=-1)

    def recommend(self, users, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items per user: (items (n, k), scores (n, k)), best first, ties to the lower item.

        ``exclude_seen`` leaves out the items each user rated in the run's training
        data; a user with fewer than ``k`` items left gets item -1, score -inf, at the end.
        """
        u = np.atleast_1d(self._index(users, self.n_users, "user"))
        if u.ndim != 1:
            raise UserError(f"users must be one index or a 1-D list of them, got shape {u.shape}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.n_items:
            raise UserError(f"k must be an integer in [1, {self.n_items}] (the number of items), got {k!r}")
        if exclude_seen and self.seen is None:
            raise UserError("this model has no training ratings to exclude; pass exclude_seen=False")
        from .recommend import top_k

        items = np.empty((len(u), k), dtype=np.int64)
        scores = np.empty((len(u), k))
        step = max(1, SCORE_BLOCK // self.n_items)
        for lo in range(0, len(u), step):
            S = self.U[u[lo:lo + step]] @ self.V.T
            if exclude_seen:
                for j in range(S.shape[0]):
                    S[j, self.seen.items_of(int(u[lo + j]))] = -np.inf
            items[lo:lo + step], scores[lo:lo + step] = top_k(S, k)
        return items, scores

    def save(self, path):
        """Write U, V and the training items per user (CSR) to ``path`` (npz, atomic; ``.npz`` appended
        when missing, as numpy does); returns the path written."""
        arrays = {"U": self.U, "V": self.V}
        if self.seen is not None:
            arrays["seen_indptr"], arrays["seen_indices"] = self.seen.csr()
        return write_npz(path, arrays, {"kind": self.kind, "n_iter": self.n_iter_, "source": self.source,
                                 "classes": None, "feature_names": None, "fit_intercept": None})

    def __eq__(self, other) -> bool:
        if type(other) is not RecommenderModel:
            return False
        same = np.array_equal(self.U, other.U) and np.array_equal(self.V, other.V)
        if (self.seen is None) != (other.seen is None):
            return False
        if self.seen is not None:
            same = same and all(np.array_equal(a, b) for a, b in zip(self.seen.csr(), other.seen.csr()))
        return same and self.n_iter_ == other.n_iter_

    __hash__ = None


def mf_from_npz(meta: dict, arrays: dict, path) -> RecommenderModel:
    if "U" not in arrays or "V" not in arrays:
        raise UserError(f"{path} lacks the factors U and V; write it again with model.save")
    seen = CSRRatings(arrays["seen_indptr"], arrays["seen_indices"]) if "seen_indptr" in arrays else None
    return RecommenderModel(arrays["U"], arrays["V"], seen, n_iter=meta.get("n_iter", 0),
                            source=meta.get("source", ""))
