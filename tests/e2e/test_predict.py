"""``python -m lepton_hpc.predict`` through real mpiexec: predictions equal a serial numpy
reference from the checkpoint arrays, the same bits at 1 and 3 ranks, and bad inputs as one
sentence with exit 1. Checkpoints are written in-process with :func:`checkpoint.save` (the
format training writes), so their attrs (classes, feature_names) can be set."""

import json

import h5py
import numpy as np
import pytest
from mpi4py import MPI
from mpirun import run_mpi
from scipy.special import expit

from lepton_hpc import checkpoint
from lepton_hpc.checkpoint import Part
from lepton_hpc.config import load
from lepton_hpc.data.ratings import heldout_mask, synth_mf

N, D, CHUNK = 61, 5, 8  # 8 chunks: uneven over 3 ranks
NAMES = [f"f{i}" for i in range(D)]


def _run_dir(tmp, name, overrides, parts, attrs=None):
    cfg = load(None, [f"data.chunk_rows={CHUNK}", *overrides])
    run = tmp / name
    checkpoint.save(MPI.COMM_SELF, run / "checkpoints", 3, parts, {"config": cfg.to_toml(), **(attrs or {})}, 2)
    return run


def _data(path, X, names=NAMES):
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X)
        if names is not None:
            f["X"].attrs["feature_names"] = names
    return path


def _predict(n, run, data, out, *extra):
    return run_mpi(n, [run, "--data", data, "--out", out, *extra], module="lepton_hpc.predict")


def _read(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


def _glm_case(tmp, kind, rng):
    if kind == "softmax":
        W, b = rng.normal(size=(D, 3)), rng.normal(size=3)
        attrs = {"classes": json.dumps(["cat", "dog", "emu"])}
    else:
        W, b = rng.normal(size=D), np.float64(rng.normal())
        attrs = {"classes": json.dumps([-1, 1])} if kind == "logistic" else {}
    attrs["feature_names"] = json.dumps(NAMES)
    run = _run_dir(tmp, kind, [f"model.kind={kind}"], {"model/w": Part(W), "model/b": Part(b)}, attrs)
    return run, W, b


def _reference(kind, X, W, b):
    z = X @ W + b
    if kind == "linear":
        return {"pred": z}
    if kind == "logistic":
        p = expit(z)
        proba = np.column_stack([1 - p, p])
        return {"proba": proba, "label": np.array([-1, 1])[proba.argmax(1)]}
    e = np.exp(z - z.max(1, keepdims=True))
    proba = e / e.sum(1, keepdims=True)
    return {"proba": proba, "label": np.array([b"cat", b"dog", b"emu"], dtype=object)[proba.argmax(1)]}


@pytest.mark.parametrize("kind", ["linear", "logistic", "softmax"])
def test_glm_predictions_match_numpy_and_are_the_same_bits_at_1_and_3_ranks(tmp_path, kind):
    rng = np.random.default_rng(1)
    run, W, b = _glm_case(tmp_path, kind, rng)
    X = rng.normal(size=(N, D))
    data = _data(tmp_path / "x.h5", X)
    outs = {}
    for n, extra in ((1, []), (3, ["--checkpoint", run / "checkpoints" / "step-00000003.h5"])):
        proc = _predict(n, run, data, tmp_path / f"p{n}.h5", *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[n] = _read(tmp_path / f"p{n}.h5")
    ref = _reference(kind, X, W, b)
    assert set(outs[1]) == set(ref)
    for key, want in ref.items():
        if want.dtype.kind == "f":
            np.testing.assert_allclose(outs[1][key], want, rtol=1e-12, atol=1e-12)
        else:
            assert outs[1][key].tolist() == want.tolist()
        same = (lambda a: a.tolist()) if want.dtype == object else (lambda a: a.tobytes())
        assert same(outs[1][key]) == same(outs[3][key])  # bitwise, any rank count
    assert not list(tmp_path.glob(".p*.tmp"))


def test_recommender_top_k_matches_brute_force_at_1_and_3_ranks(tmp_path):
    users, items, rank, k = 23, 17, 3, 4
    ratings = tmp_path / "r.h5"
    synth_mf(str(ratings), users, items, rank, density=0.3, noise=0.1, seed=5, chunk_rows=CHUNK)
    rng = np.random.default_rng(2)
    U, V = rng.normal(size=(users, rank)), rng.normal(size=(items, rank))
    V[3] = V[5]  # a tie: item 3 must come before item 5
    parts = {"model/U": Part(U, (0, users, users)), "model/V": Part(V)}
    run = _run_dir(tmp_path, "mf", ["model.kind=mf", f"model.rank={rank}", f"data.path={ratings}",
                                    "data.seed=5", "data.test_fraction=0.2"], parts)
    outs = {}
    for n in (1, 3):
        proc = run_mpi(n, [run, "--top-k", k, "--out", tmp_path / f"rec{n}.h5"], module="lepton_hpc.predict")
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[n] = _read(tmp_path / f"rec{n}.h5")
    with h5py.File(ratings, "r") as f:
        r, c = f["rows"][()], f["cols"][()]
    train = ~heldout_mask(5, r, c, 0.2)
    S = U @ V.T
    S[r[train], c[train]] = -np.inf
    for u in range(users):
        cand = sorted((-S[u, i], i) for i in range(items) if np.isfinite(S[u, i]))[:k]
        assert outs[1]["items"][u].tolist() == [i for _, i in cand]
        np.testing.assert_allclose(outs[1]["scores"][u], [-s for s, _ in cand], rtol=1e-12)
    for key in ("items", "scores"):
        assert outs[1][key].dtype == (np.int64 if key == "items" else np.float64)
        assert outs[1][key].tobytes() == outs[3][key].tobytes()
    bad = run_mpi(2, [run, "--top-k", items + 1, "--out", tmp_path / "bad.h5"], module="lepton_hpc.predict")
    _one_sentence(bad, "--top-k must be in [1, 17]")
    assert not (tmp_path / "bad.h5").exists()


def _one_sentence(proc, *words):
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_bad_inputs_are_one_sentence_and_leave_no_file(tmp_path):
    rng = np.random.default_rng(3)
    run, _, _ = _glm_case(tmp_path, "linear", rng)
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n")
    _one_sentence(_predict(2, run, csv, tmp_path / "p.h5"), "is a CSV text file, not HDF5", "(n, 5)",
                  f"python -m lepton_hpc.data import csv {csv} --target COLUMN")
    wide = _data(tmp_path / "wide.h5", rng.normal(size=(9, D + 1)), names=None)
    _one_sentence(_predict(2, run, wide, tmp_path / "p.h5"), "6 features", "(n, 5)", "lepton_hpc.data import")
    (tmp_path / "folder").mkdir()
    _one_sentence(_predict(2, run, tmp_path / "folder", tmp_path / "p.h5"), "is a directory, not a file")
    renamed = _data(tmp_path / "renamed.h5", rng.normal(size=(9, D)), names=["f0", "f1", "zz", "f3", "f4"])
    _one_sentence(_predict(2, run, renamed, tmp_path / "p.h5"), "feature 2 is 'zz'", "'f2'")
    # the final name is a non-empty folder: refused before any work, nothing new is left anywhere
    good = _data(tmp_path / "good.h5", rng.normal(size=(20, D)))
    target = tmp_path / "out" / "taken.h5"
    (target / "inside").mkdir(parents=True)
    _one_sentence(_predict(2, run, good, target), f"cannot write {target}: it is a folder")
    assert [p.name for p in target.parent.iterdir()] == ["taken.h5"]
    assert [p.name for p in target.iterdir()] == ["inside"]
    assert not (tmp_path / "p.h5").exists()
