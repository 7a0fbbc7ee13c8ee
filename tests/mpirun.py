"""Shared helpers: hang-safe mpiexec launches of the real application."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lepton_hpc.errors import UserError
from lepton_hpc.mpiexec import find_mpiexec

ROOT = Path(__file__).resolve().parent.parent

def mpiexec() -> str:
    try:
        return find_mpiexec()
    except UserError:
        pytest.skip("no mpiexec on PATH; install with pip install -e '.[mpich,test]'")


def rank_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "MPIEXEC_TIMEOUT": "120", "PYTHONUNBUFFERED": "1"})
    for key in [k for k in env if k.startswith("SLURM_")]:
        del env[key]  # a test run inside an allocation must not trip the SLURM_NTASKS check
    env.update(extra or {})
    return env


def run_mpi(n: int, args: list[str], timeout: float = 150, env: dict | None = None,
            module: str = "lepton_hpc.train", cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``mpiexec -n n python -m module args`` with a hard timeout (never hangs a test)."""
    cmd = [mpiexec(), "-n", str(n), sys.executable, "-m", module, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=rank_env(env),
                          cwd=cwd or ROOT)


def summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def final_params(run_dir: Path) -> bytes:
    """The bytes of w (and b) in the newest checkpoint of a run."""
    import h5py

    ckpts = sorted((Path(run_dir) / "checkpoints").glob("step-*.h5"))
    with h5py.File(ckpts[-1], "r") as f:
        data = f["model/w"][()].tobytes()
        if "model/b" in f:
            data += f["model/b"][()].tobytes()
    return data
