"""slurm/train.sbatch on a real (single-node) Slurm cluster.

The cluster comes from the ``slurm`` fixture (tests/slurm/conftest.py): it
runs slurm/setup-single-node.sh when root and no cluster answers, else skips.
Every Slurm or MPI command has a timeout; every job a test submits is
cancelled at the end of the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, SETUP, TRAIN

JOB = ROOT / "jobs" / "default.toml"
TINY = ["--set", "data.rows=2000", "--set", "data.cols=4"]
# A run that lasts until it is signalled: a constant step never reaches the eta floor, and with
# train.tol = 0 only the step budget ends it (the Lepton schedule would end it in ~0.3 s, before
# a signal sent at the first checkpoint arrives).
LONG = [*TINY, "--set", "optimizer.name=constant", "--set", "optimizer.learning_rate=0.05", "--set", "train.tol=0"]


def _log(tmp_path: Path, job_id: str) -> str:
    path = tmp_path / f"slurm-{job_id}.out"
    return path.read_text(errors="replace") if path.exists() else f"(no {path})"


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _final_params(run_dir: Path) -> tuple[int, bytes]:
    """(step, bytes of /model/w and /model/b) of the newest checkpoint of a run."""
    import h5py

    ckpts = sorted((run_dir / "checkpoints").glob("step-*.h5"))
    assert ckpts, f"no checkpoint in {run_dir}"
    with h5py.File(ckpts[-1], "r") as f:
        data = f["model/w"][()].tobytes()
        if "model/b" in f:
            data += f["model/b"][()].tobytes()
    return int(ckpts[-1].stem.split("-")[1]), data


def _wait_for_checkpoint(slurm, job_id: str, run_dir: Path, tmp_path: Path, timeout: float = 300) -> None:
    """Wait until the trainer has written a checkpoint: it is in its loop, signal handlers set.

    (A SIGUSR1 that lands before the app installs its handler kills the ranks.)
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((run_dir / "checkpoints").glob("step-*.commit")):
            return
        state = slurm.show(job_id).get("JobState")
        if state not in ("PENDING", "CONFIGURING", "RUNNING") or "srun: error:" in _log(tmp_path, job_id):
            pytest.fail(f"job {job_id} is {state} before its first checkpoint:\n{_log(tmp_path, job_id)}")
        time.sleep(0.25)
    pytest.fail(f"job {job_id}: no checkpoint in {run_dir} within {timeout}s:\n{_log(tmp_path, job_id)}")


# ---------------------------------------------------------------- no cluster needed

def test_scripts_parse_and_header():
    for script in (SETUP, TRAIN):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
    header = [ln for ln in TRAIN.read_text().splitlines() if ln.startswith("#SBATCH")]
    text = "\n".join(header)
    for want in ("--requeue", "--open-mode=append", "--ntasks=10", "--output=slurm-%j.out"):
        assert f"#SBATCH {want}" in text, text
    assert re.search(r"#SBATCH --signal=B:USR1@\d+", text), text


def test_train_sbatch_outside_a_job_refuses():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", str(TRAIN), str(JOB)], capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 2
    assert "not inside a Slurm job" in proc.stderr


# ---------------------------------------------------------------- on the cluster

@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_setup_script_is_idempotent(slurm):
    if os.geteuid() != 0:
        pytest.skip("the setup script needs root")
    conf = Path("/etc/slurm/slurm.conf")
    if not conf.exists() or "slurm/setup-single-node.sh" not in conf.read_text(errors="replace"):
        pytest.skip("this Slurm cluster was not set up by slurm/setup-single-node.sh")
    t0 = time.monotonic()
    proc = slurm.run(["bash", SETUP], timeout=240)
    assert "already running" in proc.stdout, proc.stdout
    assert time.monotonic() - t0 < 60
    assert "idle" in proc.stdout or "mix" in proc.stdout or "alloc" in proc.stdout, proc.stdout


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_srun_pmi2_wires_up_pip_mpich(slurm, tmp_path):
    """srun --mpi=pmi2 gives the pip MPICH one world of 10; --mpi=none gives 10 worlds of 1."""
    if slurm.max_node_cpus < 10:
        pytest.skip(f"the node has {slurm.max_node_cpus} CPUs, 10 are needed")
    code = ("from mpi4py import MPI; c = MPI.COMM_WORLD; "
            "print(c.rank, c.size, c.allreduce(c.rank), flush=True)")
    proc = slurm.run(["srun", "--mpi=pmi2", "-n", "10", sys.executable, "-c", code], timeout=240,
                     env=slurm.env(), cwd=tmp_path)
    rows = sorted(tuple(map(int, ln.split())) for ln in proc.stdout.splitlines() if ln.strip())
    assert rows == [(r, 10, 45) for r in range(10)], proc.stdout + proc.stderr
    proc = slurm.run(["srun", "--mpi=none", "-n", "3", sys.executable, "-c", code], timeout=240,
                     env=slurm.env(), cwd=tmp_path)
    rows = [tuple(map(int, ln.split())) for ln in proc.stdout.splitlines() if ln.strip()]
    assert rows == [(0, 1, 0)] * 3, proc.stdout + proc.stderr


@pytest.mark.slurm
@pytest.mark.timeout(900)
def test_train_10_ranks_completes(slurm, tmp_path):
    """(a) sbatch --wait of a tiny 10-rank job: COMPLETED, world_size 10, default run dir."""
    if slurm.max_node_cpus < 10:
        pytest.skip(f"the node has {slurm.max_node_cpus} CPUs, 10 are needed")
    job_id, proc = slurm.sbatch(["--wait", "--ntasks=10", TRAIN, JOB, *TINY, "--set", "train.steps=50"],
                                cwd=tmp_path, wait=True, timeout=800)
    log = _log(tmp_path, job_id)
    info = slurm.show(job_id)
    assert proc.returncode == 0, f"sbatch --wait: {proc.returncode} {proc.stderr}\n{log}"
    assert info.get("JobState") == "COMPLETED", f"{info}\n{log}"
    assert info.get("ExitCode") == "0:0"
    assert info.get("Restarts") == "0"
    run_dir = tmp_path / "runs" / f"slurm-{job_id}"  # the script's default, relative to the submit dir
    summary = _summary(run_dir)
    assert summary["world_size"] == 10
    assert summary["exit_code"] == 0
    assert 0 < summary["steps"] <= 50  # the job may converge (train.tol) before step 50


@pytest.mark.slurm
@pytest.mark.timeout(600)
def test_pmi_mismatch_is_a_clear_error(slurm, tmp_path):
    """(b) srun --mpi=none: every rank is rank 0 of 1; the app must see SLURM_NTASKS=4 and stop."""
    job_id, proc = slurm.sbatch(["--wait", "--ntasks=4", TRAIN, JOB, *TINY, "--set", "train.steps=5",
                                 "--out", tmp_path / "run"],
                                cwd=tmp_path, env={"LEPTON_MPI": "none"}, wait=True, timeout=500)
    log = _log(tmp_path, job_id)
    info = slurm.show(job_id)
    assert proc.returncode == 1, f"{proc.returncode}\n{log}"
    assert info.get("JobState") == "FAILED", f"{info}\n{log}"
    assert info.get("ExitCode") == "1:0"
    assert info.get("Restarts") == "0"  # an error is not requeued
    assert "srun --mpi=none" in log
    assert re.search(r"4 tasks.*world of 1 rank", log), log
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.slurm
@pytest.mark.timeout(900)
def test_usr1_checkpoints_requeues_and_resumes_bitwise(slurm, tmp_path):
    """(c) USR1 to the batch shell -> forwarded to the ranks -> exit 75 -> requeue -> resume;
    the final /model/w equals an uninterrupted run's bit for bit."""
    n, steps = 4, 1200
    args = [JOB, *LONG, "--set", f"train.steps={steps}", "--set", "checkpoint.every=5"]
    run_dir = tmp_path / "run"
    job_id, _ = slurm.sbatch([f"--ntasks={n}", TRAIN, *args, "--out", run_dir], cwd=tmp_path)
    _wait_for_checkpoint(slurm, job_id, run_dir, tmp_path)

    slurm.run(["scancel", "--signal=USR1", "--batch", job_id])
    info = slurm.wait_for(job_id, lambda i: i.get("Restarts") == "1" and i.get("JobState") == "PENDING",
                          "requeue (Restarts=1, PENDING)", timeout=180)
    log = _log(tmp_path, job_id)
    assert "caught SIGUSR1" in log, log
    assert "requeue 1/" in log, log
    first_step, _ = _final_params(run_dir)
    assert 0 < first_step < steps, f"checkpoint step {first_step}\n{log}"
    # A requeued job waits about two minutes (BeginTime); release it sooner. Not at once: slurmd
    # refuses a credential of the requeued job created in the same second as the revocation of
    # its first run ("Job credential revoked", the job then FAILS), which is what BeginTime guards.
    time.sleep(3)
    slurm.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"])
    info = slurm.wait_done(job_id, timeout=600)
    log = _log(tmp_path, job_id)
    assert info.get("JobState") == "COMPLETED", f"{info}\n{log}"
    assert info.get("Restarts") == "1", info
    summary = _summary(run_dir)
    assert summary["exit_code"] == 0 and summary["steps"] == steps, summary
    assert summary["world_size"] == n

    # The uninterrupted reference: the same job under mpiexec, outside Slurm.
    ref_dir = tmp_path / "ref"
    env = {k: v for k, v in slurm.env().items() if not k.startswith(("SLURM_", "PMI_"))}
    env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    mpiexec = Path(sys.executable).parent / "mpiexec"
    proc = subprocess.run([str(mpiexec if mpiexec.exists() else "mpiexec"), "-n", str(n), sys.executable,
                           "-m", "lepton_hpc.train", *map(str, args), "--out", str(ref_dir)],
                          capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    step, got = _final_params(run_dir)
    ref_step, want = _final_params(ref_dir)
    assert step == ref_step == steps
    assert got == want, "resumed run differs from the uninterrupted one"


@pytest.mark.slurm
@pytest.mark.timeout(600)
def test_requeue_limit_exits_75(slurm, tmp_path):
    """With LEPTON_MAX_REQUEUES=0 a signalled job is not requeued: it fails with exit 75."""
    run_dir = tmp_path / "run"
    job_id, _ = slurm.sbatch(["--ntasks=2", TRAIN, JOB, *LONG, "--set", "train.steps=100000",
                              "--set", "checkpoint.every=5", "--out", run_dir],
                             cwd=tmp_path, env={"LEPTON_MAX_REQUEUES": "0"})
    _wait_for_checkpoint(slurm, job_id, run_dir, tmp_path)
    slurm.run(["scancel", "--signal=USR1", "--batch", job_id])
    info = slurm.wait_done(job_id, timeout=300)
    log = _log(tmp_path, job_id)
    assert info.get("JobState") == "FAILED", f"{info}\n{log}"
    assert info.get("ExitCode") == "75:0", info
    assert info.get("Restarts") == "0", info
    assert "requeues are used up" in log, log


@pytest.mark.slurm
@pytest.mark.timeout(600)
def test_scancel_is_not_requeued(slurm, tmp_path):
    """A plain scancel (SIGTERM to everything) lets the app checkpoint but does not requeue."""
    run_dir = tmp_path / "run"
    job_id, _ = slurm.sbatch(["--ntasks=2", TRAIN, JOB, *LONG, "--set", "train.steps=100000",
                              "--set", "checkpoint.every=5", "--out", run_dir],
                             cwd=tmp_path)
    _wait_for_checkpoint(slurm, job_id, run_dir, tmp_path)
    slurm.run(["scancel", job_id])
    info = slurm.wait_done(job_id, timeout=300)
    time.sleep(6)  # > KillWait (5 s in slurm/setup-single-node.sh): a wrongly issued requeue shows by now
    info = slurm.show(job_id)
    assert info.get("JobState") == "CANCELLED", f"{info}\n{_log(tmp_path, job_id)}"
    assert info.get("Restarts") == "0", f"{info}\n{_log(tmp_path, job_id)}"
