"""Data a new user brings (issue 11 §3, §4) through the real CLI: relative paths, missing bundled
files, files that are not HDF5, data too big for memory, a full disk while checkpointing."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpirun import ROOT, rank_env, run_mpi, summary

SMALL = ["--set", "data.rows=2000", "--set", "data.cols=4", "--set", "data.chunk_rows=500",
         "--set", "train.steps=5"]


def one_error(proc) -> str:
    assert proc.returncode == 1, f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, proc.stderr
    for noise in ("Traceback", "signature", "unhandled", "Errno"):
        assert noise not in proc.stderr + proc.stdout, proc.stderr
    return errors[0]


def data_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "lepton_hpc.data", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=rank_env(), cwd=cwd)


def test_relative_data_path_is_read_from_the_job_files_folder(tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "d").mkdir()
    assert data_cli("synth", "linear", "--rows", 1000, "--cols", 3, "--chunk-rows", 250,
                    "--out", tmp_path / "d" / "x.h5").returncode == 0
    job = tmp_path / "jobs" / "rel.toml"
    job.write_text('[data]\npath = "../d/x.h5"\nchunk_rows = 250\n[train]\nsteps = 3\n')
    proc = run_mpi(2, [job, "--out", tmp_path / "run"])  # cwd is the repository, not the job's folder
    assert proc.returncode == 0, proc.stderr
    assert f'path = "{tmp_path / "d" / "x.h5"}"' in (tmp_path / "run" / "config.toml").read_text()
    # the same job with the file gone: the error names the absolute path it tried
    job.write_text('[data]\npath = "../d/missing.h5"\n')
    err = one_error(run_mpi(2, [job, "--out", tmp_path / "run2"]))
    assert f"data file {tmp_path / 'd' / 'missing.h5'} does not exist" in err
    assert not (tmp_path / "run2").exists()


def test_bundled_job_without_its_data_gives_the_import_command_that_works(tmp_path):
    (tmp_path / "jobs").mkdir()
    job = tmp_path / "jobs" / "wine_softmax.toml"
    shutil.copy(ROOT / "jobs" / "wine_softmax.toml", job)
    err = one_error(run_mpi(2, [job, "--out", tmp_path / "run", "--set", "train.steps=3"]))
    command = re.search(r"`([^`]+)`", err).group(1)
    assert f"import sklearn:wine --out {tmp_path / 'data' / 'wine.h5'}" in command, err
    made = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120, env=rank_env(),
                          cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    proc = run_mpi(2, [job, "--out", tmp_path / "run", "--set", "train.steps=3"])
    assert proc.returncode == 0, proc.stderr


def _non_hdf5_files(tmp_path: Path) -> dict:
    csv = tmp_path / "table.csv"
    csv.write_text("a,b,target\n1,2,3\n4,5,6\n")
    parquet = tmp_path / "table.parquet"
    parquet.write_bytes(b"PAR1" + bytes(64) + b"PAR1")  # the magic at both ends, as a Parquet file has
    npy = tmp_path / "X.npy"
    np.save(npy, np.zeros((4, 2)))
    return {"CSV": (csv, "import csv"), "Parquet": (parquet, "import parquet"), "NumPy .npy": (npy, "import npy")}


def test_non_hdf5_files_are_named_with_their_import_command(tmp_path):
    files = _non_hdf5_files(tmp_path)
    for what, (path, command) in files.items():
        err = one_error(run_mpi(2, ["--out", tmp_path / f"run-{path.suffix[1:]}", *SMALL,
                                    "--set", f"data.path={path}"]))
        assert f"{path} is a {what}" in err and f"python -m lepton_hpc.data {command}" in err, err
        assert not (tmp_path / f"run-{path.suffix[1:]}").exists()
        info = data_cli("info", path)
        assert info.returncode == 1 and "signature" not in info.stderr
        assert info.stderr.startswith(f"error: {path} is a {what}") and command in info.stderr, info.stderr
    # evaluate --data with a CSV: named the same way
    run = tmp_path / "trained"
    assert run_mpi(2, ["--out", run, *SMALL]).returncode == 0
    csv, command = files["CSV"]
    err = one_error(run_mpi(2, [run, "--data", csv], module="lepton_hpc.evaluate"))
    assert f"{csv} is a CSV" in err and command in err


def test_synth_into_a_missing_folder_is_one_sentence(tmp_path):
    out = tmp_path / "no" / "such" / "x.h5"
    for kind in ("linear", "logistic"):
        proc = data_cli("synth", kind, "--rows", 10, "--cols", 2, "--out", out)
        assert proc.returncode == 1
        assert proc.stderr.strip() == f"error: cannot write {out}: the folder {out.parent} does not exist " \
                                      f"(create it first)", proc.stderr
    proc = data_cli("synth", "mf", "--users", 10, "--items", 5, "--rank", 2, "--density", 0.5, "--noise", 0.1,
                    "--out", out)
    assert proc.returncode == 1 and "does not exist (create it first)" in proc.stderr


def test_data_that_cannot_fit_in_memory_says_how_many_ranks_or_streaming_would(tmp_path):
    err = one_error(run_mpi(2, ["--out", tmp_path / "big", "--set", "data.rows=1e10"], timeout=60))
    assert re.search(r"needs [\d.]+ TiB per rank in memory at 2 rank\(s\)", err), err
    assert re.search(r"run on at least \d+ ranks", err) and "data.in_memory=false" in err, err
    assert not (tmp_path / "big").exists()
    # the recommender's synthetic ratings: the same check, from its memory model
    err = one_error(run_mpi(2, [ROOT / "jobs" / "mf_synthetic.toml", "--out", tmp_path / "mf",
                                "--set", "data.rows=1e9"], timeout=60))
    assert "needs" in err and "per rank" in err and "python -m lepton_hpc.problems.mf_memory" in err, err
    assert not (tmp_path / "mf").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill the disk needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True,
                         text=True)
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {got.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def fill(mnt: Path, leave_kib: int) -> Path:
    filler = mnt / "filler"
    free = shutil.disk_usage(mnt).free
    filler.write_bytes(bytes(max(free - leave_kib * 1024, 0)))
    return filler


def test_full_disk_while_a_glm_checkpoints_is_one_sentence_and_keeps_earlier_checkpoints(small_disk):
    from lepton_hpc import checkpoint

    filler = fill(small_disk, 40)  # room for config, metrics and two 12 KiB checkpoints
    run = small_disk / "run"
    args = ["--out", run, "--set", "data.rows=2000", "--set", "data.cols=400", "--set", "checkpoint.every=5",
            "--set", "train.steps=40", "--set", "checkpoint.keep=3", "--set", "train.tol=0"]
    err = one_error(run_mpi(2, args))
    assert re.fullmatch(r"error: could not write checkpoint step (\d+) to \S+: No space left on device; free "
                        r"space there \(or lower checkpoint.keep\) and run again: the committed checkpoints "
                        r"\(steps [\d, ]+\) are intact and --resume auto continues from step \d+", err), err
    steps = checkpoint.list_steps(run / "checkpoints")
    assert steps and all(checkpoint.open_local(run / "checkpoints", s) for s in steps)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    # with space again, the run continues from the newest intact checkpoint to its end
    filler.unlink()
    proc = run_mpi(2, [*args, "--resume", "auto"])
    assert proc.returncode == 0, proc.stderr
    assert f"resumed from step {steps[-1]}" in proc.stdout


def test_synth_on_a_full_disk_leaves_no_tmp_file(small_disk):
    fill(small_disk, 16)
    out = small_disk / "x.h5"
    proc = data_cli("synth", "linear", "--rows", 20000, "--cols", 8, "--out", out)
    assert proc.returncode == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_held_out_split_is_the_same_at_any_chunk_rows_and_rank_count(tmp_path):
    data = tmp_path / "d.h5"  # synthetic data depend on chunk_rows: a file keeps the rows fixed
    assert data_cli("synth", "linear", "--rows", 3000, "--cols", 4, "--out", data).returncode == 0
    base = ["--set", f"data.path={data}", "--set", "data.test_fraction=0.2", "--set", "train.steps=300",
            "--set", "train.solver=gram", "--set", "optimizer.name=constant", "--set", "optimizer.learning_rate=0.9"]
    runs = {}
    for n, chunk_rows in ((2, 250), (3, 1000), (1, 3000)):
        out = tmp_path / f"c{chunk_rows}"
        assert run_mpi(n, ["--out", out, *base, "--set", f"data.chunk_rows={chunk_rows}"]).returncode == 0
        runs[chunk_rows] = summary(out)["metrics"]["test"]
    weights = {m["weight"] for m in runs.values()}
    assert len(weights) == 1 and 500 < weights.pop() < 700  # the same held-out rows, about 20% of them
    mses = [m["mse"] for m in runs.values()]
    assert max(mses) - min(mses) < 1e-6 * max(mses)  # the same rows: the same model, the same test error
