"""Fixtures for the Slurm tests: a single-node Slurm cluster and job helpers.

The ``slurm`` fixture makes sure a Slurm cluster answers: if ``sinfo`` does
not, and we are root, it runs ``slurm/setup-single-node.sh`` (installs and
starts slurmctld + slurmd + munge without systemd).  Otherwise the tests are
skipped with the reason -- or fail, when ``LEPTON_REQUIRE_SLURM=1`` (for CI,
so that a broken setup cannot hide behind a skip).

There is no accounting daemon: job states come from ``scontrol show job``
(finished jobs stay visible for MinJobAge seconds), never from ``sacct``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "slurm" / "setup-single-node.sh"
TRAIN = ROOT / "slurm" / "train.sbatch"
USABLE = {"idle", "mix", "alloc", "comp"}
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
          "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT"}


def _node_states() -> list[str]:
    if shutil.which("sinfo") is None:
        return []
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return proc.stdout.split() if proc.returncode == 0 else []


def _cluster_cpus() -> int:
    try:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %c"], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    seen = {}
    for line in proc.stdout.splitlines():
        name, _, cpus = line.partition(" ")
        if cpus.strip().isdigit():
            seen[name] = int(cpus)
    return max(seen.values(), default=0)


class Slurm:
    """Thin, hang-safe wrappers around sbatch/scontrol/scancel for the tests."""

    def __init__(self, max_node_cpus: int):
        self.max_node_cpus = max_node_cpus
        self.names: list[str] = []

    # -- environment -------------------------------------------------------
    @staticmethod
    def env(extra: dict | None = None) -> dict:
        """The submitter's environment: the jobs inherit it (sbatch --export=ALL)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env["LEPTON_PYTHON"] = sys.executable  # the venv's python, whatever PATH says
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    # -- commands ----------------------------------------------------------
    def run(self, cmd: list[str], timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def sbatch(self, args: list, cwd: Path, env: dict | None = None, wait: bool = False,
               timeout: float = 600) -> tuple[str, subprocess.CompletedProcess]:
        """``sbatch --parsable [--wait] args``; returns (job id, process).

        With ``wait`` the process's return code is the job's exit code.  Each
        job gets a unique name, so that the fixture can cancel it even when
        sbatch itself timed out before telling its id.
        """
        name = f"lepton-test-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        cmd = ["sbatch", "--parsable", f"--job-name={name}", *(["--wait"] if wait else []), *map(str, args)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                                  env=self.env(env))
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{' '.join(cmd)} did not return within {timeout}s; "
                                 f"{self.run(['squeue', '-n', name], check=False).stdout}") from exc
        lines = proc.stdout.split()
        job_id = lines[0].split(";")[0] if lines else ""
        if not job_id.isdigit():
            raise AssertionError(f"sbatch failed (rc {proc.returncode}): {proc.stdout}{proc.stderr}")
        return job_id, proc

    def show(self, job_id: str) -> dict:
        """``scontrol show job -o`` as a dict (JobState, Restarts, ExitCode, Reason, ...)."""
        proc = self.run(["scontrol", "show", "job", "-o", job_id], check=False, timeout=30)
        if proc.returncode != 0:
            return {}
        return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))

    def wait_for(self, job_id: str, pred, what: str, timeout: float = 300, poll: float = 0.5) -> dict:
        deadline = time.monotonic() + timeout
        info = {}
        while time.monotonic() < deadline:
            info = self.show(job_id)
            if info and pred(info):
                return info
            time.sleep(poll)
        raise AssertionError(f"job {job_id}: no {what} within {timeout}s; last scontrol: {info}")

    def wait_done(self, job_id: str, timeout: float = 600) -> dict:
        """Wait until the job has left every active state (requeues included)."""
        return self.wait_for(job_id, lambda i: i.get("JobState") not in ACTIVE, "final state", timeout,
                             poll=1.0)

    def cancel_all(self) -> None:
        """Cancel every job these helpers submitted that may still be queued or running."""
        for name in self.names:
            subprocess.run(["scancel", f"--name={name}"], capture_output=True, timeout=30)
        self.names = []


@pytest.fixture(scope="session")
def slurm_cluster() -> Slurm:
    require = os.environ.get("LEPTON_REQUIRE_SLURM") == "1"

    def unavailable(reason: str):
        if require:
            pytest.fail(f"{reason} (LEPTON_REQUIRE_SLURM=1)")
        pytest.skip(reason)

    if not USABLE.intersection(_node_states()):
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            unavailable("no Slurm cluster answers (sinfo) and not root, so slurm/setup-single-node.sh "
                        "cannot install one")
        if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
            unavailable("no Slurm cluster answers and there is neither apt-get nor slurmctld to set one up")
        try:
            proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            unavailable("slurm/setup-single-node.sh did not finish within 900 s")
        if proc.returncode != 0:
            unavailable(f"slurm/setup-single-node.sh failed (exit {proc.returncode}):\n"
                        f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        if not USABLE.intersection(_node_states()):
            unavailable("slurm/setup-single-node.sh ran but sinfo shows no usable node")
    return Slurm(_cluster_cpus())


@pytest.fixture
def slurm(slurm_cluster: Slurm):
    """The cluster helper; cancels whatever the test left queued or running."""
    slurm_cluster.names = []
    yield slurm_cluster
    slurm_cluster.cancel_all()
