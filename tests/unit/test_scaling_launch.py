"""The sweep's bookkeeping without MPI or Slurm: run arguments, order, and the Slurm submission."""

import json
import os
import stat
import subprocess
import sys

import pytest

from lepton_hpc.scaling.cli import main
from lepton_hpc.scaling.launch import Study, _order, parse_run_dir, run_dir, submit_slurm


def study(tmp_path, mode="strong", **kw):
    args = dict(mode=mode, job=str(tmp_path / "job.toml"), overrides=["train.tol=0", "data.cols=4"],
                ranks=[1, 2, 4], repeats=2, launcher="slurm", out=str(tmp_path / "study"), base_rows=1000, cores=2)
    args.update(kw)
    return Study(**args)


def test_train_args_strong_keep_rows_weak_scale_them(tmp_path):
    s = study(tmp_path)
    a = s.train_args(4, tmp_path / "r")
    assert a[:3] == [s.job, "--out", str(tmp_path / "r")]
    assert a[3:] == ["--set", "train.tol=0", "--set", "data.cols=4"]
    w = study(tmp_path, mode="weak")
    assert w.train_args(4, tmp_path / "r")[-2:] == ["--set", "data.rows=4000"] and w.rows_at(4) == 4000


def test_run_dir_names_round_trip_and_order_alternates(tmp_path):
    d = run_dir(tmp_path, 16, 2)
    assert d.name == "n0016-r2" and parse_run_dir(d.name) == (16, 2)
    assert parse_run_dir("network.json") is None and parse_run_dir("nx-r1") is None
    assert _order([1, 2, 4], 0) == [1, 2, 4] and _order([1, 2, 4], 1) == [4, 2, 1]


def test_study_json_round_trip(tmp_path):
    s = study(tmp_path)
    s.slurm_job_ids = {"1": "10", "analyze": "12"}
    s.save()
    assert Study.load(tmp_path / "study") == s
    with pytest.raises(ValueError, match="study.json"):
        Study.load(tmp_path)


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """An sbatch on PATH that logs its arguments and answers job ids 101, 102, …"""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "sbatch.log"
    exe = bindir / "sbatch"
    exe.write_text(f"""#!{sys.executable}
import json, sys
log = {str(log)!r}
try:
    calls = [json.loads(l) for l in open(log)]
except FileNotFoundError:
    calls = []
open(log, "a").write(json.dumps(sys.argv[1:]) + "\\n")
print(f"{{101 + len(calls)}};cluster")
""")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_submit_slurm_one_job_per_rank_count_then_dependent_analysis(tmp_path, fake_sbatch):
    s = study(tmp_path)
    ids = submit_slurm(s, ["--alpha", "1e-6", "--beta", "1e-9"], ["--time=0:10:00"], analyze_ntasks=1,
                       log=lambda *_: None)
    assert ids == {"1": "101", "2": "102", "4": "103", "analyze": "104"}
    calls = [json.loads(line) for line in fake_sbatch.read_text().splitlines()]
    assert len(calls) == 4
    for call, p in zip(calls[:3], (1, 2, 4)):
        assert call[:2] == ["--parsable", "--time=0:10:00"]
        script = call[-1]
        assert script.endswith(f"n{p:04d}.sbatch")
        text = open(script).read()
        assert f"#SBATCH --ntasks={p}" in text and f"srun --mpi=\"$MPI_PLUGIN\" --ntasks={p}" in text
        assert "for rep in 0 1; do" in text and "-m lepton_hpc.train" in text and "--set train.tol=0" in text
        assert subprocess.run(["bash", "-n", script]).returncode == 0  # valid bash
    ana = calls[3]
    assert "--dependency=afterany:101:102:103" in ana and "--ntasks=1" in ana
    wrap = ana[ana.index("--wrap") + 1]
    assert "-m lepton_hpc.scaling analyze" in wrap and str(tmp_path / "study") in wrap and "--alpha 1e-6" in wrap
    assert json.loads((tmp_path / "study" / "study.json").read_text())["slurm_job_ids"] == ids


def test_cli_rejects_a_bad_set_before_launching(tmp_path, capsys):
    job = tmp_path / "job.toml"
    job.write_text("[train]\nsteps = 3\n")
    rc = main(["strong", str(job), "--ranks", "1", "--out", str(tmp_path / "s"), "--set", "train.nope=1"])
    assert rc == 1 and "train.nope" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_contended_rule():
    from lepton_hpc.scaling.launch import contended

    assert contended(0.5, 1, 2) and not contended(0.9, 2, 2) and not contended(None, 2, 2)
    assert not contended(0.45, 4, 2) and contended(0.3, 4, 2)  # oversubscribed: the fair share is cores/ranks


def test_a_contended_run_is_retried_and_the_attempt_kept(tmp_path):
    """A fake mpiexec that sleeps (no CPU used: CPU share ~0, i.e. contended) and succeeds."""
    from lepton_hpc.scaling.launch import run_mpiexec

    fake = tmp_path / "mpiexec"
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(0.2)\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    s = study(tmp_path, ranks=[1], repeats=1, launcher="mpiexec")
    done = run_mpiexec(s, mpiexec=str(fake), retry_contended=2, log=lambda *_: None)
    assert len(done) == 1 and done[0]["contended"] and done[0]["returncode"] == 0
    names = sorted(p.name for p in (tmp_path / "study" / "runs").iterdir())
    assert names == ["n0001-r0", "n0001-r0.contended-1", "n0001-r0.contended-2"]
    info = json.loads((tmp_path / "study" / "runs" / "n0001-r0" / "launch.json").read_text())
    assert info["cpu_share"] < 0.5 and info["ranks"] == 1 and "lepton_hpc.train" in info["command"]
