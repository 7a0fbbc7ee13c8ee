"""lbfgs, owlqn and newton in the real application under mpiexec: the same bits at 1, 2, 4 and 7 ranks,
resume at another rank count, and summary.json's solver figures. (Against scikit-learn, every kind and
penalty, in-process at 1-4 ranks: tests/mpi/test_glm_solvers.py.)"""

import pytest

from mpirun import final_params, run_mpi, summary

# 31 chunks: 7 ranks get 5 or 4 chunks each, so the reduction trees' covers differ at every rank count
SMALL = ["--set", "data.rows=30011", "--set", "data.cols=6", "--set", "data.chunk_rows=1000",
         "--set", "model.penalty=l2", "--set", "model.reg=1e-3", "--set", "train.log_every=2"]
SOLVERS = {"lbfgs": ["model.kind=logistic", "train.solver=lbfgs"],
           "newton": ["model.kind=softmax", "model.classes=3", "train.solver=newton"],
           "owlqn": ["model.kind=logistic", "train.solver=auto", "model.penalty=elasticnet"]}


def sets(items):
    return [a for item in items for a in ("--set", item)]


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_bitwise_identical_on_1_2_4_7_ranks(tmp_path, solver):
    args = [*SMALL, *sets(SOLVERS[solver]), "--set", "train.tol=1e-10", "--set", "train.steps=60"]
    params, stats = [], []
    for n in (1, 2, 4, 7):
        out = tmp_path / f"n{n}"
        proc = run_mpi(n, ["--out", out, *args])
        assert proc.returncode == 0, proc.stderr
        params.append(final_params(out))
        s = summary(out)
        stats.append(s["solver_stats"])
        assert s["world_size"] == n and s["solver"] == ("owlqn" if solver == "owlqn" else solver)
        assert s["stop_reason"] in ("tol", "eta_floor") and s["steps"] < 60
    assert all(p == params[0] for p in params)
    assert all(st == stats[0] for st in stats)
    st = stats[0]
    assert st["iterations"] > 0 and st["function_evals"] >= st["iterations"] and st["passes"] >= st["function_evals"]


def test_lbfgs_resume_on_another_rank_count_is_bitwise_exact(tmp_path):
    args = [*SMALL, *sets(SOLVERS["lbfgs"]), "--set", "train.tol=0", "--set", "checkpoint.every=2"]
    whole = tmp_path / "whole"
    assert run_mpi(1, ["--out", whole, *args, "--set", "train.steps=8"]).returncode == 0
    part = tmp_path / "part"
    assert run_mpi(2, ["--out", part, *args, "--set", "train.steps=5"]).returncode == 0
    proc = run_mpi(3, ["--out", part, "--resume", "auto", *args, "--set", "train.steps=8"])
    assert proc.returncode == 0, proc.stderr
    assert final_params(part) == final_params(whole)
    assert summary(part)["solver_stats"] == summary(whole)["solver_stats"]
    assert summary(part)["steps"] == 8
