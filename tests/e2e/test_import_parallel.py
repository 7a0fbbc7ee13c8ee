"""Parallel import under real mpiexec: the same bytes at -n 1, 2 and 3; bad input: one sentence, exit 1,
no output; a CSV given as data.path names the import command."""

import filecmp
import json
import os

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("mmh3")

from mpirun import run_mpi  # noqa: E402


def _csv(path, rows=3000, seed=0):
    rng = np.random.default_rng(seed)
    cats = np.array(["red", "green", "blue", "cyan"])
    with open(path, "w") as fh:
        fh.write("a,b,color,c,label\n")
        for i in range(rows):
            a = "" if rng.random() < 0.1 else f"{rng.standard_normal():.6f}"
            b = "NA" if rng.random() < 0.05 else f"{rng.integers(0, 100)}"
            fh.write(f"{a},{b},{cats[rng.integers(0, 4)]},{rng.random():.4f},{['yes', 'no'][i % 2]}\n")
    return str(path)


def _import(n, args, tmp_path):
    proc = run_mpi(n, ["import", *map(str, args)], module="lepton_hpc.data", timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_csv_same_bytes_at_any_rank_count(tmp_path):
    src = _csv(tmp_path / "d.csv")
    common = ["csv", "d.csv", "--target", "label", "--categorical", "color", "--missing", "median",
              "--missing-indicator", "--block-bytes", "4000", "--chunk-rows", "500"]
    for n in (1, 2, 3):
        _import(n, [*common, "--out", f"n{n}.h5"], tmp_path)
    assert filecmp.cmp(tmp_path / "n1.h5", tmp_path / "n2.h5", shallow=False)
    assert filecmp.cmp(tmp_path / "n1.h5", tmp_path / "n3.h5", shallow=False)
    assert os.path.getsize(src) > 4000 * 3  # several blocks per rank at -n 3


def test_text_same_bytes_and_sklearn_features(tmp_path):
    sk_text = pytest.importorskip("sklearn.feature_extraction.text")
    import h5py
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    words = "the quick brown fox jumps over a lazy dog café naïve résumé 42 x y".split()
    docs = [" ".join(rng.choice(words, rng.integers(0, 15))) for _ in range(800)]
    with open(tmp_path / "d.jsonl", "w", encoding="utf-8") as fh:
        for i, d in enumerate(docs):
            fh.write(json.dumps({"body": d, "tag": f"t{i % 3}"}) + "\n")
    common = ["text", "d.jsonl", "--text-column", "body", "--label-column", "tag", "--ngrams", "1,2",
              "--hash-bits", "10", "--block-bytes", "5000"]
    for n in (1, 3):
        _import(n, [*common, "--out", f"n{n}.h5"], tmp_path)
    _import(2, [*common, "--tfidf", "--out", "tfidf.h5"], tmp_path)
    assert filecmp.cmp(tmp_path / "n1.h5", tmp_path / "n3.h5", shallow=False)
    hv = sk_text.HashingVectorizer(n_features=2**10, ngram_range=(1, 2))
    tfidf = sk_text.TfidfTransformer().fit_transform(
        sk_text.HashingVectorizer(n_features=2**10, ngram_range=(1, 2), norm=None).transform(docs))
    for name, want in (("n1.h5", hv.transform(docs)), ("tfidf.h5", tfidf)):
        with h5py.File(tmp_path / name, "r") as f:
            g = f["X"]
            assert g.attrs["format"] == "csr"
            X = sp.csr_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=tuple(g.attrs["shape"]))
            assert [v.decode() if isinstance(v, bytes) else v for v in f["y"].attrs["classes"]] == ["t0", "t1", "t2"]
            np.testing.assert_array_equal(f["y"][:], [i % 3 for i in range(800)])
        assert abs(X - want).max() < 1e-12


@pytest.mark.parametrize("body,args,pattern", [
    ("a,b,label\n" + "1,2,x\n" * 300 + "1,zz,y\n" + "1,2,y\n" * 300, [],
     r"d.csv line 302: column 'b' has non-numeric value 'zz'"),
    ("a,b,label\n" + "1,2,x\n" * 300 + "1,2\n" + "1,2,y\n" * 300, [], r"d.csv line 302: expected 3 fields, found 2"),
    ("a,b,label\n" + "1,2,x\n" * 300 + "1,2,\n" + "1,2,y\n" * 300, [], r"d.csv line 302: the target 'label' is missing"),
    ("a,b,label\n1,2,x\n", ["--drop", "nope"], r"d.csv line 1: --drop names no column 'nope'"),
])
def test_bad_csv_one_sentence_every_rank(tmp_path, body, args, pattern):
    import re

    (tmp_path / "d.csv").write_text(body)
    proc = run_mpi(3, ["import", "csv", "d.csv", "--target", "label", "--block-bytes", "500", *args,
                       "--out", "o.h5"], module="lepton_hpc.data", timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(pattern, errors[0]), errors[0]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(("o.h5", ".o.h5"))]


def test_train_on_a_csv_names_the_import(tmp_path):
    _csv(tmp_path / "d.csv", rows=20)
    proc = run_mpi(2, ["--set", f"data.path={tmp_path / 'd.csv'}", "--out", str(tmp_path / "run")], timeout=120)
    assert proc.returncode == 1
    assert f"python -m lepton_hpc.data import csv {tmp_path / 'd.csv'}" in proc.stderr, proc.stderr
