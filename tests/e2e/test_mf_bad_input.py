"""Bad recommender input: one sentence from rank 0, exit code 1 on every rank, no hang.

One launch: a bad rating seen only by rank 1. The other bad files are reader errors, tested on
the reader (tests/unit/test_mf_data.py: outside the shape, empty, malformed, inf), and a rank
too large fails on every rank in-process (tests/mpi/test_mf.py::test_bad_rank_fails_on_every_rank_together).
"""

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


def ratings_file(path, users=40, items=12):
    rng = np.random.default_rng(0)
    r, c = np.nonzero(rng.random((users, items)) < 0.5)
    v = rng.standard_normal(r.size)
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


def test_a_glm_penalty_on_a_recommender_is_refused(tmp_path):
    for penalty in ("l1", "elasticnet"):
        expect_error(["--out", tmp_path / penalty, *SMALL, "--set", f"model.penalty={penalty}"],
                     rf"model.penalty='{penalty}' does not apply to model.kind=mf, whose penalty is L2 on the "
                     r"factors with strength model.reg")
    assert not any(tmp_path.iterdir())
