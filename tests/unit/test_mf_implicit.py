"""Implicit feedback: synthetic interaction counts, the CLI's file, the kernels against dense
numpy, ranking metrics against a per-user loop, and the `implicit` library's ALS on the same data."""

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from mpi4py import MPI

from lepton_hpc import checkpoint
from lepton_hpc.config import DataConfig, build
from lepton_hpc.data.__main__ import main as data_main
from lepton_hpc.data.ratings import RatingsShard
from lepton_hpc.data.synthetic.ratings import interactions_chunk, true_item_factors
from lepton_hpc.engine.job import run_job
from lepton_hpc.models import mf as K
from lepton_hpc.models import mf_implicit as KI
from lepton_hpc.problems import mf_ranking
from lepton_hpc.problems.mf import init_factors


def _data(**kw):
    d = {"rows": 120, "cols": 40, "density": 0.15, "true_rank": 3, "seed": 2, "chunk_rows": 32,
         "test_fraction": 0.2, "implicit": True}
    d.update(kw)
    return DataConfig(**d)


def test_interactions_are_counts_of_a_low_rank_model_and_reproducible():
    V = true_item_factors(0, 50, 4)
    r, c, v = interactions_chunk(0, 3, 100, 400, V, 0.2)
    r2, c2, v2 = interactions_chunk(0, 3, 100, 400, V, 0.2)
    assert np.array_equal(r, r2) and np.array_equal(c, c2) and np.array_equal(v, v2)
    assert np.all(np.diff(r * 50 + c) > 0) and r.min() >= 100 and r.max() < 400  # sorted, unique pairs
    assert np.all(v >= 1) and np.all(v == np.round(v)) and v.sum() > 0.15 * 300 * 50  # ~0.2 draws/entry
    # the counts follow the model: items with larger u*.v* are drawn more often
    U = np.random.default_rng([0, 3]).standard_normal((300, 4)) * 4 ** -0.25
    score = (U[r - 100] * V[c]).sum(axis=1)
    absent = np.ones((300, 50), dtype=bool)
    absent[r - 100, c] = False
    assert score.mean() > (U @ V.T)[absent].mean() + 0.3


def test_cli_implicit_file_is_the_in_process_data(tmp_path, capsys):
    out = tmp_path / "i.h5"
    assert data_main(["synth", "mf", "--implicit", "--users", "120", "--items", "40", "--rank", "3",
                      "--density", "0.15", "--seed", "2", "--chunk-rows", "32", "--out", str(out)]) == 0
    with h5py.File(out, "r") as f:
        assert f.attrs["feedback"] == "implicit" and "noise" not in f.attrs
    for size in (1, 3):
        for q in range(size):
            a, b = RatingsShard(_data(), size, q), RatingsShard(_data(path=str(out)), size, q)
            assert [x.digest() for x in a.blocks] == [y.digest() for y in b.blocks]
            assert a.noise is None and b.noise is None
    with pytest.raises(SystemExit) as exc:  # ratings need --noise (argparse's usage error)
        data_main(["synth", "mf", "--users", "5", "--items", "5", "--rank", "2", "--density", "0.5",
                   "--out", str(tmp_path / "x.h5")])
    assert exc.value.code == 2
    assert "--noise is required" in capsys.readouterr().err


@pytest.mark.parametrize("c_kernel", [True, False], ids=["C", "numpy"])
def test_user_solves_and_item_sums_match_dense_weighted_least_squares(c_kernel, monkeypatch):
    from lepton_hpc.models import mf_implicit_c

    if c_kernel:
        assert mf_implicit_c.available  # the editable install builds it
    monkeypatch.setattr(mf_implicit_c, "available", c_kernel)
    rng = np.random.default_rng(0)
    n_users, n_items, k, alpha = 30, 17, 4, 3.0
    R = (rng.random((n_users, n_items)) < 0.3) * rng.integers(1, 5, (n_users, n_items))
    users, items = (x.astype(np.int32) for x in np.nonzero(R))
    vals = R[users, items].astype(float)
    V = rng.standard_normal((n_items, k))
    reg = (0.1 * np.maximum(np.bincount(users, minlength=n_users), 1))[:, None]
    idx = K.ChunkIndex(users, items)
    gram = KI.unpack(KI.gram_packed(np.ascontiguousarray(V.T)), k)
    assert np.allclose(gram, V.T @ V, rtol=1e-13)
    out = np.zeros((n_users, k))
    KI.implicit_users(np.ascontiguousarray(V.T), gram, users, items, vals, idx, reg, alpha, out)
    cg = rng.standard_normal((n_users, k))
    KI.implicit_users(np.ascontiguousarray(V.T), gram, users, items, vals, idx, reg, alpha, cg, cg_steps=k)
    for u in range(n_users):
        C = 1 + alpha * R[u]
        x = np.linalg.solve(V.T @ (C[:, None] * V) + reg[u, 0] * np.eye(k), V.T @ (C * (R[u] > 0)))
        want = x if R[u].any() else np.zeros(k)
        assert np.allclose(out[u], want, rtol=1e-10, atol=1e-12)
        assert np.allclose(cg[u], want, rtol=1e-6, atol=1e-8)  # k CG steps solve a k x k system
    U = rng.standard_normal((n_users, k))
    dense = ((1 + alpha * R) * ((R > 0) - U @ V.T) ** 2).sum()  # every pair, weighted
    got = KI.objective_terms(np.ascontiguousarray(U.T), np.ascontiguousarray(V.T), gram, users, items, vals, alpha)
    assert got == pytest.approx(dense, rel=1e-12)
    S = np.zeros((n_items, K.packed_width(k)))
    KI.implicit_item_partial(np.ascontiguousarray(U.T), vals, idx, 0, n_items, alpha, S)
    for i in range(n_items):
        w = alpha * R[:, i]
        A = U.T @ (w[:, None] * U)
        assert np.allclose(S[i, :k * (k + 1) // 2], A[np.triu_indices(k)], rtol=1e-12, atol=1e-12)
        assert np.allclose(S[i, k * (k + 1) // 2:], U.T @ ((1 + w) * (R[:, i] > 0)), rtol=1e-12, atol=1e-12)


def _metrics_by_loop(U, V, train, test, k):
    """precision/recall/nDCG@k and AUC per user, one user at a time, averaged."""
    rows = []
    for u in np.unique(test[0]):
        seen, held = set(train[1][train[0] == u]), set(test[1][test[0] == u])
        s = U[u] @ V.T
        cand = [i for i in np.argsort(-s, kind="stable") if i not in seen]
        top = cand[:k]
        hits = [i in held for i in top]
        dcg = sum(h / np.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / np.log2(j + 2) for j in range(min(k, len(held))))
        neg = [i for i in cand if i not in held]
        auc = np.mean([s[p] > s[n] for p in held for n in neg]) if neg else 1.0
        rows.append([sum(hits) / k, sum(hits) / len(held), dcg / idcg, auc])
    return np.mean(rows, axis=0), len(rows)


def test_ranking_metrics_match_a_per_user_loop(monkeypatch):
    rng = np.random.default_rng(1)
    U, V = rng.standard_normal((70, 3)), rng.standard_normal((25, 3))
    pairs = np.argwhere(rng.random((70, 25)) < 0.3)
    held = rng.random(len(pairs)) < 0.25
    train, test = pairs[~held].T, pairs[held].T
    monkeypatch.setattr(mf_ranking, "BLOCK_USERS", 16)  # several blocks of users
    got = mf_ranking.means(mf_ranking.chunk_sums(U, V, tuple(train), tuple(test), 5), 5)
    want, n = _metrics_by_loop(U, V, train, test, 5)
    assert got["users_evaluated"] == n
    assert np.allclose([got["precision_at_5"], got["recall_at_5"], got["ndcg_at_5"], got["auc"]], want,
                       rtol=1e-12)


def test_ranking_sums_do_not_depend_on_the_item_blocks_even_with_ties(monkeypatch):
    rng = np.random.default_rng(2)
    U, V = rng.standard_normal((60, 4)), rng.standard_normal((30, 4))
    V[[3, 7, 8, 20, 21]] = 0.0  # items scored 0 by every user: ties broken by the lower item id
    pairs = np.argwhere(rng.random((60, 30)) < 0.3)
    held = rng.random(len(pairs)) < 0.3
    train, test = tuple(pairs[~held].T), tuple(pairs[held].T)
    whole = mf_ranking.chunk_sums(U, V, train, test, 6)
    for block in (1, 4, 7):
        monkeypatch.setattr(mf_ranking, "BLOCK_ITEMS", block)
        assert mf_ranking.chunk_sums(U, V, train, test, 6).tobytes() == whole.tobytes(), block
    S = mf_ranking.block_scores(U, V)
    assert np.allclose(S, U @ V.T, rtol=1e-13, atol=1e-13)
    assert S[5, 9] == mf_ranking.pair_scores(U[[5]], V[[9]])[0]


def _job(out, **model):
    raw = {"data": {"rows": 400, "cols": 60, "density": 0.1, "true_rank": 3, "seed": 1, "test_fraction": 0.2,
                    "chunk_rows": 64, "implicit": True},
           "model": {"kind": "mf", "rank": 6, "reg": 0.1, "feedback": "implicit", "alpha": 2.0,
                     "reg_scaling": "none", **model},
           "train": {"solver": "als", "steps": 6, "tol": 0, "log_every": 100}, "checkpoint": {"every": 0}}
    cfg = build(raw, "implicit-vs-lib")
    code, s = run_job(cfg, MPI.COMM_SELF, out)
    assert code == 0
    snap = checkpoint.latest_local(Path(out) / "checkpoints")
    return cfg, s, snap.rows("model/U", 0, 400), snap.replicated("model/V")["model/V"]


@pytest.mark.parametrize("inner", ["cholesky", "cg"])
def test_same_factors_and_precision_as_the_implicit_library(inner):
    from implicit.cpu.als import AlternatingLeastSquares

    cfg, s, U, V = _job(Path(tempfile.mkdtemp()) / "r", inner_solver=inner)
    sh = RatingsShard(cfg.data, 1, 0)
    r, c, v = (np.concatenate([(b.train[0] + b.user_lo, b.train[1], b.train[2])[j] for b in sh.blocks])
               for j in range(3))
    # implicit 0.7 takes the confidence as given (times its alpha, here 1): pass 1 + alpha r
    M = sp.csr_matrix((1 + cfg.model.alpha * v, (r, c)), shape=(400, 60))
    U0, V0 = init_factors(cfg.data.seed, 6, 60, range(sh.n_chunks), 400, 64)
    lib = AlternatingLeastSquares(factors=6, regularization=0.1, alpha=1.0, dtype=np.float64,
                                  use_cg=inner == "cg", iterations=6, num_threads=1)
    lib.user_factors, lib.item_factors = U0.copy(), V0.copy()  # the same start
    lib.fit(M, show_progress=False)
    tol = 1e-10 if inner == "cholesky" else 1e-6  # its CG stops on |r|^2 < 1e-20 as ours, in C++
    assert np.allclose(U, lib.user_factors, atol=tol) and np.allclose(V, lib.item_factors, atol=tol)
    theirs = sum(mf_ranking.chunk_sums(lib.user_factors[b.user_lo:b.user_lo + b.n_users], lib.item_factors,
                                       b.train[:2], b.test[:2], 10) for b in sh.blocks)
    theirs = mf_ranking.means(theirs, 10)
    assert s["users_evaluated"] == theirs["users_evaluated"] > 100
    assert abs(s["precision_at_10"] - theirs["precision_at_10"]) <= 0.01
    assert s["precision_at_10"] > 0.05 and s["auc"] > 0.7  # it learned the model


def test_implicit_needs_als_and_counts(tmp_path):
    from lepton_hpc.comm import JobError

    raw = {"data": {"rows": 40, "cols": 10, "implicit": True, "chunk_rows": 16},
           "model": {"kind": "mf", "rank": 2, "feedback": "implicit"}, "train": {"solver": "gd", "steps": 1}}
    with pytest.raises(JobError, match="train.solver=gd is not available for model.feedback=implicit; use als"):
        run_job(build(raw, "x"), MPI.COMM_SELF, tmp_path / "r")
    path = tmp_path / "neg.h5"
    with h5py.File(path, "w") as f:
        f["rows"], f["cols"], f["vals"] = [0, 1, 2], [0, 1, 0], [1.0, -2.0, 1.0]
        f.attrs["shape"] = [3, 2]
    raw = {"data": {"path": str(path)}, "model": {"kind": "mf", "rank": 1, "feedback": "implicit"},
           "train": {"solver": "als", "steps": 1}}
    with pytest.raises(JobError, match="needs interaction counts >= 0, found -2"):
        run_job(build(raw, "x"), MPI.COMM_SELF, tmp_path / "r2")
