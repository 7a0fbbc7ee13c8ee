"""Sparse data end to end through real mpiexec: ``data synth sparse-logistic`` writes a CSR file,
``lepton_hpc.train`` fits it at 1 and 3 ranks (the same bits), ``lepton_hpc.evaluate`` and
``lepton_hpc.predict`` score it (predictions equal a scipy.sparse reference from the final
checkpoint, the same file at 1 and 3 ranks), and a bad CSR file is one sentence, exit 1."""

import json
import subprocess
import sys

import h5py
import numpy as np
import scipy.sparse as sp
from mpirun import ROOT, final_params, run_mpi, summary
from scipy.special import expit

TRAIN = ["--set", "model.kind=logistic", "--set", "data.chunk_rows=500", "--set", "train.steps=15",
         "--set", "optimizer.name=constant", "--set", "optimizer.learning_rate=1.0",
         "--set", "model.standardize=true", "--set", "model.penalty=l2", "--set", "model.reg=0.001",
         "--set", "data.test_fraction=0.2", "--set", "checkpoint.every=5"]


def _synth(path):
    r = subprocess.run([sys.executable, "-m", "lepton_hpc.data", "synth", "sparse-logistic", "--rows", "4000",
                        "--cols", "1024", "--nnz-per-row", "12", "--seed", "2", "--out", str(path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr


def _csr(path):
    with h5py.File(path, "r") as f:
        g = f["X"]
        return sp.csr_matrix((g["data"][()], g["indices"][()], g["indptr"][()]), shape=tuple(g.attrs["shape"]))


def test_sparse_train_evaluate_predict_at_1_and_3_ranks(tmp_path):
    data = tmp_path / "sparse.h5"
    _synth(data)
    runs = {}
    for n in (1, 3):
        out = tmp_path / f"run{n}"
        r = run_mpi(n, ["--set", f"data.path={data}", *TRAIN, "--out", out], timeout=240)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        runs[n] = out
    assert final_params(runs[1]) == final_params(runs[3])
    s = summary(runs[3])
    assert "sparse CSR" in s["data"]["source"] and s["data"]["cols"] == 1024
    assert s["metrics"]["test"]["accuracy"] > 0.7, s["metrics"]
    ev = run_mpi(3, [runs[3]], module="lepton_hpc.evaluate", timeout=120)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads(ev.stdout)["test"]["accuracy"] == s["metrics"]["test"]["accuracy"]
    preds = {}
    for n in (1, 3):
        p = tmp_path / f"pred{n}.h5"
        r = run_mpi(n, [runs[3], "--data", data, "--out", p], module="lepton_hpc.predict", timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        check = json.loads(r.stdout)["data_check"]  # the training file: its CSR fingerprint is the run's
        assert check["fingerprint"] == s["data"]["fingerprint"] and check["same_as_training"] is True, check
        preds[n] = p.read_bytes()
        with h5py.File(p, "r") as f:
            proba = f["proba"][()]
    assert preds[1] == preds[3]
    w, b = np.asarray(s["w"]), s["b"]
    ref = expit(_csr(data) @ w + b)
    np.testing.assert_allclose(proba[:, 1], ref, rtol=1e-10, atol=1e-13)


def test_a_bad_csr_file_is_one_sentence_on_every_rank(tmp_path):
    data = tmp_path / "bad.h5"
    _synth(data)
    with h5py.File(data, "r+") as f:
        f["X/indices"][7] = 1024  # a column past the last one
    r = run_mpi(2, ["--set", f"data.path={data}", *TRAIN, "--out", tmp_path / "r"], timeout=120)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "outside [0, 1024)" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not list((tmp_path / "r").glob("checkpoints/step-*.h5"))
