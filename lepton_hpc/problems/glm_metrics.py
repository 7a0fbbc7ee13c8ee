"""Model quality on a shard: regression and classification metrics, distributedly.

Sums are reduced per chunk with :class:`~lepton_hpc.reduce.ChunkReducer`, so
metrics are the same bits on any rank count. ROC AUC needs a ranking: the
(score, label, weight) triples of the split are gathered to rank 0.

The confusion matrix is ``{"labels": [...], "counts": [[...]]}``: ``labels`` names class
code i (the data's ``classes``, else 0..K-1), ``counts[i][j]`` is the integer number of rows
of true class i predicted as j (rows of weight 0 in the split do not count). When some row's
weight is not 1, ``weighted`` holds the same matrix of summed weights (floats).
"""

from __future__ import annotations

import numpy as np

from .. import comm as C
from ..reduce import ChunkReducer


def _weights(shard, i: int, sw, split: str, n: int) -> np.ndarray:
    """Row weights of local chunk ``i`` for ``split``: train, test or all rows."""
    test = shard.test_weights(i)
    train = np.ones(n) if sw is None else sw
    if split == "train":
        return train
    if split == "test":
        return np.zeros(n) if test is None else test
    return train if test is None else train + test


def evaluate(comm, kernel, shard, theta: np.ndarray, n_classes: int, split: str = "train",
             class_labels: list | None = None, auc_max_rows: int | None = None) -> dict:
    """Metrics of ``theta`` on ``split`` (train, test or all). Collective over ``comm``.

    ``class_labels``: the name of each class code for the confusion matrix (default 0..K-1).
    ``auc_max_rows``: skip the ROC AUC (it gathers every score to rank 0 and sorts them) when the
    data has more rows; ``roc_auc`` is then None and ``roc_auc_skipped`` says why."""
    kind = kernel.kind
    k = max(n_classes, 2) if kind != "linear" else 0
    # row: [Σs, Σs·loss, Σs·y, Σs·y², Σs·(y−ŷ)², Σs·correct, #rows with s∉{0,1},
    #       weighted confusion (k×k), counted confusion (k×k)]
    width = 7 + 2 * k * k
    red = ChunkReducer(comm, shard.layout, width, "exact")
    scores, labels, weights = [], [], []
    for i, X, y, sw in shard.chunks_iter():
        s = _weights(shard, i, sw, split, len(y))
        row = red.partials[i]
        row[:] = 0.0
        row[0] = s.sum()
        z = kernel.decision(X, theta)
        _, losses = kernel.residual(z, y, None, per_row=True)
        row[1] = s @ losses
        if kind == "linear":
            row[2], row[3], row[4] = s @ y, s @ (y * y), s @ ((y - z) ** 2)
            continue
        pred = (z > 0).astype(np.intp) if kind == "logistic" else z.argmax(axis=1)
        truth = y.astype(np.intp)
        row[5] = s @ (pred == truth)
        row[6] = np.count_nonzero((s != 0) & (s != 1))
        np.add.at(row[7:7 + k * k].reshape(k, k), (truth, pred), s)
        np.add.at(row[7 + k * k:].reshape(k, k), (truth, pred), (s > 0).astype(np.float64))
        if kind == "logistic":
            keep = s > 0
            scores.append(z[keep])
            labels.append(truth[keep])
            weights.append(s[keep])
    total = red.reduce()
    n = total[0]
    if n <= 0:
        return {"split": split, "weight": 0.0}
    out = {"split": split, "weight": float(n), "loss": float(total[1] / n)}
    if kind == "linear":
        mse = total[4] / n
        var = total[3] / n - (total[2] / n) ** 2
        out.update({"mse": float(mse), "r2": float(1.0 - mse / var) if var > 0 else None})
        return out
    out["log_loss"] = out["loss"]
    out["accuracy"] = float(total[5] / n)
    out["confusion"] = _confusion(total, k, class_labels)
    if kind == "logistic" and auc_max_rows is not None and shard.n_rows > auc_max_rows:
        out["roc_auc"] = None
        out["roc_auc_skipped"] = (f"{shard.n_rows} rows > {auc_max_rows}: the AUC gathers every score to rank 0; "
                                  f"`lepton-hpc evaluate` computes it")
    elif kind == "logistic":
        gathered = C.gather(comm, (np.concatenate(scores or [np.zeros(0)]),
                                np.concatenate(labels or [np.zeros(0, np.intp)]),
                                np.concatenate(weights or [np.zeros(0)])))
        auc = None
        if comm.rank == 0:
            sc, lab, wt = (np.concatenate(parts) for parts in zip(*gathered))
            auc = roc_auc(sc, lab, wt)
        out["roc_auc"] = C.bcast(comm, auc)
    return out


def _confusion(total: np.ndarray, k: int, labels: list | None) -> dict:
    """The labelled confusion matrix of the reduced row ``total`` (see the module doc)."""
    labels = list(range(k)) if labels is None else list(labels)
    if len(labels) != k:
        raise ValueError(f"{len(labels)} class labels for a {k}-class confusion matrix")
    counts = np.rint(total[7 + k * k:]).astype(np.int64).reshape(k, k)
    out = {"labels": labels, "counts": counts.tolist()}
    if total[6] > 0:
        out["weighted"] = total[7:7 + k * k].reshape(k, k).tolist()
    return out


def roc_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float | None:
    """Weighted ROC AUC (Mann–Whitney with midranks for ties); None for one class only."""
    pos, neg = labels == 1, labels == 0
    w_pos, w_neg = weights[pos].sum(), weights[neg].sum()
    if w_pos <= 0 or w_neg <= 0:
        return None
    if np.all(weights == 1.0):  # midranks (scipy.stats.rankdata's "average"), without its ~1 s import
        order = np.argsort(scores, kind="stable")
        _, start, counts = np.unique(scores[order], return_index=True, return_counts=True)
        ranks = np.empty(len(scores))
        ranks[order] = np.repeat(start + (counts + 1) / 2.0, counts)
        return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * neg.sum()))
    order = np.argsort(scores, kind="stable")
    s, l, w = scores[order], labels[order], weights[order]
    # weighted: Σ over positives of (negative weight below + ½ tied negative weight)
    uniq, start = np.unique(s, return_index=True)
    neg_w = np.add.reduceat(np.where(l == 0, w, 0.0), start)
    pos_w = np.add.reduceat(np.where(l == 1, w, 0.0), start)
    below = np.cumsum(neg_w) - neg_w
    return float(((below + 0.5 * neg_w) * pos_w).sum() / (w_pos * w_neg))
