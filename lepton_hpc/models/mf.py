"""Per-chunk numerics of matrix factorization: numpy only, no MPI.

The objective over the training ratings R (N of them) is

    f(U, V) = ( 1/2 sum_{(u,i) in R} (u_u . v_i - r_ui)^2 + reg/2 (||U||^2 + ||V||^2) ) / N

Every function here works on one user chunk's ratings (users relative to the
chunk, sorted) and its rows ``Uc`` of U, and depends only on that chunk's data:
the same chunk gives the same bits whatever rank holds it. Sums over a user's
or an item's ratings are ``np.add.reduceat`` over contiguous segments (users
are sorted; items through a stable sort kept in :class:`ChunkIndex`), processed
in groups of whole segments so temporaries stay bounded; a segment's sum does
not depend on the grouping.
"""

from __future__ import annotations

import numpy as np


#: Temporaries of one group of segments stay under about this many bytes.
GROUP_BYTES = 8 << 20


def segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a sorted array and the start of each run."""
    if keys.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return keys[starts].astype(np.int64), starts.astype(np.int64)


def segment_groups(starts: np.ndarray, n_rows: int, max_rows: int):
    """Yield ``(g0, g1, a, b)``: segments ``[g0, g1)`` covering rows ``[a, b)``, at most
    ``max_rows`` rows per group unless one segment alone is longer."""
    n_seg = starts.shape[0]
    ends = np.append(starts[1:], n_rows)
    g0 = 0
    while g0 < n_seg:
        a = int(starts[g0])
        g1 = int(np.searchsorted(ends, a + max(max_rows, 1), side="right"))
        g1 = max(g1, g0 + 1)
        yield g0, g1, a, int(ends[g1 - 1])
        g0 = g1


def max_rows_for(width: int) -> int:
    return max(1, GROUP_BYTES // (8 * max(width, 1)))


class ChunkIndex:
    """Segment structure of one chunk's (training) ratings, built once.

    ``u_ids``/``u_starts``: users that have ratings and where their run starts;
    ``perm``: stable order of the ratings by item; ``i_ids``/``i_starts``: items
    that have ratings and where their run starts in that order;
    ``users_by_item``: ``users[perm]``.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray):
        self.n = int(users.shape[0])
        self.u_ids, self.u_starts = segments(users)
        self.perm = np.argsort(items, kind="stable")
        self.i_ids, self.i_starts = segments(items[self.perm])
        self.users_by_item = users[self.perm]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.u_ids, self.u_starts, self.perm, self.i_ids, self.i_starts,
                                      self.users_by_item))

    def item_span(self, j0: int, j1: int) -> tuple[int, int]:
        """Item segments ``[s0, s1)`` whose items lie in ``[j0, j1)``."""
        s0, s1 = np.searchsorted(self.i_ids, [j0, j1])
        return int(s0), int(s1)

    def item_end(self, s: int) -> int:
        return int(self.i_starts[s]) if s < self.i_starts.shape[0] else self.n


# -- evaluation and gradient descent ------------------------------------------------
# Factors enter transposed (k x rows, contiguous): gathers (np.take, which returns
# C order; fancy indexing X[:, idx] would return Fortran order) and products then run
# along contiguous length-n rows, and sums over k add whole rows in order.
def residuals(UcT, VT, users, items, vals, out=None) -> np.ndarray:
    """``u_u . v_i - r_ui`` for every rating (``UcT``: chunk's U rows transposed; ``VT``: V transposed)."""
    n = users.shape[0]
    e = np.empty(n) if out is None else out
    step = max_rows_for(2 * UcT.shape[0])
    for a in range(0, n, step):
        b = min(a + step, n)
        prod = np.take(UcT, users[a:b], axis=1)
        prod *= np.take(VT, items[a:b], axis=1)
        np.subtract(prod.sum(axis=0), vals[a:b], out=e[a:b])
    return e


def sumsq(x: np.ndarray) -> float:
    """Sum of squares (numpy's own loop: no BLAS, the same bits wherever the array lies)."""
    x = x.reshape(-1)
    return float(np.einsum("i,i->", x, x))


def gd_user_pass(UcT, VT, users, items, vals, idx: ChunkIndex, reg: float, n_total: int, e, gU) -> None:
    """Residuals into ``e`` and this chunk's rows of grad_U f, ``(sum_i e_ui v_i + reg u_u) / N``,
    into ``gU`` (users x k), in one pass over groups of users (``reg``: a float or a (users, 1) column)."""
    k = VT.shape[0]
    gU[:] = 0.0
    for g0, g1, a, b in segment_groups(idx.u_starts, idx.n, max_rows_for(2 * k)):
        gv = np.take(VT, items[a:b], axis=1)
        prod = np.take(UcT, users[a:b], axis=1)
        prod *= gv
        ea = e[a:b]
        np.subtract(prod.sum(axis=0), vals[a:b], out=ea)
        gv *= ea
        gU[idx.u_ids[g0:g1]] = np.add.reduceat(gv, idx.u_starts[g0:g1] - a, axis=1).T
    gU += reg * UcT.T
    gU /= n_total


def _item_starts(idx: ChunkIndex, j0: int, j1: int):
    """(first item segment, segment starts with the end appended) of items [j0, j1); None if none rated."""
    s0, s1 = idx.item_span(j0, j1)
    if s1 == s0:
        return s0, None
    starts = idx.i_starts[s0:s1 + 1] if s1 < idx.i_starts.shape[0] else np.append(idx.i_starts[s0:s1], idx.n)
    return s0, starts


def item_grad_partial(UcT, e, idx: ChunkIndex, j0: int, j1: int, out) -> None:
    """This chunk's share of ``sum_u e_ui u_u`` for items ``[j0, j1)`` into ``out`` (j1-j0, k).

    ``UcT`` is the chunk's U rows transposed (k x users, contiguous).
    """
    k = UcT.shape[0]
    out[:] = 0.0
    s0, starts = _item_starts(idx, j0, j1)
    if starts is None:
        return
    for g0, g1, a, b in segment_groups(starts[:-1], int(starts[-1]), max_rows_for(k)):
        contrib = np.take(UcT, idx.users_by_item[a:b], axis=1)
        contrib *= e[idx.perm[a:b]]
        out[idx.i_ids[s0 + g0:s0 + g1] - j0] = np.add.reduceat(contrib, starts[g0:g1] - a, axis=1).T


# -- alternating least squares ----------------------------------------------------------
def packed_width(k: int) -> int:
    """Width of one packed normal-equation row: upper triangle of k x k (row by row), then k."""
    return k * (k + 1) // 2 + k


def _normal_sums(XT: np.ndarray, y: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per segment of columns of ``XT`` (k x n): packed [triu(sum x x^T), sum y x], shape (segments, width).

    Products row by row of the upper triangle, each a contiguous length-n
    operation, then one reduceat along the contiguous axis.
    """
    k, n = XT.shape
    rows = np.empty((packed_width(k), n))
    off = 0
    for j in range(k):
        np.multiply(XT[j:], XT[j], out=rows[off:off + k - j])
        off += k - j
    np.multiply(XT, y, out=rows[off:])
    return np.add.reduceat(rows, starts, axis=1).T


def _solve(A: np.ndarray, b: np.ndarray, reg) -> np.ndarray:
    """Solve ``(A + reg I) x = b`` for a stack; minimum-norm (pseudo-inverse) when reg = 0.

    ``reg``: one float, or one per system (a vector, all > 0: ALS-WR's λ·n).
    """
    k = A.shape[-1]
    if np.ndim(reg):
        A[:, np.arange(k), np.arange(k)] += np.asarray(reg)[:, None]
        return np.linalg.solve(A, b[..., None])[..., 0]
    if reg > 0:
        A[:, np.arange(k), np.arange(k)] += reg
        return np.linalg.solve(A, b[..., None])[..., 0]
    return (np.linalg.pinv(A, rcond=1e-10, hermitian=True) @ b[..., None])[..., 0]


def solve_packed(S: np.ndarray, k: int, reg) -> np.ndarray:
    """Solve ``(A + reg I) x = b`` for packed rows ``S`` = [triu(A), b]; minimum-norm if singular with reg = 0."""
    n = S.shape[0]
    if n == 0:
        return np.zeros((0, k))
    kk = k * (k + 1) // 2
    return _solve(unpack_triu(S[:, :kk], k), np.ascontiguousarray(S[:, kk:]), reg)


def unpack_triu(tri: np.ndarray, k: int) -> np.ndarray:
    """Symmetric k x k matrices from upper triangles packed row by row (..., k(k+1)/2).

    One take along the last axis (fancy indexing of the (k, k) axes is ~10x slower)."""
    iu = np.triu_indices(k)
    full = np.empty((k, k), dtype=np.int64)
    full[iu] = np.arange(iu[0].shape[0])
    full[iu[1], iu[0]] = full[iu]
    return np.take(tri, full.reshape(-1), axis=-1).reshape(tri.shape[:-1] + (k, k))


def als_users(VT, users, items, vals, idx: ChunkIndex, reg, out) -> None:
    """Solve every user of the chunk given V (``VT`` = V transposed, contiguous):
    ``(V_u^T V_u + reg_u I) u = V_u^T r_u``. Users without ratings get 0.

    ``reg``: one float, or a (users, 1) column of per-user λ (ALS-WR)."""
    k = VT.shape[0]
    out[:] = 0.0
    for g0, g1, a, b in segment_groups(idx.u_starts, idx.n, max_rows_for(packed_width(k))):
        S = _normal_sums(np.take(VT, items[a:b], axis=1), vals[a:b], idx.u_starts[g0:g1] - a)
        ids = idx.u_ids[g0:g1]
        out[ids] = solve_packed(S, k, reg if np.ndim(reg) == 0 else reg[ids, 0])


def als_item_partial(UcT, vals, idx: ChunkIndex, j0: int, j1: int, out) -> None:
    """This chunk's share of the packed item normal equations for items ``[j0, j1)``
    (``UcT``: the chunk's U rows transposed)."""
    k = UcT.shape[0]
    out[:] = 0.0
    s0, starts = _item_starts(idx, j0, j1)
    if starts is None:
        return
    for g0, g1, a, b in segment_groups(starts[:-1], int(starts[-1]), max_rows_for(packed_width(k))):
        X = np.take(UcT, idx.users_by_item[a:b], axis=1)
        out[idx.i_ids[s0 + g0:s0 + g1] - j0] = _normal_sums(X, vals[idx.perm[a:b]], starts[g0:g1] - a)
