"""Sparse (CSR) data: the reader, the kernels and the synthetic generator against dense numpy.

Small real HDF5 files; every sparse result is checked against the same computation on
``X.toarray()`` with the dense code (close, not bitwise: the sums run in another order).
"""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from lepton_hpc.config import DataConfig
from lepton_hpc.data.shard import Shard
from lepton_hpc.data.sparse_shard import SparseShard
from lepton_hpc.data.sparse_synth import synth_sparse
from lepton_hpc.data.synthetic.sparse import sparse_chunk, sparse_truth
from lepton_hpc.errors import UserError
from lepton_hpc.models import fused, glm_sparse
from lepton_hpc.models.glm import make_kernel
from lepton_hpc.models.standardize import Standardizer
from lepton_hpc.reduce import pairwise_sum, tree_sum_into

ROWS, COLS, NNZ = 1000, 60, 6


def write_csr(path, X, y, w=None, **attrs):
    """A CSR file in the contract's layout from a scipy matrix."""
    X = sp.csr_matrix(X)
    with h5py.File(path, "w") as f:
        g = f.create_group("X")
        g.create_dataset("data", data=X.data.astype(np.float64), chunks=True)
        g.create_dataset("indices", data=X.indices.astype(np.int64), chunks=True)
        g.create_dataset("indptr", data=X.indptr.astype(np.int64), chunks=True)
        g.attrs["format"] = "csr"
        g.attrs["shape"] = np.array(X.shape, dtype=np.int64)
        g.attrs.update(attrs)
        f["y"] = y
        if w is not None:
            f["w"] = w


@pytest.fixture(scope="module")
def lin(tmp_path_factory):
    path = tmp_path_factory.mktemp("sparse") / "lin.h5"
    synth_sparse(str(path), "sparse-linear", ROWS, COLS, NNZ, noise=0.1, seed=3, chunk_rows=300)
    with h5py.File(path, "r") as f:
        g = f["X"]
        X = sp.csr_matrix((g["data"][()], g["indices"][()], g["indptr"][()]), shape=tuple(g.attrs["shape"]))
        y = f["y"][()]
    return path, X, y


def cfg(path, **kw):
    return DataConfig(path=str(path), chunk_rows=kw.pop("chunk_rows", 128), **kw)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_each_rank_reads_its_rows_and_the_chunks_are_the_dense_rows(lin, size):
    path, X, y = lin
    dense = X.toarray()
    seen = []
    for rank in range(size):
        sh = Shard(cfg(path), size, rank)
        assert isinstance(sh, SparseShard) and sh.sparse and sh.n_cols == COLS
        assert sh.nnz == X.indptr[sh.row_hi] - X.indptr[sh.row_lo]  # only its rows' non-zeros
        for i, Xc, yc, sw in sh.chunks_iter():
            lo = sh.chunk_start(i)
            assert sp.isspmatrix_csr(Xc) and Xc.indices.dtype == np.int32 and Xc.indptr[0] == 0
            # views of the shard's arrays: the shard is held once
            assert np.shares_memory(Xc.data, sh.X_all.data) and np.shares_memory(Xc.indices, sh.X_all.indices)
            np.testing.assert_array_equal(Xc.toarray(), dense[lo:lo + Xc.shape[0]])
            np.testing.assert_array_equal(yc, y[lo:lo + Xc.shape[0]])
            assert sw is None
            seen.append(sh.chunk_digest(i, Xc, yc))
        sh.close()
    one = Shard(cfg(path), 1, 0)
    assert seen == [one.chunk_digest(i, Xc, yc) for i, Xc, yc, _ in one.chunks_iter()]


def test_weights_and_the_test_split_follow_the_dense_rules(lin, tmp_path):
    path, X, y = lin
    w = np.random.default_rng(0).random(ROWS)
    p = tmp_path / "w.h5"
    write_csr(p, X, y, w)
    dense = tmp_path / "d.h5"
    with h5py.File(dense, "w") as f:
        f["X"], f["y"], f["w"] = X.toarray(), y, w
    for size, rank in ((1, 0), (3, 1)):
        s = Shard(cfg(p, w_dataset="w", test_fraction=0.3), size, rank)
        d = Shard(cfg(dense, w_dataset="w", test_fraction=0.3), size, rank)
        assert not d.sparse
        for (i, _, _, sws), (_, _, _, swd) in zip(s.chunks_iter(), d.chunks_iter()):
            np.testing.assert_array_equal(sws, swd)
            np.testing.assert_array_equal(s.test_weights(i), d.test_weights(i))


def test_local_rows_gather_any_rows(lin):
    path, X, _ = lin
    sh = Shard(cfg(path), 2, 1)
    idx = np.array([0, 5, 5, 17, sh.n_local - 1])
    np.testing.assert_array_equal(sh.X_all[idx].toarray(), X[sh.row_lo + idx].toarray())
    np.testing.assert_array_equal(sh.X_all[3:40].toarray(), X[sh.row_lo + 3:sh.row_lo + 40].toarray())


def _bad(tmp_path, name, mutate, **kw):
    X = sp.random(50, 10, density=0.3, format="csr", random_state=0)
    data, indices, indptr = X.data.copy(), X.indices.astype(np.int64), X.indptr.astype(np.int64)
    mutate(data, indices, indptr)
    p = tmp_path / name
    with h5py.File(p, "w") as f:
        g = f.create_group("X")
        g["data"], g["indices"], g["indptr"] = data, indices, indptr
        g.attrs["format"], g.attrs["shape"] = "csr", [50, 10]
        f["y"] = np.zeros(50)
    return cfg(p, chunk_rows=16, **kw)


@pytest.mark.parametrize("name, mutate, kw, message", [
    ("col.h5", lambda d, i, p: i.__setitem__(3, 10), {}, "outside \\[0, 10\\)"),
    ("neg.h5", lambda d, i, p: i.__setitem__(0, -1), {}, "outside"),
    ("unsorted.h5", lambda d, i, p: i.__setitem__(slice(p[2], p[2] + 2), i[p[2]:p[2] + 2][::-1].copy()), {},
     "not strictly increasing within row 2"),
    ("stream.h5", lambda d, i, p: None, {"in_memory": False}, "set data.in_memory=true"),
    ("f32.h5", lambda d, i, p: None, {"dtype": "float32"}, "set data.dtype=float64"),
])
def test_bad_csr_files_get_one_sentence(tmp_path, name, mutate, kw, message):
    with pytest.raises(UserError, match=message):
        Shard(_bad(tmp_path, name, mutate, **kw), 1, 0)


def _malformed(tmp_path, name, fmt="csr", shape=(50, 10), indptr_dtype=np.int64, indices_dtype=np.int64):
    X = sp.random(50, 10, density=0.3, format="csr", random_state=0)
    indptr = X.indptr.astype(indptr_dtype)
    if indptr.dtype.kind == "f":
        indptr[1:-1] += 0.5  # fractional offsets
    p = tmp_path / name
    with h5py.File(p, "w") as f:
        g = f.create_group("X")
        g["data"], g["indices"], g["indptr"] = X.data, X.indices.astype(indices_dtype), indptr
        g.attrs["format"], g.attrs["shape"] = fmt, list(shape)
        f["y"] = np.zeros(50)
    return cfg(p, chunk_rows=16)


@pytest.mark.parametrize("kw, message", [
    ({"indptr_dtype": np.float64}, r"^/X/indptr in .*f\.h5 has dtype float64; CSR indptr must be integers"),
    ({"indices_dtype": np.float32}, r"^/X/indices in .*f\.h5 has dtype float32; CSR indices must be integers"),
    ({"fmt": "csc"}, r"^/X in .*f\.h5 is a sparse group with format = 'csc'; only format = 'csr' is read"),
    ({"shape": (50, 10, 1)}, r"^the attr shape of /X in .*f\.h5 must be \[n_rows, n_cols\] .*is \[50, 10, 1\]"),
    ({"shape": (50, 10.5)}, r"must be \[n_rows, n_cols\]"),
])
def test_malformed_csr_groups_are_named(tmp_path, kw, message):
    c = _malformed(tmp_path, "f.h5", **kw)
    with pytest.raises(UserError, match=message) as err:
        Shard(c, 2, 1)
    assert "not found" not in str(err.value) and "lacks" not in str(err.value)
    if kw.get("fmt") != "csc":  # predict's reader checks the same group the same way
        from lepton_hpc.data.sparse_shard import CSRRows

        with h5py.File(c.path, "r") as f, pytest.raises(UserError, match=message):
            CSRRows(f["X"], c.path)


def _theta(kernel, seed=0):
    return np.random.default_rng(seed).standard_normal(kernel.n_params) * 0.3


@pytest.mark.parametrize("kind, k", [("linear", 1), ("logistic", 1), ("softmax", 4)])
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])  # int64: the scipy path, int32: C
def test_sparse_partial_equals_the_dense_kernel(kind, k, intercept, weighted, scaled, index_dtype):
    rng = np.random.default_rng(1)
    X = sp.random(300, 40, density=0.1, format="csr", random_state=2)
    X = sp.csr_matrix((X.data, X.indices.astype(index_dtype), X.indptr.astype(index_dtype)), shape=X.shape)
    y = rng.integers(0, k if k > 1 else 2, 300).astype(np.float64) if kind != "linear" else rng.standard_normal(300)
    sw = rng.random(300) if weighted else None
    kern = make_kernel(kind, 40, intercept, 512, np.float64, k)
    scale = rng.random(40) + 0.5 if scaled else None
    kern.set_standardization(None, scale)
    theta = _theta(kern)
    out_s, out_d = np.empty(kern.width), np.empty(kern.width)
    kern.partial(X, y, sw, theta, out_s)
    dense = X.toarray() if scale is None else X.toarray() / scale
    plain = make_kernel(kind, 40, intercept, 512, np.float64, k)
    plain.partial(np.ascontiguousarray(dense), y, sw, theta, out_d)
    np.testing.assert_allclose(out_s, out_d, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kern.decision(X, theta), plain.decision(dense, theta), rtol=1e-12, atol=1e-12)
    starts = np.array([0, 7, 100, 250])
    seg_s, seg_d = np.empty((4, kern.width)), np.empty((4, kern.width))
    kern.batch_partials(X, y, sw, theta, starts, seg_s)
    plain.batch_partials(dense, y, sw, theta, starts, seg_d)
    np.testing.assert_allclose(seg_s, seg_d, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not fused.csr_supports("linear"), reason="the C kernel is not built")
@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_the_c_kernel_matches_scipy_and_repeats_its_bits(kind):
    w, b = sparse_truth("sparse-linear", 0, 500, 20)
    X, y = sparse_chunk("sparse-linear", 0, 0, 1003, 500, 20, w, b, 0.1)  # 1003: not a multiple of 4
    if kind == "logistic":
        y = (y > 0).astype(np.float64)
    X32 = sp.csr_matrix((X.data, X.indices.astype(np.int32), X.indptr.astype(np.int32)), shape=X.shape)
    kern = make_kernel(kind, 500, True, 4096, np.float64)
    theta = _theta(kern) * 0.1
    a, a2, ref = np.empty(kern.width), np.empty(kern.width), np.empty(kern.width)
    kern.partial(X32, y, None, theta, a)
    kern.partial(X32[:].copy(), y, None, theta, a2)  # other addresses, same bits
    assert a.tobytes() == a2.tobytes()
    X64 = sp.csr_matrix((X.data, X.indices.astype(np.int64), X.indptr.astype(np.int64)), shape=X.shape)
    kern.partial(X64, y, None, theta, ref)  # scipy
    np.testing.assert_allclose(a, ref, rtol=1e-12, atol=1e-12)


def test_standardize_on_sparse_scales_like_standard_scaler_without_mean(lin):
    sklearn = pytest.importorskip("sklearn.preprocessing")
    _, X, _ = lin
    s = np.ones(X.shape[0])
    sx, sx2 = glm_sparse.moments(X, s)
    std = Standardizer.from_moments(sx, sx2, float(X.shape[0]), True, True, center=False)
    ref = sklearn.StandardScaler(with_mean=False).fit(X)
    assert std.center is None
    np.testing.assert_allclose(std.scale, ref.scale_, rtol=1e-12)
    theta = np.random.default_rng(0).standard_normal(COLS + 1)
    back = std.from_original(std.to_original(theta))
    np.testing.assert_allclose(back, theta, rtol=1e-14)
    assert std.to_original(theta)[-1] == theta[-1]  # no centring: the intercept is unchanged


def test_synth_is_deterministic_and_holds_the_generators_rows(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    for p in (a, b):
        code = subprocess.run([sys.executable, "-m", "lepton_hpc.data", "synth", "sparse-softmax", "--rows", "700",
                               "--cols", "90", "--nnz-per-row", "5", "--classes", "3", "--chunk-rows", "256",
                               "--seed", "4", "--out", str(p)], capture_output=True, text=True)
        assert code.returncode == 0, code.stderr
    assert a.read_bytes() == b.read_bytes()
    W, bias = sparse_truth("sparse-softmax", 4, 90, 5, 3)
    X1, y1 = sparse_chunk("sparse-softmax", 4, 1, 256, 90, 5, W, bias, 0.1)
    with h5py.File(a, "r") as f:
        np.testing.assert_array_equal(f["true_weights"][()], W)
        assert list(f["y"].attrs["classes"]) == [0, 1, 2]
        g = f["X"]
        assert g.attrs["format"] == "csr" and list(g.attrs["shape"]) == [700, 90]
        assert g["indices"].dtype == np.int64 and g["indptr"].dtype == np.int64
        lo, hi = g["indptr"][256], g["indptr"][512]
        np.testing.assert_array_equal(g["data"][lo:hi], X1.data)
        np.testing.assert_array_equal(g["indices"][lo:hi], X1.indices)
        np.testing.assert_array_equal(f["y"][256:512], y1)
    assert set(np.unique(y1)) <= {0.0, 1.0, 2.0}


def test_synth_refuses_bad_options(tmp_path):
    out = tmp_path / "x.h5"
    for args, message in ((["sparse-softmax", "--classes", "1"], "--classes K with K >= 2"),
                          (["sparse-linear", "--nnz-per-row", "0"], "--nnz-per-row must be > 0"),
                          (["sparse-linear", "--nnz-per-row", "20"],
                           "--nnz-per-row 20 is more than --cols 5: a row has at most 5 non-zeros"),
                          (["sparse-logistic", "--seed", "-1"], "error: --seed must be a non-negative integer")):
        argv = [*args[:1], "--rows", "10", "--cols", "5", *(["--nnz-per-row", "2"] if "--nnz-per-row" not in args
                                                            else []), *args[1:], "--out", str(out)]
        r = subprocess.run([sys.executable, "-m", "lepton_hpc.data", "synth", *argv], capture_output=True, text=True)
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13, 16, 33])
def test_the_depth_first_tree_sum_has_the_pairwise_bits(n):
    rows = np.random.default_rng(n).standard_normal((n, 9)) * 10.0 ** np.arange(-4, 5)
    out, bufs = np.empty(9), [np.empty(9) for _ in range(6)]
    assert tree_sum_into(rows, out, bufs).tobytes() == pairwise_sum(rows).tobytes()


def test_the_fitted_model_predicts_sparse_input_like_dense():
    from lepton_hpc.fitted import LogisticModel, SoftmaxModel

    X = sp.random(50, 30, density=0.2, format="csr", random_state=3)
    rng = np.random.default_rng(0)
    m = SoftmaxModel(rng.standard_normal((30, 3)), rng.standard_normal(3))
    np.testing.assert_allclose(m.predict_proba(X), m.predict_proba(X.toarray()), rtol=1e-13)
    np.testing.assert_array_equal(m.predict(X.tocoo()), m.predict(X.toarray()))
    lg = LogisticModel(rng.standard_normal(30), 0.2)
    np.testing.assert_allclose(lg.predict_proba(sp.csc_matrix(X)), lg.predict_proba(X.toarray()), rtol=1e-13)
    with pytest.raises(UserError, match="30 feature columns"):
        m.predict(sp.random(5, 29, format="csr"))
