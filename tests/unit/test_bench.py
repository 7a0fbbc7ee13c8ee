"""lepton_hpc.bench runs end to end on small data and prints one JSON object.

Only the shape of the report is checked here: the speed targets are for the
full-size benchmarks on a quiet machine, not for timed tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_spread, positive

from lepton_hpc.bench.common import verdict
from lepton_hpc.metrics import spread

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--rows", "20000", "--cols", "8"]


def run_bench(*args: str, timeout: int = 240) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "lepton_hpc.bench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got {proc.stdout[-3000:]!r}"
    return json.loads(lines[0])




def assert_verdict(res: dict, name: str, target: float, target_is: str) -> None:
    assert res["bench"] == name
    assert positive(res["ratio"])
    assert_spread(res["paired_ratio"])
    assert res["target"] == target and res["target_is"] == target_is
    assert isinstance(res["pass"], bool)
    prov = res["provenance"]
    assert prov["numpy"] and prov["mpi4py"] and prov["mpi_library"] and prov["cpu_count"] >= 1
    assert "OPENBLAS_CORETYPE" in prov["env"]
    assert all(b["num_threads"] == 1 for b in prov["blas"])


def test_gradpass_reports_ratio_to_read_bound():
    res = run_bench("gradpass", *SMALL, "--repeats", "2")
    assert_verdict(res, "gradpass", 0.65, ">=")
    assert res["x_bytes"] == 20000 * 8 * 8
    for key in ("gradpass_s", "gradpass_gb_s", "bound_s", "bound_gb_s"):
        assert_spread(res[key])
    assert res["bound_fastest_read"] in res["reads"]
    assert res["bound_s"]["min"] <= min(r["s"]["min"] for r in res["reads"].values()) + 1e-12


def test_reduce_reports_exact_over_fast_step_time():
    res = run_bench("reduce", *SMALL, "--steps", "3")
    assert_verdict(res, "reduce", 1.10, "<=")
    assert res["ranks"] == 2
    for key in ("step_s", "reduce_in_step_s", "reduce_only_s"):
        assert set(res[key]) == {"exact", "fast"}
        for s in res[key].values():
            assert_spread(s)


def test_ranks_reports_speedup_over_the_read_bandwidth_ratio():
    res = run_bench("ranks", *SMALL, "--steps", "3", "--rounds", "2")
    assert_verdict(res, "ranks", 0.8, ">=")
    assert_spread(res["step_s_n1"])
    assert_spread(res["step_s_n2"])
    assert len(res["step_s_per_launch"]["n1"]) == len(res["step_s_per_launch"]["n2"]) == 2
    for n in ("n1", "n2"):
        assert_spread(res["read_gb_s"][n])
    # the ratio is the speedup over the bandwidth ratio of the same launches, nothing else
    assert res["ratio"] == pytest.approx(res["speedup"] / res["read_bandwidth_ratio"])


def test_verdict_is_ratio_of_medians():
    v = verdict([2.0, 4.0, 100.0], [1.0, 2.0, 2.0], 1.5, ">=")
    assert v["ratio"] == pytest.approx(2.0)
    assert v["paired_ratio"] == spread([2.0, 2.0, 50.0])
    assert v["pass"] is True
    assert verdict([2.0], [1.0], 1.1, "<=")["pass"] is False


def test_predict_reports_both_sub_verdicts():
    res = run_bench("predict", "--rows", "20000", "--cols", "8", "--reps", "2", "--rounds", "1")
    assert_verdict(res, "predict", 1.0, ">=")
    one, two = res["one_rank_vs_numpy"], res["two_rank_speedup_share"]
    assert one["target"] == 1.0 and two["target"] == 0.85
    assert res["pass"] == (one["pass"] and two["pass"])
    assert res["ratio"] == pytest.approx(min(one["ratio"] / 1.0, two["ratio"] / 0.85))
    assert two["ratio"] == pytest.approx(two["speedup"] / two["read_bandwidth_ratio"])
    for key in ("baseline_s", "predict_s_n1", "predict_s_n2"):
        assert_spread(res[key])


def test_als_reports_alswr_over_single_lambda_sweep_and_rmse():
    res = run_bench("als", "--users", "3000", "--items", "200", "--density", "0.05", "--sweeps", "3",
                    "--rounds", "1")
    assert res["bench"] == "als" and res["target"] == 1.2 and res["target_is"] == "<="
    assert positive(res["ratio"]) and isinstance(res["pass"], bool) and isinstance(res["rmse_pass"], bool)
    for key in ("sweep_s_none", "sweep_s_count"):
        assert_spread(res[key])
    assert len(res["test_rmse_per_sweep_count"]) == 3 and res["data"]["ratings_train"] > 0
    assert res["pass"] == (res["ratio"] <= 1.2 and res["test_rmse_count"] <= res["rmse_target"])


def test_implicit_reports_library_over_ours_and_precision():
    res = run_bench("implicit", "--users", "2000", "--items", "200", "--density", "0.05", "--factors", "4",
                    "--iterations", "3", "--rounds", "1")
    assert_verdict(res, "implicit", 1.0, ">=")
    assert res["implicit_version"] and res["data"]["interactions_train"] > 0
    for key in ("iter_s_ours", "iter_s_implicit"):
        assert_spread(res[key])
    assert set(res["metrics_ours"]) == set(res["metrics_implicit"]) == {"precision_at_10", "recall_at_10",
                                                                          "ndcg_at_10", "auc"}
    assert res["precision_pass"] == (res["precision_diff"] <= 0.01)


def test_solve_reports_time_to_the_same_objective_against_sklearn():
    pytest.importorskip("sklearn")
    res = run_bench("solve", "--rows", "20000", "--cols", "8", "--softmax-cols", "4", "--classes", "3",
                    "--rounds", "1", timeout=600)
    assert_verdict(res, "solve", 2.0, ">=")
    for kind, solver in (("logistic", "newton"), ("softmax", "lbfgs"), ("linear", "newton")):
        r = res[kind]
        assert r["lepton"]["solver"] == solver and r["lepton"]["stop_reason"] in ("tol", "eta_floor")
        assert r["same_objective"], r["objective"]  # both answers within 1e-8 of the lower objective
        assert_spread(r["lepton_s"])
        assert_spread(r["sklearn_s"])
        assert r["ratio"] == pytest.approx(r["sklearn_s"]["median"] / r["lepton_s"]["median"])
        assert all(b["num_threads"] == 2 for b in r["sklearn_blas"])
    assert res["ratio"] == res["logistic"]["ratio"] and positive(res["lepton_startup_s"])
    assert res["pass"] == (res["logistic"]["pass"] and all(res[k]["same_objective"] for k in
                                                           ("logistic", "softmax", "linear")))


def test_svd_reports_baseline_over_lepton_with_accuracy_and_path():
    res = run_bench("svd", "--sizes", "6000x8,3000x4", "--ranks", "1,2", "--repeats", "1")
    assert_verdict(res, "svd", 2.5, ">=")
    assert [(c["rows"], c["cols"], c["ranks"]) for c in res["cases"]] == [
        (6000, 8, 1), (6000, 8, 2), (3000, 4, 1), (3000, 4, 2)]
    for c in res["cases"]:
        assert c["path"] == "cholesky_qr2"  # a normal matrix is well conditioned
        for key in ("lepton_s", "baseline_s", "lepton_cpu_s", "baseline_cpu_s"):
            assert_spread(c[key])
        assert positive(c["ratio_cpu"])
        for side in ("lepton", "baseline"):
            assert 0 < c["accuracy"][side]["orthogonality"] < 1e-13
            assert 0 < c["accuracy"][side]["reconstruction"] < 1e-13
        assert c["equal_accuracy"] is True and c["singular_values_rel_diff"] < 1e-13
    assert res["ratio"] == min(c["ratio"] for c in res["cases"])
    assert res["pass"] == all(c["pass"] for c in res["cases"])
    shifted = run_bench("svd", "--sizes", "3000x6", "--ranks", "1", "--repeats", "1", "--kappa", "1e10")
    assert shifted["paths"] == ["shifted_cholesky_qr3"]
