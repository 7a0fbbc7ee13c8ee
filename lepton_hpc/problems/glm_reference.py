"""The GLM reference pass: one read of the shard before training.

It checks for NaN/Inf and bad labels, fingerprints the data (XOR of per-chunk
BLAKE2 digests, independent of the rank count), and forms the feature moments
and, for least squares, the normal equations: the exact solution the summary
compares against, the curvature behind the schedule warning, and the
standardisation. Collective over ``comm``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import comm as C
from ..models import glm_sparse
from ..models.glm import make_kernel, solve_normal, split_gram
from ..models.penalty import Penalty
from ..models.standardize import Standardizer
from ..reduce import ChunkReducer


@dataclass
class Reference:
    fingerprint: str
    n_classes: int
    weight_sum: float
    std: Standardizer
    kernel: object
    penalty: Penalty
    theta_exact: np.ndarray | None = None
    curvature: tuple[float | None, float] | None = None
    G: np.ndarray | None = None
    c: np.ndarray | None = None
    yty: float = 0.0


def _scan(comm, cfg, shard, kind: str):
    """This rank's part of the pass; UserError on bad weights (the caller agrees)."""
    sh, n_cols = shard, shard.n_cols
    stats_w = 2 + 2 * n_cols
    gram = make_kernel("linear", n_cols, cfg.model.fit_intercept, sh.chunk_rows, sh.dtype) \
        if kind == "linear" and not sh.sparse else None  # d x d normal equations: dense X only
    red = ChunkReducer(comm, sh.layout, stats_w + (gram.gram_width if gram else 0), cfg.comm.reduction)
    bad_row, bad_label, max_label, digest = sh.n_rows, sh.n_rows, -1, 0
    for i, X, y, sw in sh.chunks_iter():
        row = sh.first_bad_row(i, X, y)
        if row is not None:
            bad_row = row
            break
        if kind != "linear":
            label_ok = (y >= 0) & (y == np.round(y)) & ((y <= 1) if kind == "logistic" else True)
            if not label_ok.all():
                bad_label = sh.chunk_start(i) + int(np.argmin(label_ok))
                break
            max_label = max(max_label, int(y.max()) if len(y) else -1)
        digest ^= sh.chunk_digest(i, X, y)
        p = red.partials[i]
        s = np.ones(len(y)) if sw is None else sw
        p[0] = s.sum()
        if sh.sparse:
            p[1:1 + n_cols], p[1 + n_cols:1 + 2 * n_cols] = glm_sparse.moments(X, s)
        else:
            X64 = np.asarray(X, dtype=np.float64)
            p[1:1 + n_cols] = s @ X64
            p[1 + n_cols:1 + 2 * n_cols] = s @ (X64 * X64)
        p[stats_w - 1] = s @ y
        if gram:
            gram.gram_partial(X, y, sw, p[stats_w:])
    return red, (bad_row, bad_label, max_label, digest)


def _classes(cfg, kind: str, shard, bad_row: int, bad_label: int, max_label: int) -> int:
    """The class count, or the agreed error for a bad row or label (every rank has the same values)."""
    if bad_row < shard.n_rows:
        raise C.JobError(f"the data has NaN or Inf at row {bad_row} (the first bad row) in "
                         f"{shard.cfg.path or 'synthetic data'}; clean or drop such rows", 0)
    if bad_label < shard.n_rows:
        want = "0 or 1" if kind == "logistic" else "an integer class 0, 1, ..., K-1"
        raise C.JobError(f"the target at row {bad_label} is not {want} as model.kind={kind} needs", 0)
    if kind != "softmax":
        return 1
    n_classes = cfg.model.classes or max_label + 1
    if max_label >= n_classes:
        raise C.JobError(f"the data has class labels up to {max_label} but model.classes={cfg.model.classes}", 0)
    if n_classes < 2:
        raise C.JobError("softmax needs at least 2 classes; the data has only one", 0)
    return n_classes


def reference_pass(comm, cfg, shard, timer) -> Reference:
    """Checks, fingerprint, moments and (least squares) the normal equations. Collective."""
    kind, d, m = cfg.model.kind, shard.n_cols, cfg.model
    with timer.phase("read"):
        red, (bad_row, bad_label, max_label, digest) = C.agree(comm, _scan, comm, cfg, shard, kind)
    # one collective for every check: first bad row, first bad label, largest label
    bad_row, bad_label, neg_max = C.allreduce_min_ints(comm, [bad_row, bad_label, -max_label])
    n_classes = _classes(cfg, kind, shard, bad_row, bad_label, -neg_max)
    with timer.phase("reduce"):
        total = red.reduce().copy()
    fingerprint = f"{C.allreduce_bxor(comm, digest):016x}-{shard.n_rows}x{d}-{shard.dtype.name}"
    weight_sum = float(total[0])
    if weight_sum <= 0:
        raise C.JobError("the training rows have zero total weight; check data.w_dataset and "
                         "data.test_fraction", 0)
    std = Standardizer.from_moments(total[1:1 + d], total[1 + d:1 + 2 * d], weight_sum, m.standardize,
                                    m.fit_intercept, center=not shard.sparse)
    kernel = make_kernel(kind, d, m.fit_intercept, shard.chunk_rows, shard.dtype, n_classes)
    kernel.set_standardization(*std.kernel_args())
    penalty = Penalty(m.penalty, m.reg, m.l1_ratio, d * n_classes)
    ref = Reference(fingerprint, n_classes, weight_sum, std, kernel, penalty)
    if kind == "linear" and shard.sparse:
        ref.curvature = sparse_curvature(comm, cfg, shard, kernel, weight_sum, penalty)
    elif kind == "linear":
        n_params = kernel.n_params
        G, c, ref.yty = split_gram(total[2 + 2 * d:], n_params)
        ref.G, ref.c = std.transform_gram(G, c), std.transform_c(c)
        H = ref.G / weight_sum + penalty.l2_hessian(n_params)
        if not penalty.has_l1:
            ref.theta_exact = std.to_original(solve_normal(H, ref.c / weight_sum))
        eig = np.linalg.eigvalsh(H)
        ref.curvature = (float(eig[0]), float(eig[-1]))
    return ref


def sparse_curvature(comm, cfg, shard, kernel, weight_sum: float, penalty: Penalty,
                     iterations: int = 20) -> tuple[None, float]:
    """(None, λ_max) of the least-squares Hessian on sparse X, by power iteration: no d x d matrix.

    Each product H v is one exact chunk reduction of Xᵀ S X v (+ the intercept column), so the
    estimate has the same bits on any rank count. λ_min is None: unknown (not formed).
    """
    n = kernel.n_params
    red = ChunkReducer(comm, shard.layout, n, cfg.comm.reduction)
    v = np.random.default_rng([cfg.data.seed, 11]).standard_normal(n)
    v /= np.linalg.norm(v)
    lam = 0.0
    d, fit_b = kernel.n_cols, kernel.fit_intercept
    for _ in range(iterations):
        vw = v[:d] if kernel.scale is None else v[:d] / kernel.scale
        b = v[d] if fit_b else 0.0
        for i, X, y, sw in shard.chunks_iter():
            z = X @ vw + b
            if sw is not None:
                z *= sw
            g = X.T @ z
            red.partials[i, :d] = g if kernel.scale is None else g / kernel.scale
            if fit_b:
                red.partials[i, d] = z.sum()
        Hv = red.reduce() / weight_sum
        Hv[:penalty.n_weights] += penalty.l2 * v[:penalty.n_weights]
        lam = float(np.linalg.norm(Hv))
        if lam == 0.0:
            break
        v = Hv / lam
    return None, lam
