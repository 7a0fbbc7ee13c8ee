"""Synthetic logistic/softmax data: per-chunk determinism, label ranges, informative labels, the CLI."""

import h5py
import numpy as np
import pytest

from lepton_hpc.config import DataConfig
from lepton_hpc.data.__main__ import info, main
from lepton_hpc.data.classification import synth_classification
from lepton_hpc.data.synthetic.classification import (DEFAULT_SCALE, logistic_chunk, logistic_truth,
                                                      softmax_chunk, softmax_truth)
from lepton_hpc.data.shard import Shard
from lepton_hpc.data.synthetic.linear import true_weights
from lepton_hpc.layout import chunk_range, chunks_of_rank, n_chunks


def read(path):
    with h5py.File(path, "r") as f:
        return f["X"][...], f["y"][...], dict(f.attrs)


def generate(kind, seed, rows, cols, chunk_rows, classes=3, noise=0.0, chunk_order=None):
    """Rows [0, rows) generated in-process, chunk by chunk, in ``chunk_order``."""
    if kind == "logistic":
        w, b = logistic_truth(seed, cols)
        gen = lambda c, m: logistic_chunk(seed, c, m, w, b, noise)  # noqa: E731
    else:
        W, b = softmax_truth(seed, cols, classes)
        gen = lambda c, m: softmax_chunk(seed, c, m, W, b, noise)  # noqa: E731
    X, y = np.empty((rows, cols)), np.empty(rows)
    for c in chunk_order if chunk_order is not None else range(n_chunks(rows, chunk_rows)):
        lo, hi = chunk_range(rows, chunk_rows, c)
        X[lo:hi], y[lo:hi] = gen(c, hi - lo)
    return X, y


# -- ground truth -------------------------------------------------------------
def test_truth_is_drawn_from_the_seed():
    w, b = logistic_truth(3, 6)
    w2, b2 = logistic_truth(3, 6)
    np.testing.assert_array_equal(w, w2)
    assert b == b2 and isinstance(b, float)
    assert np.isclose(np.linalg.norm(w), DEFAULT_SCALE)
    assert not np.allclose(w, logistic_truth(4, 6)[0])
    assert not np.allclose(w / DEFAULT_SCALE, true_weights(3, 6) / np.linalg.norm(true_weights(3, 6)))
    W, bs = softmax_truth(3, 6, 4)
    assert W.shape == (6, 4) and bs.shape == (4,)
    np.testing.assert_allclose(np.linalg.norm(W, axis=0), DEFAULT_SCALE)
    np.testing.assert_array_equal(W, softmax_truth(3, 6, 4)[0])
    np.testing.assert_allclose(np.linalg.norm(softmax_truth(3, 6, 4, scale=2.0)[0], axis=0), 2.0)


@pytest.mark.parametrize("call,message", [
    (lambda: softmax_truth(0, 5, 1), "at least 2 classes"),
    (lambda: logistic_truth(0, 0), "must be > 0"),
    (lambda: softmax_chunk(0, 0, 4, np.ones((3, 2)), np.ones(3)), "one bias per class"),
    (lambda: logistic_chunk(0, 0, 4, np.ones(3), 0.0, features="cube"), "normal or uniform"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- chunks -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["logistic", "softmax"])
def test_chunks_are_deterministic_and_distinct(kind):
    X0, y0 = generate(kind, 7, 100, 5, 100)
    X1, y1 = generate(kind, 7, 100, 5, 100)
    np.testing.assert_array_equal(X0, X1)
    np.testing.assert_array_equal(y0, y1)
    w, b = logistic_truth(7, 5)
    Xa, _ = logistic_chunk(7, 0, 50, w, b)
    Xb, _ = logistic_chunk(7, 1, 50, w, b)
    assert not np.allclose(Xa, Xb)
    # a short last chunk is a prefix of the same chunk at full length
    Xs, ys = logistic_chunk(7, 3, 20, w, b)
    Xl, yl = logistic_chunk(7, 3, 50, w, b)
    np.testing.assert_array_equal(Xs, Xl[:20])


@pytest.mark.parametrize("kind,classes", [("logistic", None), ("softmax", 4)])
def test_file_rows_match_in_process_chunks_on_any_rank_count(tmp_path, kind, classes):
    rows, cols, chunk_rows = 1000, 6, 96
    out = str(tmp_path / "d.h5")
    synth_classification(out, kind, rows, cols, classes, noise=0.3, seed=11, chunk_rows=chunk_rows)
    X, y, attrs = read(out)
    K = classes or 2
    # what a job on `size` ranks generates, each rank its own chunks, in any order
    for size in (1, 2, 3, 7):
        Xg, yg = np.empty_like(X), np.empty_like(y)
        for rank in reversed(range(size)):
            order = list(chunks_of_rank(n_chunks(rows, chunk_rows), size, rank))[::-1]
            Xr, yr = generate(kind, 11, rows, cols, chunk_rows, K, 0.3, order)
            for c in order:
                lo, hi = chunk_range(rows, chunk_rows, c)
                Xg[lo:hi], yg[lo:hi] = Xr[lo:hi], yr[lo:hi]
        np.testing.assert_array_equal(Xg, X)
        np.testing.assert_array_equal(yg, y)
    assert attrs["kind"] == kind and attrs["n_classes"] == K and attrs["chunk_rows"] == chunk_rows
    if kind == "logistic":
        w, b = logistic_truth(11, cols)
        np.testing.assert_array_equal(attrs["true_weights"], w)
        assert attrs["true_bias"] == b and attrs["task"] == "binary"
    else:
        W, b = softmax_truth(11, cols, K)
        np.testing.assert_array_equal(attrs["true_weights"], W)
        np.testing.assert_array_equal(attrs["true_biases"], b)
        assert attrs["task"] == "multiclass" and "true_bias" not in attrs


def test_writes_are_independent_of_storage_options(tmp_path):
    a, b = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    synth_classification(a, "softmax", 500, 4, 3, seed=2, chunk_rows=64)
    synth_classification(b, "softmax", 500, 4, 3, seed=2, chunk_rows=64, compression="gzip", dtype="float32")
    Xa, ya, _ = read(a)
    Xb, yb, _ = read(b)
    assert Xb.dtype == np.float32
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(Xa.astype(np.float32), Xb)


# -- labels -------------------------------------------------------------------
def test_labels_in_range_and_calibrated():
    cols = 8
    w, b = logistic_truth(0, cols)
    X, y = logistic_chunk(0, 0, 40000, w, b)
    assert set(np.unique(y)) == {0.0, 1.0} and y.dtype == np.float64
    p = 1 / (1 + np.exp(-(X @ w + b)))
    assert abs(y.mean() - p.mean()) < 0.01  # y ~ Bernoulli(sigmoid(Xw + b))
    W, bs = softmax_truth(0, cols, 5)
    X, y = softmax_chunk(0, 0, 40000, W, bs)
    assert set(np.unique(y)) == set(range(5)) and y.dtype == np.float64
    Z = X @ W + bs
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.bincount(y.astype(int), minlength=5) / len(y), P.mean(axis=0), atol=0.01)


def test_noise_changes_labels_not_features():
    w, b = logistic_truth(5, 4)
    X0, y0 = logistic_chunk(5, 2, 2000, w, b, noise=0.0)
    X1, y1 = logistic_chunk(5, 2, 2000, w, b, noise=3.0)
    np.testing.assert_array_equal(X0, X1)
    assert 0 < np.mean(y0 != y1) < 0.5


def test_uniform_features():
    W, b = softmax_truth(1, 3, 3)
    X, y = softmax_chunk(1, 0, 1000, W, b, features="uniform")
    assert X.min() >= 0 and X.max() < 1 and set(np.unique(y)) <= {0.0, 1.0, 2.0}


def test_generating_weights_beat_chance_and_are_recoverable():
    sklearn_lm = pytest.importorskip("sklearn.linear_model")
    cols = 10
    w, b = logistic_truth(1, cols)
    X, y = logistic_chunk(1, 0, 20000, w, b)
    Xt, yt = logistic_chunk(1, 1, 5000, w, b)
    truth_acc = np.mean(((Xt @ w + b) > 0) == yt)
    assert truth_acc > 0.8  # chance is at most max(p, 1 - p), about 0.5 here
    assert 0.3 < yt.mean() < 0.7
    fit = sklearn_lm.LogisticRegression(C=1e4, max_iter=1000).fit(X, y)
    assert fit.score(Xt, yt) > truth_acc - 0.02
    cos = fit.coef_[0] @ w / np.linalg.norm(fit.coef_[0]) / np.linalg.norm(w)
    assert cos > 0.98

    K = 5
    W, bs = softmax_truth(1, cols, K)
    X, y = softmax_chunk(1, 0, 20000, W, bs)
    Xt, yt = softmax_chunk(1, 1, 5000, W, bs)
    truth_acc = np.mean(np.argmax(Xt @ W + bs, axis=1) == yt)
    assert truth_acc > 1 / K + 0.4
    fit = sklearn_lm.LogisticRegression(C=1e4, max_iter=2000).fit(X, y)
    assert fit.score(Xt, yt) > truth_acc - 0.02
    # softmax weights are identified up to a shift shared by the classes
    Wc = W - W.mean(axis=1, keepdims=True)
    Fc = fit.coef_.T - fit.coef_.T.mean(axis=1, keepdims=True)
    assert np.sum(Wc * Fc) / np.linalg.norm(Wc) / np.linalg.norm(Fc) > 0.98


# -- writer and CLI -----------------------------------------------------------
@pytest.mark.parametrize("kw,message", [
    (dict(kind="softmax", classes=None), "needs --classes"),
    (dict(kind="softmax", classes=1), "needs --classes"),
    (dict(kind="logistic", classes=3), "use synth softmax"),
    (dict(kind="logistic", rows=0), "--rows must be > 0"),
    (dict(kind="logistic", noise=-1.0), "--noise must be"),
    (dict(kind="probit"), "unknown synthetic classification kind"),
])
def test_writer_errors(tmp_path, kw, message):
    args = dict(out=str(tmp_path / "o.h5"), rows=10, cols=2)
    args.update(kw)
    with pytest.raises(ValueError, match=message):
        synth_classification(**args)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind,extra", [("logistic", []), ("softmax", ["--classes", "4"])])
def test_cli(tmp_path, capsys, kind, extra):
    out = str(tmp_path / f"{kind}.h5")
    argv = ["synth", kind, "--rows", "3000", "--cols", "5", "--seed", "3", "--chunk-rows", "1024",
            "--out", out] + extra
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "@true_weights" in text and "/X: (3000, 5) float64, chunks (1024, 5)" in text
    assert info(out) == text.rstrip("\n")
    X, y, attrs = read(out)
    Xg, yg = generate(kind, 3, 3000, 5, 1024, int(attrs["n_classes"]), float(attrs["noise"]))
    np.testing.assert_array_equal(X, Xg)
    np.testing.assert_array_equal(y, yg)
    shard = Shard(DataConfig(path=out, chunk_rows=1024), 2, 1)  # the trainer's reader opens it
    shard.close()


def test_cli_softmax_without_classes_is_an_error(tmp_path, capsys):
    out = str(tmp_path / "s.h5")
    assert main(["synth", "softmax", "--rows", "10", "--cols", "2", "--out", out]) == 1
    assert "needs --classes" in capsys.readouterr().err


def test_wide_model_truth_fits_in_the_attrs(tmp_path):
    out = str(tmp_path / "wide.h5")  # 2000 x 10 weights: 160 KB, over HDF5's default 64 KiB attr limit
    synth_classification(out, "softmax", 20, 2000, 10, chunk_rows=8)
    _, _, attrs = read(out)
    np.testing.assert_array_equal(attrs["true_weights"], softmax_truth(0, 2000, 10)[0])
    assert info(out)
