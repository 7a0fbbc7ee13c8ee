"""`python -m lepton_hpc.scaling strong --launcher slurm` on a real single-node Slurm.

Skipped (with the reason) where `sinfo` is missing or we are not root; otherwise
slurm/setup-single-node.sh (idempotent) makes sure the cluster runs, a tiny sweep at
ranks 1, 2 is submitted (one job per rank count plus the dependent analysis job) and
the test waits, bounded, for the analysis job's results.csv. LEPTON_REQUIRE_SLURM=1
turns the skips into failures (CI). Every job is cancelled at the end.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mpirun import ROOT

JOB = ROOT / "jobs" / "default.toml"
SETUP = ROOT / "slurm" / "setup-single-node.sh"
WAIT_S = 300


def unavailable(reason: str):
    if os.environ.get("LEPTON_REQUIRE_SLURM") == "1":
        pytest.fail(f"{reason} (LEPTON_REQUIRE_SLURM=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster():
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    if shutil.which("sinfo") is None and not root:
        unavailable("no sinfo on PATH and not root: no Slurm here, and none can be installed")
    if not root:
        unavailable("not root: slurm/setup-single-node.sh cannot start a single-node Slurm")
    # root: the setup installs the packages when missing and starts the daemons (idempotent)
    try:
        proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        unavailable("slurm/setup-single-node.sh did not finish within 900 s")
    if proc.returncode != 0:
        unavailable(f"slurm/setup-single-node.sh failed (exit {proc.returncode}): {proc.stderr[-1500:]}")


def cancel(ids):
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)


@pytest.fixture
def workdir():
    """A directory of our own: pytest's tmp_path can be pruned by a concurrent pytest session while
    the Slurm jobs still write into it."""
    path = Path(tempfile.mkdtemp(prefix="lepton-scaling-slurm-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slurm
@pytest.mark.timeout(WAIT_S + 300)
def test_slurm_sweep_runs_one_job_per_rank_count_and_the_analysis(cluster, workdir):
    tmp_path = workdir
    out = tmp_path / "study"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    for key in [k for k in env if k.startswith("SLURM_")]:
        del env[key]
    proc = subprocess.run(
        [sys.executable, "-m", "lepton_hpc.scaling", "strong", str(JOB), "--ranks", "1,2", "--repeats", "1",
         "--launcher", "slurm", "--out", str(out), "--set", "data.rows=40000", "--set", "data.cols=4",
         "--set", "train.steps=5", "--set", "checkpoint.every=0", "--bench-max-bytes", "4096", "--bench-reps", "3"],
        capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    study = json.loads((out / "study.json").read_text())
    ids = study["slurm_job_ids"]
    assert set(ids) == {"1", "2", "analyze"} and all(v.isdigit() for v in ids.values())
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not (out / "scaling.png").is_file():
            time.sleep(2)
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                         for p in sorted((out / "slurm").glob("*.out")))
        assert (out / "results.csv").is_file(), f"no results.csv after {WAIT_S}s:\n{logs}"
        assert (out / "scaling.png").is_file(), logs
    finally:
        cancel(list(ids.values()))
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["ranks"], r["status"]) for r in rows] == [("1", "ok"), ("2", "ok")], rows
    for r in rows:
        assert r["slurm_job_id"] == ids[r["ranks"]]  # provenance: the job that ran it
        assert float(r["wall_s"]) > 0 and float(r["speedup"]) > 0
    for p in ("1", "2"):
        assert (out / "slurm" / f"n{int(p):04d}-{ids[p]}.out").is_file()
    report = json.loads((out / "projection.json").read_text())
    assert report["network"]["source"].startswith("measured")  # the bench ran inside the analysis job
    assert report["measured_points"][0]["ranks"] == 1
