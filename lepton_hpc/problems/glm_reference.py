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
from ..reduce import REDUCE_BUDGET_BYTES, ChunkReducer
from ..score_inputs import first_bad_label
from . import glm_memory
from .glm_memory import gram_bytes, gram_fits
from .glm_step import CURVATURE, curvature, trace_bound


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
    max_label: int = -1  #: the largest class label in the training rows (-1: linear)


def wants_curvature(cfg) -> bool:
    """Gradient descent with an "auto" step size or decay (:mod:`.glm_step`) needs the curvature."""
    o = cfg.optimizer
    return cfg.train.solver == "gd" and "auto" in (o.learning_rate, o.alpha)


def wants_gram(cfg, shard) -> bool:
    """Least squares needs its normal equations; logistic/softmax gradient descent with an "auto"
    step size or decay needs the design's Gram matrix for its curvature, when it fits the budget."""
    if cfg.model.kind == "linear":  # gram solves them; svd_gd's loss needs their yᵀy
        return cfg.train.solver in ("gram", "svd_gd") or gram_fits(shard.n_cols)
    if not wants_curvature(cfg):
        return False
    p = shard.n_cols + 1
    return shard.layout.max_local_chunks * (p * p + p + 1) * 8 <= REDUCE_BUDGET_BYTES


def _scan(comm, cfg, shard, kind: str, node_ranks: int):
    """This rank's part of the pass; UserError on bad weights or a Gram that cannot fit (the caller agrees)."""
    sh, n_cols = shard, shard.n_cols
    stats_w = 2 + 2 * n_cols
    gram = make_kernel("linear", n_cols, cfg.model.fit_intercept, sh.chunk_rows, sh.dtype) \
        if wants_gram(cfg, sh) and not sh.sparse else None  # d x d: dense X only
    if gram:
        p = gram.n_params
        fix = ("use train.solver=lbfgs (or auto), which forms no d x d matrix" if cfg.train.solver in ("gram", "svd_gd")
               else "run fewer ranks per node (each rank holds its own copy) or use a node with more memory")
        glm_memory.check(sh, gram_bytes(sh.layout.max_local_chunks, stats_w + gram.gram_width, p),
                         f"the {p} x {p} normal equations XᵀX of d={n_cols} columns", fix, node_ranks)
    red = ChunkReducer(comm, sh.layout, stats_w + (gram.gram_width if gram else 0), cfg.comm.reduction)
    bad_row, bad_label, max_label, digest = sh.n_rows, sh.n_rows, -1, 0
    for i, X, y, sw in sh.chunks_iter():
        row = sh.first_bad_row(i, X, y)
        if row is not None:
            bad_row = row
            break
        if kind != "linear":
            label = first_bad_label(kind, y, None)
            if label is not None:
                bad_label = sh.chunk_start(i) + label
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


def fingerprint_text(digest: int, shard) -> str:
    """The data fingerprint of a run: the XOR of the chunk digests, the shape and the storage dtype."""
    return f"{digest:016x}-{shard.n_rows}x{shard.n_cols}-{shard.dtype.name}"


def reference_pass(comm, cfg, shard, timer) -> Reference:
    """Checks, fingerprint, moments and (least squares) the normal equations. Collective."""
    kind, d, m = cfg.model.kind, shard.n_cols, cfg.model
    with timer.phase("read"):
        node_ranks = C.node_size(comm)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, in one sentence
            red, (bad_row, bad_label, max_label, digest) = C.agree(comm, _scan, comm, cfg, shard, kind, node_ranks)
    # one collective for every check: first bad row, first bad label, largest label
    bad_row, bad_label, neg_max = C.allreduce_min_ints(comm, [bad_row, bad_label, -max_label])
    n_classes = _classes(cfg, kind, shard, bad_row, bad_label, -neg_max)
    with timer.phase("reduce"):
        total = red.reduce().copy()
    if not np.isfinite(total).all():  # the same reduced sums on every rank: all raise together
        raise C.JobError(f"the data's sums of squares overflow float64 in {shard.cfg.path or 'the synthetic data'} "
                         f"(values near 1e154 or larger): scale those columns down (divide them by a power of ten; "
                         f"model.standardize comes after these sums) and train again", 0)
    fingerprint = fingerprint_text(C.allreduce_bxor(comm, digest), shard)
    weight_sum = float(total[0])
    if weight_sum <= 0:
        raise C.JobError("the training rows have zero total weight; check data.w_dataset and "
                         "data.test_fraction", 0)
    std = Standardizer.from_moments(total[1:1 + d], total[1 + d:1 + 2 * d], weight_sum, m.standardize,
                                    m.fit_intercept, center=not shard.sparse)
    kernel = make_kernel(kind, d, m.fit_intercept, shard.chunk_rows, shard.dtype, n_classes)
    kernel.set_standardization(*std.kernel_args())
    penalty = Penalty(m.penalty, m.reg, m.l1_ratio, d * n_classes)
    ref = Reference(fingerprint, n_classes, weight_sum, std, kernel, penalty, max_label=-neg_max)
    dense_ls_gram = kind == "linear" and not shard.sparse and len(total) > 2 + 2 * d
    if shard.sparse and (kind == "linear" or wants_curvature(cfg)):
        ref.curvature = _sparse_bound(comm, cfg, shard, kind, std, weight_sum)
    elif kind == "linear" and not dense_ls_gram:  # wide dense X, no XᵀX (glm_memory): λ_max only
        ref.curvature = _sparse_bound(comm, cfg, shard, kind, std, weight_sum) if wants_curvature(cfg) else None
    elif kind == "linear":
        n_params = kernel.n_params
        G, c, ref.yty = split_gram(total[2 + 2 * d:], n_params)
        ref.G, ref.c = std.transform_gram(G, c), std.transform_c(c)
        H = ref.G / weight_sum + penalty.l2_hessian(n_params)
        if not penalty.has_l1:
            ref.theta_exact = std.to_original(solve_normal(H, ref.c / weight_sum))
        eig = np.linalg.eigvalsh(H)
        ref.curvature = (float(eig[0]), float(eig[-1]))
    else:
        ref.curvature = _glm_curvature(kind, total, d, weight_sum, std, penalty, m.fit_intercept)
    return ref


def _glm_curvature(kind, total, d, weight_sum, std, penalty, fit_intercept):
    """(mu, L) of logistic/softmax (:mod:`.glm_step`): mu is None; L from the Gram matrix or its trace."""
    P = np.zeros(d + int(fit_intercept))
    P[:d] = penalty.l2
    if len(total) > 2 + 2 * d:
        G, _, _ = split_gram(total[2 + 2 * d:], len(P))
        return curvature(kind, std.transform_gram(G) / weight_sum, np.diag(P))
    mean, second = total[1:1 + d] / weight_sum, total[1 + d:1 + 2 * d] / weight_sum
    scale = std.scale if std.active else np.ones(d)
    diag = (second - (mean * mean if std.active else 0.0)) / (scale * scale)
    return None, trace_bound(kind, np.append(diag, 1.0) if fit_intercept else diag, P)


def _sparse_bound(comm, cfg, shard, kind: str, std, weight_sum: float) -> tuple[None, float]:
    """(None, L) on sparse X (or wide dense X without XᵀX): the least-squares λ_max by power
    iteration, scaled as :mod:`.glm_step`. The products skip the centring, so on standardised dense
    X the value bounds the centred design's λ_max from above (a stable 1/L)."""
    m = cfg.model
    ls = make_kernel("linear", shard.n_cols, m.fit_intercept, shard.chunk_rows, shard.dtype)
    ls.set_standardization(*std.kernel_args())
    pen = Penalty(m.penalty, m.reg, m.l1_ratio, shard.n_cols)
    _, lam = sparse_curvature(comm, cfg, shard, ls, weight_sum, pen)
    return None, CURVATURE[kind] * (lam - pen.l2) + pen.l2


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
