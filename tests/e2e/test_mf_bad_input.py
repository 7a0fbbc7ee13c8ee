"""Bad recommender input: one sentence from rank 0, exit code 1 on every rank, no hang."""

import re
import time

import h5py
import numpy as np

from mpirun import ROOT, run_mpi

JOB = ROOT / "jobs" / "mf_synthetic.toml"
SMALL = ["--set", "data.chunk_rows=10", "--set", "model.rank=3", "--set", "train.steps=3"]


def expect_error(args, pattern, n=2):
    t0 = time.monotonic()
    proc = run_mpi(n, [JOB, *args], timeout=90)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, proc.stderr  # one sentence, printed once by rank 0
    assert "Traceback" not in proc.stderr
    assert re.search(pattern, errors[0]), errors[0]
    assert elapsed < 60
    return errors[0]


def ratings_file(path, users=40, items=12, empty=False):
    rng = np.random.default_rng(0)
    r, c = np.nonzero(rng.random((users, items)) < 0.5)
    v = rng.standard_normal(r.size)
    if empty:
        r, c, v = r[:0], c[:0], v[:0]
    with h5py.File(path, "w") as f:
        f["rows"], f["cols"], f["vals"] = r, c, v
        f.attrs["shape"] = [users, items]
    return path


def test_non_finite_rating(tmp_path, what="nan"):  # inf: tests/unit/test_mf_data.py
    path = ratings_file(tmp_path / "r.h5")
    with h5py.File(path, "r+") as f:
        at = int(np.searchsorted(f["rows"][()], 35))  # a user of the second rank's shard (users 20-39)
        f["vals"][at] = float(what)
        user = int(f["rows"][at])
    expect_error(["--out", tmp_path / "run", *SMALL, "--set", f"data.path={path}"],
                 rf"^error \(rank 1\): rating {at} in .*r\.h5 \(user {user}, item \d+\) is {what}: the ratings "
                 rf"must be finite numbers")


def test_index_outside_the_shape(tmp_path):
    path = ratings_file(tmp_path / "r.h5")
    with h5py.File(path, "r+") as f:
        f["cols"][17] = 12
        user = int(f["rows"][17])
    expect_error(["--out", tmp_path / "run", *SMALL, "--set", f"data.path={path}"],
                 rf"rating 17 in .*r\.h5 has \(user {user}, item 12\) outside the shape 40 x 12")


def test_rank_larger_than_the_matrix_allows(tmp_path):
    expect_error(["--out", tmp_path / "run", "--set", "data.rows=20", "--set", "data.cols=6", "--set",
                  "data.chunk_rows=10", "--set", "model.rank=7"],
                 r"^error: model\.rank=7 exceeds min\(users, items\) = min\(20, 6\) = 6")


def test_empty_ratings_file(tmp_path):
    path = ratings_file(tmp_path / "r.h5", empty=True)
    expect_error(["--out", tmp_path / "run", *SMALL, "--set", f"data.path={path}"],
                 r"^error: ratings file .*r\.h5 is empty: /rows, /cols and /vals hold no ratings")
