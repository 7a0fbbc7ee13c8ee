"""A new user's first runs through the real CLI: defaults that converge, an honest verdict.

A job with no [optimizer] keys takes ``learning_rate = "auto"`` (1/L from the measured
curvature) and ``alpha = "auto"`` (the largest Lepton decay whose steps still reach
train.tol); a run that stops short says ``NOT CONVERGED`` and, with
``train.require_convergence``, exits 3.
"""

import json
import subprocess
import sys

import pytest

from mpirun import ROOT, rank_env, run_mpi, summary

pytestmark = pytest.mark.e2e


def _synth(tmp_path, kind: str, rows: int = 20000, cols: int = 8, extra=()) -> str:
    out = tmp_path / f"{kind}.h5"
    cmd = [sys.executable, "-m", "lepton_hpc.data", "synth", kind, "--rows", str(rows), "--cols", str(cols),
           "--chunk-rows", "1000", "--out", str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=rank_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return str(out)


def _job(tmp_path, text: str) -> str:
    path = tmp_path / "job.toml"
    path.write_text(text)
    return str(path)


def _final(proc) -> str:
    return proc.stdout.strip().splitlines()[-1]


# Gradient descent on logistic/softmax needs about kappa * ln(1/tol) steps at the optimum's
# condition number, which no moment of the data bounds: its budget here is raised.
@pytest.mark.parametrize("kind,classes,steps", [("linear", 0, 200), ("logistic", 0, 1000), ("softmax", 3, 1000)])
def test_gradient_descent_on_a_users_file_converges_with_no_optimizer_keys(tmp_path, kind, classes, steps):
    path = _synth(tmp_path, kind, extra=["--classes", str(classes)] if classes else [])
    job = _job(tmp_path, f'[data]\npath = "{path}"\ntest_fraction = 0.2\n[model]\nkind = "{kind}"\n'
                         f'[train]\nsolver = "gd"\n' + ("" if steps == 200 else f"steps = {steps}\n"))
    out = tmp_path / "run"
    proc = run_mpi(2, [job, "--out", out])
    assert proc.returncode == 0, proc.stderr
    s = summary(out)
    assert s["converged"] is True and s["stop_reason"] == "tol", _final(proc)
    assert s["steps"] < s["steps_budget"] == steps
    assert s["optimizer"]["name"] == "adaptive" and "alpha auto" in proc.stdout
    # least squares knows its slowest curvature: a real decay; logistic/softmax: a constant 1/L
    assert (0 < s["optimizer"]["alpha"] < 1) if kind == "linear" else s["optimizer"]["alpha"] == 0
    mu, lam_max = s["curvature_min_max"]
    assert s["optimizer"]["learning_rate"] == pytest.approx(1.0 / lam_max)
    assert "learning_rate auto" in proc.stdout
    line = _final(proc)
    assert line.startswith("done:")
    assert ("test R²" if kind == "linear" else "test accuracy") in line


def test_default_job_converges_with_its_defaults(tmp_path):
    out = tmp_path / "run"
    proc = run_mpi(2, ["--out", out, "--set", "data.rows=100000"])
    assert proc.returncode == 0, proc.stderr
    s = summary(out)
    assert s["converged"] is True and s["solver"] == "gd" and s["optimizer"]["name"] == "adaptive"
    assert s["rel_error_to_exact"] < 1e-6
    # progress lines: step N/total and the time left
    steps = [l for l in proc.stdout.splitlines() if l.startswith("step ")]
    assert steps and f"/{s['steps_budget']}" in steps[0] and "ETA " in steps[0]
    assert "samples/s" in steps[0]


def test_not_converged_says_so_and_require_convergence_exits_3(tmp_path):
    path = _synth(tmp_path, "linear")
    job = _job(tmp_path, f'[data]\npath = "{path}"\n[model]\nkind = "linear"\n[train]\nsolver = "gd"\n'
                         f'steps = 2\n')
    out = tmp_path / "run"
    proc = run_mpi(2, [job, "--out", out])
    assert proc.returncode == 0, proc.stderr
    line = _final(proc)
    assert line.startswith("NOT CONVERGED: 2 steps (steps)") and "|grad|" in line and "train.steps" in line
    assert summary(out)["converged"] is False
    strict = tmp_path / "strict"
    proc = run_mpi(2, [job, "--out", strict, "--set", "train.require_convergence=true"])
    assert proc.returncode == 3, proc.stderr
    assert _final(proc).startswith("NOT CONVERGED") and summary(strict)["exit_code"] == 3
    assert json.loads((strict / "summary.json").read_text())["not_converged_hint"]


def test_gram_progress_line_has_no_samples_per_second(tmp_path):
    path = _synth(tmp_path, "linear")
    job = _job(tmp_path, f'[data]\npath = "{path}"\n[model]\nkind = "linear"\n[train]\nsolver = "gram"\n'
                         f'log_every = 1\n')
    proc = run_mpi(1, [job, "--out", tmp_path / "run"])
    assert proc.returncode == 0, proc.stderr
    steps = [l for l in proc.stdout.splitlines() if l.startswith("step ")]
    assert steps and all("samples/s" not in l and "ETA" in l for l in steps)


@pytest.mark.parametrize("job", ["breast_cancer_logistic", "diabetes_linear", "digits_softmax", "wine_softmax"])
def test_bundled_data_jobs_converge_with_no_optimizer_or_solver_keys(tmp_path, job):
    import tomllib

    path = ROOT / "jobs" / f"{job}.toml"
    raw = tomllib.loads(path.read_text())
    assert "optimizer" not in raw and "solver" not in raw["train"] and "steps" not in raw["train"]
    out = tmp_path / "run"
    proc = run_mpi(2, [path, "--out", out])
    assert proc.returncode == 0, proc.stderr
    s = summary(out)
    assert s["converged"] is True and s["stop_reason"] == "tol", _final(proc)
    assert s["steps"] < s["steps_budget"] == 200 and s["solver_requested"] == "auto"
    assert "test " in _final(proc)  # the held-out metric


def test_a_rate_past_the_stable_bound_says_lower_and_a_growing_loss_says_diverged(tmp_path):
    out = tmp_path / "run"
    proc = run_mpi(2, ["--out", out, "--set", "data.rows=2000", "--set", "train.solver=gd",
                       "--set", "optimizer.learning_rate=1e6", "--set", "train.steps=10"])
    assert proc.returncode == 0, proc.stderr
    line = _final(proc)
    assert line.startswith("NOT CONVERGED (DIVERGED): 10 steps (steps)") and "the loss grew from" in line, line
    assert "lower optimizer.learning_rate (now 1e+06, above the stable bound" in line and "raise" not in line
    assert "will diverge" in proc.stdout  # warned before the first step
    s = summary(out)
    assert s["diverged"] is True and s["loss_first_last"][1] > s["loss_first_last"][0]


def test_adam_quotes_no_curvature_bound(tmp_path):
    proc = run_mpi(2, ["--out", tmp_path / "run", "--set", "data.rows=2000", "--set", "train.solver=gd",
                       "--set", "optimizer.name=adam", "--set", "optimizer.learning_rate=0.001",
                       "--set", "train.steps=5"])
    assert proc.returncode == 0, proc.stderr
    line = _final(proc)
    assert line.startswith("NOT CONVERGED: 5 steps") and "stable" not in line and "eta_0" not in line, line


def test_a_singular_gram_says_so_instead_of_a_negative_step_count(tmp_path):
    out = tmp_path / "run"
    proc = run_mpi(2, ["--out", out, "--set", "data.rows=2000", "--set", "train.solver=gd",
                       "--set", "data.test_fraction=0.999", "--set", "train.steps=20"])
    assert proc.returncode == 0, proc.stderr
    line = _final(proc)
    assert line.startswith("NOT CONVERGED") and "the smallest curvature is about 0" in line, line
    assert "model.reg > 0" in line and "about -" not in line and "about 2 training rows" in line
