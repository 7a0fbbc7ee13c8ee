"""The console script end to end: the run log (rank 0, -q/-v, the one-rank note), which gradient
kernel ran, and `info` with and without a launcher."""

import json
import subprocess
import sys
from pathlib import Path

from mpirun import ROOT, rank_env, run_mpi, summary

SMALL = ["--set", "data.rows=6000", "--set", "data.cols=4", "--set", "data.chunk_rows=1000",
         "--set", "train.steps=6", "--set", "train.log_every=2", "--set", "train.tol=0"]
SCRIPT = Path(sys.executable).parent / "lepton-hpc"


def _direct(args, env=None, timeout=120):
    """``lepton-hpc ARGS`` started directly (no mpirun): one rank."""
    cmd = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "lepton_hpc"]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=rank_env(env), cwd=ROOT)


def test_one_rank_run_says_so_once_and_quiet_keeps_only_the_verdict(tmp_path):
    proc = _direct(["train", *SMALL, "--out", tmp_path / "a"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sum("running on 1 rank" in ln for ln in lines) == 1
    assert [ln.split()[1] for ln in lines if ln.startswith("step ")] == ["2/6", "4/6", "6/6"]
    assert lines[-1].startswith("done: 6 steps")
    s = summary(tmp_path / "a")
    assert s["gradient_kernel"]["ran"].startswith("c (") == s["gradient_kernel"]["built"].startswith("C ")

    quiet = _direct(["train", *SMALL, "--out", tmp_path / "b", "-q"])
    assert quiet.returncode == 0, quiet.stderr
    kept = [ln for ln in quiet.stdout.splitlines() if not ln.startswith("warning")]
    assert len(kept) == 1 and kept[0].startswith("done: 6 steps") and kept[0].endswith(str(tmp_path / "b"))
    assert "step " not in quiet.stdout and "running on 1 rank" not in quiet.stdout
    silent = _direct(["train", *SMALL, "--out", tmp_path / "c", "-qq"])
    assert silent.returncode == 0 and "done:" not in silent.stdout

    verbose = _direct(["train", *SMALL, "--out", tmp_path / "d", "-v"])
    first_step = next(ln for ln in verbose.stdout.splitlines() if " step " in ln)
    assert " [rank 0] step 2/6" in first_step and first_step[:4].isdigit()   # time, rank, the same text


def test_under_mpiexec_rank_zero_logs_and_the_numpy_kernel_is_recorded(tmp_path):
    proc = run_mpi(2, ["train", *SMALL, "--out", tmp_path / "r"], module="lepton_hpc",
                   env={"LEPTON_NO_C_KERNEL": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "running on 1 rank" not in proc.stdout
    assert [ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("step ")] == ["2/6", "4/6", "6/6"]
    assert "[rank 1]" not in proc.stdout + proc.stderr          # rank 1 had nothing to warn about
    kernel = summary(tmp_path / "r")["gradient_kernel"]
    assert kernel["ran"] == "numpy" and kernel["c_calls"] == 0 and "LEPTON_NO_C_KERNEL" in kernel["built"]


def test_info_names_versions_kernel_blas_and_the_launcher():
    direct = _direct(["info", "--json"])
    assert direct.returncode == 0, direct.stderr
    rep = json.loads(direct.stdout)
    for key in ("lepton_hpc", "python", "numpy", "scipy", "h5py", "mpi4py", "mpi_library", "gradient_kernel",
                "blas", "launcher"):
        assert rep[key], key
    assert rep["launcher"].startswith("none") and rep["world_size"] == 1
    assert rep["blas"] and all(b["threads"] == 1 for b in rep["blas"])    # OPENBLAS_NUM_THREADS=1 per rank
    off = _direct(["info"], env={"LEPTON_NO_C_KERNEL": "1"})
    assert "numpy/BLAS fallback" in off.stdout
    under = run_mpi(2, ["info", "--json"], module="lepton_hpc")
    assert under.returncode == 0, under.stderr
    rep = json.loads(under.stdout)  # one report (rank 0's), not one per rank
    assert "PMI" in rep["launcher"] and rep["world_size"] == 2


def test_own_optimizer_from_the_current_directory_under_the_console_script(tmp_path):
    """``lepton-hpc`` (a console script, whose path lacks the current directory) finds a user's
    ``mypkg.halving:Halving`` in the directory it runs in, as ``python -m lepton_hpc`` does."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "halving.py").write_text(
        "from lepton_hpc.optimizers import Optimizer\n"
        "class Halving(Optimizer):\n"
        "    name = 'halving'\n"
        "    def _step_size(self, t, eta_prev):\n"
        "        return self.learning_rate * 0.5 ** (t // 10)\n")
    cmd = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "lepton_hpc"]
    args = ["train", *SMALL, "--set", "optimizer.name=mypkg.halving:Halving", "--set", "optimizer.learning_rate=0.1",
            "--out", tmp_path / "run"]
    proc = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=120, env=rank_env(),
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "done: 6 steps" in proc.stdout
    missing = subprocess.run([*cmd, *map(str, [*args[:-2], "--set", "optimizer.name=nopkg.x:Y", "--out",
                                               tmp_path / "r2"])], capture_output=True, text=True, timeout=120,
                             env=rank_env(), cwd=tmp_path)
    assert missing.returncode == 1 and "cannot import module 'nopkg.x'" in missing.stderr
