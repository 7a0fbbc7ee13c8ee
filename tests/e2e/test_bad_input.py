"""Every bad input: one sentence from rank 0, exit 1 on every rank, no hang, no damaged checkpoint."""

import hashlib
import shutil
import time

import h5py
import numpy as np
import pytest

from mpirun import ROOT, run_mpi

N_RANKS = 3
SMALL = ["--set", "data.rows=3000", "--set", "data.cols=4", "--set", "data.chunk_rows=500",
         "--set", "train.steps=10", "--set", "train.tol=0"]


def expect_error(args, pattern, env=None, n=N_RANKS):
    t0 = time.monotonic()
    proc = run_mpi(n, args, timeout=90, env=env)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error")]
    assert len(errors) == 1, proc.stderr  # one sentence, from rank 0 only
    assert "Traceback" not in proc.stderr
    import re
    assert re.search(pattern, errors[0]), errors[0]
    assert elapsed < 60
    return errors[0]


def make_file(path, X, y, x_name="X", y_name="y"):
    with h5py.File(path, "w") as f:
        f[x_name] = X
        f[y_name] = y
    return path


def data(rows=3000, cols=4):
    rng = np.random.default_rng(0)
    return rng.standard_normal((rows, cols)), rng.standard_normal(rows)


def test_non_finite_rows_seen_only_by_rank_1_name_the_first_bad_row(tmp_path):
    # inf, NaN targets, rows on other ranks: tests/unit/test_shard_errors.py and tests/mpi/test_glm_loop.py
    X, y = data()
    X[1234, 2] = np.nan  # chunk 2 of 6: rank 1's shard
    X[1235, 0] = np.nan  # a later bad row too
    f = make_file(tmp_path / "d.h5", X, y)
    expect_error(["--out", tmp_path / "r", *SMALL, "--set", f"data.path={f}"],
                 r"NaN or Inf at row 1234 \(the first bad row\)")


def test_values_whose_squares_overflow_are_one_sentence(tmp_path):
    X, y = data()
    X[:, 1] *= 1e200  # finite, but XᵀX overflows float64 (it raised LinAlgError from eigvalsh)
    f = make_file(tmp_path / "d.h5", X, y)
    expect_error(["--out", tmp_path / "r", *SMALL, "--set", f"data.path={f}"],
                 r"sums of squares overflow float64 in .*d\.h5 .*scale those columns down")
    assert not (tmp_path / "r").exists()


def test_unknown_config_key_lists_valid_ones(tmp_path):
    expect_error(["--out", tmp_path / "r", "--set", "train.stepz=5"],
                 r"unknown config key train\.stepz; valid keys in \[train\]: steps, solver, ")


def test_slurm_task_count_mismatch(tmp_path):
    # What a PMI mismatch looks like from inside: Slurm says 10 tasks, MPI sees 3.
    expect_error(["--out", tmp_path / "r", *SMALL], r"Slurm started 10 tasks but MPI sees a world of 3",
                 env={"SLURM_PROCID": "0", "SLURM_NTASKS": "10"})


def _digests(run):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((run / "checkpoints").glob("step-*.h5"))}


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """One fresh 10-step run with checkpoints at 5 and 10, made once for the tests that damage a copy."""
    run = tmp_path_factory.mktemp("trained") / "r"
    proc = run_mpi(2, ["--out", run, *SMALL, "--set", "checkpoint.every=5", "--set", "checkpoint.keep=5"])
    assert proc.returncode == 0, proc.stderr
    return run


@pytest.fixture
def trained(trained_once, tmp_path):
    """A private copy of the trained run (each test may corrupt its own)."""
    run = tmp_path / "r"
    shutil.copytree(trained_once, run)
    return run


def test_corrupt_checkpoint_on_explicit_resume(trained):
    run = trained
    newest = run / "checkpoints" / "step-00000010.h5"
    with h5py.File(newest, "r+") as f:
        f["model/w"][0] += 1.0
    before = _digests(run)
    expect_error(["--out", run, *SMALL, "--set", "train.steps=20", "--resume", newest],
                 r"checkpoint .*step-00000010\.h5 fails its checksum")
    assert _digests(run) == before


def test_auto_resume_skips_a_corrupt_newest_and_fails_if_none_valid(trained):
    run = trained
    ckpts = sorted((run / "checkpoints").glob("step-*.h5"))
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:300])  # a torn write
    proc = run_mpi(N_RANKS, ["--out", run, *SMALL, "--set", "train.steps=12", "--resume", "auto"])
    assert proc.returncode == 0, proc.stderr
    assert "warning: skipping checkpoint" in proc.stdout and "resumed from step 5" in proc.stdout
    for p in sorted((run / "checkpoints").glob("step-*.h5")):
        p.write_bytes(b"garbage")
    expect_error(["--out", run, *SMALL, "--set", "train.steps=20", "--resume", "auto"],
                 r"none of the \d+ checkpoints in .* is valid")


def test_checkpoint_for_other_data_is_refused(trained):
    run = trained
    before = _digests(run)
    # --resume auto keeps the run's own config: other data or another model is refused up front
    expect_error(["--out", run, *SMALL, "--set", "data.seed=7", "--set", "train.steps=20", "--resume", "auto"],
                 r"where data\.seed = 0, but --set asks for 7, which would change the result so far")
    expect_error(["--out", run, *SMALL, "--set", "model.fit_intercept=false", "--set", "train.steps=20",
                  "--resume", "auto"], r"where model\.fit_intercept = True, but --set asks for False")
    # --resume PATH without a job file continues the checkpoint's own config: the same rule
    ckpt = sorted((run / "checkpoints").glob("step-*.h5"))[-1]
    fork = run.parent / "fork"
    expect_error(["--out", fork, *SMALL, "--set", "data.seed=7", "--set", "train.steps=20", "--resume", ckpt],
                 r"continues with the config it was written with, where data\.seed = 0, but --set asks for 7")
    # with a job file it starts a new run from the checkpoint: the data fingerprint and the parameters are checked
    job = run.parent / "branch.toml"
    job.write_text((ROOT / "jobs" / "default.toml").read_text())  # the run's job, with SMALL and the changes below
    expect_error([job, "--out", fork, *SMALL, "--set", "data.seed=7", "--set", "train.steps=20", "--resume", ckpt],
                 r"checkpoint in .* was written for other data")
    expect_error([job, "--out", fork, *SMALL, "--set", "model.fit_intercept=false", "--set", "train.steps=20",
                  "--resume", ckpt], r"holds parameters .* this job needs")
    assert not fork.exists()
    assert _digests(run) == before


def test_rerun_into_a_used_directory_needs_resume(trained):
    run = trained
    expect_error(["--out", run, *SMALL], r"already holds checkpoints; pass --resume auto")


def test_diverging_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "r"
    args = ["--out", run, *SMALL, "--set", "optimizer.name=constant", "--set", "optimizer.learning_rate=1e3",
            "--set", "train.steps=500", "--set", "checkpoint.every=1", "--set", "checkpoint.keep=2"]
    expect_error(args, r"the loss became (nan|inf) at step \d+ .* last good checkpoint is intact")
    from lepton_hpc import checkpoint
    state = checkpoint.latest_local(run / "checkpoints")
    assert np.all(np.isfinite(state.replicated("model/")["model/w"]))


def test_an_unhandled_exception_on_one_rank_aborts_the_job(tmp_path):
    (tmp_path / "crashy.py").write_text(
        "import os\n"
        "from lepton_hpc.optimizers import Optimizer\n"
        "class Crashy(Optimizer):\n"
        "    def _direction(self, w, gradient, eta):\n"
        "        if os.environ.get('PMI_RANK') == '1' and self.t == 3:\n"
        "            raise RuntimeError('a bug on one rank')\n"
        "        return gradient\n")
    t0 = time.monotonic()
    proc = run_mpi(N_RANKS, ["--out", tmp_path / "r", *SMALL, "--set", "optimizer.name=crashy:Crashy"],
                   env={"PYTHONPATH": str(tmp_path)}, timeout=90)
    assert proc.returncode != 0
    assert "a bug on one rank" in proc.stderr and "aborting all ranks" in proc.stderr
    assert time.monotonic() - t0 < 60
