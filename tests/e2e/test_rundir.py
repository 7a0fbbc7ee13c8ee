"""A run directory that cannot be corrupted (issue 11 §2), through the real CLI and real mpiexec."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import h5py

from mpirun import ROOT, final_params, mpiexec, rank_env, run_mpi, summary

SMALL = ["--set", "data.rows=2000", "--set", "data.cols=4", "--set", "data.chunk_rows=500",
         "--set", "train.tol=0", "--set", "checkpoint.every=5"]


def one_error(proc) -> str:
    assert proc.returncode == 1, f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


def tree(path):
    """Every file under ``path`` with its bytes (what a refused start must leave as it was; the lock
    file only records who held it last)."""
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
            and p.name != ".lock"}


def test_a_failed_start_leaves_nothing_behind(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    err = one_error(run_mpi(2, ["--out", out, *SMALL, "--set", "data.path=/no/such/file.h5"]))
    assert "does not exist" in err
    assert not (tmp_path / "a").exists()  # not even the folders it would have made
    empty = tmp_path / "empty"
    empty.mkdir()
    one_error(run_mpi(2, ["--out", empty, *SMALL, "--set", "model.kind=logistic", "--set", "train.solver=gram"]))
    assert list(empty.iterdir()) == []


def test_out_that_is_not_a_run_directory_is_refused(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    err = one_error(run_mpi(2, ["--out", mine, *SMALL, "--set", "train.steps=3"]))
    assert err == (f"error: --out {mine} exists and is not a run directory (no config.toml); choose a new or "
                   f"empty --out so nothing of yours is overwritten")
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    one_error(run_mpi(2, ["--out", mine, *SMALL, "--resume", "auto"]))
    # a finished run: a fresh start on it is refused too (it would overwrite config, metrics, summary)
    run = tmp_path / "run"
    assert run_mpi(2, ["--out", run, *SMALL, "--set", "train.steps=5"]).returncode == 0
    before = tree(run)
    assert "already holds checkpoints; pass --resume auto" in one_error(
        run_mpi(2, ["--out", run, *SMALL, "--set", "train.steps=5"]))
    assert tree(run) == before


def test_resume_auto_uses_the_runs_own_config_and_refuses_changes_to_the_result(tmp_path):
    run, job = tmp_path / "run", tmp_path / "job.toml"
    job.write_text("[data]\nrows = 2000\ncols = 4\nchunk_rows = 500\n[train]\nsteps = 10\ntol = 0\n"
                   "[optimizer]\nname = \"constant\"\nlearning_rate = 0.05\n[checkpoint]\nevery = 5\n")
    assert run_mpi(2, [job, "--out", run]).returncode == 0
    before = tree(run)
    # anything that alters the result so far: refused in one sentence, nothing rewritten
    for bad, key in ((["--set", "optimizer.learning_rate=0.2"], "optimizer.learning_rate"),
                     (["--set", "data.seed=3"], "data.seed"), (["--set", "comm.reduction=fast"], "comm.reduction")):
        err = one_error(run_mpi(2, ["--out", run, "--resume", "auto", *bad]))
        assert f"--resume auto continues {run} with its own config.toml, where {key} = " in err, err
        assert "would change the result so far; on resume only train.steps, " in err
        assert tree(run) == before
    # the job file edited since: the same refusal
    job.write_text(job.read_text().replace("learning_rate = 0.05", "learning_rate = 0.06"))
    assert "optimizer.learning_rate = 0.05" in one_error(run_mpi(2, [job, "--out", run, "--resume", "auto"]))
    assert tree(run) == before
    # other data (a file at the same path would be the same): refused by the fingerprint, config kept
    other = tmp_path / "other.h5"
    assert subprocess.run([sys.executable, "-m", "lepton_hpc.data", "synth", "linear", "--rows", "2000", "--cols",
                           "4", "--seed", "9", "--out", str(other)], env=rank_env(), timeout=60).returncode == 0
    err = one_error(run_mpi(2, ["--out", run, "--resume", "auto", "--set", f"data.path={other}"]))
    assert "was written for other data" in err
    assert tree(run) == before
    # no job file at all, only what may change: continues with the run's own config, bit for bit
    proc = run_mpi(3, ["--out", run, "--resume", "auto", "--set", "train.steps=20", "--set", "train.log_every=2"])
    assert proc.returncode == 0, proc.stderr
    assert "resumed from step 10" in proc.stdout
    assert summary(run)["job"] == "job" and summary(run)["steps"] == 20
    straight = tmp_path / "straight"
    assert run_mpi(1, [job, "--out", straight, "--set", "optimizer.learning_rate=0.05",
                       "--set", "train.steps=20"]).returncode == 0
    assert final_params(run) == final_params(straight)


def test_a_second_run_on_the_same_out_cannot_write_and_a_killed_run_does_not_block(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # another holder of the lock (as a running rank 0 would be): refused, nothing written
    with open(run / ".lock", "w") as held:
        held.write("pid 1 on elsewhere\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        err = one_error(run_mpi(2, ["--out", run, *SMALL, "--set", "train.steps=5"]))
        assert err == (f"error: run directory {run} is in use by another run (pid 1 on elsewhere holds "
                       f"{run / '.lock'}); wait for it to end or choose another --out")
        assert sorted(p.name for p in run.iterdir()) == [".lock"]
    # a run killed outright (SIGKILL: no cleanup at all) leaves no stuck lock
    args = ["--out", str(run), *SMALL, "--set", "data.rows=200000", "--set", "train.steps=100000",
            "--set", "checkpoint.every=2"]
    proc = subprocess.Popen([mpiexec(), "-n", "2", sys.executable, "-m", "lepton_hpc.train", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=rank_env(), cwd=ROOT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((run / "checkpoints").glob("*.commit")):
            time.sleep(0.05)
        # while it runs, a second start on the same --out is refused
        assert "is in use by another run (pid " in one_error(run_mpi(2, [*args, "--resume", "auto"]))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert (run / ".lock").exists()
    from lepton_hpc import checkpoint
    step = checkpoint.latest_local(run / "checkpoints", warn=lambda m: None).step
    resumed = run_mpi(2, [*args, "--set", f"train.steps={step + 2}", "--resume", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {step}" in resumed.stdout and summary(run)["steps"] == step + 2


def _start(run, n, args):
    return subprocess.Popen([mpiexec(), "-n", str(n), sys.executable, "-m", "lepton_hpc.train", "--out", str(run),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=rank_env(),
                            cwd=ROOT, start_new_session=True)  # its own process group, like a terminal's job


def _wait_for_steps(run, n_lines, proc):
    deadline = time.monotonic() + 60
    metrics = run / "metrics.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= n_lines:
            return
        time.sleep(0.02)
    raise AssertionError("the run did not start stepping")


def test_ctrl_c_checkpoints_every_rank_exits_130_and_resumes_with_the_same_bits(tmp_path):
    args = [*SMALL, "--set", "data.rows=200000", "--set", "data.cols=8", "--set", "checkpoint.every=0",
            "--set", "optimizer.name=constant", "--set", "optimizer.learning_rate=0.001",
            "--set", "train.log_every=1"]
    run = tmp_path / "run"
    proc = _start(run, 3, [*args, "--set", "train.steps=100000"])
    try:
        _wait_for_steps(run, 3, proc)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: mpiexec forwards it
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    k = summary(run)["steps"]
    assert summary(run)["stop_reason"] == "interrupt" and summary(run)["exit_code"] == 130
    assert f"interrupted (Ctrl-C): every rank stopped at step {k} and checkpointed it; exiting with 130" in out
    with h5py.File(run / "checkpoints" / f"step-{k:08d}.h5", "r") as f:
        assert json.loads(f.attrs["loop"])["step"] == k
    total = k + 6
    resumed = run_mpi(2, ["--out", run, *args, "--set", f"train.steps={total}", "--resume", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    straight = tmp_path / "straight"
    assert run_mpi(1, ["--out", straight, *args, "--set", f"train.steps={total}"]).returncode == 0
    assert final_params(run) == final_params(straight)


def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    run = tmp_path / "run"
    args = [*SMALL, "--set", "data.rows=200000", "--set", "train.steps=100000", "--set", "train.log_every=1",
            "--set", "checkpoint.every=3"]
    proc = _start(run, 2, args)
    try:
        _wait_for_steps(run, 4, proc)
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 15
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    from lepton_hpc import checkpoint
    assert checkpoint.latest_local(run / "checkpoints", warn=lambda m: None) is not None  # earlier ones intact


def _synth(path, *args):
    proc = subprocess.run([sys.executable, "-m", "lepton_hpc.data", "synth", *map(str, args), "--out", str(path)],
                          capture_output=True, text=True, env=rank_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_evaluate_and_predict_check_the_data_fingerprint(tmp_path):
    data, other = tmp_path / "d.h5", tmp_path / "other.h5"
    _synth(data, "linear", "--rows", 2000, "--cols", 4)
    _synth(other, "linear", "--rows", 2000, "--cols", 4, "--seed", 5)
    run = tmp_path / "run"
    assert run_mpi(2, ["--out", run, *SMALL, "--set", "train.steps=5", "--set", f"data.path={data}",
                       "--set", "data.test_fraction=0.2"]).returncode == 0
    fp = summary(run)["data"]["fingerprint"]
    ok = run_mpi(3, [run], module="lepton_hpc.evaluate")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["data_check"] == {"path": str(data), "explicit": False, "fingerprint": fp,
                                                   "training_fingerprint": fp, "same_as_training": True}
    # the run's data file replaced since training: refused unless named with --data
    data.write_bytes(other.read_bytes())
    err = one_error(run_mpi(2, [run], module="lepton_hpc.evaluate"))
    assert f"the data at {data} is not what" in err and f"pass --data {data} to score it anyway" in err
    scored = run_mpi(2, [run, "--data", data], module="lepton_hpc.evaluate")
    assert scored.returncode == 0, scored.stderr
    check = json.loads(scored.stdout)["data_check"]
    assert check["explicit"] is True and check["same_as_training"] is False and check["training_fingerprint"] == fp
    assert json.loads((run / "evaluation-d.json").read_text())["data_check"] == check
    # predict always names its data: it records whether they are the training data
    _synth(tmp_path / "again.h5", "linear", "--rows", 2000, "--cols", 4)  # the training rows, byte for byte
    for path, same in ((tmp_path / "again.h5", True), (other, False)):
        pred = run_mpi(2, [run, "--data", path, "--out", tmp_path / "p.h5"], module="lepton_hpc.predict")
        assert pred.returncode == 0, pred.stderr
        assert json.loads(pred.stdout)["data_check"]["same_as_training"] is same
        with h5py.File(tmp_path / "p.h5", "r") as f:
            assert json.loads(f.attrs["data_check"])["same_as_training"] is same


def test_predict_of_a_recommender_refuses_changed_ratings_unless_named(tmp_path):
    ratings, other = tmp_path / "r.h5", tmp_path / "o.h5"
    common = ["--users", 200, "--items", 50, "--rank", 4, "--density", 0.2, "--noise", 0.1, "--chunk-rows", 50]
    _synth(ratings, "mf", *common)
    _synth(other, "mf", *common, "--seed", 3)
    run = tmp_path / "run"
    job = ["--set", "model.kind=mf", "--set", "model.rank=4", "--set", "train.solver=als", "--set", "train.steps=2",
           "--set", f"data.path={ratings}", "--set", "data.chunk_rows=50", "--set", "model.reg=1.0"]
    assert run_mpi(2, ["--out", run, *job]).returncode == 0
    args = [run, "--top-k", 3, "--out", tmp_path / "top.h5"]
    ok = run_mpi(2, args, module="lepton_hpc.predict")
    assert ok.returncode == 0 and json.loads(ok.stdout)["data_check"]["same_as_training"] is True, ok.stderr
    ratings.write_bytes(other.read_bytes())
    err = one_error(run_mpi(2, args, module="lepton_hpc.predict"))
    assert f"the ratings at {ratings} are not what" in err and f"pass --data {ratings}" in err
    named = run_mpi(2, [*args, "--data", ratings], module="lepton_hpc.predict")
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["data_check"]["same_as_training"] is False


def test_resume_from_a_checkpoint_file_uses_the_config_it_was_written_with(tmp_path):
    """``--resume CHECKPOINT`` without a job file continues that run's config (not the default job's):
    into a new --out, at another rank count, with the bits of the run itself."""
    run, branch = tmp_path / "run", tmp_path / "branch"
    assert run_mpi(2, ["--out", run, *SMALL, "--set", "train.steps=10", "--set", "model.reg=0.01"]).returncode == 0
    ckpt = run / "checkpoints" / "step-00000005.h5"
    proc = run_mpi(3, ["--resume", ckpt, "--out", branch, "--set", "train.steps=10"])
    assert proc.returncode == 0, proc.stderr
    assert final_params(branch) == final_params(run)
    assert (branch / "config.toml").read_text() == (run / "config.toml").read_text()
    err = one_error(run_mpi(2, ["--resume", ckpt, "--out", tmp_path / "other", "--set", "model.reg=0.5"]))
    assert f"--resume {ckpt} continues with the config it was written with, where model.reg = 0.01" in err
    assert "give a job file to branch with other settings" in err and not (tmp_path / "other").exists()


def test_resume_from_a_checkpoint_into_its_own_run_keeps_the_run_config(tmp_path):
    """``--out RUN --resume RUN/checkpoints/step-N.h5`` obeys RUN's config.toml like --resume auto:
    a job file or --set may not change a key that alters the result, and config.toml stays as it was."""
    run = tmp_path / "run"
    assert run_mpi(2, ["--out", run, *SMALL, "--set", "train.steps=10"]).returncode == 0
    before = tree(run)
    ckpt = run / "checkpoints" / "step-00000005.h5"
    job = tmp_path / "job.toml"
    job.write_text('[model]\npenalty = "l2"\nreg = 0.5\n')
    err = one_error(run_mpi(2, [job, "--out", run, "--resume", ckpt]))
    assert f"--resume {ckpt} continues {run} with its own config.toml, where " in err, err
    assert tree(run) == before
    ok = run_mpi(2, ["--out", run, "--resume", ckpt, "--set", "train.steps=12"])
    assert ok.returncode == 0, ok.stderr
    assert "steps = 12" in (run / "config.toml").read_text()
