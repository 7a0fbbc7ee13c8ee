"""Wide dense least squares through the real CLI: the d x d buffers count in the memory check,
``train.solver = "auto"`` says what it chose and takes no solver that needs XᵀX it cannot form,
and Newton/L-BFGS runs print no optimizer line."""

import pytest

from mpirun import run_mpi, summary

pytestmark = pytest.mark.e2e


def _last(proc) -> str:
    return proc.stdout.strip().splitlines()[-1]


def test_wide_dense_least_squares_on_auto_takes_lbfgs_and_forms_no_gram(tmp_path):
    # 500 x 100000: XᵀX alone is 74.5 GiB; this ran out of memory in the reference pass
    out = tmp_path / "run"
    proc = run_mpi(2, ["--out", out, "--set", "data.rows=500", "--set", "data.cols=100000",
                       "--set", "train.solver=auto", "--set", "train.steps=3"])
    assert proc.returncode == 0, proc.stderr
    assert "solver auto -> lbfgs (least squares, d=100000" in proc.stdout
    assert "optimizer " not in proc.stdout  # L-BFGS takes no optimizer.* step size
    s = summary(out)
    assert s["solver"] == "lbfgs" and s["rel_error_to_exact"] is None
    assert max(s["peak_rss_bytes"]["per_rank"]) < 4 << 30


def test_the_gram_solver_on_wide_data_is_refused_naming_the_bytes(tmp_path):
    out = tmp_path / "run"
    proc = run_mpi(2, ["--out", out, "--set", "data.rows=500", "--set", "data.cols=100000",
                       "--set", "train.solver=gram"])
    assert proc.returncode == 1
    err = [l for l in proc.stderr.splitlines() if l.strip()]
    assert err and "Traceback" not in proc.stderr, proc.stderr
    line = err[0]
    assert "100001 x 100001 normal equations" in line and "GiB" in line and "train.solver=lbfgs" in line, line
    assert not (out / "summary.json").exists()


def test_gradient_descent_on_wide_data_takes_its_step_from_power_iteration(tmp_path):
    # 200 x 20000 (XᵀX 3 GiB, eigenvalues of it minutes): killed by the OOM killer after 68 s
    out = tmp_path / "run"
    proc = run_mpi(2, ["--out", out, "--set", "data.rows=200", "--set", "data.cols=20000",
                       "--set", "train.solver=gd", "--set", "train.steps=5"])
    assert proc.returncode == 0, proc.stderr
    s = summary(out)
    mu, lam_max = s["curvature_min_max"]
    assert mu is None and lam_max > 0 and s["optimizer"]["learning_rate"] == pytest.approx(1 / lam_max)
    assert "learning_rate auto" in proc.stdout and s["final_loss"] < s["loss_first_last"][0]


def test_newton_on_auto_says_so_and_prints_no_optimizer_line(tmp_path):
    out = tmp_path / "run"
    proc = run_mpi(2, ["--out", out, "--set", "data.rows=2000", "--set", "train.solver=auto"])
    assert proc.returncode == 0, proc.stderr
    assert "solver auto -> newton (least squares, d=32: the Hessian is XᵀX)" in proc.stdout
    assert "optimizer " not in proc.stdout and "learning_rate auto" not in proc.stdout
    assert summary(out)["solver"] == "newton" and _last(proc).startswith("done:")


def test_a_classes_attr_that_disagrees_with_the_labels_says_reimport(tmp_path):
    import h5py
    import numpy as np

    path = tmp_path / "bad_classes.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["X"] = rng.standard_normal((60, 3))
        f["y"] = np.arange(60) % 3 * 1.0  # labels 0, 1, 2
        f["y"].attrs["classes"] = ["a", "b"]  # but only two names
    proc = run_mpi(2, ["--out", tmp_path / "run", "--set", f"data.path={path}", "--set", "model.kind=softmax"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = [l for l in proc.stderr.splitlines() if l.strip()][0]
    assert "labels go up to 2" in line and "disagree; re-import the data" in line, line
    assert "model.classes=2" not in line


def test_verbose_adds_debug_records_on_rank_0_only(tmp_path):
    args = ["--set", "data.rows=2000", "--set", "checkpoint.every=5", "--set", "train.steps=10"]
    proc = run_mpi(2, ["-v", "--out", tmp_path / "loud", *args])
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "[rank 0] layout: 2,000 rows in 1 chunks of" in text and "chunks per rank: 1, 0" in text
    assert "[rank 0] reference pass: " in text and "[rank 0] solver gd (set by train.solver)" in text
    ckpts = [l for l in text.splitlines() if "] checkpoint step " in l]
    assert len(ckpts) == 2 and all(" bytes in " in l for l in ckpts), ckpts
    size = (tmp_path / "loud" / "checkpoints" / "step-00000010.h5").stat().st_size
    assert f"step-00000010.h5, {size:,} bytes" in ckpts[-1]
    assert "layout:" not in proc.stderr  # rank 1 prints no debug records
    quiet = run_mpi(2, ["--out", tmp_path / "quiet", *args])
    assert quiet.returncode == 0 and "layout:" not in quiet.stdout and "checkpoint step" not in quiet.stdout
