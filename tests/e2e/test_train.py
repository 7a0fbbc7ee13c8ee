"""The real application under mpiexec: results, bitwise identity, resume."""

import json
import signal
import subprocess
import sys

import h5py
import numpy as np

from mpirun import ROOT, final_params, mpiexec, rank_env, run_mpi, summary

SMALL = ["--set", "data.rows=30011", "--set", "data.cols=6", "--set", "data.chunk_rows=1000",
         "--set", "train.tol=0", "--set", "train.log_every=5"]


def test_default_job_at_three_ranks(tmp_path):
    out = tmp_path / "run"
    proc = run_mpi(3, ["--out", out, "--set", "train.log_every=1"])
    assert proc.returncode == 0, proc.stderr
    s = summary(out)
    assert s["rel_error_to_exact"] <= 1e-6
    assert s["world_size"] == 3 and s["solver"] == "gd" and s["reduction"] == "exact"
    assert s["optimizer"]["name"] == "adaptive"
    for phase in ("read", "compute", "reduce", "update", "checkpoint"):
        assert set(s["phases_s"][phase]) == {"min", "median", "max"}
    assert len(s["peak_rss_bytes"]["per_rank"]) == 3 and min(s["peak_rss_bytes"]["per_rank"]) > 0
    for key in ("numpy", "mpi4py", "mpi_library", "lepton_hpc"):
        assert s["provenance"][key]
    # progress lines: step, loss, eta, |grad|, samples/s, comm share
    lines = [l for l in proc.stdout.splitlines() if l.startswith("step ")]
    assert lines and all(w in lines[0] for w in ("loss", "eta", "|grad|", "samples/s", "comm"))
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    for key in ("step", "loss", "eta", "grad_norm", "t_compute_s", "t_comm_s", "samples_per_s"):
        assert key in recs[0]
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert (out / "config.toml").read_text().startswith("# resolved config")
    with h5py.File(sorted((out / "checkpoints").glob("step-*.h5"))[-1], "r") as f:
        assert f["model/w"].shape == (32,) and "model/b" in f
        assert f.attrs["world_size"] == 3 and f["optimizer"].attrs["t"] == s["steps"]


def test_bitwise_identical_on_1_3_7_ranks(tmp_path):
    # 31 chunks: 7 ranks get 5 or 4 chunks each, so the tree covers differ everywhere; adam keeps state.
    # Every solver and optimizer at 1-4 ranks, and the fast reduction: tests/mpi/test_glm_loop.py (in-process).
    args = [*SMALL, "--set", "train.steps=15", "--set", "optimizer.name=adam"]
    params = []
    for n in (1, 3, 7):
        out = tmp_path / f"n{n}"
        proc = run_mpi(n, ["--out", out, *args])
        assert proc.returncode == 0, proc.stderr
        params.append(final_params(out))
    assert params[0] == params[1] == params[2]


def test_resume_on_another_rank_count_is_bitwise_exact(tmp_path):
    # the other optimizers and solvers: tests/mpi/test_glm_loop.py
    args = [*SMALL, "--set", "optimizer.name=adam", "--set", "checkpoint.every=5",
            "--set", "optimizer.learning_rate=0.05", "--set", "optimizer.alpha=0.01"]
    whole = tmp_path / "whole"
    assert run_mpi(2, ["--out", whole, *args, "--set", "train.steps=30"]).returncode == 0
    split = tmp_path / "split"
    assert run_mpi(3, ["--out", split, *args, "--set", "train.steps=15"]).returncode == 0
    proc = run_mpi(1, ["--out", split, *args, "--set", "train.steps=30", "--resume", "auto"])
    assert proc.returncode == 0, proc.stderr
    assert "resumed from step 15 (written by 3 ranks)" in proc.stdout
    assert final_params(whole) == final_params(split)
    steps = [json.loads(l)["step"] for l in (split / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(5, 31, 5))


def test_signal_checkpoints_exits_75_and_resumes_exactly(tmp_path):
    args = ["--set", "data.rows=200000", "--set", "data.cols=8", "--set", "train.tol=0",
            "--set", "checkpoint.every=0", "--set", "optimizer.name=constant",
            "--set", "optimizer.learning_rate=0.001", "--set", "train.log_every=1"]
    run = tmp_path / "run"
    cmd = [mpiexec(), "-n", "3", sys.executable, "-m", "lepton_hpc.train", "--out", str(run), *args,
           "--set", "train.steps=100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=rank_env(), cwd=ROOT)
    try:
        for line in proc.stdout:  # wait until the loop runs
            if line.split()[:2] == ["step", "3/100000"]:
                break
        ranks = subprocess.run(["pgrep", "-f", f"lepton_hpc.train --out {run}"], capture_output=True,
                               text=True).stdout.split()
        ranks = [int(p) for p in ranks if int(p) != proc.pid]
        assert ranks, "no rank processes found"
        import os
        os.kill(max(ranks), signal.SIGUSR1)  # one rank sees it first
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 75, err
    stopped = summary(run)
    assert stopped["stop_reason"] == "signal" and stopped["exit_code"] == 75
    k = stopped["steps"]
    assert (run / "checkpoints" / f"step-{k:08d}.h5").exists()
    total = k + 7
    resumed = run_mpi(2, ["--out", run, *args, "--set", f"train.steps={total}", "--resume", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    straight = tmp_path / "straight"
    assert run_mpi(1, ["--out", straight, *args, "--set", f"train.steps={total}"]).returncode == 0
    assert final_params(run) == final_params(straight)


def test_training_from_a_synthesized_file_matches_the_synthetic_job(tmp_path):
    data = tmp_path / "d.h5"
    synth = subprocess.run([sys.executable, "-m", "lepton_hpc.data", "synth", "linear", "--rows", "30011",
                            "--cols", "6", "--noise", "0.1", "--seed", "0", "--bias", "0.5", "--chunk-rows", "1000",
                            "--compression", "gzip", "--out", str(data)],
                           capture_output=True, text=True, timeout=60)
    assert synth.returncode == 0, synth.stderr
    info = subprocess.run([sys.executable, "-m", "lepton_hpc.data", "info", str(data)],
                          capture_output=True, text=True, timeout=60)
    assert "/X: (30011, 6) float64" in info.stdout and "gzip" in info.stdout
    with h5py.File(data, "r") as f:
        assert f.attrs["true_weights"].shape == (6,)
    a, b = tmp_path / "file", tmp_path / "synthetic"
    assert run_mpi(2, ["--out", a, *SMALL, "--set", "train.steps=10", "--set", f"data.path={data}"]
                   ).returncode == 0
    assert run_mpi(3, ["--out", b, *SMALL, "--set", "train.steps=10"]).returncode == 0
    assert final_params(a) == final_params(b)
    # streaming from disk block by block gives the same bits as holding the shard
    c = tmp_path / "stream"
    assert run_mpi(3, ["--out", c, *SMALL, "--set", "train.steps=10", "--set", f"data.path={data}",
                       "--set", "data.in_memory=false"]).returncode == 0
    assert final_params(c) == final_params(a)
    assert summary(c)["data"]["in_memory"] is False


def test_float32_halves_shard_memory(tmp_path):
    a, b = tmp_path / "f64", tmp_path / "f32"
    for out, dtype in ((a, "float64"), (b, "float32")):
        proc = run_mpi(2, ["--out", out, *SMALL, "--set", "train.steps=60", "--set", f"data.dtype={dtype}",
                           "--set", "optimizer.alpha=0.0001", "--set", "optimizer.learning_rate=0.5"])
        assert proc.returncode == 0, proc.stderr
    x64 = summary(a)["shard_bytes"]["max"]
    x32 = summary(b)["shard_bytes"]["max"]
    assert x32 < 0.6 * x64
    assert summary(b)["rel_error_to_exact"] < 1e-6  # float64 compute over float32 storage


def test_seed_example_is_honest(tmp_path):
    out = tmp_path / "seed"
    proc = run_mpi(2, [ROOT / "jobs" / "seed_example.toml", "--out", out])
    assert proc.returncode == 0, proc.stderr
    assert "warning: the adaptive schedule's total step is 0.3333" in proc.stdout
    s = summary(out)
    assert s["stop_reason"] == "eta_floor" and max(abs(v) for v in s["w"]) < 1.0
    fixed = tmp_path / "fixed"
    proc = run_mpi(2, [ROOT / "jobs" / "seed_example.toml", "--out", fixed, "--set", "data.rows=100000",
                       "--set", "optimizer.learning_rate=2.0", "--set", "optimizer.alpha=0.0001",
                       "--set", "train.steps=3000", "--set", "data.chunk_rows=4096", "--set", "train.tol=1e-15"])
    assert proc.returncode == 0, proc.stderr
    s = summary(fixed)
    assert "warning" not in proc.stdout
    assert np.allclose(s["w"], [2.0, 3.0], atol=0.05) and s["rel_error_to_exact"] < 1e-6


def test_killed_at_any_instant_resumes_from_a_valid_checkpoint(tmp_path):
    """SIGKILL (no chance to clean up) while checkpoints are being written every step."""
    import os
    import signal as sig
    import time as clock

    args = [*SMALL, "--set", "data.rows=200003", "--set", "checkpoint.every=1", "--set", "checkpoint.keep=2",
            "--set", "optimizer.name=constant", "--set", "optimizer.learning_rate=0.001"]
    run = tmp_path / "run"
    proc = subprocess.Popen([mpiexec(), "-n", "2", sys.executable, "-m", "lepton_hpc.train", "--out", str(run),
                             *args, "--set", "train.steps=100000"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=rank_env(), cwd=ROOT, start_new_session=True)
    try:
        deadline = clock.monotonic() + 60
        while clock.monotonic() < deadline and len(list((run / "checkpoints").glob("step-*.commit"))) < 2:
            clock.sleep(0.05)
        clock.sleep(0.37)  # somewhere inside a step or a checkpoint write
    finally:
        os.killpg(proc.pid, sig.SIGKILL)
        proc.wait(timeout=30)
    from lepton_hpc import checkpoint
    state = checkpoint.latest_local(run / "checkpoints", warn=lambda m: None)
    assert state is not None and state.step >= 1
    total = state.step + 5
    resumed = run_mpi(3, ["--out", run, *args, "--set", f"train.steps={total}", "--resume", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    straight = tmp_path / "straight"
    assert run_mpi(1, ["--out", straight, *args, "--set", f"train.steps={total}"]).returncode == 0
    assert final_params(run) == final_params(straight)
