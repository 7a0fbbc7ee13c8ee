"""Per-chunk numerics of implicit-feedback matrix factorization: numpy only, no MPI.

Hu, Koren and Volinsky (2008): every user-item pair (u, i) has a preference
p_ui = 1 if r_ui > 0 else 0 and a confidence c_ui = 1 + alpha r_ui (1 for the
pairs without interactions). With F the factors being solved and G the fixed
side, each row solves

    (G^T C_u G + reg_u I) f_u = G^T C_u p_u
    G^T C_u G = G^T G + sum_{i in R(u)} (c_ui - 1) g_i g_i^T,   G^T C_u p_u = sum_{i in R(u)} c_ui g_i

so G^T G (k x k, the same for every row) is formed once per half-sweep and a
row costs O(n_u k^2 + k^3) (``cholesky``), or O(n_u k) per conjugate-gradient
step (``cg``, matrix-free as the ``implicit`` library's ``use_cg``).

Like :mod:`lepton_hpc.models.mf`, every function depends only on one chunk's
data (users relative to the chunk, sorted; items through its
:class:`~lepton_hpc.models.mf.ChunkIndex`) and the replicated side, so a chunk
gives the same bits on whatever rank holds it. Packed rows are
:func:`~lepton_hpc.models.mf.packed_width` wide: triu(A) row by row, then b.
"""

from __future__ import annotations

import numpy as np

from . import mf as K
from . import mf_implicit_c as CK
from .mf import _item_starts, max_rows_for, packed_width, segment_groups

#: a row's CG stops once its squared residual falls below this (as implicit's)
CG_EPS = 1e-20


def weighted_sums(XT: np.ndarray, w: np.ndarray, c: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per segment of columns of ``XT`` (k x n): packed [triu(sum w x x^T), sum c x], (segments, width)."""
    k, n = XT.shape
    rows = np.empty((packed_width(k), n))
    XW = XT * w
    off = 0
    for j in range(k):
        np.multiply(XT[j:], XW[j], out=rows[off:off + k - j])
        off += k - j
    np.multiply(XT, c, out=rows[off:])
    return np.add.reduceat(rows, starts, axis=1).T


def gram_packed(XT: np.ndarray) -> np.ndarray:
    """triu(X^T X) packed row by row (k(k+1)/2,), from ``XT`` (k x n); numpy's own loops, fixed order."""
    k = XT.shape[0]
    out = np.empty(k * (k + 1) // 2)
    off = 0
    for j in range(k):
        out[off:off + k - j] = np.einsum("ij,j->i", XT[j:], XT[j])
        off += k - j
    return out


def unpack(tri: np.ndarray, k: int) -> np.ndarray:
    """Symmetric k x k matrices from packed upper triangles (..., k(k+1)/2)."""
    return K.unpack_triu(tri, k)


def confidence(vals: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(c - 1, c) for interactions ``vals``: c = 1 + alpha r."""
    w = alpha * vals
    return w, 1.0 + w


def solve_rows(S: np.ndarray, gram: np.ndarray, reg) -> np.ndarray:
    """Exact solves of ``(G^T G + triu-unpacked S + reg I) x = b`` for packed rows ``S``."""
    n = S.shape[0]
    k = gram.shape[0]
    if n == 0:
        return np.zeros((0, k))
    kk = k * (k + 1) // 2
    A = unpack(S[:, :kk], k) + gram
    A[:, np.arange(k), np.arange(k)] += np.asarray(reg, dtype=np.float64).reshape(-1, 1) if np.ndim(reg) else reg
    return np.linalg.solve(A, S[:, kk:, None])[..., 0]


def cg_explicit(S: np.ndarray, gram: np.ndarray, reg, x0: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` conjugate-gradient steps from ``x0`` on the systems of :func:`solve_rows` (formed)."""
    k = gram.shape[0]
    kk = k * (k + 1) // 2
    A = unpack(S[:, :kk], k) + gram
    A[:, np.arange(k), np.arange(k)] += np.asarray(reg, dtype=np.float64).reshape(-1, 1) if np.ndim(reg) else reg
    return _cg(lambda p: np.einsum("nij,nj->ni", A, p), S[:, kk:], x0, steps)


def _cg(apply, b: np.ndarray, x0: np.ndarray, steps: int) -> np.ndarray:
    """Batched CG (one system per row) as the implicit library's: a row stops when |r|^2 < CG_EPS."""
    x = x0.copy()
    r = b - apply(x)
    p = r.copy()
    rs = np.einsum("ij,ij->i", r, r)
    live = rs >= CG_EPS
    for _ in range(steps):
        if not live.any():
            break
        Ap = apply(p)
        pAp = np.einsum("ij,ij->i", p, Ap)
        a = np.where(live, rs / np.where(live, pAp, 1.0), 0.0)
        x += a[:, None] * p
        r -= a[:, None] * Ap
        rs_new = np.einsum("ij,ij->i", r, r)
        p = r + np.where(live, rs_new / np.where(live, rs, 1.0), 0.0)[:, None] * p
        live &= rs_new >= CG_EPS
        rs = np.where(live, rs_new, rs)
    return x


def implicit_users(VT, gram, users, items, vals, idx, reg, alpha: float, out, cg_steps: int = 0) -> None:
    """Solve every user of the chunk given V (``VT``: V transposed) and ``gram`` = V^T V.

    ``cg_steps`` = 0: exact solves; > 0: that many matrix-free CG steps from the rows in
    ``out`` (the previous factors). Users without interactions get 0. ``reg``: a float or a
    (users, 1) column.
    """
    k = VT.shape[0]
    if CK.available:
        _implicit_users_c(VT, gram, items, vals, idx, reg, alpha, out, cg_steps)
        return
    prev = out.copy() if cg_steps else None
    out[:] = 0.0
    for g0, g1, a, b in segment_groups(idx.u_starts, idx.n, max_rows_for(packed_width(k))):
        ids = idx.u_ids[g0:g1]
        r = reg if np.ndim(reg) == 0 else reg[ids, 0]
        Y = np.take(VT, items[a:b], axis=1)
        w, c = confidence(vals[a:b], alpha)
        starts = idx.u_starts[g0:g1] - a
        if not cg_steps:
            out[ids] = solve_rows(weighted_sums(Y, w, c, starts), gram, r)
            continue
        seg = np.repeat(np.arange(g1 - g0), np.diff(np.append(starts, b - a)))
        rhs = np.add.reduceat(Y * c, starts, axis=1).T
        rr = np.asarray(r, dtype=np.float64).reshape(-1, 1) if np.ndim(r) else r

        def apply(P, Y=Y, w=w, seg=seg, starts=starts, rr=rr):
            dots = np.einsum("ij,ij->j", Y, np.take(P.T, seg, axis=1))
            return P @ gram + rr * P + np.add.reduceat(Y * (w * dots), starts, axis=1).T

        out[ids] = _cg(apply, rhs, prev[ids], cg_steps)


def _implicit_users_c(VT, gram, items, vals, idx, reg, alpha: float, out, cg_steps: int) -> None:
    """:func:`implicit_users` through the C kernel (one pass per user, sequential sums)."""
    ids = idx.u_ids
    bounds = np.append(idx.u_starts, idx.n)
    V = np.ascontiguousarray(VT.T)
    r = reg if np.ndim(reg) == 0 else reg[ids, 0]
    if cg_steps:
        rated = np.zeros(out.shape[0], dtype=bool)
        rated[ids] = True
        out[~rated] = 0.0
        CK.cg(bounds, ids, items, vals, V, alpha, gram, np.asarray(r, dtype=np.float64), cg_steps, CG_EPS, out)
        return
    out[:] = 0.0
    k = VT.shape[0]
    step = max_rows_for(packed_width(k) + 2 * k * k)  # users per batch: S and its unpacked systems
    for g0 in range(0, ids.shape[0], step):
        g1 = min(g0 + step, ids.shape[0])
        S = CK.sums(bounds[g0:g1 + 1], items, None, vals, V, alpha)
        out[ids[g0:g1]] = solve_rows(S, gram, r if np.ndim(r) == 0 else r[g0:g1])


def implicit_item_partial(UcT, vals, idx, j0: int, j1: int, alpha: float, out) -> None:
    """This chunk's share of the packed item systems for items ``[j0, j1)`` into ``out``
    (``UcT``: the chunk's U rows transposed): [triu(sum (c-1) u u^T), sum c u]."""
    k = UcT.shape[0]
    out[:] = 0.0
    s0, starts = _item_starts(idx, j0, j1)
    if starts is None:
        return
    if CK.available and out.flags.c_contiguous:
        CK.sums(starts, idx.users_by_item, idx.perm, vals, np.ascontiguousarray(UcT.T), alpha, out=out,
                dest=idx.i_ids[s0:s0 + starts.shape[0] - 1] - j0)
        return
    for g0, g1, a, b in segment_groups(starts[:-1], int(starts[-1]), max_rows_for(packed_width(k))):
        X = np.take(UcT, idx.users_by_item[a:b], axis=1)
        w, c = confidence(vals[idx.perm[a:b]], alpha)
        out[idx.i_ids[s0 + g0:s0 + g1] - j0] = weighted_sums(X, w, c, starts[g0:g1] - a)


def segment_sums(UT, uidx, vals, starts: np.ndarray, end: int, alpha: float) -> np.ndarray:
    """The packed item systems of :func:`implicit_item_partial` per segment ``[starts[s], starts[s+1])``
    (the last ends at ``end``) of interactions whose users are ``UT[:, uidx[t]]`` and counts
    ``vals[t]``: the same sums in the same order (C kernel or numpy, as the replicated partials)."""
    k = UT.shape[0]
    n_seg = starts.shape[0]
    if CK.available:
        bounds = np.append(starts, end)
        return CK.sums(bounds, uidx[:end], None, vals, np.ascontiguousarray(UT.T), alpha)
    seg = np.zeros((n_seg, packed_width(k)))
    for g0, g1, a, b in segment_groups(starts, end, max_rows_for(packed_width(k))):
        w, c = confidence(vals[a:b], alpha)
        seg[g0:g1] = weighted_sums(np.take(UT, uidx[a:b], axis=1), w, c, starts[g0:g1] - a)
    return seg


def row_grams(F: np.ndarray, out: np.ndarray) -> np.ndarray:
    """triu(f f^T) packed row by row, one row per row f of ``F`` (elementwise products: exact)."""
    k = F.shape[1]
    off = 0
    for j in range(k):
        np.multiply(F[:, j:], F[:, j:j + 1], out=out[:, off:off + k - j])
        off += k - j
    return out


def objective_terms(UcT, VT, gram, users, items, vals, alpha: float) -> float:
    """This chunk's sum over ALL its users' pairs of c (p - s)^2, s = u.v:
    sum_u u^T (V^T V) u + sum_{observed} [c (1 - s)^2 - s^2] (no dense score matrix)."""
    quad = float(np.einsum("iu,ij,ju->", UcT, gram, UcT))
    if CK.available:
        return quad + CK.observed(users, items, vals, np.ascontiguousarray(UcT.T), np.ascontiguousarray(VT.T), alpha)
    step = max_rows_for(2 * UcT.shape[0])
    obs = 0.0
    for a in range(0, users.shape[0], step):
        b = min(a + step, users.shape[0])
        s = (np.take(UcT, users[a:b], axis=1) * np.take(VT, items[a:b], axis=1)).sum(axis=0)
        _, c = confidence(vals[a:b], alpha)
        obs += float(np.einsum("i,i->", c, (1.0 - s) ** 2) - np.einsum("i,i->", s, s))
    return quad + obs
