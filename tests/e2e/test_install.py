"""`pip install .` (a real wheel build, not -e) into a fresh venv, then the README's commands
that need no source tree, run from outside it through the installed console script."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from mpirun import ROOT, rank_env

TOP_SKIP = {".git", "venv", "build", "dist", "runs", "data", "docs", "slurm", "tests", ".pytest_cache"}


def _skip(directory, names):
    """What the copy of the source leaves out: build outputs everywhere, and at the top what a wheel
    does not need (the committed data sets, docs, tests, venvs)."""
    top = Path(directory) == ROOT
    return {n for n in names if n == "__pycache__" or n.endswith((".so", ".egg-info"))
            or (top and (n in TOP_SKIP or n.startswith(".venv")))}


def _venv(tmp: Path) -> Path:
    """A venv whose interpreter also sees this test's site-packages (numpy, h5py, mpi4py, setuptools, pip)
    as plain path entries: the dependencies are there, but this checkout's editable install is not
    (.pth files of a path entry are not run) and the venv's own site-packages comes first."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = subprocess.run([venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    parents = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "parent-env.pth").write_text("\n".join(sorted(parents)) + "\n")
    return venv


def test_pip_install_dot_runs_the_readme_commands_outside_the_source_tree(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_skip, symlinks=True)  # lepton_hpc/jobs/*.toml stay links to jobs/
    venv = _venv(tmp_path)
    py = venv / "bin/python"
    build = subprocess.run([py, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                            "--quiet", str(src)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert build.returncode == 0, build.stdout + build.stderr
    work = tmp_path / "work"
    work.mkdir()
    env = rank_env()
    env.pop("PYTHONPATH", None)
    # the mpich wheel's libmpi lives in this environment's lib/, which mpi4py looks for under its own prefix
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(Path(sys.prefix) / "lib"),
                                                           env.get("LD_LIBRARY_PATH")]))
    exe = str(venv / "bin/lepton-hpc")

    def run(*args, **kw):
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, cwd=work, env=env, **kw)
        assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    from lepton_hpc import __version__

    assert run("--version").strip() == f"lepton_hpc {__version__}"
    info = run("info")
    assert "mpi_library" in info and "gradient_kernel" in info and "launcher" in info
    where = subprocess.run([py, "-c", "import lepton_hpc, sys; print(lepton_hpc.__file__)"], capture_output=True,
                           text=True, cwd=work, env=env, check=True).stdout.strip()
    assert str(venv) in where and str(ROOT) not in where, where   # the installed copy, not this checkout
    assert (Path(where).parent / "py.typed").is_file()
    listing = run("jobs", "list")
    names = {line.split()[0] for line in listing.splitlines() if not line.startswith(" ")}
    assert names == {p.stem for p in (ROOT / "jobs").glob("*.toml")}   # every example job is in the wheel
    out = run("jobs", "copy", "default", "myjobs")
    job = work / "myjobs" / "default.toml"
    assert job.is_file() and job.read_text() == (ROOT / "jobs/default.toml").read_text(), out
    assert not job.is_symlink()
    run("train", "myjobs/default.toml", "--set", "data.rows=5000", "--set", "data.cols=4",
        "--set", "train.steps=5", "--out", "runs/first")
    summary = json.loads((work / "runs/first/summary.json").read_text())
    assert summary["exit_code"] == 0 and summary["steps"] == 5
    assert summary["gradient_kernel"]["built"]          # C kernel or the fallback: recorded either way
    assert (work / "runs/first/config.toml").read_text().startswith("# resolved config")
    metadata = subprocess.run([py, "-c", "from importlib.metadata import metadata as m; d = m('lepton_hpc'); "
                               "print(d['License-Expression'], d['Requires-Python'])"], capture_output=True,
                              text=True, cwd=work, env=env, check=True).stdout.split()
    assert metadata == ["MIT", ">=3.11"]
