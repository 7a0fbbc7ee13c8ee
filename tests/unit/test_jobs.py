"""The example jobs in the package: every jobs/*.toml is there, list and copy work, copy never overwrites."""

import os
import subprocess
import sys
from pathlib import Path

import h5py

from lepton_hpc import jobs
from lepton_hpc.cli import main
from lepton_hpc.config import load

ROOT = Path(__file__).resolve().parents[2]


def test_every_repository_job_is_package_data_with_the_same_text():
    assert jobs.names() == sorted(p.stem for p in (ROOT / "jobs").glob("*.toml"))
    for name in jobs.names():
        assert jobs.text(name) == (ROOT / "jobs" / f"{name}.toml").read_text()
        assert jobs.summary(name)                     # a first comment line that says what it is
        load(str(ROOT / "jobs" / f"{name}.toml"))      # and it is a valid job


def test_list_and_copy_through_the_command(tmp_path, capsys):
    assert main(["jobs", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in listed if not ln.startswith(" ")] == jobs.names()
    assert jobs.summary("wine_softmax") == ("Wine cultivar (3 classes) from 13 chemical measurements "
                                            "(scikit-learn's wine data, 178 rows).")  # the whole first sentence
    target = tmp_path / "new" / "dir"
    assert main(["jobs", "copy", "breast_cancer_logistic.toml", str(target)]) == 0
    out = capsys.readouterr().out
    copied = target / "breast_cancer_logistic.toml"
    # the repository's jobs say data.path = "../data/NAME.h5" (from jobs/); a copy looks in its own data/
    repo = (ROOT / "jobs/breast_cancer_logistic.toml").read_text()
    assert 'path = "../data/breast_cancer.h5"' in repo
    assert copied.read_text() == repo.replace('path = "../data/breast_cancer.h5"   # relative to this job file: the '
                                              "repository's data/ folder", 'path = "data/breast_cancer.h5"   # '
                                              "relative to this job file: its data/ folder")
    assert load(str(copied)).data.path == str(target / "data/breast_cancer.h5")
    assert f"lepton-hpc data import sklearn:breast_cancer --out {target / 'data/breast_cancer.h5'}" in out
    # the command as printed works, the missing data/ folder included
    command = out.split("make its data file with: ", 1)[1].strip()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    made = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120, env=env)
    assert made.returncode == 0, made.stderr
    with h5py.File(target / "data/breast_cancer.h5", "r") as f:
        assert f["X"].shape == (569, 30)
    # the text job's data: the apt export, then the import with the job's hashing
    assert main(["jobs", "copy", "apt_sections_text", str(target)]) == 0
    out = capsys.readouterr().out
    data = target / "data"
    assert (f"lepton-hpc data export apt-descriptions --out {data / 'apt.jsonl'} && lepton-hpc data import text "
            f"{data / 'apt.jsonl'} --text-column description --label-column section --ngrams 1,2 --hash-bits 16 "
            f"--out {data / 'apt_text.h5'}") in out
    assert main(["jobs", "copy", "default", str(target)]) == 0
    assert "data import" not in capsys.readouterr().out           # synthetic: no data file to make


def test_copy_refuses_to_overwrite_and_names_unknown_jobs(tmp_path, capsys):
    (tmp_path / "default.toml").write_text("mine")
    assert main(["jobs", "copy", "default", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already exists" in err and len(err.splitlines()) == 1
    assert (tmp_path / "default.toml").read_text() == "mine"
    assert main(["jobs", "copy", "no_such_job", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no packaged job named 'no_such_job'" in err and "diabetes_linear" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.toml"]     # nothing else written


def test_copy_into_a_file_says_dir_is_a_file(tmp_path, capsys):
    (tmp_path / "ok.h5").write_bytes(b"data")
    for target in (tmp_path / "ok.h5", tmp_path / "ok.h5" / "sub"):
        assert main(["jobs", "copy", "default", str(target)]) == 1
        err = capsys.readouterr().err
        assert err == f"error: {tmp_path / 'ok.h5'} is a file, not a directory; give DIR as a directory to " \
                      f"copy the job into (e.g. {tmp_path / 'jobs'})\n", err
    assert (tmp_path / "ok.h5").read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.h5"]
