"""`scaling strong --out DIR` into a study of its own: continued (finished runs kept, the grid grows);
into another study or a training run directory: refused with nothing changed."""

import csv
import json
import subprocess
import sys

from mpirun import ROOT, mpiexec, rank_env

JOB = ROOT / "jobs" / "default.toml"
TINY = ["--set", "data.rows=3000", "--set", "data.cols=4", "--set", "train.steps=2", "--set", "checkpoint.every=0",
        "--alpha", "2e-6", "--beta", "1e-9", "--no-plot", "--timeout", "60"]


def scaling(*args):
    mpiexec()  # skips when there is none
    return subprocess.run([sys.executable, "-m", "lepton_hpc.scaling", *map(str, args)], capture_output=True,
                          text=True, timeout=180, env=rank_env({"MPIEXEC_TIMEOUT": "60"}), cwd=ROOT)


def snapshot(path):
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))}


def test_rerun_continues_own_study_and_refuses_another_or_a_run_dir(tmp_path):
    out = tmp_path / "study"
    first = scaling("strong", JOB, "--ranks", "1", "--repeats", "1", "--out", out, *TINY)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    done = out / "runs" / "n0001-r0" / "summary.json"
    stamp = done.stat().st_mtime_ns

    # the same study again with one more rank count: the finished run is kept, the new one added
    again = scaling("strong", JOB, "--ranks", "2", "--repeats", "1", "--out", out, *TINY)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "continuing the study" in again.stdout and "n=1 repeat 0: already done" in again.stdout
    assert done.stat().st_mtime_ns == stamp and (out / "runs" / "n0002-r0" / "summary.json").is_file()
    study = json.loads((out / "study.json").read_text())
    assert study["ranks"] == [1, 2] and study["repeats"] == 1
    with open(out / "results.csv", newline="") as fh:
        assert [(r["ranks"], r["status"]) for r in csv.DictReader(fh)] == [("1", "ok"), ("2", "ok")]

    before = snapshot(out)
    other = scaling("strong", JOB, "--ranks", "1", "--repeats", "1", "--out", out, *TINY, "--set", "data.cols=5")
    assert other.returncode == 1 and other.stderr.startswith("error: ") and "another study" in other.stderr
    assert "Traceback" not in other.stderr and len(other.stderr.strip().splitlines()) == 1
    assert snapshot(out) == before

    run = out / "runs" / "n0001-r0"  # a real training run directory (config.toml, summary.json)
    refused = scaling("strong", JOB, "--ranks", "1", "--repeats", "1", "--out", run, *TINY)
    assert refused.returncode == 1 and "training run directory" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and snapshot(out) == before
