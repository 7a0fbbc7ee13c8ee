"""Bad `scaling strong|weak|analyze` command lines: one `error:` sentence, exit 1, nothing written.

Every check runs before the sweep writes study.json or runs/, so none of these cases may
leave anything in --out (nor touch a directory that is already there).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lepton_hpc.scaling.cli import main

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "jobs" / "default.toml"
TINY = ["--ranks", "1", "--repeats", "1", "--set", "data.rows=2000", "--set", "data.cols=4",
        "--set", "train.steps=2", "--no-plot"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def snapshot(path: Path) -> dict:
    """Every file under path with its size and mtime (to see that nothing was changed)."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*"))} if path.is_dir() else {}


def refused(capsys, argv, *words) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 1, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.fixture(scope="module")
def training_run(tmp_path_factory) -> Path:
    """A real training run directory (config.toml, checkpoints/, summary.json) of one process."""
    out = tmp_path_factory.mktemp("train") / "run"
    proc = subprocess.run([sys.executable, "-m", "lepton_hpc.train", str(JOB), "--out", str(out),
                           "--set", "data.rows=2000", "--set", "data.cols=4", "--set", "train.steps=2"],
                          capture_output=True, text=True, timeout=120, env=ENV, cwd=ROOT)
    assert (out / "config.toml").is_file() and (out / "checkpoints").is_dir(), proc.stdout + proc.stderr
    return out


@pytest.mark.parametrize("mode", ["strong", "weak"])
def test_a_training_run_directory_is_refused_as_out_and_left_alone(capsys, training_run, mode):
    before = snapshot(training_run)
    refused(capsys, [mode, str(JOB), "--out", str(training_run), *TINY, "--alpha", "1e-6", "--beta", "1e-9"],
            "training run directory", "config.toml")
    assert snapshot(training_run) == before and not (training_run / "study.json").exists()


def test_a_non_empty_directory_that_is_no_study_is_refused(capsys, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    refused(capsys, ["strong", str(JOB), "--out", str(out), *TINY], "not empty", "study.json")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_an_existing_file_as_out_is_refused(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    refused(capsys, ["strong", str(JOB), "--out", str(f), *TINY], "is a file")
    assert f.read_text() == "x"


def test_a_study_json_that_is_not_one_is_refused(capsys, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "study.json").write_text('{"mode": "strong"}')
    refused(capsys, ["strong", str(JOB), "--out", str(out), *TINY], "study.json")
    refused(capsys, ["analyze", str(out), "--alpha", "0", "--beta", "0"], "study.json")
    assert [p.name for p in out.iterdir()] == ["study.json"]


def _h5(path: Path) -> Path:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f["x"] = [1.0]
    return path


@pytest.mark.parametrize("case,words", [
    (["--alpha", "-1"], ["--alpha", ">= 0"]),
    (["--beta", "nan"], ["--beta"]),
    (["--cores", "0"], ["--cores", "positive"]),
    (["--cores", "-2"], ["--cores", "positive"]),
    (["--project-to", "0"], ["--project-to", "positive"]),
    (["--repeats", "0"], ["--repeats"]),
    (["--bench-ranks", "1"], ["--bench-ranks"]),
    (["--timeout", "0"], ["--timeout"]),
    (["--quiet-wait", "-1"], ["--quiet-wait"]),
    (["--network", "{tmp}/missing.json"], ["missing.json", "no such file"]),
    (["--network", "{tmp}/some.h5"], ["some.h5", "not a JSON network description"]),
    (["--network", "{tmp}/empty.json"], ["empty.json", "alpha_s"]),
    (["--network", "{tmp}/negative.json"], ["negative.json", ">= 0"]),
    (["--mpiexec", "/nonexist/mpiexec"], ["/nonexist/mpiexec", "no such executable"]),
    (["--mpiexec", "{tmp}"], ["no such executable"]),
])
def test_a_failed_start_writes_nothing(capsys, tmp_path, case, words):
    _h5(tmp_path / "some.h5")
    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "negative.json").write_text(json.dumps({"alpha_s": -1.0, "beta_s_per_byte": 1e-9}))
    args = [a.format(tmp=tmp_path) for a in case]
    out = tmp_path / "study"
    refused(capsys, ["strong", str(JOB), "--out", str(out), *TINY, *args], *words)
    assert not out.exists()
    empty = tmp_path / "empty-dir"  # an empty --out is a new study: left empty when the start fails
    empty.mkdir()
    refused(capsys, ["weak", str(JOB), "--out", str(empty), *TINY, *args], *words)
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("case,words", [
    (["--cores", "0"], ["--cores"]), (["--project-to", "0"], ["--project-to"]), (["--alpha", "-1"], ["--alpha"]),
    (["--network", "{tmp}/some.h5"], ["not a JSON network description"]),
    (["--network", "{tmp}/missing.json"], ["no such file"]),
])
def test_analyze_refuses_bad_options_and_leaves_the_study_alone(capsys, tmp_path, case, words):
    study = tmp_path / "study"  # a copy: a missed check would rewrite the committed study
    shutil.copytree(ROOT / "docs" / "scaling", study)
    _h5(tmp_path / "some.h5")
    before = snapshot(study)
    refused(capsys, ["analyze", str(study), *[a.format(tmp=tmp_path) for a in case]], *words)
    assert snapshot(study) == before


def test_no_traceback_from_the_command_line(tmp_path):
    """The same checks through `python -m lepton_hpc.scaling` (the entry point users run)."""
    out = tmp_path / "study"
    proc = subprocess.run([sys.executable, "-m", "lepton_hpc.scaling", "strong", str(JOB), "--out", str(out), *TINY,
                           "--network", str(_h5(tmp_path / "net.h5"))],
                          capture_output=True, text=True, timeout=60, env=ENV, cwd=ROOT)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: --network {tmp_path / 'net.h5'} is not a JSON network "
                                                f"description (write one with `python -m lepton_hpc.bench "
                                                f"allreduce > net.json`, or give --alpha and --beta)"]
    assert "0x89" not in proc.stderr and not out.exists()


def test_an_out_below_a_file_is_refused(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    refused(capsys, ["strong", str(JOB), "--out", str(f / "study"), *TINY], "is a file")
    assert f.read_text() == "x"


def test_analyze_with_a_broken_network_json_of_its_own_is_one_sentence(capsys, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(ROOT / "docs" / "scaling", study)
    (study / "network.json").write_bytes(b"\x89HDF\r\n")
    before = snapshot(study)
    refused(capsys, ["analyze", str(study), "--no-plot"], "network.json", "not a JSON network description")
    assert snapshot(study) == before
