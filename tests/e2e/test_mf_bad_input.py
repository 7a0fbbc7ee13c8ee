"""Bad recommender input: one sentence from rank 0, exit code 1 on every rank, no hang.

Launches: a bad rating and a repeated (user, item) pair seen only by rank 1, a repeated pair of
interaction counts (model.feedback=implicit). The other bad files are reader errors, tested on
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


def _with_repeat(path, user):
    """A ratings file whose ``user`` rates one item twice (not next to each other); returns (item, a, b)."""
    with h5py.File(path, "r+") as f:
        rows, cols = f["rows"][()], f["cols"][()]
        a, b = (int(x) for x in np.searchsorted(rows, [user, user + 1]))
        assert b - a >= 3
        cols[b - 1] = cols[a]
        del f["cols"]
        f["cols"] = cols
        return int(cols[a]), a, b - 1


def test_a_repeated_user_item_pair(tmp_path):
    path = ratings_file(tmp_path / "r.h5")
    item, a, b = _with_repeat(path, 33)  # a user of the second rank's shard (users 20-39)
    before = path.read_bytes()
    expect_error(["--out", tmp_path / "run", *SMALL, "--set", f"data.path={path}"],
                 rf"^error \(rank 1\): ratings file .*r\.h5 holds the pair \(user 33, item {item}\) twice "
                 rf"\(ratings {a}, {b}\); each \(user, item\) pair must appear once: de-duplicate the file, "
                 r"e\.g\. average the repeated ratings")
    assert path.read_bytes() == before and not (tmp_path / "run").exists()


def test_a_repeated_pair_of_interaction_counts(tmp_path):
    path = ratings_file(tmp_path / "c.h5")
    with h5py.File(path, "r+") as f:
        f["vals"][...] = np.arange(f["vals"].shape[0]) % 3 + 1.0
    item, a, b = _with_repeat(path, 5)
    args = ["--out", tmp_path / "run", "--set", f"data.path={path}", "--set", "data.chunk_rows=10",
            "--set", "model.rank=3", "--set", "train.steps=2"]
    t0 = time.monotonic()
    proc = run_mpi(2, [ROOT / "jobs" / "mf_implicit.toml", *args], timeout=90)
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(rf"^error: ratings file .*c\.h5 holds the pair \(user 5, item {item}\) twice \(ratings {a}, "
                     rf"{b}\);.*\(sum repeated interaction counts\)$", errors[0]), errors[0]
    assert time.monotonic() - t0 < 60 and not (tmp_path / "run").exists()
